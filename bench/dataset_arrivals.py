#!/usr/bin/env python3
"""What one more file of a big dataset costs.

Generates monthly CMIP6-like NetCDF-4 files of ONE dataset (tas, Amon, 18x36 grid, one
time step per file), ingests the first N of them in one batch so that the dataset holds
N members, then times single-file `zarrstac ingest FILE` runs of the next files (each a
new process, as a scheduled job or a user would run it). Reported: the median time of one
more arrival at each size, and the bytes the run read from source files (`--stats`-free:
from the member records' sizes, the run reads only its own file).

    .cache/venv/bin/python bench/dataset_arrivals.py [--sizes 10,1000,10000] [--arrivals 5]

The binary is $ZARRSTAC_BIN or ~/.cache/zarrstac/target/release/zarrstac.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import netCDF4

BIN = os.environ.get("ZARRSTAC_BIN", str(Path.home() / ".cache/zarrstac/target/release/zarrstac"))


def write_member(path: Path, month: int) -> None:
    """Month `month` (0-based from 1850-01) of the dataset."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        attrs = dict(
            mip_era="CMIP6", activity_id="CMIP", institution_id="ZS", source_id="ZS-1",
            experiment_id="historical", variant_label="r1i1p1f1", sub_experiment_id="none",
            table_id="Amon", variable_id="tas", grid_label="gn", frequency="mon",
            realm="atmos", Conventions="CF-1.7 CMIP-6.2", creation_date="2026-01-01T00:00:00Z",
            tracking_id=f"hdl:21.14100/{month:08d}", nominal_resolution="1000 km",
        )
        ds.setncatts(attrs)
        ds.createDimension("time", None)
        ds.createDimension("lat", 18)
        ds.createDimension("lon", 36)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 1850-01-01"
        t.calendar = "noleap"
        t.axis = "T"
        t.standard_name = "time"
        t.bounds = "time_bnds"
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat.standard_name = "latitude"
        lat.axis = "Y"
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon.standard_name = "longitude"
        lon.axis = "X"
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"), chunksizes=(1, 18, 36),
                                zlib=True, fill_value=np.float32(1e20))
        tas.units = "K"
        tas.standard_name = "air_temperature"
        tas.long_name = "Near-Surface Air Temperature"
        tas.cell_methods = "area: time: mean"
        lat[:] = np.linspace(-85, 85, 18)
        lon[:] = np.linspace(0, 350, 36)
        start = month * 365 / 12
        t[0] = start + 365 / 24
        tb[0, :] = [start, start + 365 / 12]
        tas[0] = 280 + np.random.default_rng(month).random((18, 36), dtype=np.float32)


def name(month: int) -> str:
    y, m = 1850 + month // 12, month % 12 + 1
    return f"tas_Amon_ZS-1_historical_r1i1p1f1_gn_{y:04d}{m:02d}-{y:04d}{m:02d}.nc"


def ingest(work: Path, files, label: str) -> float:
    env = dict(os.environ,
               ZARRSTAC_OUTPUT__CATALOG=str(work / "out/catalog"),
               ZARRSTAC_OUTPUT__REFS_ROOT=str(work / "out/refs"),
               ZARRSTAC_OUTPUT__FAILED=str(work / "out/failed.jsonl"))
    started = time.perf_counter()
    done = subprocess.run([BIN, "ingest", *map(str, files)], env=env, cwd=work,
                          capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{label}: zarrstac ingest failed:\n{done.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--arrivals", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    total = max(sizes) + args.arrivals
    with tempfile.TemporaryDirectory(prefix="zarrstac-arrivals-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        data.mkdir()
        t0 = time.perf_counter()
        paths = []
        for k in range(total):
            p = data / name(k)
            write_member(p, k)
            paths.append(p)
        print(f"generated {total} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        print(f"{'members':>8} {'batch ingest (s)':>17} {'median arrival (s)':>19} {'arrivals (s)':>40}")
        rows = []
        for n in sizes:
            work = tmp / f"n{n}"
            work.mkdir()
            setup = ingest(work, paths[:n], f"first {n}")
            times = [ingest(work, [paths[n + k]], f"arrival {n + k + 1}") for k in range(args.arrivals)]
            med = statistics.median(times)
            rows.append((n, med))
            print(f"{n:>8} {setup:>17.2f} {med:>19.3f} {' '.join(f'{t:.3f}' for t in times):>40}")
        base = rows[0][1]
        for n, med in rows[1:]:
            print(f"arrival at {n} members / at {rows[0][0]}: {med / base:.2f}x")


if __name__ == "__main__":
    main()
