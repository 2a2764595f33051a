#!/usr/bin/env python3
"""Remote reads at 20 ms per request: `zarrstac refs` against kerchunk over fsspec.

Servers on loopback, each adding DELAY (20 ms) to every request:
  * http               the range server of tests/python/rangeserver.py (GET with Range, 206
                       answers), the delay slept before each answer;
  * s3 (range server)  the same server answering path-style S3 GetObject / HeadObject
                       (signatures not checked): S3 clients against a store whose ranged
                       reads cost the same anywhere in a large object, as a real one's do;
  * s3 (moto)          moto_server (an S3 implementation from PyPI) behind a TCP proxy that
                       holds each request for DELAY. moto takes about 0.1 s per ranged GET
                       of the 190 MB file and answers one at a time, so its big-file rows
                       measure moto more than the clients;
                       s3s-fs is slower still (about 2 s per range of that file).

Inputs: every file of fixtures/shared/cmip6, and a generated CMIP6-like daily file (written
to the cache directory, never committed): 1,500 daily steps of a float32 (time, lat, lon)
variable, chunks (1, lat, lon) with shuffle + zlib, and time and time_bnds chunked one step
per chunk, all written one step at a time as CMOR writes such files, so that the chunk
B-tree nodes and the small time chunks are scattered through the file (about 190 MB).

Per input, server and tool, a fresh process each (whole process timed, best of N):
  * requests     counted by the server side (range server log; proxy: request lines);
  * round trips  zarrstac: waves of concurrent requests, from `--stats`; kerchunk reads
                 through one file object one read at a time, so its round trips are its
                 requests;
  * bytes read   http: bytes of the ranges served; s3: bytes of the responses (headers
                 included);
  * wall s       whole process, start to exit.

Both tools write kerchunk JSON with an inline threshold of 500 bytes (kerchunk:
SingleHdf5ToZarr(inline_threshold=500) on an fsspec file opened with default options).

    .cache/venv/bin/pip install kerchunk h5py netCDF4 s3fs aiohttp 'moto[server]'
    .cache/venv/bin/python bench/remote_reads.py --zarrstac ~/.cache/zarrstac/target/release/zarrstac
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "python"))
import rangeserver  # noqa: E402

CMIP6 = REPO / "fixtures" / "shared" / "cmip6"
BIG_NAME = "tas_day_CMIP6like_1500steps.nc"
BUCKET = "bench"
DELAY = 0.020
INLINE = 500
GENERATED_END = "<!-- the table above is written by bench/remote_reads.py; notes below are kept -->"
STATS_RE = re.compile(r"stats\s+.*: (\d+) range requests in (\d+) round trips, (\d+) bytes read of (\d+)")


def generate_big(path: Path, steps: int = 1500, nlat: int = 180, nlon: int = 280) -> Path:
    """A daily (time, lat, lon) float32 file written one step at a time, as CMOR does."""
    if path.exists():
        return path
    import netCDF4
    import numpy as np

    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(6)
    with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", nlat)
        nc.createDimension("lon", nlon)
        nc.createDimension("bnds", 2)
        for name, n, lo, hi in (("lat", nlat, -89.5, 89.5), ("lon", nlon, 0.0, 360.0 - 360.0 / nlon)):
            v = nc.createVariable(name, "f8", (name,), zlib=True, shuffle=True)
            v[:] = np.linspace(lo, hi, n)
            v.units = "degrees_north" if name == "lat" else "degrees_east"
            v.standard_name = "latitude" if name == "lat" else "longitude"
            v.axis = "Y" if name == "lat" else "X"
        time_var = nc.createVariable("time", "f8", ("time",), zlib=True, shuffle=True, chunksizes=(1,))
        time_var.units = "days since 1850-01-01"
        time_var.calendar = "noleap"
        time_var.standard_name = "time"
        time_var.axis = "T"
        time_var.bounds = "time_bnds"
        bnds = nc.createVariable("time_bnds", "f8", ("time", "bnds"), zlib=True, shuffle=True, chunksizes=(1, 2))
        tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"), zlib=True, shuffle=True, complevel=1,
                                chunksizes=(1, nlat, nlon), fill_value=np.float32(1e20))
        tas.standard_name = "air_temperature"
        tas.units = "K"
        tas.cell_methods = "area: time: mean"
        nc.Conventions = "CF-1.7 CMIP-6.2"
        nc.frequency = "day"
        nc.variable_id = "tas"
        nc.table_id = "day"
        nc.source_id = "CMIP6like"
        nc.experiment_id = "historical"
        base = (250 + 40 * np.cos(np.radians(np.linspace(-89.5, 89.5, nlat))))[:, None].astype("f4")
        for t in range(steps):
            time_var[t] = t + 0.5
            bnds[t, :] = [t, t + 1]
            tas[t] = base + rng.normal(0, 3, (nlat, nlon)).astype("f4")
    tmp.rename(path)
    return path


class DelayProxy:
    """A TCP proxy on loopback that holds each chunk a client sends for `delay` seconds
    before passing it upstream: an S3 request (a few hundred bytes, one write) waits once.
    Counts request lines and the bytes sent back."""

    REQUEST_LINE = re.compile(rb"(?:^|\r\n\r\n)(GET|HEAD|PUT|POST|DELETE) ")

    def __init__(self, upstream_port: int, delay: float):
        self.upstream_port = upstream_port
        self.delay = delay
        self.requests = 0
        self.bytes_back = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0, backlog=256))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def forward(src, dst, outbound):
            try:
                while data := await src.read(1 << 16):
                    if outbound:
                        self.requests += len(self.REQUEST_LINE.findall(data))
                        await asyncio.sleep(self.delay)
                    else:
                        self.bytes_back += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(forward(reader, up_writer, True), forward(up_reader, writer, False))

    def reset(self):
        self.requests = 0
        self.bytes_back = 0

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(files: list[Path], delay: float):
    """moto_server holding FILES in bucket BUCKET, behind a DelayProxy; yields the proxy and
    the environment both tools read their S3 endpoint and credentials from."""
    port = free_port()
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if moto is None:
        sys.exit("moto_server not found: pip install 'moto[server]'")
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("moto_server did not start")
                time.sleep(0.2)
        import boto3  # moto[server] brings it

        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="bench",
                          aws_secret_access_key="bench-secret", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for f in files:
            s3.upload_file(str(f), BUCKET, f.name)
        proxy = DelayProxy(port, delay)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
                   AWS_ENDPOINT=f"http://127.0.0.1:{proxy.port}", AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
                   AWS_ALLOW_HTTP="true")
        try:
            yield proxy, env
        finally:
            proxy.stop()
    finally:
        proc.terminate()
        proc.wait(10)


KERCHUNK = """
import json, sys, fsspec
from kerchunk.hdf import SingleHdf5ToZarr
url, out = sys.argv[1], sys.argv[2]
with fsspec.open(url, "rb") as f:
    refs = SingleHdf5ToZarr(f, url, inline_threshold=%d).translate()
