#!/usr/bin/env python3
"""Whole-process throughput of `zarrstac ingest`: items per second into a fresh static catalog.

Two workloads, built once under a scratch directory (never committed):

  netcdf  every NetCDF-3 / NetCDF-4 / HDF5 file under fixtures/shared except the CMIP ones
          (which form multi-file datasets: see bench/combine_manifests.py), copied COPIES times
          (default 20) under distinct names (`<stem>__cNNN<suffix>`). The item id is the file
          stem, so every copy is its own item, references file and catalog entry.
  eopf    the EOPF Zarr stores of fixtures/eopf, each copied STORE_COPIES times (default
          100). The item id of an EOPF product comes from `stac_discovery.id` in the root
          `.zattrs` (the store name only when that id is a description, as for S1), so each
          copy gets a distinct id: `<id>__cNNN` written into its root `.zattrs` and into the
          root entry of its `.zmetadata`. A copy holds the root documents only (`.zgroup`,
          `.zattrs`, `.zmetadata`): a consolidated store's `.zmetadata` describes every node,
          and it is the one document ingest reads. --full-stores copies every node document
          as well (about 350 small files per store), for a run that mirrors the fixtures.

Each workload is ingested REPEATS times (default 3), each time into a new catalog, references
root and dead-letter file, from an empty working directory (so the embedded default
configuration applies, concurrency 4 unless --concurrency is given). Per run: wall time
measured around the whole process (start to exit), items per second = items / wall, and the
peak RSS of the process from its own rusage (os.wait4). The run with the lowest wall time is
reported ("best of N"); the others are kept in the JSON output. A run counts only when it
exits 0 and its summary line reports every source ingested.

The machine is recorded with the figures: CPU model, nproc, memory, the 1/5/15-minute load
average before each run (other work on the machine skews wall time; load is recorded so a
reader can judge).

    python bench/items_per_second.py [--zarrstac BIN] [--copies 20] [--store-copies 100]
                                     [--repeats 3] [--concurrency N] [--json OUT.json]

Prints a Markdown table (docs/benchmarks-stac.md holds the recorded figures) and, with
--json, writes every run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO / "fixtures" / "shared"
EOPF = REPO / "fixtures" / "eopf"
SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".he5", ".hdf", ".cdf")  # what ingest walks for
SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
SUMMARY = re.compile(r"summary: (\d+) ingested, (\d+) failed, (\d+) skipped")
ID_SUFFIXES = (".SAFE", ".SEN3", ".safe", ".sen3")  # dropped from EOPF ids by the tool


def default_binary():
    return os.environ.get("ZARRSTAC_BIN") or str(Path.home() / ".cache/zarrstac/target/release/zarrstac")


# ----------------------------------------------------------------------------- inputs

def shared_sources():
    out = []
    for p in sorted(SHARED.rglob("*")):
        if p.is_file() and p.suffix in SUFFIXES:
            with open(p, "rb") as f:
                head = f.read(8)
            if any(head.startswith(s) for s in SIGNATURES):
                out.append(p)
    return out


# Files of CMIP datasets (their attributes name the dataset) become one item per dataset,
# rebuilt from all members: copies of them would be one dataset with overlapping times,
# which ingest refuses. They are left out here; bench/combine_manifests.py measures that path.
CMIP_FOLDERS = {"cmip6", "cmip5-netcdf3-series"}


def build_netcdf(dest: Path, copies: int) -> int:
    dest.mkdir(parents=True)
    n = 0
    for src in shared_sources():
        if src.parent.name in CMIP_FOLDERS:
            continue
        for i in range(copies):
            shutil.copyfile(src, dest / f"{src.stem}__c{i:03d}{src.suffix}")
            n += 1
    return n


def _new_id(old: str, i: int) -> str:
    for suffix in ID_SUFFIXES:
        if old.endswith(suffix):
            return f"{old[: -len(suffix)]}__c{i:03d}{suffix}"
    return f"{old}__c{i:03d}"


def copy_store(src: Path, dest: Path, i: int, full: bool):
    """A copy of an EOPF store with a distinct product id. By default only the root documents
    (.zgroup, .zattrs, .zmetadata): a consolidated Zarr v2 store whose .zmetadata describes
    every node, and all that ingest reads. With full=True every node document too."""
    if full:
        shutil.copytree(src, dest)
    else:
        dest.mkdir()
        shutil.copyfile(src / ".zgroup", dest / ".zgroup")
    attrs = json.loads((src / ".zattrs").read_text())
    sd = attrs.get("stac_discovery", {})
    if isinstance(sd.get("id"), str):
        sd["id"] = _new_id(sd["id"], i)
    meta = json.loads((src / ".zmetadata").read_text())
    meta["metadata"][".zattrs"] = attrs
    for name, doc in ((".zattrs", attrs), (".zmetadata", meta)):
        (dest / name).write_text(json.dumps(doc, indent=2))


def build_eopf(dest: Path, copies: int, full: bool) -> int:
    dest.mkdir(parents=True)
    stores = sorted(p for p in EOPF.iterdir() if p.is_dir() and (p / ".zmetadata").exists())
    n = 0
    for store in stores:
        stem = store.name[: -len(".zarr")] if store.name.endswith(".zarr") else store.name
        for i in range(copies):
            copy_store(store, dest / f"{stem}__c{i:03d}.zarr", i, full)
            n += 1
    return n


# ----------------------------------------------------------------------------- runs

def machine():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, TypeError):
        pass
    return {"cpu": cpu, "nproc": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "python": platform.python_version()}


def revision(binary):
    out = {}
    try:
        out["binary"] = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        out["binary_mtime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(binary)))
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        out["commit"] = head + (" (working tree modified)" if dirty else "")
    except OSError:
        pass
    return out


def ingest_once(binary, inputs: Path, scratch: Path, expected: int, concurrency):
    """One fresh ingest: (wall s, peak RSS MiB, load averages before the run)."""
    cwd = Path(tempfile.mkdtemp(dir=scratch, prefix="run-"))
    args = [binary, "ingest", str(inputs), "--catalog", str(cwd / "catalog"), "--refs-root", str(cwd / "refs")]
    if concurrency:
        args += ["--concurrency", str(concurrency)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARRSTAC_")}
    env["ZARRSTAC_OUTPUT__FAILED"] = str(cwd / "failed.jsonl")
    load = os.getloadavg()
    with open(cwd / "stderr.txt", "w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    m = SUMMARY.search(stderr)
    if proc.returncode != 0 or not m or int(m[1]) != expected:
        raise SystemExit(f"ingest of {inputs} failed (exit {proc.returncode}, expected {expected} items):\n"
                         f"{stderr[-3000:]}")
    items = sum(1 for _ in (cwd / "catalog").rglob("*.json")) - 1  # minus catalog.json
    items -= sum(1 for _ in (cwd / "catalog").rglob("collection.json"))
    if items != expected:
        raise SystemExit(f"{items} item files for {expected} sources (ids collide?) in {cwd}")
    shutil.rmtree(cwd)
    return {"wall_s": wall, "items_per_s": expected / wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "load_before": [round(x, 2) for x in load]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zarrstac", default=default_binary())
    ap.add_argument("--copies", type=int, default=20, help="copies of each shared NetCDF/HDF5 file")
    ap.add_argument("--store-copies", type=int, default=100, help="copies of each EOPF store")
    ap.add_argument("--full-stores", action="store_true",
                    help="copy every node document of the EOPF stores, not only the root ones")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="*", default=[None],
                    help="--concurrency values to run (default: the configuration's)")
    ap.add_argument("--workdir", help="scratch directory (default: a new temporary one, removed at the end)")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()

    scratch = Path(args.workdir or tempfile.mkdtemp(prefix="zarrstac-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        workloads = {
            "netcdf": (scratch / "netcdf", build_netcdf(scratch / "netcdf", args.copies)),
            "eopf": (scratch / "eopf", build_eopf(scratch / "eopf", args.store_copies, args.full_stores)),
        }
        print(f"inputs built in {time.perf_counter() - t:.1f} s under {scratch}", file=sys.stderr)
        results = {"machine": machine(), "revision": revision(args.zarrstac), "copies": args.copies,
                   "store_copies": args.store_copies, "full_stores": args.full_stores, "repeats": args.repeats,
                   "runs": []}
        for name, (inputs, n) in workloads.items():
            for conc in args.concurrency:
                runs = []
                for r in range(args.repeats):
                    run = ingest_once(args.zarrstac, inputs, scratch, n, conc)
                    run.update(workload=name, items=n, concurrency=conc or "default", repeat=r)
                    runs.append(run)
                    print(f"{name} conc={conc or 'default'} run {r}: {n} items {run['wall_s']:.3f} s "
                          f"{run['items_per_s']:.0f} items/s {run['peak_rss_mib']:.1f} MiB load {run['load_before']}",
                          file=sys.stderr)
                results["runs"] += runs
    finally:
        if not args.workdir:
            subprocess.run(["rm", "-rf", "--", str(scratch)], check=False)

    m = results["machine"]
    print(f"machine: {m['cpu']}, nproc {m['nproc']}, {m['memory']}, Linux {m['kernel']}")
    print(f"binary: {results['revision'].get('binary', '?')} built {results['revision'].get('binary_mtime', '?')}, "
          f"commit {results['revision'].get('commit', '?')}\n")
    print("| workload | items | concurrency | best wall s | items/s (best) | median wall s | peak RSS MiB (max) "
          "| user+sys s (best run) | load 1/5/15 before best run |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for run in results["runs"]:
        groups.setdefault((run["workload"], run["concurrency"]), []).append(run)
    for (name, conc), runs in groups.items():
        best = min(runs, key=lambda r: r["wall_s"])
        walls = sorted(r["wall_s"] for r in runs)
        median = walls[len(walls) // 2]
        print(f"| {name} | {best['items']} | {conc} | {best['wall_s']:.3f} | {best['items_per_s']:.0f} | {median:.3f} "
              f"| {max(r['peak_rss_mib'] for r in runs):.1f} | {best['user_s'] + best['sys_s']:.2f} "
              f"| {' / '.join(map(str, best['load_before']))} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
