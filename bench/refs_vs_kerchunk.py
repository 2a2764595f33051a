#!/usr/bin/env python3
"""Benchmark `zarrstac refs` against kerchunk on the same files, same machine, same run.

Inputs: every NetCDF-3 / NetCDF-4 / HDF5 file under fixtures/shared, plus a generated
NetCDF-4 file holding one variable of 1,000,000 uncompressed 600-byte chunks (written to
the cache directory, never committed).

kerchunk side: kerchunk.netCDF3.NetCDF3ToZarr for CDF files, kerchunk.hdf.SingleHdf5ToZarr
for HDF5 files, run as a fresh Python process per input (import, scan, json.dump to a file),
so that both tools pay their process start. The in-process scan time (constructor +
translate()) is recorded separately.

Per input and tool:
  * wall s      best of N fresh processes (N=3 for the shared files, 1 for the big file),
                measured by this script around the whole process (start to exit).
  * peak RSS    max resident set size of the process, from `/usr/bin/time -v`.
  * requests    zarrstac: range requests from `--stats`; kerchunk: read()/readinto()
                calls on the fsspec file object.
  * bytes read  zarrstac: bytes from `--stats`; kerchunk: bytes returned by those calls.

With N > 1 the timed runs are plain processes and one extra run under `/usr/bin/time -v`
with counters on gives peak RSS, requests and bytes. With N = 1 that single instrumented
run is also the timed run.

Both tools use an inline threshold of 500 bytes. Results go to docs/benchmarks.md and
standard output.

Run with the Python environment that has kerchunk, h5py, netCDF4 and scipy:

    python bench/refs_vs_kerchunk.py --zarrstac /path/to/zarrstac
"""

from __future__ import annotations

import argparse
import threading
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO / "fixtures" / "shared"
SHARED_GROUPS = ["cmip6", "cmip5-netcdf3-series", "netcdf4", "netcdf3", "hdf5-edge"]
SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".he5")
INLINE = 500
GNU_TIME = "/usr/bin/time"

# Inputs kerchunk cannot translate: skipped on the kerchunk side, reason recorded.
KERCHUNK_SKIP = {
    "hdf5_compression_lz4.h5": (
        "kerchunk has no codec for the HDF5 lz4 filter (32004): it quashes the error and "
        "leaves /data out of the references"
    ),
}

BIG_NAME = "million_chunks.nc"
BIG_SHAPE = (1000, 1000, 150)  # float32
BIG_CHUNKS = (1, 1, 150)  # 600 bytes per chunk, 1,000,000 chunks, no filters

# The kerchunk process: import, scan, json.dump. argv: kind src out result_file count(0|1)
KERCHUNK_RUNNER = r"""
import sys, time
t0 = time.perf_counter()
import json, warnings
kind, src, out, result_file, count = sys.argv[1:6]
calls = [0, 0]
if count == "1":
    from fsspec.implementations.local import LocalFileOpener

    class Counting:
        def __init__(self, f):
            object.__setattr__(self, "_f", f)

        def read(self, *a):
            b = self._f.read(*a)
            calls[0] += 1
            calls[1] += len(b)
            return b

        def read1(self, *a):
            b = self._f.read1(*a)
            calls[0] += 1
            calls[1] += len(b)
            return b

        def readinto(self, b):
            n = self._f.readinto(b)
            calls[0] += 1
            calls[1] += n or 0
            return n

        def readinto1(self, b):
            n = self._f.readinto1(b)
            calls[0] += 1
            calls[1] += n or 0
            return n

        def __getattr__(self, k):
            return getattr(self._f, k)

        def __setattr__(self, k, v):
            setattr(self._f, k, v)

        def __iter__(self):
            return iter(self._f)

        def __enter__(self):
            return self

        def __exit__(self, *e):
            return self._f.__exit__(*e)

    _orig_open = LocalFileOpener._open

    def _open(self):
        _orig_open(self)
        if not isinstance(self.f, Counting):
            self.f = Counting(self.f)

    LocalFileOpener._open = _open
if kind == "cdf":
    from kerchunk.netCDF3 import NetCDF3ToZarr
else:
    from kerchunk.hdf import SingleHdf5ToZarr
t1 = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if kind == "cdf":
        refs = NetCDF3ToZarr(src, inline_threshold=%(inline)d).translate()
    else:
        refs = SingleHdf5ToZarr(src, inline_threshold=%(inline)d).translate()
t2 = time.perf_counter()
with open(out, "w") as f:
    json.dump(refs, f)
t3 = time.perf_counter()
with open(result_file, "w") as f:
    json.dump({
        "import_s": t1 - t0, "scan_s": t2 - t1, "dump_s": t3 - t2,
        "requests": calls[0] if count == "1" else None,
        "bytes": calls[1] if count == "1" else None,
        "warnings": [str(w.message).strip().splitlines()[-1][:160] for w in caught][:5],
    }, f)
""" % {"inline": INLINE}

