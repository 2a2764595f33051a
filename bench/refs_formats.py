#!/usr/bin/env python3
"""kerchunk JSON against kerchunk parquet for a file of a million chunks.

The generated million-chunk NetCDF-4 file of bench/refs_vs_kerchunk.py (1000x1000x150
float32, chunks of 1x1x150: 1,000,000 chunks of 600 bytes, no filters), referenced with
`zarrstac refs --inline-threshold 0` (every chunk by byte range) as JSON and as parquet.
Reported per format, best of `--runs` fresh processes: write time (whole process), output
size, peak RSS (`/usr/bin/time`), and the time xarray takes to open the references and to
read one value through them (a fresh Python process each; fsspec's LazyReferenceMapper for
parquet, loading only the record it needs).

    .cache/venv/bin/python bench/refs_formats.py [--runs 3]

The binary is $ZARRSTAC_BIN or ~/.cache/zarrstac/target/release/zarrstac. The file is
kept in .cache/bench/ (2 minutes to generate once).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from refs_vs_kerchunk import BIG_NAME, generate_big  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = os.environ.get("ZARRSTAC_BIN", str(Path.home() / ".cache/zarrstac/target/release/zarrstac"))
WORK = REPO / ".cache" / "bench"

OPEN = r"""
import sys, time
t0 = time.perf_counter()
import xarray as xr
refs = sys.argv[1]
ds = xr.open_dataset("reference://", engine="zarr", chunks=None,
                     backend_kwargs={"consolidated": False, "zarr_format": 2,
                                     "storage_options": {"fo": refs, "remote_protocol": "file"}})
t1 = time.perf_counter()
v = float(ds["data"][517, 333, 77])
t2 = time.perf_counter()
assert v == 517 + 333 * 150 + 77, v
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write(src: Path, out: Path, fmt: str) -> tuple[float, int]:
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    cmd = ["/usr/bin/time", "-f", "%M", BIN, "refs", str(src), "-o", str(out), "--inline-threshold", "0",
           "--format", fmt]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"zarrstac refs --format {fmt} failed:\n{r.stderr[-2000:]}")
    return took, int(r.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    src = WORK / BIG_NAME
    took = generate_big(src)
    if took:
        print(f"generated {src} in {took:.0f} s", file=sys.stderr)
    rows = {}
    for fmt, out in [("kerchunk-json", WORK / "million.json"), ("kerchunk-parquet", WORK / "million.parq")]:
        runs = [write(src, out, fmt) for _ in range(args.runs)]
        best = min(runs)
        opens = []
        for _ in range(args.runs):
            r = subprocess.run([sys.executable, "-c", OPEN, str(out)], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"xarray could not read {out}:\n{r.stderr[-2000:]}")
            opens.append(tuple(map(float, r.stdout.split())))
        rows[fmt] = (best[0], size_of(out), max(r[1] for r in runs), min(opens))
        print(fmt, rows[fmt], file=sys.stderr)
    print("| format | write (whole process) | output size | peak RSS | xarray open | first value |")
    print("|---|---|---|---|---|---|")
    for fmt, (w, size, rss, (o, first)) in rows.items():
        print(f"| {fmt} | {w:.2f} s | {size / 1e6:.1f} MB | {rss / 1024:.0f} MiB | {o:.2f} s | {first:.3f} s |")
    j, p = rows["kerchunk-json"], rows["kerchunk-parquet"]
    print(f"\nparquet / json: size {p[1] / j[1]:.3f}, write time {p[0] / j[0]:.2f}")


if __name__ == "__main__":
    main()
