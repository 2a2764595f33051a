#!/usr/bin/env python3
"""The asset API over a 133,000-file dataset: ingest into pgstac, then load.

1. Generates ONE CMIP6-like dataset of daily files over 364 years (noleap calendar:
   132,860 tiny NetCDF-3 files, `tas` on a 2x2 grid, one step each; one template written
   with netCDF4, the others copies with their time, bounds and tracking id patched).
2. Ingests them in one `zarrstac ingest` run into a pgstac database of its own
   (`deploy/stack.sh start catalog`, database `zarrstac_bench`), timed.
3. Checks what the issue asks: the item is at most 50 KB; the asset list pages every file
   exactly once (pages of 10,000); a one-year `datetime` filter returns exactly that
   year's 365 files (five years).
4. Starts `zarrstac serve` on that database and runs 8 concurrent clients (threads with
   their own keep-alive connection) for `--seconds` per workload:
   - list: an item's asset list filtered to a random year (`limit=100`);
   - list-page: the second page of such a list (its `next` token);
   - search-get: `GET /asset/search` of a random month of the collection;
   - search-post: `POST /asset/search` of a random week with a bbox.
   Reported per workload: requests, p50, p99, max; the server's resident memory sampled
   every 0.25 s (first, peak, last).

    .cache/venv/bin/python bench/asset_api.py [--seconds 20] [--years 364] [--keep]

PostgreSQL must be running (./scripts/test.sh starts it). The binary is $ZARRSTAC_BIN or
~/.cache/zarrstac/target/release/zarrstac. Results are printed as a Markdown table.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import netCDF4
import psycopg

REPO = Path(__file__).resolve().parents[1]
BIN = os.environ.get("ZARRSTAC_BIN", str(Path.home() / ".cache/zarrstac/target/release/zarrstac"))
WORK = REPO / ".cache" / "bench" / "asset-api"
DB = "zarrstac_bench"
PORT = 8093
MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
SENTINEL_T = 123456.25
SENTINEL_B = (123456.0, 123457.0)
TRACKING = "hdl:21.14100/00000000-0000-0000-0000-000000000000"


def noleap_date(day):
    y, d = divmod(day, 365)
    m = 0
    while d >= MONTH_DAYS[m]:
        d -= MONTH_DAYS[m]
        m += 1
    return 1850 + y, m + 1, d + 1


def file_name(day):
    y, m, d = noleap_date(day)
    return f"tas_day_ZS-1_historical_r1i1p1f1_gn_{y:04d}{m:02d}{d:02d}-{y:04d}{m:02d}{d:02d}.nc"


def template(path):
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as ds:
        ds.setncatts(dict(
            mip_era="CMIP6", activity_id="CMIP", institution_id="ZS", source_id="ZS-1",
            experiment_id="historical", variant_label="r1i1p1f1", sub_experiment_id="none",
            table_id="day", variable_id="tas", grid_label="gn", frequency="day", realm="atmos",
            Conventions="CF-1.7 CMIP-6.2", creation_date="2026-01-01T00:00:00Z",
            tracking_id=TRACKING, nominal_resolution="10000 km"))
        ds.createDimension("time", 1)
        ds.createDimension("lat", 2)
        ds.createDimension("lon", 2)
        ds.createDimension("bnds", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts(dict(units="days since 1850-01-01", calendar="noleap", axis="T",
                         standard_name="time", bounds="time_bnds"))
        tb = ds.createVariable("time_bnds", "f8", ("time", "bnds"))
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.setncatts(dict(units="degrees_north", standard_name="latitude", axis="Y"))
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.setncatts(dict(units="degrees_east", standard_name="longitude", axis="X"))
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"))
        tas.setncatts(dict(units="K", standard_name="air_temperature",
                           long_name="Near-Surface Air Temperature"))
        lat[:] = [-45.0, 45.0]
        lon[:] = [90.0, 270.0]
        t[0] = SENTINEL_T
        tb[0, :] = SENTINEL_B
        tas[0] = 280.0
    return path.read_bytes()


def generate(data, days):
    data.mkdir(parents=True, exist_ok=True)
    marker = data / f".complete-{days}"
    if marker.exists():
        return sorted(data.glob("*.nc"))
    shutil.rmtree(data)
    data.mkdir(parents=True)
    raw = bytearray(template(data / "template.tmp"))
    (data / "template.tmp").unlink()
    at_t = raw.index(struct.pack(">d", SENTINEL_T))
    at_b = raw.index(struct.pack(">dd", *SENTINEL_B))
    at_id = raw.index(TRACKING.encode())
    for day in range(days):
        raw[at_t:at_t + 8] = struct.pack(">d", day + 0.5)
        raw[at_b:at_b + 16] = struct.pack(">dd", day, day + 1)
        raw[at_id:at_id + len(TRACKING)] = f"hdl:21.14100/{day:08d}-0000-0000-0000-000000000000".encode()
        (data / file_name(day)).write_bytes(raw)
    marker.touch()
    return sorted(data.glob("*.nc"))


def stack_env():
    return dict(os.environ, STACK_DB=DB, ZARRSTAC_STACK_DIR=str(WORK / "stack"),
                ZARRSTAC_VENV=os.environ.get("ZARRSTAC_VENV", str(REPO / ".cache" / "venv")))


def pg_url():
    host, port, user = (os.environ.get(k, d) for k, d in
                        (("PGHOST", "127.0.0.1"), ("PGPORT", "5432"), ("PGUSER", "postgres")))
    return f"postgresql://{user}@{host}:{port}/{DB}"


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Client(threading.Thread):
    """One client with its own connection, sending `make()`'s requests until `stop`."""

    def __init__(self, make, stop, seed):
        super().__init__(daemon=True)
        self.make, self.stop, self.rng = make, stop, random.Random(seed)
        self.latencies, self.errors = [], []

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        while not self.stop.is_set():
            method, path, body = self.make(self.rng)
            headers = {"content-type": "application/json"} if body is not None else {}
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            payload = r.read()
            self.latencies.append(time.perf_counter() - t0)
            if r.status != 200:
                self.errors.append((r.status, payload[:200]))