STATS_RE = re.compile(r"stats\s+.*: (\d+) range requests in \d+ round trips, (\d+) bytes read of (\d+)")
RSS_RE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError as e:
        return f"n/a ({e})"


def is_cdf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(3) == b"CDF"


def shared_inputs() -> list[Path]:
    files = []
    for group in SHARED_GROUPS:
        d = SHARED / group
        files += sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return files


def generate_big(path: Path) -> float | None:
    """Write the million-chunk NetCDF-4 file unless present; returns seconds taken."""
    if path.exists():
        return None
    import netCDF4
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    t = time.perf_counter()
    ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
    for name, n in zip("yxz", BIG_SHAPE):
        ds.createDimension(name, n)
    v = ds.createVariable("data", "f4", ("y", "x", "z"), chunksizes=BIG_CHUNKS, fill_value=False)
    ny, nx, nz = BIG_SHAPE
    base = np.arange(nx * nz, dtype="f4").reshape(1, nx, nz)
    slab = 20  # 20 x 1000 x 150 x 4 B = 12 MB per write
    for i in range(0, ny, slab):
        n = min(slab, ny - i)
        v[i : i + n] = base + np.arange(i, i + n, dtype="f4").reshape(n, 1, 1)
    ds.close()
    tmp.rename(path)
    return time.perf_counter() - t


class Run:
    def __init__(self, wall: float, rc: int | None, timed_out: bool, stderr: str, rss_kib: int | None):
        self.wall, self.rc, self.timed_out, self.stderr, self.rss_kib = wall, rc, timed_out, stderr, rss_kib

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def run_process(cmd: list[str], timeout: float, gnu_time: bool) -> Run:
    """Run one fresh process; wall time from spawn to exit. Optionally under /usr/bin/time -v."""
    full = [GNU_TIME, "-v", *cmd] if gnu_time else cmd
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        # A blocking wait sees the exit at once; Popen.wait(timeout=...) polls with growing
        # sleeps (0.5, 1, 2, 4 ms ...), which rounds millisecond runs up to 7.5 ms.
        expired = threading.Event()

        def kill():
            expired.set()
            os.killpg(p.pid, signal.SIGKILL)  # the session started above: this run only

        timer = threading.Timer(timeout, kill)
        timer.start()
        rc = p.wait()
        wall = time.perf_counter() - t
        timer.cancel()
        timed_out = expired.is_set()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    rss = None
    if gnu_time:
        m = RSS_RE.search(stderr)
        rss = int(m.group(1)) if m else None
        m = re.search(r"Exit status: (\d+)", stderr)
        if m:
            rc = int(m.group(1))
    return Run(wall, rc, timed_out, stderr, rss)


def last_error_line(stderr: str) -> str:
    lines = [l.strip() for l in stderr.splitlines() if l.strip() and not l.startswith("\t")]
    lines = [l for l in lines if not l.startswith(("Command being timed", "Command exited"))]
    return lines[-1][:200] if lines else ""


