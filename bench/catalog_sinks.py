"""Items per second into pgstac through both catalog sinks (`zarrstac publish`).

Needs the stack: deploy/stack.sh up (pgstac database and stac-fastapi-pgstac). Small items
(one of the fixtures' NetCDF items, cloned with distinct ids, times and places) are
published once through the direct pgstac sink and once through the STAC API sink into
an emptied database; each run is one process, timed from start to exit.

    python bench/catalog_sinks.py [--items 5000] [--batch-size 500]
"""
import argparse
import copy
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
BIN = os.environ.get("ZARRSTAC_BIN", str(Path.home() / ".cache/zarrstac/target/release/zarrstac"))
PG = os.environ.get("ZARRSTAC_TEST_PGSTAC", "postgresql://postgres@127.0.0.1:5432/zarrstac")
API = os.environ.get("ZARRSTAC_TEST_API", "http://127.0.0.1:8082")


def template(tmp):
    subprocess.run([BIN, "ingest", str(REPO / "fixtures/shared/netcdf4/jan.nc4"), "--catalog",
                    f"{tmp}/cat", "--refs-root", f"{tmp}/refs"], check=True, capture_output=True,
                   env=dict(os.environ, ZARRSTAC_OUTPUT__FAILED=f"{tmp}/failed.jsonl"))
    return json.loads(next(Path(tmp, "cat").rglob("jan.json")).read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = template(tmp)
        path = Path(tmp, "items.ndjson")
        with open(path, "w") as f:
            for i in range(args.items):
                it = copy.deepcopy(base)
                it["id"] = f"bench-{i:06d}"
                it["collection"] = "bench"
                day = 1 + i % 28
                for k in ("start_datetime", "end_datetime"):
                    if it["properties"].get(k):
                        it["properties"][k] = it["properties"][k][:8] + f"{day:02d}" + it["properties"][k][10:]
                f.write(json.dumps(it) + "\n")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        for name, url in (("pgstac (direct)", PG), ("STAC API (stac-fastapi-pgstac)", API)):
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute("DELETE FROM pgstac.collections WHERE id = 'bench'")
            start = time.perf_counter()
            r = subprocess.run([BIN, "publish", str(path), "--catalog", url, "--batch-size",
                                str(args.batch_size), "--no-validate"], capture_output=True, text=True)
            took = time.perf_counter() - start
            with psycopg.connect(PG, autocommit=True) as conn:
                n = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = 'bench'").fetchone()[0]
            assert r.returncode == 0 and n == args.items, (r.stderr[-500:], n)
            print(f"{name:32s} {args.items} items in {took:6.2f} s = {args.items / took:8.0f} items/s")
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute("DELETE FROM pgstac.collections WHERE id = 'bench'")


if __name__ == "__main__":
    main()
