#!/usr/bin/env python3
"""Benchmark `zarrstac combine` on 10,000 generated per-file kerchunk references, with
kerchunk's MultiZarrToZarr on smaller sets of the same shape timed in the same run.

Inputs (generated into .cache/bench/manifests/, never committed; regenerated when missing
or when the generator parameters changed): 10,000 kerchunk JSON v1 references, one per
fictional file file:///archive/tas_day_{i:05d}.nc, each a Zarr v2 group with

  .zgroup, .zattrs   a few global attributes, identical in every file, no CMIP attributes
  time               shape [1], chunks [1], <f8, no filters, fill null, units
                     "days since 2000-01-01", calendar "noleap"; chunk time/0 inline
                     (base64: of the float64 value i), so file i holds day i
  lat, lon           shape [100], <f8, inline, identical in every file
  tas                shape [1, 100, 100], chunks [1, 10, 10] (100 chunks), <f4,
                     filters [zlib level 4], fill "NaN", units K; chunk (0, j, k) refers to
                     [file:///archive/tas_day_{i:05d}.nc, 20000 + 1000 * (10 j + k), 1000]

The referenced .nc files do not exist: nothing reads tas data.

Measured, each as a fresh process under `/usr/bin/time -v` (peak RSS), wall time taken by
this script from spawn to exit:

  * zarrstac combine <dir of 10,000> -o OUT.json    best of --runs (3)
  * zarrstac combine <dir of first 1,000> -o OUT    best of --runs (3), same-size ratio
  * kerchunk MultiZarrToZarr(paths, concat_dims=["time"], identical_dims=["lat", "lon"])
    .translate() + json.dump, on the first 500 and first 1,000 manifests, one fresh
    `python -c` process each, best of --kerchunk-runs (3)

If zarrstac refuses the manifests as specified, the refusal (command, stderr, time) is
recorded and every measurement is made on a second set that differs only in the fill value
of tas (--fallback-fill, default 1e20), so the remaining figures still exist.

Checks: the 10,000 output has 10,000 time steps and 1,000,000 tas chunk keys, every tas key
points at the right file and offset, and xarray (engine zarr, zarr_format 2, consolidated
False, fsspec reference filesystem with remote_protocol "file") decodes a time axis of
10,000 consecutive noleap days starting 2000-01-01. kerchunk's and zarrstac's references for
the same 1,000 manifests are compared.

Results go to docs/benchmarks-combine.md and standard output. Run with the Python
environment that has kerchunk and xarray:

    python bench/combine_manifests.py --zarrstac /path/to/zarrstac
"""

from __future__ import annotations

import argparse
import base64
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
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"
RSS_RE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")