def measure(cmd_timed, cmd_counted, runs: int, timeout: float) -> dict:
    """Timed runs (plain) plus one instrumented run; with runs == 1 the instrumented run is timed."""
    out = {"walls": [], "status": "ok", "error": "", "rss_kib": None, "stderr": "", "result": None}
    if runs > 1:
        for _ in range(runs):
            r = run_process(cmd_timed, timeout, gnu_time=False)
            out["walls"].append(r.wall)
            if not r.ok:
                out["status"] = "timeout" if r.timed_out else "failed"
                out["error"] = last_error_line(r.stderr)
                return out
    r = run_process(cmd_counted, timeout, gnu_time=True)
    if runs == 1:
        out["walls"].append(r.wall)
    out["rss_kib"] = r.rss_kib
    out["stderr"] = r.stderr
    if not r.ok:
        out["status"] = "timeout" if r.timed_out else "failed"
        out["error"] = last_error_line(r.stderr)
        if r.timed_out:
            out["walls"] = [r.wall]
    return out


def bench_zarrstac(zbin: str, src: Path, out_json: Path, runs: int, timeout: float) -> dict:
    base = [zbin, "refs", str(src), "-o", str(out_json), "--inline-threshold", str(INLINE)]
    m = measure(base, base + ["--stats"], runs, timeout)
    s = STATS_RE.search(m["stderr"])
    m["requests"], m["bytes"] = (int(s.group(1)), int(s.group(2))) if s else (None, None)
    m["scan_s"] = None
    return m


def bench_kerchunk(py: str, src: Path, out_json: Path, runs: int, timeout: float, work: Path) -> dict:
    kind = "cdf" if is_cdf(src) else "hdf5"
    res_timed = work / "kerchunk_result_timed.json"
    res_count = work / "kerchunk_result_count.json"
    cmd = lambda res, count: [py, "-c", KERCHUNK_RUNNER, kind, str(src), str(out_json), str(res), count]
    scans = []
    if runs > 1:
        # timed runs, one at a time so each run's in-process scan time is kept
        m = {"walls": [], "status": "ok", "error": ""}
        for _ in range(runs):
            r = run_process(cmd(res_timed, "0"), timeout, gnu_time=False)
            m["walls"].append(r.wall)
            if not r.ok:
                m.update(status="timeout" if r.timed_out else "failed", error=last_error_line(r.stderr))
                break
            scans.append(json.loads(res_timed.read_text())["scan_s"])
        if m["status"] != "ok":
            m.update(rss_kib=None, requests=None, bytes=None, scan_s=None, result=None)
            return m
        c = run_process(cmd(res_count, "1"), timeout, gnu_time=True)
        m["rss_kib"] = c.rss_kib
        if not c.ok:
            m.update(status="timeout" if c.timed_out else "failed", error=last_error_line(c.stderr))
    else:
        c = run_process(cmd(res_count, "1"), timeout, gnu_time=True)
        m = {"walls": [c.wall], "status": "ok", "error": "", "rss_kib": c.rss_kib}
        if not c.ok:
            m.update(status="timeout" if c.timed_out else "failed", error=last_error_line(c.stderr))
    result = json.loads(res_count.read_text()) if m["status"] == "ok" and res_count.exists() else None
    if result and runs == 1:
        scans.append(result["scan_s"])
    m["result"] = result
    m["scan_s"] = min(scans) if scans else None
    m["requests"] = result["requests"] if result else None
    m["bytes"] = result["bytes"] if result else None
    for f in (res_timed, res_count):
        f.unlink(missing_ok=True)
    return m


def ref_summary(path: Path) -> dict | None:
    try:
        with open(path) as f:
            refs = json.load(f)["refs"]
    except (OSError, ValueError, KeyError):
        return None
    keys = set(refs)
    n_ref = sum(1 for v in refs.values() if isinstance(v, list))
    return {"keys": keys, "n": len(refs), "referenced": n_ref, "inline": len(refs) - n_ref}


def fmt_s(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4f}" if x < 10 else f"{x:.1f}"