with open(out, "w") as f:
    json.dump(refs, f)
""" % INLINE


def run_tool(tool: str, zarrstac: str, url: str, out: Path, env: dict) -> tuple[float, int | None, str]:
    """One fresh process; returns (wall s, zarrstac's round trips or None, stderr)."""
    if tool == "zarrstac":
        cmd = [zarrstac, "refs", url, "-o", str(out), "--stats", "--inline-threshold", str(INLINE)]
    else:
        cmd = [sys.executable, "-c", KERCHUNK, url, str(out)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed on {url}:\n{proc.stderr[-2000:]}")
    m = STATS_RE.search(proc.stderr)
    return wall, (int(m.group(2)) if m else None), proc.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zarrstac", default=str(Path.home() / ".cache/zarrstac/target/release/zarrstac"))
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool and input (best kept)")
    ap.add_argument("--delay-ms", type=float, default=DELAY * 1000)
    ap.add_argument("--work", type=Path, default=REPO / ".cache" / "bench" / "remote")
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks-remote.md")
    args = ap.parse_args()
    delay = args.delay_ms / 1000
    args.work.mkdir(parents=True, exist_ok=True)
    big = generate_big(args.work / BIG_NAME)
    files = [big]
    for f in sorted(CMIP6.glob("*.nc")):
        dest = args.work / f.name
        if not dest.exists():
            shutil.copyfile(f, dest)
        files.append(dest)
    rows = []
    out = Path(tempfile.mkdtemp()) / "refs.json"
    # The range server also answers path-style S3 GetObject/HeadObject (signatures are not
    # checked): S3 clients over a server whose ranged reads cost the same anywhere in a
    # large object, as a real store's do. Its bucket is the work folder's name.
    bucket = args.work.name
    with rangeserver.serve(args.work, delay) as http, rangeserver.serve(args.work.parent, delay) as s3_range, \
            moto_s3(files, delay) as (proxy, s3_env):
        s3_range_env = dict(s3_env, AWS_ENDPOINT=s3_range.url, AWS_ENDPOINT_URL=s3_range.url)
        servers = {
            "http": (lambda f: f"{http.url}/{f.name}", dict(os.environ), http),
            "s3 (range server)": (lambda f: f"s3://{bucket}/{f.name}", s3_range_env, s3_range),
            "s3 (moto)": (lambda f: f"s3://{BUCKET}/{f.name}", s3_env, proxy),
        }
        for f in files:
            for server, (url_of, env, counter) in servers.items():
                for tool in ("zarrstac", "kerchunk"):
                    walls = []
                    for _ in range(args.runs):
                        counter.reset()
                        wall, trips, _ = run_tool(tool, args.zarrstac, url_of(f), out, env)
                        walls.append(wall)
                    if isinstance(counter, rangeserver.RangeServer):
                        requests = len(counter.requests)
                        served = sum(_range_len(h, f.stat().st_size) for m, h in counter.requests if m == "GET")
                    else:
                        requests, served = counter.requests, counter.bytes_back
                    rows.append(dict(file=f.name, size=f.stat().st_size, server=server, tool=tool,
                                     requests=requests, trips=trips if tool == "zarrstac" else requests,
                                     bytes=served, wall=min(walls)))
                    print(f"{f.name} {server} {tool}: {min(walls):.3f} s, {requests} requests, "
                          f"{rows[-1]['trips']} round trips, {served:,} bytes", flush=True)
    write_docs(args, rows, delay)


def _range_len(header: str | None, size: int) -> int:
    if not header:
        return size
    m = rangeserver.RANGE.match(header.strip())
    if not m:
        return 0
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    return max(0, end - start + 1)


def write_docs(args, rows, delay):
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [
        f"# Remote reads at {delay * 1000:.0f} ms per request ({dt.date.today()})",
        "",
        f"`python bench/remote_reads.py --zarrstac {args.zarrstac}` (release build of {commit}, "
        f"{platform.machine()}, {os.cpu_count()} cores), best of {args.runs} fresh processes per tool and "
        "input. http: the range server of `tests/python/rangeserver.py`; s3 (range server): the same "
        "server answering path-style S3 GetObject/HeadObject; s3 (moto): moto_server behind a "
        "proxy holding each request for the delay (moto takes about 0.1 s per ranged GET of the big "
        "file and answers one at a time: its big-file rows measure moto). Requests are counted by "
        "the server side; "
        "kerchunk reads through one fsspec file object, one read at a time, so its round trips are "
        "its requests. Bytes: ranges served (range server), responses with headers (moto).",
        "",
        "| file | size | server | tool | wall s | requests | round trips | bytes read | speed-up |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["file"], r["server"], r["tool"]): r for r in rows}
    for r in rows:
        other = by_key.get((r["file"], r["server"], "kerchunk"))
        speedup = f"{other['wall'] / r['wall']:.1f}x" if r["tool"] == "zarrstac" and other else ""
        lines.append(f"| {r['file']} | {r['size']:,} | {r['server']} | {r['tool']} | {r['wall']:.3f} | "
                     f"{r['requests']:,} | {r['trips']:,} | {r['bytes']:,} | {speedup} |")
    text = "\n".join(lines) + "\n" + GENERATED_END + "\n"
    # The notes written below the table by hand are kept.
    if args.docs.exists() and GENERATED_END in (old := args.docs.read_text()):
        text += old.split(GENERATED_END, 1)[1].lstrip("\n")
    args.docs.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