COUNT = 10_000
NLAT = NLON = 100
CHUNK = 10
CHUNKS_PER_FILE = (NLAT // CHUNK) * (NLON // CHUNK)  # 100
CHUNK_BYTES = 1000
FIRST_OFFSET = 20_000
UNITS = "days since 2000-01-01"
CALENDAR = "noleap"
GEN_VERSION = 1  # bump when the generated content changes

TARGET_WALL_S = 10.0
TARGET_RSS_MIB = 1024.0

GLOBAL_ATTRS = {
    "Conventions": "CF-1.8",
    "title": "Synthetic daily near-surface air temperature (benchmark input)",
    "institution": "zarrstac benchmark",
    "source": "bench/combine_manifests.py",
    "frequency": "day",
}

# The kerchunk process: import, combine, json.dump. argv: list_file out result_file
KERCHUNK_RUNNER = r"""
import sys, time
t0 = time.perf_counter()
import json
from kerchunk.combine import MultiZarrToZarr
list_file, out, result_file = sys.argv[1:4]
paths = [l for l in open(list_file).read().splitlines() if l]
t1 = time.perf_counter()
refs = MultiZarrToZarr(paths, concat_dims=["time"], identical_dims=["lat", "lon"]).translate()
t2 = time.perf_counter()
with open(out, "w") as f:
    json.dump(refs, f)
t3 = time.perf_counter()
with open(result_file, "w") as f:
    json.dump({"import_s": t1 - t0, "combine_s": t2 - t1, "dump_s": t3 - t2}, f)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError as e:
        return f"n/a ({e})"


# ---------------------------------------------------------------------------- generation


def url_of(i: int) -> str:
    return f"file:///archive/tas_day_{i:05d}.nc"


def offset_of(j: int, k: int) -> int:
    return FIRST_OFFSET + CHUNK_BYTES * (j * (NLON // CHUNK) + k)


def b64(values, dtype: str) -> str:
    import numpy as np

    return "base64:" + base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


def zarray(shape, chunks, dtype, fill, filters) -> str:
    return json.dumps({"chunks": chunks, "compressor": None, "dtype": dtype, "fill_value": fill,
                       "filters": filters, "order": "C", "shape": shape, "zarr_format": 2})


def manifest(i: int, fill, lat_b64: str, lon_b64: str) -> dict:
    url = url_of(i)
    refs = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        ".zattrs": json.dumps(GLOBAL_ATTRS),
        "time/.zarray": zarray([1], [1], "<f8", None, None),
        "time/.zattrs": json.dumps({"units": UNITS, "calendar": CALENDAR, "standard_name": "time",
                                    "axis": "T", "_ARRAY_DIMENSIONS": ["time"]}),
        "time/0": b64([float(i)], "<f8"),
        "lat/.zarray": zarray([NLAT], [NLAT], "<f8", None, None),
        "lat/.zattrs": json.dumps({"units": "degrees_north", "standard_name": "latitude",
                                   "_ARRAY_DIMENSIONS": ["lat"]}),
        "lat/0": lat_b64,
        "lon/.zarray": zarray([NLON], [NLON], "<f8", None, None),
        "lon/.zattrs": json.dumps({"units": "degrees_east", "standard_name": "longitude",
                                   "_ARRAY_DIMENSIONS": ["lon"]}),
        "lon/0": lon_b64,
        "tas/.zarray": zarray([1, NLAT, NLON], [1, CHUNK, CHUNK], "<f4", fill, [{"id": "zlib", "level": 4}]),
        "tas/.zattrs": json.dumps({"units": "K", "standard_name": "air_temperature",
                                   "_ARRAY_DIMENSIONS": ["time", "lat", "lon"]}),
    }
    for j in range(NLAT // CHUNK):
        for k in range(NLON // CHUNK):
            refs[f"tas/0.{j}.{k}"] = [url, offset_of(j, k), CHUNK_BYTES]
    return {"version": 1, "refs": refs}


def generate(dest: Path, count: int, fill) -> float | None:
    """Write `count` manifests into `dest` unless already there; returns seconds taken."""
    import numpy as np

    stamp = dest.with_name(dest.name + ".stamp.json")
    want = {"generator": GEN_VERSION, "count": count, "fill": fill}
    if dest.is_dir() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == want and len(list(dest.glob("*.json"))) == count:
                return None
        except ValueError:
            pass
    t = time.perf_counter()
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lat = b64(np.linspace(-89.1, 89.1, NLAT), "<f8")
    lon = b64(np.linspace(0.0, 356.4, NLON), "<f8")
    for i in range(count):
        with open(tmp / f"tas_day_{i:05d}.json", "w") as f:
            json.dump(manifest(i, fill, lat, lon), f)
    shutil.rmtree(dest, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    tmp.rename(dest)
    stamp.write_text(json.dumps(want))
    return time.perf_counter() - t


def subset(src: Path, n: int) -> Path:
    """A directory holding hard links to the first `n` manifests of `src` (rebuilt each run)."""
    dest = src.with_name(f"{src.name}-first{n}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in sorted(src.glob("*.json"))[:n]:
        os.link(p, dest / p.name)
    return dest


def warm(d: Path) -> None:
    for p in d.glob("*.json"):
        p.read_bytes()


# ---------------------------------------------------------------------------- processes


class Run:
    def __init__(self, cmd, wall, rc, timed_out, stderr, rss_kib):
        self.cmd, self.wall, self.rc, self.timed_out, self.stderr, self.rss_kib = (
            cmd, wall, rc, timed_out, stderr, rss_kib)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def run_process(cmd: list[str], timeout: float) -> Run:
    """One fresh process under `/usr/bin/time -v -o FILE`; wall time from spawn to exit."""
    with tempfile.NamedTemporaryFile(suffix=".time") as tf, tempfile.TemporaryFile() as err:
        full = [GNU_TIME, "-v", "-o", tf.name, *cmd]
        t = time.perf_counter()
        p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        expired = threading.Event()

        def kill():
            expired.set()
            os.killpg(p.pid, signal.SIGKILL)  # the session started above: this run only

        timer = threading.Timer(timeout, kill)
        timer.start()
        rc = p.wait()  # blocking wait: sees the exit at once
        wall = time.perf_counter() - t
        timer.cancel()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        report = Path(tf.name).read_text(errors="replace")
    m = RSS_RE.search(report)
    rss = int(m.group(1)) if m else None
    m = re.search(r"Exit status: (\d+)", report)
    if m:
        rc = int(m.group(1))
    return Run(cmd, wall, rc, expired.is_set(), stderr, rss)


def measure(cmd: list[str], out: Path, runs: int, timeout: float, before=None) -> dict:
    """`runs` fresh processes; stops at the first failure. Returns walls, peak RSS, failure."""
    res = {"cmd": cmd, "walls": [], "rss_kib": [], "status": "ok", "failure": None, "extra": []}
    for _ in range(runs):
        out.unlink(missing_ok=True)
        if before:
            before()
        r = run_process(cmd, timeout)
        res["walls"].append(r.wall)
        res["rss_kib"].append(r.rss_kib)
        if not r.ok:
            res["status"] = "timeout" if r.timed_out else "failed"
            res["failure"] = r
            break
    return res


def best(m: dict | None) -> float | None:
    return min(m["walls"]) if m and m["walls"] and m["status"] == "ok" else None


def peak_mib(m: dict | None) -> float | None:
    vals = [v for v in (m or {}).get("rss_kib", []) if v is not None]
    return max(vals) / 1024 if vals else None


def wait_for_load(limit: float, max_wait: float) -> tuple[float, float]:
    """Wait until the 1-minute load is below `limit` (at most `max_wait` s)."""
    t = time.perf_counter()
    while os.getloadavg()[0] >= limit and time.perf_counter() - t < max_wait:
        time.sleep(10)
    return time.perf_counter() - t, os.getloadavg()[0]


# ---------------------------------------------------------------------------- checks


def summarize(path: Path) -> dict:
    """Counts of a combined references file: time steps, tas chunk keys, all keys."""
    with open(path) as f:
        doc = json.load(f)
    refs = doc["refs"]
    time_shape = json.loads(refs["time/.zarray"])["shape"] if "time/.zarray" in refs else None
    tas_shape = json.loads(refs["tas/.zarray"])["shape"] if "tas/.zarray" in refs else None
    tas = {k: v for k, v in refs.items() if k.startswith("tas/") and not k.startswith("tas/.")}
    return {"doc": doc, "refs": refs, "tas": tas, "keys": len(refs), "tas_keys": len(tas),
            "time_steps": time_shape[0] if time_shape else None, "tas_shape": tas_shape,
            "bytes": path.stat().st_size, "version": doc.get("version")}


def check_refs(s: dict, n: int) -> list[str]:
    """Problems found in the references of `n` combined manifests (empty list: all good)."""
    problems = []
    if s["version"] != 1:
        problems.append(f"version {s['version']!r}, expected 1")
    if s["time_steps"] != n:
        problems.append(f"time shape {s['time_steps']}, expected {n}")
    if s["tas_shape"] != [n, NLAT, NLON]:
        problems.append(f"tas shape {s['tas_shape']}, expected {[n, NLAT, NLON]}")
    if s["tas_keys"] != n * CHUNKS_PER_FILE:
        problems.append(f"{s['tas_keys']:,} tas chunk keys, expected {n * CHUNKS_PER_FILE:,}")
    wrong = 0
    example = None
    tas = s["tas"]
    for i in range(n):
        url = url_of(i)
        for j in range(NLAT // CHUNK):
            for k in range(NLON // CHUNK):
                key = f"tas/{i}.{j}.{k}"
                v = tas.get(key)
                if v != [url, offset_of(j, k), CHUNK_BYTES]:
                    wrong += 1
                    if example is None:
                        example = f"{key} = {v!r}"
    if wrong:
        problems.append(f"{wrong:,} tas keys missing or pointing elsewhere (first: {example})")
    return problems


def sample_keys(s: dict, n: int) -> list[tuple[str, object, object]]:
    out = []
    for i, j, k in ((0, 0, 0), (1, 0, 1), (n // 2 - 1, 5, 6), (n - 2, 9, 0), (n - 1, 9, 9)):
        key = f"tas/{i}.{j}.{k}"
        out.append((key, s["tas"].get(key), [url_of(i), offset_of(j, k), CHUNK_BYTES]))
    return out


def xarray_time(path: Path, n: int) -> dict:
    """Open the combined references with xarray; check the decoded time axis (no tas reads)."""
    import cftime
    import numpy as np
    import xarray as xr

    t = time.perf_counter()
    ds = xr.open_dataset("reference://", engine="zarr", consolidated=False, zarr_format=2, chunks=None,
                         storage_options={"fo": str(path), "remote_protocol": "file"})
    opened = time.perf_counter() - t
    tv = ds["time"].values
    expected = cftime.num2date(np.arange(n, dtype="f8"), UNITS, CALENDAR)
    first, last = tv[0], tv[-1]
    res = {
        "open_s": opened,
        "n": len(tv),
        "first": str(first),
        "last": str(last),
        "calendar": getattr(first, "calendar", None),
        "encoding": {k: ds["time"].encoding.get(k) for k in ("units", "calendar")},
        "tas_shape": tuple(ds["tas"].shape),
        "sizes": dict(ds.sizes),
    }
    problems = []
    if len(tv) != n:
        problems.append(f"{len(tv)} time values, expected {n}")
    elif not all(a == b for a, b in zip(tv, expected)):
        bad = next(i for i, (a, b) in enumerate(zip(tv, expected)) if a != b)
        problems.append(f"time[{bad}] = {tv[bad]}, expected {expected[bad]}")
    if res["calendar"] != CALENDAR:
        problems.append(f"decoded calendar {res['calendar']!r}, expected {CALENDAR!r}")
    if first != cftime.DatetimeNoLeap(2000, 1, 1):
        problems.append(f"first time {first}, expected 2000-01-01")
    if res["tas_shape"] != (n, NLAT, NLON):
        problems.append(f"tas shape {res['tas_shape']}")
    res["problems"] = problems
    res["expected_last"] = str(expected[-1])
    ds.close()
    return res


def compare(z: dict, k: dict) -> list[str]:
    """Differences between zarrstac's and kerchunk's references for the same manifests."""
    notes = []
    zt, kt = z["tas"], k["tas"]
    if zt == kt:
        notes.append(f"tas chunk references identical ({len(zt):,} keys).")
    else:
        only_z, only_k = set(zt) - set(kt), set(kt) - set(zt)
        diff = [key for key in set(zt) & set(kt) if zt[key] != kt[key]]
        notes.append(f"tas chunk references differ: {len(only_z)} keys only in zarrstac, {len(only_k)} only "
                     f"in kerchunk, {len(diff)} with different targets.")
    for name in (".zattrs", "tas/.zattrs", "lat/0", "lon/0", "time/.zattrs"):
        a, b = z["refs"].get(name), k["refs"].get(name)
        try:
            a, b = (json.loads(a) if isinstance(a, str) and not a.startswith("base64:") else a,
                    json.loads(b) if isinstance(b, str) and not b.startswith("base64:") else b)
        except ValueError:
            pass
        if a != b:
            notes.append(f"`{name}` differs: zarrstac {json.dumps(a)[:160]} / kerchunk {json.dumps(b)[:160]}")
    za = json.loads(z["refs"]["tas/.zarray"])
    ka = json.loads(k["refs"]["tas/.zarray"])
    for field in ("shape", "chunks", "dtype", "fill_value", "filters", "compressor"):
        if za.get(field) != ka.get(field):
            notes.append(f"`tas/.zarray` {field}: zarrstac {za.get(field)!r} / kerchunk {ka.get(field)!r}")
    extra_z = sorted(set(z["refs"]) - set(k["refs"]))
    extra_k = sorted(set(k["refs"]) - set(z["refs"]))
    if extra_z or extra_k:
        notes.append(f"keys only in zarrstac: {extra_z[:6]}; only in kerchunk: {extra_k[:6]}")
    return notes


# ---------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zarrstac", default=os.environ.get("ZARRSTAC_BIN") or shutil.which("zarrstac") or "zarrstac",
                    help="zarrstac binary (default: $ZARRSTAC_BIN, else zarrstac on PATH)")
    ap.add_argument("--python", default=sys.executable, help="Python with kerchunk (default: this one)")
    ap.add_argument("--cache", default=str(REPO / ".cache" / "bench"), help="manifests and outputs")
    ap.add_argument("--count", type=int, default=COUNT, help="manifests in the big set")
    ap.add_argument("--same-size", type=int, default=1000, help="manifests for the direct same-size ratio")
    ap.add_argument("--kerchunk-counts", default="500,1000", help="manifest counts given to kerchunk")
    ap.add_argument("--scaling", default="2500,5000",
                    help="further manifest counts given to zarrstac, to show how its time grows ('' for none)")
    ap.add_argument("--runs", type=int, default=3, help="zarrstac runs per set (best is kept)")
    ap.add_argument("--kerchunk-runs", type=int, default=3, help="kerchunk runs per set (best is kept)")
    ap.add_argument("--fill", default="NaN", help="tas fill value of the manifests (JSON value)")
    ap.add_argument("--fallback-fill", default="1e20",
                    help="tas fill value of the second set, used if zarrstac refuses the first ('' for none)")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for the 1-minute load to drop below this")
    ap.add_argument("--max-wait", type=float, default=900.0, help="seconds to wait for that at most")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed")
    ap.add_argument("--output", default=str(REPO / "docs" / "benchmarks-combine.md"))
    args = ap.parse_args()

    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"{GNU_TIME} is missing (Debian: apt-get install time)")
    zbin = shutil.which(args.zarrstac) or args.zarrstac
    cache = Path(args.cache)
    work = cache / "combine-out"
    work.mkdir(parents=True, exist_ok=True)
    kcounts = [int(x) for x in args.kerchunk_counts.split(",") if x.strip()]
    n = args.count
    t_all = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)
    ctx = {"args": args, "zbin": zbin, "started": started, "n": n, "loads": []}

    log(f"waiting for the 1-minute load to drop below {args.max_load} (at most {args.max_wait:.0f} s)")
    waited, load = wait_for_load(args.max_load, args.max_wait)
    ctx["waited"], ctx["load_after_wait"] = waited, load
    log(f"waited {waited:.0f} s, 1-minute load {load:.2f}")
    ctx["uptime_start"] = sh(["uptime"])
    ctx["free_start"] = sh(["free", "-g"])

    def sample_load(step: str) -> None:
        ctx["loads"].append((step, os.getloadavg()[0]))

    # --- inputs, as specified
    fill = json.loads(args.fill) if args.fill != "NaN" else "NaN"
    primary = cache / "manifests"
    log(f"generating {n:,} manifests into {primary} (if missing)")
    ctx["gen"] = {"primary": generate(primary, n, fill)}
    g = ctx["gen"]["primary"]
    log("  reused" if g is None else f"  {g:.1f} s")
    ctx["manifest_bytes"] = sum(p.stat().st_size for p in primary.glob("*.json"))
    ctx["fill"] = fill
    warm(primary)

    out_big = work / "zarrstac-big.json"
    cmd_big = lambda d: [zbin, "combine", str(d), "-o", str(out_big)]
    sample_load("zarrstac, as specified")
    log(f"zarrstac combine {primary} (fill {fill!r})")
    first = measure(cmd_big(primary), out_big, 1, args.timeout)
    ctx["refused"] = None
    inputs = primary
    if first["status"] != "ok":
        r = first["failure"]
        ctx["refused"] = {"fill": fill, "cmd": r.cmd, "wall": r.wall, "rc": r.rc, "stderr": r.stderr,
                          "rss_kib": r.rss_kib, "status": first["status"]}
        log(f"  zarrstac {first['status']} after {r.wall:.2f} s: {r.stderr.strip()[:300]}")
        if args.fallback_fill:
            ffill = json.loads(args.fallback_fill)
            inputs = cache / f"manifests-fill{args.fallback_fill}"
            log(f"generating the second set into {inputs} (tas fill {ffill!r})")
            ctx["gen"]["fallback"] = generate(inputs, n, ffill)
            ctx["fill"] = ffill
            warm(inputs)
    ctx["inputs"] = inputs

    results = {}
    # --- zarrstac on the big set
    if ctx["refused"] is None or args.fallback_fill:
        sample_load(f"zarrstac {n}")
        log(f"zarrstac combine {inputs} x{args.runs}")
        if ctx["refused"] is None:
            # the specified set was accepted: that first run counts as one of the timed runs
            z = measure(cmd_big(inputs), out_big, args.runs - 1, args.timeout) if args.runs > 1 else first
            if z is not first:
                z["walls"].insert(0, first["walls"][0])
                z["rss_kib"].insert(0, first["rss_kib"][0])
        else:
            z = measure(cmd_big(inputs), out_big, args.runs, args.timeout)
        log(f"  {z['status']} walls {[round(w, 3) for w in z['walls']]} peak RSS {peak_mib(z)} MiB")
        results["z_big"] = z
        if z["status"] == "ok":
            s = summarize(out_big)
            z["summary"] = s
            z["problems"] = check_refs(s, n)
            z["samples"] = sample_keys(s, n)
            log(f"  output: {s['time_steps']} time steps, {s['tas_keys']:,} tas keys; problems: {z['problems']}")
            log("  opening with xarray")
            try:
                z["xarray"] = xarray_time(out_big, n)
            except Exception as e:  # noqa: BLE001 - recorded in the report
                z["xarray"] = {"error": f"{type(e).__name__}: {e}", "problems": [f"xarray failed: {e}"]}
            log(f"  xarray: {z['xarray']}")

        # --- zarrstac on the same-size subset
        small = subset(inputs, args.same_size)
        warm(small)
        out_small = work / f"zarrstac-{args.same_size}.json"
        sample_load(f"zarrstac {args.same_size}")
        log(f"zarrstac combine {small} x{args.runs}")
        zs = measure([zbin, "combine", str(small), "-o", str(out_small)], out_small, args.runs, args.timeout)
        log(f"  {zs['status']} walls {[round(w, 3) for w in zs['walls']]} peak RSS {peak_mib(zs)} MiB")
        if zs["status"] == "ok":
            zs["summary"] = summarize(out_small)
            zs["problems"] = check_refs(zs["summary"], args.same_size)
        results["z_small"] = zs

        # --- zarrstac on further subsets: how the time grows with the number of manifests
        results["z_scale"] = {}
        for sc in [int(x) for x in args.scaling.split(",") if x.strip()]:
            d = subset(inputs, sc)
            warm(d)
            out_sc = work / f"zarrstac-{sc}.json"
            sample_load(f"zarrstac {sc}")
            log(f"zarrstac combine {d} x{args.runs}")
            m = measure([zbin, "combine", str(d), "-o", str(out_sc)], out_sc, args.runs, args.timeout)
            log(f"  {m['status']} walls {[round(w, 3) for w in m['walls']]} peak RSS {peak_mib(m)} MiB")
            if m["status"] == "ok":
                m["summary"] = summarize(out_sc)
                m["problems"] = check_refs(m["summary"], sc)
                m["summary"].pop("doc"), m["summary"].pop("refs"), m["summary"].pop("tas")
            results["z_scale"][sc] = m
            shutil.rmtree(d)
            out_sc.unlink(missing_ok=True)

    # --- kerchunk
    paths = sorted(inputs.glob("*.json"))
    results["k"] = {}
    for kc in kcounts:
        lst = work / f"kerchunk-{kc}.list"
        lst.write_text("\n".join(str(p) for p in paths[:kc]) + "\n")
        out_k = work / f"kerchunk-{kc}.json"
        res_file = work / f"kerchunk-{kc}.result.json"
        inner = []

        def collect():
            if res_file.exists():
                inner.append(json.loads(res_file.read_text()))
                res_file.unlink()

        sample_load(f"kerchunk {kc}")
        log(f"kerchunk MultiZarrToZarr on {kc} manifests x{args.kerchunk_runs}")
        k = measure([args.python, "-c", KERCHUNK_RUNNER, str(lst), str(out_k), str(res_file)], out_k,
                    args.kerchunk_runs, args.timeout, before=collect)
        collect()
        k["inner"] = inner
        log(f"  {k['status']} walls {[round(w, 2) for w in k['walls']]} peak RSS {peak_mib(k)} MiB inner {inner}")
        if k["status"] == "ok":
            k["summary"] = summarize(out_k)
            k["problems"] = check_refs(k["summary"], kc)
            if kc == args.same_size and results.get("z_small", {}).get("status") == "ok":
                k["compare"] = compare(results["z_small"]["summary"], k["summary"])
                try:
                    xk = xarray_time(out_k, kc)
                    xz = xarray_time(out_small, kc)
                    k["compare"].append(
                        "decoded time axes (xarray): "
                        + ("identical" if not xk["problems"] and not xz["problems"] and xk["n"] == xz["n"]
                           else f"kerchunk {xk['problems']}, zarrstac {xz['problems']}")
                        + f" ({xk['first']} … {xk['last']}).")
                except Exception as e:  # noqa: BLE001
                    k["compare"].append(f"xarray comparison failed: {type(e).__name__}: {e}")
        results["k"][kc] = k

    sample_load("end")
    ctx["uptime_end"] = sh(["uptime"])
    ctx["free_end"] = sh(["free", "-g"])
    ctx["total_s"] = time.perf_counter() - t_all
    md = render(ctx, results, kcounts)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    print(md)
    log(f"wrote {out} (benchmark took {ctx['total_s']:.0f} s)")
    return 0


# ---------------------------------------------------------------------------- report


def versions(py: str, zbin: str) -> dict:
    code = ("import sys, kerchunk, fsspec, numpy, numcodecs, zarr, xarray, cftime;"
            "print(sys.version.split()[0], kerchunk.__version__, fsspec.__version__, zarr.__version__,"
            " xarray.__version__, numpy.__version__, numcodecs.__version__, cftime.__version__)")
    v = sh([py, "-c", code]).split()
    names = ["python", "kerchunk", "fsspec", "zarr", "xarray", "numpy", "numcodecs", "cftime"]
    out = dict(zip(names, v)) if len(v) == len(names) else {"python stack": "n/a"}
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


def fs(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fm(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a and b else "n/a"


def cmd_text(cmd: list[str], zbin: str | None = None) -> str:
    out = []
    for i, c in enumerate(cmd):
        if i == 0 and zbin and c == zbin:
            out.append("zarrstac")
            continue
        if "\n" in c:
            out.append("'<runner>'")
        else:
            out.append(c.replace(str(REPO) + "/", "") if c.startswith(str(REPO)) else c)
    return " ".join(out)


def render(ctx, results, kcounts) -> str:
    args, n = ctx["args"], ctx["n"]
    zb, zs, ks = results.get("z_big"), results.get("z_small"), results.get("k", {})
    L = []
    L.append("# `zarrstac combine` on 10,000 per-file references vs kerchunk `MultiZarrToZarr`")
    L.append("")
    L.append(f"Measured {ctx['started']:%Y-%m-%d %H:%M} UTC by `bench/combine_manifests.py` (whole benchmark: "
             f"{ctx['total_s']:.0f} s, including generation and checks). Both tools ran on the same machine, "
             "the same manifests, in the same run.")
    L.append("")

    # --- targets
    L.append("## Result")
    L.append("")
    bw, bm = best(zb), peak_mib(zb)
    if ctx["refused"]:
        r = ctx["refused"]
        L.append(f"**zarrstac refused the manifests as specified** (tas fill value {json.dumps(r['fill'])}): "
                 f"exit status {r['rc']} after {r['wall']:.3f} s. Command and standard error:")
        L.append("")
        L.append("```")
        L.append("$ " + cmd_text(r["cmd"], ctx["zbin"]))
        L.append(r["stderr"].rstrip())
        L.append("```")
        L.append("")
        if args.fallback_fill:
            L.append(f"Every figure below is therefore measured on a second set of {n:,} manifests that differs "
                     f"only in the tas fill value ({json.dumps(ctx['fill'])} instead of "
                     f"{json.dumps(r['fill'])}); kerchunk ran on that same set.")
            L.append("")
    L.append(f"Targets for `zarrstac combine` on {n:,} manifests ({n * CHUNKS_PER_FILE:,} chunk references):")
    L.append("")
    L.append("| target | measured | |")
    L.append("|---|---:|---|")
    qual = " (on the second set)" if ctx["refused"] else ""
    if bw is not None:
        L.append(f"| wall < {TARGET_WALL_S:.0f} s | {fs(bw)} s (best of {len(zb['walls'])}){qual} | "
                 f"**{'pass' if bw < TARGET_WALL_S else 'fail'}** |")
        L.append(f"| peak RSS < 1 GiB | {fm(bm)} MiB (max of {len(zb['rss_kib'])} runs){qual} | "
                 f"**{'pass' if bm is not None and bm < TARGET_RSS_MIB else 'fail'}** |")
    else:
        st = zb["status"] if zb else "not run"
        L.append(f"| wall < {TARGET_WALL_S:.0f} s | {st} | **fail** |")
        L.append(f"| peak RSS < 1 GiB | {st} | **fail** |")
    if ctx["refused"]:
        L.append(f"| accepts the manifests as specified (fill {json.dumps(ctx['refused']['fill'])}) | refused | "
                 "**fail** |")
    L.append("")

    # --- table
    L.append("## Measurements")
    L.append("")
    L.append("| tool | manifests | runs | wall s (best) | ms per manifest | all runs s | peak RSS MiB | time steps | "
             "tas chunk keys | all keys | output MiB |")
    L.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")

    def row(tool, count, m):
        if m is None:
            return
        s = m.get("summary")
        walls = ", ".join(fs(w) for w in m["walls"])
        wall = fs(best(m)) if m["status"] == "ok" else m["status"]
        per = f"{best(m) / count * 1000:.2f}" if best(m) is not None else "n/a"
        L.append(f"| {tool} | {count:,} | {len(m['walls'])} | {wall} | {per} | {walls} | {fm(peak_mib(m))} | "
                 f"{fm(s['time_steps']) if s else 'n/a'} | {fm(s['tas_keys']) if s else 'n/a'} | "
                 f"{fm(s['keys']) if s else 'n/a'} | {s['bytes'] / 2**20:.1f} |" if s else
                 f"| {tool} | {count:,} | {len(m['walls'])} | {wall} | {per} | {walls} | {fm(peak_mib(m))} | n/a | n/a | "
                 f"n/a | n/a |")

    zrows = {n: zb, args.same_size: zs, **results.get("z_scale", {})}
    for count in sorted(zrows, reverse=True):
        row("zarrstac combine", count, zrows[count])
    for kc in kcounts:
        row("kerchunk MultiZarrToZarr", kc, ks.get(kc))
    # extrapolation
    kw = {kc: best(ks.get(kc)) for kc in kcounts}
    km = {kc: peak_mib(ks.get(kc)) for kc in kcounts}
    est = None
    good = sorted(kc for kc in kcounts if kw[kc] is not None)
    if len(good) >= 2:
        a, b = good[-2], good[-1]
        slope = (kw[b] - kw[a]) / (b - a)
        mslope = (km[b] - km[a]) / (b - a) if km[a] and km[b] else None
        if slope > 0:
            est = {"a": a, "b": b, "slope": slope, "wall": kw[b] + slope * (n - b),
                   "prop": kw[b] / b * n,
                   "rss": km[b] + mslope * (n - b) if mslope is not None else None, "mslope": mslope}
    elif len(good) == 1:
        b = good[0]
        est = {"a": None, "b": b, "slope": kw[b] / b, "wall": kw[b] / b * n, "prop": kw[b] / b * n,
               "rss": None, "mslope": None}
    if est:
        L.append(f"| kerchunk MultiZarrToZarr, *extrapolated* | {n:,} | — | *≈ {fs(est['wall'])}* | "
                 f"*{est['wall'] / n * 1000:.2f}* | — | "
                 f"{'*≈ ' + fm(est['rss']) + '*' if est['rss'] else 'n/a'} | — | — | — | — |")
    L.append("")
    zper = sorted((c, best(m) / c) for c, m in zrows.items() if best(m) is not None)
    if len(zper) >= 2 and zper[-1][1] > 1.5 * zper[0][1]:
        L.append(f"- zarrstac's time per manifest grows with the number of manifests: "
                 + ", ".join(f"{p * 1000:.2f} ms at {c:,}" for c, p in zper)
                 + " (a cost linear in the number of manifests would keep it flat).")
    L.append("- *wall s*: from spawn to exit of a fresh process, measured by the benchmark script; *peak RSS*: "
             "maximum resident set size from `/usr/bin/time -v` (every run ran under it), the largest over the runs.")
    if est:
        if est["a"] is not None:
            L.append(f"- The {n:,}-manifest kerchunk row is an **extrapolation, not a measurement**: kerchunk's "
                     f"wall time at {est['b']:,} manifests plus its marginal cost per manifest between "
                     f"{est['a']:,} and {est['b']:,} manifests ({est['slope'] * 1000:.2f} ms per manifest) "
                     f"times the {n - est['b']:,} further manifests. Scaling the {est['b']:,}-manifest time "
                     f"proportionally instead gives ≈ {fs(est['prop'])} s. Peak RSS is extrapolated the same way "
                     + (f"({est['mslope'] * 1024:.0f} KiB per manifest)." if est["mslope"] is not None else "."))
        else:
            L.append(f"- The {n:,}-manifest kerchunk row is an **extrapolation, not a measurement**: "
                     f"{est['b']:,}-manifest time scaled proportionally.")
    for kc in kcounts:
        k = ks.get(kc)
        if k and k.get("inner"):
            i = min(k["inner"], key=lambda x: x["combine_s"])
            L.append(f"- kerchunk {kc:,} inside the process: imports {fs(i['import_s'])} s, "
                     f"`MultiZarrToZarr(...).translate()` {fs(i['combine_s'])} s, `json.dump` {fs(i['dump_s'])} s.")
    L.append("")

    # --- ratios
    L.append("## Ratios")
    L.append("")
    L.append("| comparison | kerchunk | zarrstac | kerchunk / zarrstac |")
    L.append("|---|---:|---:|---:|")
    same = args.same_size
    if same in kw:
        L.append(f"| wall, {same:,} manifests (both measured) | {fs(kw[same])} s | {fs(best(zs))} s | "
                 f"**{ratio(kw[same], best(zs))}** |")
        k = ks.get(same)
        if k and k.get("inner"):
            ci = min(x["combine_s"] for x in k["inner"])
            L.append(f"| kerchunk `translate()` alone vs zarrstac whole process, {same:,} manifests | {fs(ci)} s | "
                     f"{fs(best(zs))} s | {ratio(ci, best(zs))} |")
        L.append(f"| peak RSS, {same:,} manifests (both measured) | {fm(km[same])} MiB | {fm(peak_mib(zs))} MiB | "
                 f"{ratio(km[same], peak_mib(zs))} |")
    if est:
        L.append(f"| wall, {n:,} manifests (kerchunk *extrapolated*, zarrstac measured) | ≈ {fs(est['wall'])} s | "
                 f"{fs(bw)} s | ≈ {ratio(est['wall'], bw)} |")
        if est["rss"]:
            L.append(f"| peak RSS, {n:,} manifests (kerchunk *extrapolated*) | ≈ {fm(est['rss'])} MiB | "
                     f"{fm(bm)} MiB | ≈ {ratio(est['rss'], bm)} |")
    L.append("")

    # --- checks
    L.append("## Checks")
    L.append("")
    if zb and zb.get("summary"):
        s = zb["summary"]
        pr = zb["problems"]
        L.append(f"- zarrstac, {n:,} manifests: {s['time_steps']:,} time steps, tas shape {s['tas_shape']}, "
                 f"{s['tas_keys']:,} tas chunk keys; every tas key checked against its file and offset: "
                 + ("all correct." if not pr else "**problems**: " + "; ".join(pr)))
        L.append("- sample keys (zarrstac output → expected):")
        for key, got, want in zb["samples"]:
            L.append(f"  - `{key}`: `{json.dumps(got)}` {'✓' if got == want else '✗ expected ' + json.dumps(want)}")
        x = zb.get("xarray", {})
        if "error" in x:
            L.append(f"- xarray: **failed**: {x['error']}")
        elif x:
            L.append(f"- xarray (`engine=\"zarr\"`, `zarr_format=2`, `consolidated=False`, reference filesystem, "
                     f"`remote_protocol=\"file\"`; opened in {fs(x['open_s'])} s, no tas data read): "
                     f"{x['n']:,} time values, {x['first']} … {x['last']} (expected last: {x['expected_last']}), "
                     f"calendar `{x['calendar']}`, encoding {x['encoding']}, tas shape {x['tas_shape']}: "
                     + ("equal to `cftime.num2date(arange(" + f"{n}" + f"), \"{UNITS}\", \"{CALENDAR}\")`."
                        if not x["problems"] else "**problems**: " + "; ".join(x["problems"])))
    elif zb:
        f = zb.get("failure")
        L.append(f"- zarrstac, {n:,} manifests: **{zb['status']}**" + (
            f" after {f.wall:.3f} s: `{cmd_text(f.cmd, ctx['zbin'])}`\n\n```\n{f.stderr.rstrip()}\n```" if f else ""))
    if zs and zs.get("summary"):
        pr = zs["problems"]
        L.append(f"- zarrstac, {same:,} manifests: {zs['summary']['time_steps']:,} time steps, "
                 f"{zs['summary']['tas_keys']:,} tas chunk keys: " + ("all correct." if not pr else "; ".join(pr)))
    for kc in kcounts:
        k = ks.get(kc)
        if not k:
            continue
        if k.get("summary"):
            pr = k["problems"]
            L.append(f"- kerchunk, {kc:,} manifests: {k['summary']['time_steps']:,} time steps, "
                     f"{k['summary']['tas_keys']:,} tas chunk keys: " + ("all correct." if not pr else "; ".join(pr)))
        else:
            f = k.get("failure")
            L.append(f"- kerchunk, {kc:,} manifests: **{k['status']}**" + (
                f": {f.stderr.strip().splitlines()[-1][:300] if f.stderr.strip() else ''}" if f else ""))
        for note in k.get("compare", []):
            L.append(f"- zarrstac vs kerchunk on the same {kc:,} manifests: {note}")
    L.append("")

    # --- method
    L.append("## Method")
    L.append("")
    gen = ctx["gen"]
    L.append(f"- Inputs: {n:,} kerchunk JSON v1 references ({ctx['manifest_bytes'] / 2**20:.0f} MiB in all), "
             "generated by the script into `.cache/bench/` (not committed; "
             + ("reused from an earlier run" if gen["primary"] is None else f"generated in {gen['primary']:.1f} s")
             + "), one per fictional file `file:///archive/tas_day_{i:05d}.nc`, i = 0 … "
             f"{n - 1}. Each is a Zarr v2 group: `.zgroup`; `.zattrs` with {len(GLOBAL_ATTRS)} global attributes, "
             "identical in every file, no CMIP attributes (so all files form one dataset); `time` shape [1], "
             f"`<f8`, no filters, fill null, units `{UNITS}`, calendar `{CALENDAR}`, its one chunk inline "
             "(`base64:` of the float64 value i); `lat`/`lon` shape [100], `<f8`, inline, identical everywhere; "
             "`tas` shape [1, 100, 100], chunks [1, 10, 10] (100 chunks), `<f4`, filters "
             f"`[{{\"id\": \"zlib\", \"level\": 4}}]`, fill {json.dumps(ctx['refused']['fill'] if ctx['refused'] else ctx['fill'])}, "
             "chunk (0, j, k) → `[url, 20000 + 1000·(10j + k), 1000]`. The `.nc` files do not exist; nothing reads "
             "tas data.")
    if ctx["refused"] and args.fallback_fill:
        fb = gen.get("fallback")
        L.append(f"- Second set (measured, because zarrstac refused the first): identical except the tas fill "
                 f"value {json.dumps(ctx['fill'])} ("
                 + ("reused from an earlier run" if fb is None else f"generated in {fb:.1f} s") + ").")
    L.append(f"- zarrstac: `zarrstac combine <directory> -o combined.json` on the directory of all {n:,} "
             f"manifests, and on directories of hard links to the first "
             + ", ".join(f"{c:,}" for c in sorted(c for c in zrows if c != n))
             + f"; {args.runs} fresh processes each, best wall time kept.")
    L.append("- kerchunk: a fresh `python -c` process per set that imports kerchunk, runs "
             "`kerchunk.combine.MultiZarrToZarr(paths, concat_dims=[\"time\"], identical_dims=[\"lat\", \"lon\"])"
             ".translate()` on the sorted paths and `json.dump`s the result to a file; "
             f"{args.kerchunk_runs} run(s) per set on the first " + " and first ".join(f"{k:,}" for k in kcounts)
             + " manifests.")
    L.append("- Every manifest was read once before measuring, so both tools ran against the page cache.")
    L.append(f"- The script waited for the 1-minute load average to drop below {args.max_load} "
             f"(at most {args.max_wait:.0f} s): it waited {ctx['waited']:.0f} s and started at "
             f"{ctx['load_after_wait']:.2f}.")
    L.append("")

    # --- machine
    L.append("## Machine")
    L.append("")
    L.append(f"- CPU: {cpu_model()}; `nproc`: {sh(['nproc'])}; kernel {platform.release()}")
    L.append(f"- load (`uptime`) before: `{ctx['uptime_start']}`")
    L.append(f"- load (`uptime`) after: `{ctx['uptime_end']}`")
    L.append("- 1-minute load average before each step: "
             + ", ".join(f"{step} {load:.2f}" for step, load in ctx["loads"]))
    busy = max(l for _, l in ctx["loads"]) >= 1.0
    if busy:
        L.append("  (other jobs shared the 2 cores during the run; best-of-N wall times damp that but do not "
                 "remove it)")
    L.append("- `free -g` before:")
    L.append("")
    L.append("```")
    L.append(ctx["free_start"])
    L.append("```")
    L.append("")
    L.append("Versions:")
    L.append("")
    for k, v in versions(args.python, ctx["zbin"]).items():
        L.append(f"- {k}: {v}")
    L.append("")
    return "\n".join(L).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