def fmt_mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def fmt_int(x: int | None) -> str:
    return "n/a" if x is None else f"{x:,}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.1f}×"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zarrstac", default=os.environ.get("ZARRSTAC_BIN") or shutil.which("zarrstac") or "zarrstac",
                    help="zarrstac binary (default: $ZARRSTAC_BIN, else zarrstac on PATH)")
    ap.add_argument("--python", default=sys.executable, help="Python with kerchunk (default: this one)")
    ap.add_argument("--cache", default=str(REPO / ".cache" / "bench"), help="generated file and outputs")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per shared input (best is kept)")
    ap.add_argument("--big-runs", type=int, default=1, help="timed runs for the million-chunk file")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds before a run is killed")
    ap.add_argument("--skip-big", action="store_true", help="leave the million-chunk file out")
    ap.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args()

    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"{GNU_TIME} is missing (Debian: apt-get install time)")
    zbin = shutil.which(args.zarrstac) or args.zarrstac
    cache = Path(args.cache)
    work = cache / "out"
    (work / "zarrstac").mkdir(parents=True, exist_ok=True)
    (work / "kerchunk").mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    started = dt.datetime.now(dt.timezone.utc)
    uptime_start = sh(["uptime"])

    big = cache / BIG_NAME
    gen_s = None
    if not args.skip_big:
        log(f"generating {big} (if missing)")
        gen_s = generate_big(big)
        log(f"generation: {'reused existing file' if gen_s is None else f'{gen_s:.1f} s'}")

    inputs = [(p, p.relative_to(SHARED).as_posix(), args.runs, True) for p in shared_inputs()]
    if not args.skip_big:
        inputs.append((big, f"generated/{BIG_NAME}", args.big_runs, False))

    # warm the page cache so both tools see the same (cached) state
    for p, *_ in inputs:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass

    rows = []
    loads = []
    for path, label, runs, shared in inputs:
        loads.append(os.getloadavg()[0])
        stem = label.replace("/", "__")
        zout = work / "zarrstac" / f"{stem}.json"
        kout = work / "kerchunk" / f"{stem}.json"
        log(f"{label}: zarrstac x{runs}")
        t = time.perf_counter()
        z = bench_zarrstac(zbin, path, zout, runs, args.timeout)
        log(f"  zarrstac {z['status']} best {fmt_s(min(z['walls']) if z['walls'] else None)} s "
            f"(step {time.perf_counter() - t:.1f} s)")
        skip = KERCHUNK_SKIP.get(path.name)
        if skip:
            k = {"status": "skipped", "error": skip, "walls": [], "rss_kib": None, "requests": None,
                 "bytes": None, "scan_s": None, "result": None}
            log(f"  kerchunk skipped: {skip}")
        else:
            log(f"{label}: kerchunk x{runs}")
            t = time.perf_counter()
            k = bench_kerchunk(args.python, path, kout, runs, args.timeout, work)
            log(f"  kerchunk {k['status']} best {fmt_s(min(k['walls']) if k['walls'] else None)} s "
                f"scan {fmt_s(k['scan_s'])} s (step {time.perf_counter() - t:.1f} s)")
        zs = ref_summary(zout) if z["status"] == "ok" else None
        ks = ref_summary(kout) if k["status"] == "ok" else None
        rows.append({"label": label, "path": path, "size": path.stat().st_size, "runs": runs,
                     "shared": shared, "z": z, "k": k, "zs": zs, "ks": ks})

    uptime_end = sh(["uptime"])
    total_s = time.perf_counter() - t_all
    md = render(rows, args, zbin, started, uptime_start, uptime_end, loads, gen_s, big, total_s)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    print(md)
    log(f"wrote {out} (benchmark took {total_s:.1f} s)")
    return 0


def best(m: dict) -> float | None:
    return min(m["walls"]) if m["walls"] and m["status"] == "ok" else None


def versions(py: str, zbin: str) -> dict:
    code = ("import sys, kerchunk, h5py, fsspec, numpy, scipy, numcodecs, zarr;"
            "print(sys.version.split()[0], kerchunk.__version__, h5py.__version__, h5py.version.hdf5_version,"
            " fsspec.__version__, numpy.__version__, scipy.__version__, numcodecs.__version__, zarr.__version__)")
    v = sh([py, "-c", code]).split()
    names = ["python", "kerchunk", "h5py", "HDF5 (h5py)", "fsspec", "numpy", "scipy", "numcodecs", "zarr"]
    out = dict(zip(names, v)) if len(v) == len(names) else {"kerchunk stack": "n/a"}
    out["zarrstac"] = sh([zbin, "--version"]) or "n/a"
    try:
        out["zarrstac binary sha256"] = hashlib.sha256(Path(zbin).read_bytes()).hexdigest()[:16]
    except OSError:
        pass
    out["repository commit"] = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "n/a"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "n/a"


