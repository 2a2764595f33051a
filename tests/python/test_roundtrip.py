"""`zarrstac refs` on every fixture: the references must reproduce the source, as xarray reads it.

Each source runs twice: with the default inline threshold, and with `--inline-threshold 0`
so that every chunk the file stores is referenced by byte range rather than copied inline
(most fixture chunks are small enough to be inlined by default, which would leave the
offsets untested).
"""
import json
import os

import pytest

import refcheck
from conftest import ALL_SOURCES, GENERATED, file_url, source_id

MODES = {"default": [], "all-referenced": ["--inline-threshold", "0"],
         # The same references as kerchunk parquet, read through fsspec's LazyReferenceMapper
         # (small records: variables with chunks over several reference files).
         "parquet": ["--format", "kerchunk-parquet", "--record-size", "7"],
         "parquet-all-referenced": ["--format", "kerchunk-parquet", "--record-size", "7",
                                    "--inline-threshold", "0"]}


def run_refs(zarrstac, source, out, args):
    proc = zarrstac.refs(source, out, *args)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr}"
    assert "panicked" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("source", ALL_SOURCES, ids=source_id)
def test_roundtrip(zarrstac, source, mode, tmp_path):
    parquet = mode.startswith("parquet")
    out = tmp_path / ("refs.parq" if parquet else "refs.json")
    proc = run_refs(zarrstac, source, out, MODES[mode])
    if parquet:
        meta = json.loads((out / ".zmetadata").read_text())
        assert meta["record_size"] == 7 and ".zgroup" in meta["metadata"], sorted(meta)
    else:
        with open(out) as f:
            doc = json.load(f)
        # fixture paths are resolved (no symlinks): the tool's absolute URL is exactly this one
        problems = refcheck.structure_problems(doc, file_url(source), os.path.getsize(source))
        assert not problems, "\n".join(problems[:20])

    refused = refcheck.parse_refused(proc.stderr)
    for name, reason in refused.items():
        assert reason.strip(), f"{name} refused without a reason"
    failures = refcheck.check(str(out), str(source), refused)
    assert not failures, "\n".join(map(str, failures[:30])) + f"\n--- stderr:\n{proc.stderr[-3000:]}"


def test_referenced_mode_references_chunks(zarrstac, tmp_path):
    """With --inline-threshold 0 a chunked file yields byte-range references, not inline data."""
    source = next(p for p in GENERATED if p.name == "chunk_indexes.h5")
    out = tmp_path / "refs.json"
    run_refs(zarrstac, source, out, MODES["all-referenced"])
    refs = json.load(open(out))["refs"]
    ranges = [v for v in refs.values() if isinstance(v, list)]
    assert len(ranges) > 5000, f"only {len(ranges)} byte-range references"


def test_every_array_has_dimensions_and_group(zarrstac, tmp_path):
    """A nested NetCDF-4 file: groups have .zgroup, arrays _ARRAY_DIMENSIONS naming netCDF dimensions."""
    source = next(p for p in GENERATED if p.name == "groups.nc")
    out = tmp_path / "refs.json"
    run_refs(zarrstac, source, out, [])
    refs = json.load(open(out))["refs"]
    for group in ("", "g1/", "g1/g2/", "empty_group/"):
        assert group + ".zgroup" in refs, f"no {group}.zgroup"
    dims = json.loads(refs["g1/g2/deep_time/.zattrs"])["_ARRAY_DIMENSIONS"]
    assert dims == ["time", "bare"]