def load(make, seconds, clients=8):
    stop = threading.Event()
    threads = [Client(make, stop, k) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    lat = sorted(x for t in threads for x in t.latencies)
    errors = [e for t in threads for e in t.errors]
    if errors:
        sys.exit(f"{len(errors)} failed requests, e.g. {errors[0]}")
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    return len(lat), q(0.50), q(0.99), lat[-1] * 1000


def get_json(path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    if body is None:
        conn.request("GET", path)
    else:
        conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    r = conn.getresponse()
    payload = r.read()
    if r.status != 200:
        sys.exit(f"{path}: {r.status} {payload[:300]}")
    return json.loads(payload)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--years", type=int, default=364)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--keep", action="store_true", help="reuse the database if it holds the dataset")
    args = ap.parse_args()
    days = args.years * 365
    t0 = time.perf_counter()
    files = generate(WORK / "data", days)
    print(f"{len(files)} files ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    subprocess.run([str(REPO / "deploy" / "stack.sh"), "start", "catalog"], env=stack_env(), check=True)
    with psycopg.connect(pg_url(), autocommit=True) as conn:
        held = 0
        if args.keep:
            try:
                held = conn.execute("SELECT count(*) FROM zarrstac.assets").fetchone()[0]
            except psycopg.errors.UndefinedTable:
                held = 0
        if held != days:
            conn.execute("DELETE FROM pgstac.collections")
            conn.execute("DROP SCHEMA IF EXISTS zarrstac CASCADE")
    ingest_s = None
    if held != days:
        out = WORK / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        env = dict(os.environ, ZARRSTAC_OUTPUT__CATALOG=pg_url(), ZARRSTAC_OUTPUT__REFS_ROOT=str(out / "refs"),
                   ZARRSTAC_OUTPUT__FAILED=str(out / "failed.jsonl"),
                   ZARRSTAC_SERVE__PUBLIC_URL=f"http://127.0.0.1:{PORT}", ZARRSTAC_LOG="warn")
        t0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", BIN, "ingest", str(WORK / "data")], env=env,
                           cwd=out, capture_output=True, text=True)
        ingest_s = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"ingest failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
        ingest_rss = int(r.stderr.strip().splitlines()[-1])
        print(f"ingest: {ingest_s:.1f} s, peak RSS {ingest_rss / 1024:.0f} MiB", file=sys.stderr)
        print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "", file=sys.stderr)

    with psycopg.connect(pg_url(), autocommit=True) as conn:
        (collection, item_id, size), = conn.execute(
            "SELECT collection, id, length(content::text) FROM pgstac.items").fetchall()
        item = conn.execute("SELECT pgstac.get_item(%s, %s)", (item_id, collection)).fetchone()[0]
    item_bytes = len(json.dumps(item).encode())
    assert item_bytes <= 50_000, f"item of {item_bytes} bytes"

    serve_log = open(WORK / "serve.log", "w")
    server = subprocess.Popen([BIN, "serve", "--catalog", pg_url(), "--addr", f"127.0.0.1:{PORT}"],
                              env=dict(os.environ, ZARRSTAC_SERVE__PUBLIC_URL=f"http://127.0.0.1:{PORT}"),
                              stdout=serve_log, stderr=serve_log)
    try:
        for _ in range(100):
            try:
                get_json("/")
                break
            except (ConnectionError, OSError):
                time.sleep(0.1)
        base = f"/collections/{collection}/items/{item_id}/assets"

        # Every file exactly once, in pages of 10,000.
        t0 = time.perf_counter()
        seen, page, pages = [], get_json(f"{base}?limit=10000"), 1
        seen += [d["id"] for d in page["features"]]
        while nxt := [l for l in page["links"] if l["rel"] == "next"]:
            u = urllib.parse.urlsplit(nxt[0]["href"])
            page = get_json(f"{u.path}?{u.query}")
            pages += 1
            seen += [d["id"] for d in page["features"]]
        walk_s = time.perf_counter() - t0
        assert len(seen) == days and len(set(seen)) == days, (len(seen), len(set(seen)))
        assert set(seen) == {f.stem for f in files}
        # A one-year window: exactly that year's files.
        for year in sorted({1850, 1851, 1850 + args.years // 3, 1850 + args.years // 2, 1850 + args.years - 1}):
            window = f"{year}-01-01T00:00:00Z/{year}-12-31T23:59:59Z"
            got = get_json(f"{base}?datetime={window}&limit=1000")
            ids = sorted(d["id"] for d in got["features"])
            want = sorted(file_name(d)[:-3] for d in range((year - 1850) * 365, (year - 1849) * 365))
            assert got["numberMatched"] == 365 and ids == want, (year, got["numberMatched"], ids[:2], ids[-2:])

        def year_list(rng):
            y = rng.randrange(1850, 1850 + args.years)
            return "GET", f"{base}?datetime={y}-01-01T00:00:00Z/{y}-12-31T23:59:59Z&limit=100", None

        def year_second_page(rng):
            _, path, _ = year_list(rng)
            if path not in second_pages:
                second_pages[path] = next_of(path)
            return "GET", second_pages[path], None

        second_pages = {}

        def next_of(path):
            nxt = [l for l in get_json(path)["links"] if l["rel"] == "next"][0]
            u = urllib.parse.urlsplit(nxt["href"])
            return f"{u.path}?{u.query}"

        def month_search(rng):
            y, m = rng.randrange(1850, 1850 + args.years), rng.randrange(1, 13)
            end = f"{y}-{m:02d}-{MONTH_DAYS[m - 1]:02d}T23:59:59Z"
            return "GET", f"/asset/search?collections={collection}&datetime={y}-{m:02d}-01T00:00:00Z/{end}&limit=50", None

        def week_search_post(rng):
            d = rng.randrange(0, days - 7)
            (y1, m1, d1), (y2, m2, d2) = noleap_date(d), noleap_date(d + 6)
            body = {"collections": [collection], "bbox": [-10, -10, 10, 10], "limit": 50,
                    "datetime": f"{y1:04d}-{m1:02d}-{d1:02d}T00:00:00Z/{y2:04d}-{m2:02d}-{d2:02d}T23:59:59Z"}
            return "POST", "/asset/search", json.dumps(body)

        # Every year's second-page path, known before the load (a client holds it after
        # reading page one).
        for y in range(1850, 1850 + args.years):
            year_second_page(type("Fixed", (), {"randrange": staticmethod(lambda a, b, y=y: y)})())

        marks = []
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                marks.append(rss_kib(server.pid))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rows = []
        for label, make in [("list (one year, limit 100)", year_list),
                            ("list, second page (token)", year_second_page),
                            ("search GET (one month)", month_search),
                            ("search POST (one week + bbox)", week_search_post)]:
            n, p50, p99, mx = load(make, args.seconds)
            rows.append((label, n, p50, p99, mx))
            print(f"{label}: {n} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms", file=sys.stderr)
        sampling.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait()

    print()
    print(f"dataset: {days} files, 1 item; ingest {'(kept)' if ingest_s is None else f'{ingest_s:.1f} s'}; "
          f"item {item_bytes} bytes; whole list walked in {pages} pages of 10,000 in {walk_s:.1f} s")
    print()
    print("| workload (8 clients) | requests | p50 | p99 | max |")
    print("|---|---|---|---|---|")
    for label, n, p50, p99, mx in rows:
        print(f"| {label} | {n} | {p50:.1f} ms | {p99:.1f} ms | {mx:.1f} ms |")
    print()
    print(f"server RSS: first {marks[0] / 1024:.1f} MiB, peak {max(marks) / 1024:.1f} MiB, "
          f"last {marks[-1] / 1024:.1f} MiB ({len(marks)} samples over the loads)")


if __name__ == "__main__":
    main()