def render(rows, args, zbin, started, uptime_start, uptime_end, loads, gen_s, big, total_s) -> str:
    L = []
    L.append("# `zarrstac refs` vs kerchunk")
    L.append("")
    L.append(f"Measured {started:%Y-%m-%d %H:%M} UTC by `bench/refs_vs_kerchunk.py` "
             f"(whole benchmark: {total_s:.0f} s). Both tools ran on the same machine, the same files, in the same run.")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- CPU: {cpu_model()}; `nproc`: {sh(['nproc'])}; kernel {platform.release()}")
    L.append(f"- load (`uptime`) at start: `{uptime_start}`")
    L.append(f"- load (`uptime`) at end: `{uptime_end}`")
    busy = max(loads) > 0.5
    L.append(f"- 1-minute load average sampled before each input: min {min(loads):.2f}, max {max(loads):.2f}"
             + (" (other jobs shared the machine during the run; best-of-N wall times damp but do not remove "
                "that)" if busy else ""))
    L.append("- `free -g` (at end):")
    L.append("")
    L.append("```")
    L.append(sh(["free", "-g"]))
    L.append("```")
    L.append("")
    L.append("Versions:")
    L.append("")
    for k, v in versions(args.python, zbin).items():
        L.append(f"- {k}: {v}")
    L.append("")
    L.append("## Method")
    L.append("")
    L.append("- Every NetCDF/HDF5 file under `fixtures/shared` (cmip6, cmip5-netcdf3-series, netcdf4, netcdf3, "
             "hdf5-edge), plus a generated NetCDF-4 file (see below).")
    L.append("- zarrstac: `zarrstac refs SOURCE -o OUT.json --inline-threshold 500`, one process per input.")
    L.append("- kerchunk: one fresh `python -c` process per input that imports kerchunk, scans "
             "(`NetCDF3ToZarr` for CDF files, `SingleHdf5ToZarr` for HDF5, `inline_threshold=500` for both) and "
             "`json.dump`s the references to a file. *kerchunk scan s* is the constructor plus `translate()` "
             "inside that process (no interpreter start, no imports, no JSON writing).")
    L.append(f"- *wall s*: best of {args.runs} fresh processes per shared input and {args.big_runs} for the "
             "generated file, timed from spawn to exit by the benchmark script.")
    L.append("- *peak RSS*: maximum resident set size reported by `/usr/bin/time -v` for one more run of the same "
             "command with counters on (with a single timed run, that run is the instrumented one).")
    L.append("- *requests* / *bytes read*: zarrstac's own `--stats` (range requests and bytes fetched). "
             "kerchunk: `read`/`readinto` calls made on the fsspec local file object and the bytes they returned "
             "(counted by wrapping `fsspec.implementations.local.LocalFileOpener`'s file; h5py and scipy read "
             "through it).")
    L.append("- *refs*: keys in the written references (referenced chunks + inlined entries).")
    L.append("- Every input was read once before measuring, so both tools ran against the page cache.")
    if not args.skip_big:
        ny, nx, nz = BIG_SHAPE
        gen = "reused from an earlier run" if gen_s is None else f"generated in {gen_s:.1f} s"
        L.append(f"- Generated file `{BIG_NAME}` ({big.stat().st_size / 2**20:.0f} MiB, {gen}, not committed): "
                 f"netCDF4-python, one float32 variable `data` of shape {BIG_SHAPE} with chunks {BIG_CHUNKS}, "
                 f"no filters, so {ny * nx:,} chunks of 600 bytes (above the 500-byte inline threshold: both "
                 "tools must reference every chunk), indexed by a single version-1 chunk B-tree "
                 "(superblock v2, as netCDF-C writes).")
    L.append("")

    # Summary
    shared = [r for r in rows if r["shared"]]
    both = [r for r in shared if best(r["z"]) is not None and best(r["k"]) is not None and r["k"]["scan_s"] is not None]
    z_all = [best(r["z"]) for r in shared]
    z_tot_all = sum(x for x in z_all if x is not None)
    z_tot = sum(best(r["z"]) for r in both)
    k_tot = sum(best(r["k"]) for r in both)
    ks_tot = sum(r["k"]["scan_s"] for r in both)
    L.append("## Summary")
    L.append("")
    L.append("| inputs | zarrstac wall s | kerchunk wall s | kerchunk scan s | kerchunk wall / zarrstac | "
             "kerchunk scan / zarrstac wall | target |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    L.append(f"| shared fixtures, {len(both)} files both tools ran (sum) | {fmt_s(z_tot)} | {fmt_s(k_tot)} | "
             f"{fmt_s(ks_tot)} | **{fmt_ratio(k_tot, z_tot)}** | {fmt_ratio(ks_tot, z_tot)} | ≥ 50× |")
    for r in rows:
        if r["shared"]:
            continue
        zb, kb = best(r["z"]), r["k"]["walls"][0] if r["k"]["walls"] else None
        ks = r["k"]["scan_s"]
        if r["k"]["status"] == "timeout":
            kcell, ratio = f"> {fmt_s(kb)} (timed out)", f"> {fmt_ratio(kb, zb)}"
        elif r["k"]["status"] != "ok":
            kcell, ratio = r["k"]["status"], "n/a"
        else:
            kcell, ratio = fmt_s(kb), f"**{fmt_ratio(kb, zb)}**"
        L.append(f"| `{BIG_NAME}` (1,000,000 chunks) | {fmt_s(zb)} | {kcell} | {fmt_s(ks)} | {ratio} | "
                 f"{fmt_ratio(ks, zb)} | ≥ 20× |")
    L.append("")
    skipped = [r for r in shared if r not in both]
    L.append(f"- All {len(shared)} shared files with zarrstac (sum of best wall times): {fmt_s(z_tot_all)} s.")
    for r in skipped:
        L.append(f"- Left out of the shared sum: `{r['label']}` — kerchunk {r['k']['status']}: {r['k']['error']}")
    L.append("")

    # Per input
    L.append("## Per input")
    L.append("")
    for r in rows:
        L.append(f"### `{r['label']}`")
        L.append("")
        L.append(f"{r['size']:,} bytes, {r['runs']} timed run(s) per tool.")
        L.append("")
        L.append("| tool | wall s | kerchunk scan s | peak RSS MiB | requests | bytes read | refs |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        for name, m, s in (("zarrstac", r["z"], r["zs"]), ("kerchunk", r["k"], r["ks"])):
            if m["status"] == "skipped":
                L.append(f"| {name} | skipped | | | | | |")
                continue
            if m["status"] == "timeout":
                wall = f"> {fmt_s(max(m['walls']))} (timed out)"
            elif m["status"] != "ok":
                wall = m["status"]
            else:
                wall = fmt_s(best(m))
            refs = "n/a" if s is None else f"{s['n']:,} ({s['referenced']:,} ref + {s['inline']:,} inline)"
            scan = fmt_s(m["scan_s"]) if name == "kerchunk" else "—"
            L.append(f"| {name} | {wall} | {scan} | {fmt_mib(m['rss_kib'])} | {fmt_int(m['requests'])} | "
                     f"{fmt_int(m['bytes'])} | {refs} |")
        notes = []
        for name, m in (("zarrstac", r["z"]), ("kerchunk", r["k"])):
            if m["status"] != "ok":
                notes.append(f"{name} {m['status']}: {m['error']}")
        if r["k"].get("result") and r["k"]["result"].get("warnings"):
            notes.append("kerchunk warnings: " + "; ".join(r["k"]["result"]["warnings"]))
        if r["zs"] and r["ks"]:
            zk, kk = r["zs"]["keys"], r["ks"]["keys"]
            if zk == kk:
                notes.append("same reference keys from both tools.")
            else:
                oz, ok_ = sorted(zk - kk), sorted(kk - zk)
                notes.append(f"keys only in zarrstac: {len(oz)}" + (f" (e.g. {', '.join(oz[:4])})" if oz else "")
                             + f"; only in kerchunk: {len(ok_)}" + (f" (e.g. {', '.join(ok_[:4])})" if ok_ else ""))
        for n in notes:
            L.append("")
            L.append(f"- {n}")
        L.append("")
    return "\n".join(L).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
