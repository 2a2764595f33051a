#!/usr/bin/env python3
"""One worker draining the messages of ONE growing dataset.

Needs the broker (deploy/stack.sh start broker). Generates N monthly files of one
CMIP6-like dataset (bench/dataset_arrivals.py's generator), announces each as a plain
request on a fresh topic, and lets one `zarrstac worker` (static catalog and references
in a scratch folder) consume them: every message adds a file to the dataset, whose item
and combined references are rebuilt (coalesced) before the message is acknowledged.
Reports the time from the worker's first to its last finished message and the bytes it
read from source files (its `zarrstac_source_bytes_read_total`), against what one scan
of each file reads (`zarrstac refs --stats`).

    .cache/venv/bin/python bench/dataset_worker.py [--messages 1000,10000] [--concurrency 4]

BENCH_WORKER_LOG (a log filter, e.g. zarrstac_pipeline=debug) and BENCH_WORKER_STDERR (a
file) keep the worker's log of where each rebuild's time goes.
"""

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataset_arrivals import BIN, name, write_member  # noqa: E402

BROKERS = os.environ.get("ZARRSTAC_TEST_BROKERS", "127.0.0.1:9092")
METRICS = "127.0.0.1:9198"


def metric(text: str, prefix: str) -> float:
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(prefix))


def scrape() -> str:
    return urlopen(f"http://{METRICS}/metrics", timeout=5).read().decode()


def one_scan_bytes(path: Path) -> int:
    out = subprocess.run([BIN, "refs", str(path), "-o", os.devnull, "--stats"],
                         capture_output=True, text=True, check=True).stderr
    return int(re.search(r"(\d+) bytes read of", out).group(1))


def drain(files, concurrency: int, tmp: Path):
    topic = f"bench-ds-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(t, 4, 1) for t in (topic, topic + "-dlq")]).values():
        f.result(30)
    env = dict(os.environ, ZARRSTAC_OUTPUT__FAILED=f"{tmp}/failed.jsonl", ZARRSTAC_LOG=os.environ.get("BENCH_WORKER_LOG", "warn"))
    worker = subprocess.Popen([BIN, "worker", "--brokers", BROKERS, "--topic", topic, "--dlq-topic",
                               topic + "-dlq", "--group-id", topic, "--catalog", f"{tmp}/catalog",
                               "--refs-root", f"{tmp}/refs", "--concurrency", str(concurrency),
                               "--metrics-addr", METRICS], env=env, stderr=open(os.environ["BENCH_WORKER_STDERR"], "w") if "BENCH_WORKER_STDERR" in os.environ else subprocess.DEVNULL)
    try:
        while True:
            try:
                scrape()
                break
            except OSError:
                time.sleep(0.2)
        p = Producer({"bootstrap.servers": BROKERS, "linger.ms": 5})
        for f in files:
            url = f.as_uri()
            p.produce(topic, key=url, value=json.dumps({"url": url}))
        p.flush(60)
        start = time.perf_counter()
        first = None
        while True:
            text = scrape()
            done = metric(text, "zarrstac_messages_total")
            if first is None and done > 0:
                first = time.perf_counter() - start
            if done >= len(files):
                break
            time.sleep(0.2)
        took = time.perf_counter() - start
        outcomes = {l.split("{")[1].split("}")[0]: l.split()[-1]
                    for l in text.splitlines() if l.startswith("zarrstac_messages_total{")}
        read = metric(text, "zarrstac_source_bytes_read_total")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
    return took, read, outcomes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", default="1000,10000")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    sizes = [int(s) for s in args.messages.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="zarrstac-dsworker-") as tmp:
            tmp = Path(tmp)
            data = tmp / "data"
            data.mkdir()
            files = []
            for k in range(n):
                files.append(data / name(k))
                write_member(files[-1], k)
            per_scan = one_scan_bytes(files[0])
            took, read, outcomes = drain(files, args.concurrency, tmp)
            item = next((tmp / "catalog").rglob("CMIP6.*.json"))
            assets = len(json.loads(item.read_text())["assets"])
            results.append((n, took))
            print(f"{n} messages: {took:.1f} s ({n / took:.0f} messages/s); outcomes {outcomes}; "
                  f"source bytes read {read:.0f} = {read / (per_scan * n):.2f} x one scan per file "
                  f"({per_scan} bytes); dataset item has {assets} assets")
    for (n0, t0), (n, t) in zip(results, results[1:]):
        print(f"{n} messages / {n0} messages: {t / t0:.2f}x the time for {n / n0:.0f}x the messages")


if __name__ == "__main__":
    main()
