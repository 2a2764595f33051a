"""Damaged and hostile input: `zarrstac refs` fails cleanly, never hangs, crashes or panics.

For every fixture file: 20 truncations spread over the file (more of them near the start,
where the metadata is), 20 single-byte flips (fixed seed; half in the first 4 KiB), plus an
empty file, a text file and files that carry a valid signature followed by garbage. Each run
has a 30 s timeout and a 4 GiB address-space limit.

Truncated, empty and foreign files must exit non-zero with an `error:` line; a flipped byte
may go unnoticed (exit 0, valid references) or fail the same way. Never allowed: a timeout, a
signal (crash, out-of-memory kill), exit code 101 (a Rust panic) or "panicked" on stderr.
"""
import json
import os
import random
import resource
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ALL_SOURCES, FIXTURES, source_id

TIMEOUT = 30
ADDRESS_SPACE = 4 << 30
TRUNCATIONS = 20
FLIPS = 20
HEAD = 4096


def _limit_address_space():  # runs in the child between fork and exec: no imports here
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_limited(binary, src, out):
    """(returncode or 'timeout', stderr) of one bounded run."""
    try:
        proc = subprocess.run([binary, "refs", str(src), "-o", str(out)], capture_output=True, text=True,
                              errors="replace", timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                              preexec_fn=_limit_address_space)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return proc.returncode, proc.stderr


def truncation_offsets(size, n=TRUNCATIONS):
    """Up to n distinct lengths in [1, size): half spread geometrically over the first half of the
    file (headers and early metadata), the rest evenly over the whole file."""
    if size <= 1:
        return []
    half = n // 2
    low, high = min(4, size - 1), max(min(4, size - 1), size // 2)
    geo = sorted({int(round(low * (high / low) ** (i / (half - 1)))) for i in range(half)})
    even = [int(size * i / (n - len(geo) + 1)) for i in range(1, n - len(geo) + 1)]
    return sorted({p for p in geo + even if 0 < p < size})


def flip_cases(data, rng, n=FLIPS):
    cases = []
    for i in range(n):
        pos = rng.randrange(min(len(data), HEAD)) if i < n // 2 else rng.randrange(len(data))
        bad = bytearray(data)
        bad[pos] ^= rng.randrange(1, 256)
        cases.append((f"flip@{pos}", bytes(bad)))
    return cases


def hostile_cases():
    return [
        ("empty", b""),
        ("text", b"this is not a NetCDF or HDF5 file\n" * 40),
        ("cdf-signature-only", b"CDF\x01"),
        ("cdf-garbage", b"CDF\x01" + bytes(range(256)) * 8),
        ("cdf5-huge-counts", b"CDF\x05" + b"\x00" * 8 + b"\x00\x00\x00\x0a" + b"\xff" * 60),
        ("hdf5-signature-only", b"\x89HDF\r\n\x1a\n"),
        ("hdf5-garbage", b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8),
        ("hdf5-superblock-ones", b"\x89HDF\r\n\x1a\n" + b"\x02\x08\x08\x00" + b"\xff" * 100),
    ]


def check_case(binary, workdir, label, data, must_fail):
    src = os.path.join(workdir, label.replace("/", "_") + ".bin")
    out = os.path.join(workdir, label.replace("/", "_") + ".json")
    with open(src, "wb") as f:
        f.write(data)
    code, stderr = run_limited(binary, src, out)
    problems = []
    if code == "timeout":
        problems.append(f"no answer within {TIMEOUT} s")
    elif code < 0:
        problems.append(f"killed by signal {-code}")
    elif code == 101 or "panicked" in stderr:
        problems.append(f"panicked (exit {code})")
    elif code == 0:
        if must_fail:
            problems.append("exit 0 on input that cannot be read")
        else:
            try:
                with open(out) as f:
                    doc = json.load(f)
                if doc.get("version") != 1 or not isinstance(doc.get("refs"), dict):
                    problems.append("exit 0 but the output is not kerchunk JSON v1")
            except (OSError, ValueError) as e:
                problems.append(f"exit 0 but the output is unreadable ({type(e).__name__})")
    elif not any(line.startswith("error:") for line in stderr.splitlines()):
        problems.append(f"exit {code} without an 'error:' line")
    for path in (src, out):
        if os.path.exists(path):
            os.remove(path)
    if problems:
        tail = " | ".join(stderr.strip().splitlines()[-3:])[:400]
        return f"{label}: {'; '.join(problems)} [stderr: {tail}]"
    return None


def run_cases(binary, workdir, cases):
    """cases: (label, bytes, must_fail). Two at a time (the machines have two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda c: check_case(binary, workdir, *c), cases)
        return [r for r in results if r]


@pytest.mark.parametrize("source", ALL_SOURCES, ids=source_id)
def test_damaged_copies(zarrstac, source, tmp_path):
    data = source.read_bytes()
    rng = random.Random(f"zarrstac-bad-input:{source.name}:{len(data)}")
    cases = [(f"truncated@{n}", data[:n], True) for n in truncation_offsets(len(data))]
    cases += [(label, bad, False) for label, bad in flip_cases(data, rng)]
    failures = run_cases(zarrstac.binary, str(tmp_path), cases)
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)


def test_hostile_files(zarrstac, tmp_path):
    cases = [(label, data, True) for label, data in hostile_cases()]
    failures = run_cases(zarrstac.binary, str(tmp_path), cases)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("fixture", ["nc3_one_record_var.nc", "nc3_bigendian_records.nc"])
def test_huge_record_count_fails_before_allocating(zarrstac, tmp_path, fixture):
    """A NetCDF-3 header whose record count is near 2^32: refused as truncated, within the
    address-space limit (one manifest entry per record asked for gigabytes and aborted)."""
    data = bytearray((FIXTURES / "generated" / fixture).read_bytes())
    assert data[:3] == b"CDF" and data[3] in (1, 2)
    data[4:8] = (0xFFFFFFFE).to_bytes(4, "big")  # numrecs
    src, out = tmp_path / "huge.nc", tmp_path / "huge.json"
    src.write_bytes(bytes(data))
    code, stderr = run_limited(zarrstac.binary, src, out)
    assert code == 1, f"exit {code}: {stderr[-500:]}"
    error = next(line for line in stderr.splitlines() if line.startswith("error:"))
    assert "4294967294 records" in error and f"the file has {len(data)}" in error, error
    assert not out.exists()


def test_zero_record_stride_fails_before_allocating(zarrstac, tmp_path):
    """Found by the netcdf3 fuzz target: a header whose record variables give a record
    stride of 0 let a large record count through the file-size check (every record ended
    inside the file), and one manifest entry per record aborted the process."""
    src, out = FIXTURES / "fuzz" / "nc3_zero_record_stride.fuzz", tmp_path / "out.json"
    code, stderr = run_limited(zarrstac.binary, src, out)
    assert code == 1, f"exit {code}: {stderr[-500:]}"
    error = next(line for line in stderr.splitlines() if line.startswith("error:"))
    assert "records of 7 bytes every 0 bytes would overlap" in error, error
    assert not out.exists()


def test_missing_file(zarrstac, tmp_path):
    code, stderr = run_limited(zarrstac.binary, tmp_path / "does-not-exist.nc", tmp_path / "out.json")
    assert code not in (0, 101, "timeout") and code > 0, stderr
    assert any(line.startswith("error:") for line in stderr.splitlines()), stderr
