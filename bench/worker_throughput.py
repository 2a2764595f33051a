"""Messages per second through one `zarrstac worker`, and its memory over the run.

Needs the broker: deploy/stack.sh start broker. N small NetCDF files (copies of a fixture,
distinct names) are announced as plain requests on a fresh topic; one worker (static
catalog and references in a scratch folder) consumes them. Throughput counts from the
first message to the last finished one (read from the worker's /metrics); resident
memory is sampled every half second.

    python bench/worker_throughput.py [--messages 5000] [--concurrency 4]

With --http-delay-ms D the files are served by the loopback range server of
tests/python/rangeserver.py, which sleeps D ms before each answer (an object store's
latency), and the messages name their http:// URLs:

    python bench/worker_throughput.py --messages 2000 --concurrency 32 --http-delay-ms 20
"""
import argparse
import contextlib
import sys
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
import rangeserver  # noqa: E402
BIN = os.environ.get("ZARRSTAC_BIN", str(Path.home() / ".cache/zarrstac/target/release/zarrstac"))
BROKERS = os.environ.get("ZARRSTAC_TEST_BROKERS", "127.0.0.1:9092")
SOURCE = REPO / "fixtures/shared/netcdf3/ref_nctest_classic.nc"
METRICS = "127.0.0.1:9199"


def finished():
    text = urlopen(f"http://{METRICS}/metrics", timeout=5).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("zarrstac_messages_total"))


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--http-delay-ms", type=float, default=None,
                    help="serve the files over loopback http with this delay per request")
    args = ap.parse_args()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    for f in admin.create_topics([NewTopic(t, 4, 1) for t in (topic, topic + "-dlq")]).values():
        f.result(30)
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp, "files")
        files.mkdir()
        for i in range(args.messages):
            shutil.copyfile(SOURCE, files / f"f{i:06d}.nc")
        server = (rangeserver.serve(files, args.http_delay_ms / 1000) if args.http_delay_ms is not None
                  else contextlib.nullcontext())
        http = server.__enter__()
        env = dict(os.environ, ZARRSTAC_OUTPUT__FAILED=f"{tmp}/failed.jsonl", ZARRSTAC_LOG="warn")
        worker = subprocess.Popen([BIN, "worker", "--brokers", BROKERS, "--topic", topic, "--dlq-topic",
                                   topic + "-dlq", "--group-id", topic, "--catalog", f"{tmp}/catalog",
                                   "--refs-root", f"{tmp}/refs", "--concurrency", str(args.concurrency),
                                   "--metrics-addr", METRICS], env=env, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    finished()
                    break
                except OSError:
                    time.sleep(0.2)
            p = Producer({"bootstrap.servers": BROKERS, "linger.ms": 5})
            for i in range(args.messages):
                name = f"f{i:06d}.nc"
                url = f"{http.url}/{name}" if http else (files / name).as_uri()
                p.produce(topic, key=url, value=json.dumps({"url": url}))
            p.flush(60)
            start, samples = time.perf_counter(), []
            first = None
            while True:
                done = finished()
                samples.append((time.perf_counter() - start, done, rss_mib(worker.pid)))
                if first is None and done > 0:
                    first = samples[-1][0]
                if done >= args.messages:
                    break
                time.sleep(0.5)
            took = samples[-1][0]
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            server.__exit__(None, None, None)
        requests = len(http.requests) if http else None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{args.messages} messages ({SOURCE.name} copies), concurrency {args.concurrency}: "
          f"{took:.1f} s = {args.messages / took:.0f} messages/s"
          + (f"; over http with {args.http_delay_ms:g} ms per request: {requests} requests"
             if http else ""))
    rss = [s[2] for s in samples]
    marks = [samples[max(0, int(len(samples) * q) - 1)] for q in (0.1, 0.25, 0.5, 0.75, 1.0)]
    print("resident memory: " + ", ".join(f"{int(d)} done {r:.0f} MiB" for _, d, r in marks)
          + f"; min {min(rss):.0f}, max {max(rss):.0f} MiB")


if __name__ == "__main__":
    main()
