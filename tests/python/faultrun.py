"""A fault run: messages through several workers of one group while what surrounds them
fails, then an account of every message.

The stack is the real one (tansu with its durable store, pgstac, stac-fastapi-pgstac,
s3s-fs); the faults are injected around it:
* an HTTP proxy in front of the S3 server the sources are read from, and one in front of
  the STAC API one worker writes to, each answering a share of requests with 503, 429
  (Retry-After), a dropped connection, a body cut in half, or a 5 s stall;
* the STAC API unavailable (all 503) for 30 s, longer than the sink's retries;
* one worker SIGKILLed and restarted, twice;
* the broker restarted on its durable store;
* PostgreSQL connections terminated (pg_terminate_backend) every few seconds, under the
  pgstac sink of the other workers.

Afterwards every message must be accounted for exactly once: its item, or its file in its
dataset's item, in pgstac, or (corrupt files only) one live dead-letter record; the
transient and crashed dead letters are replayed with the faults off and must land; no
worker may exit but those killed.

Used by tests/python/test_faults.py (a few hundred messages) and bench/fault_run.py
(10,000). Needs the environment deploy/stack.sh sets (ZARRSTAC_TEST_*, ZARRSTAC_BIN).
"""
import collections
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, TopicPartition

import stack
from conftest import FIXTURES, REPO, SINGLE_ITEM_FILES
from kafkaio import BUCKET, create_topics, produce, s3_event

SINGLE = SINGLE_ITEM_FILES
FILES_PER_DATASET = 5
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class FaultProxy:
    """An HTTP reverse proxy to 127.0.0.1:UPSTREAM that fails a share of the requests.

    `rates` maps a fault to its probability per request: "503", "429" (with
    Retry-After: 1), "drop" (the connection closed before any answer), "cut" (half the
    body, then the connection closed) and "stall" (5 s, then forwarded). Headers pass
    unchanged (Host included: S3 signatures stay valid)."""

    def __init__(self, upstream_port, rates, seed, stall_s=5.0):
        self.upstream_port = upstream_port
        self.rates = dict(rates)
        self.stall_s = stall_s
        self.counts = collections.Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except OSError:
                    self.close_connection = True

            def _close(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy.pick()
                if fault == "drop":
                    return self._close()
                if fault in ("503", "429"):
                    self.send_response(int(fault))
                    if fault == "429":
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "stall":
                    time.sleep(proxy.stall_s)
                try:
                    status, headers, data = proxy.forward(self.command, self.path, self.headers, body)
                except OSError:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response_only(status)
                length = None
                for k, v in headers:
                    lower = k.lower()
                    if lower == "content-length":
                        length = v
                    if lower in HOP_BY_HOP or lower == "content-length":
                        continue
                    self.send_header(k, v)
                # A HEAD answer keeps the object's size; it has no body.
                self.send_header("Content-Length", length if self.command == "HEAD" and length else str(len(data)))
                self.end_headers()
                if self.command == "HEAD" or not data:
                    return
                if fault == "cut":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    return self._close()
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def pick(self):
        with self._lock:
            r, acc = self._rng.random(), 0.0
            for fault, rate in self.rates.items():
                acc += rate
                if r < acc:
                    self.counts[fault] += 1
                    return fault
            self.counts["forwarded"] += 1
            return None

    def forward(self, method, path, headers, body):
        send = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        for fresh in (False, True):
            conn = getattr(self._local, "conn", None)
            if conn is None or fresh:
                conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
            try:
                conn.request(method, path, body=body, headers=send)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if fresh:
                    raise
        raise OSError("unreachable")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def make_dataset_files(folder):
    """FILES_PER_DATASET monthly NetCDF-3 files of one variable on a small grid."""
    import netCDF4
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(FILES_PER_DATASET):
        path = folder / f"tas_{k}.nc"
        with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as ds:
            ds.Conventions = "CF-1.8"
            ds.title = "fault-run dataset member"
            ds.createDimension("time", None)
            ds.createDimension("lat", 3)
            ds.createDimension("lon", 4)
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.standard_name = "days since 2000-01-01", "standard", "time"
            t[:] = [15.0 + 30.0 * k]
            lat = ds.createVariable("lat", "f4", ("lat",))
            lat.units, lat.standard_name = "degrees_north", "latitude"
            lat[:] = [40.0, 45.0, 50.0]
            lon = ds.createVariable("lon", "f4", ("lon",))
            lon.units, lon.standard_name = "degrees_east", "longitude"
            lon[:] = [0.0, 5.0, 10.0, 15.0]
            v = ds.createVariable("tas", "f4", ("time", "lat", "lon"))
            v.units, v.standard_name = "K", "air_temperature"
            v[:] = np.full((1, 3, 4), 280.0 + k, dtype="f4")
        files.append(path)
    return files


class DeadLetters:
    """Every record of the dead-letter topic, read as it grows (no group: no joins)."""

    def __init__(self, topic, partitions):
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": stack.brokers(), "group.id": f"fault-dlq-{uuid.uuid4()}",
                                   "enable.auto.commit": False})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop.is_set():
            m = self._consumer.poll(0.5)
            if m is None or m.error():
                continue
            with self._lock:
                self.records.append((m.key().decode() if m.key() else None,
                                     {k: v.decode() for k, v in (m.headers() or [])}))

    def snapshot(self):
        with self._lock:
            return list(self.records)

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


class FaultRun:
    def __init__(self, workdir, messages, workers=3, partitions=6, seed=7, log=print,
                 s3_rates=None, api_rates=None, assignment="group"):
        """assignment: "group" (the group's coordinator hands out the partitions) or
        "static" (worker k of n reads the partitions p with p % n == k - 1, assigned by
        hand through worker.assigned_partitions)."""
        assert assignment in ("group", "static"), assignment
        self.assignment = assignment
        self.workdir = Path(workdir)
        self.n = messages
        self.n_workers = workers
        self.partitions = partitions
        self.log = log
        self.rng = random.Random(seed)
        self.s3_rates = s3_rates or {"503": 0.02, "429": 0.02, "drop": 0.01, "cut": 0.01, "stall": 0.003}
        self.api_rates = api_rates or {"503": 0.03, "429": 0.03, "drop": 0.01, "cut": 0.01, "stall": 0.01}
        self.seed = seed
        self.outage_s = 30
        # Workers' /metrics on base+1, base+2, ...
        self.metrics_base = int(os.environ.get("FAULT_RUN_METRICS_BASE", "9140"))
        self.figures = collections.Counter()
        self.procs = {}
        self.unexpected_exits = []

    # ------------------------------------------------------------------ inputs
    def prepare(self):
        root = self.workdir / "s3"
        (root / BUCKET).mkdir(parents=True, exist_ok=True)
        n_bad = max(2, round(self.n * 0.05))
        n_datasets = max(1, round(self.n * 0.2) // FILES_PER_DATASET)
        n_single = self.n - n_bad - n_datasets * FILES_PER_DATASET
        self.single, self.members, self.bad = {}, {}, []

        def put(key, data):
            dest = root / BUCKET / key
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            return key

        for i in range(n_single):
            src = SINGLE[i % len(SINGLE)]
            self.single[put(f"single/s{i:05d}_{src.stem}{src.suffix}", src.read_bytes())] = f"s{i:05d}_{src.stem}"
        templates = [p.read_bytes() for p in make_dataset_files(self.workdir / "dataset-files")]
        for d in range(n_datasets):
            for k, data in enumerate(templates):
                self.members[put(f"ds/d{d:04d}/tas_{k}.nc", data)] = f"d{d:04d}"
        for i in range(n_bad):
            src = SINGLE[i % len(SINGLE)]
            if i % 2:
                data = src.read_bytes()
                self.bad.append(put(f"bad/truncated_{i:04d}{src.suffix}", data[:min(300, len(data) // 2)]))
            else:
                self.bad.append(put(f"bad/garbage_{i:04d}.nc", b"CDF\x01" + bytes(self.rng.randrange(256) for _ in range(200))))
        keys = list(self.single) + list(self.members) + self.bad
        self.rng.shuffle(keys)
        self.keys = keys
        self.server = stack.S3Server(root)
        self.figures.update(messages=len(keys), single=len(self.single), dataset_files=len(self.members),
                            datasets=n_datasets, corrupt=len(self.bad))

    # ------------------------------------------------------------------ workers
    def worker_env(self, k):
        env = dict(os.environ, **dict(self.server.env(), AWS_ENDPOINT=self.s3_proxy.url), ZARRSTAC_LOG="info",
                   ZARRSTAC_OUTPUT__CATALOG=self.api_proxy.url if k == self.n_workers else stack.pgstac_url(),
                   ZARRSTAC_OUTPUT__REFS_ROOT=str(self.workdir / "refs"),
                   ZARRSTAC_OUTPUT__FAILED=str(self.workdir / f"failed-{k}.jsonl"),
                   ZARRSTAC_WORKER__BROKERS=stack.brokers(),
                   ZARRSTAC_WORKER__TOPIC=self.topic, ZARRSTAC_WORKER__DLQ_TOPIC=self.dlq,
                   ZARRSTAC_WORKER__GROUP_ID=self.group,
                   ZARRSTAC_WORKER__PARTITIONS=str(self.partitions),
                   ZARRSTAC_WORKER__INSTANCE_ID=f"fault-worker-{k}",
                   ZARRSTAC_WORKER__METRICS_ADDR=f"127.0.0.1:{self.metrics_base + k}",
                   ZARRSTAC_DATASETS__PATH_TEMPLATE="ds/{dataset}/{filename}")
        if self.assignment == "static":
            mine = [p for p in range(self.partitions) if p % self.n_workers == k - 1]
            env["ZARRSTAC_WORKER__ASSIGNED_PARTITIONS"] = json.dumps(mine)
        return env

    def start_worker(self, k):
        log = open(self.workdir / f"worker-{k}.log", "a")
        self.procs[k] = subprocess.Popen(
            [os.environ["ZARRSTAC_BIN"], "worker", "--config", str(REPO / "deploy" / "worker.toml")],
            env=self.worker_env(k), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()

    def kill_worker(self, k):
        os.killpg(self.procs[k].pid, signal.SIGKILL)
        self.procs[k].wait()
        self.figures["worker_kills"] += 1

    def check_workers(self):
        for k, p in self.procs.items():
            if p.poll() is not None:
                self.unexpected_exits.append((k, p.returncode))
                self.log(f"worker {k} exited with {p.returncode}; restarting it")
                self.start_worker(k)

    # ------------------------------------------------------------------ accounting
    def landed(self):
        """{key: number of pgstac items that hold it as their file}."""
        prefix = f"s3://{BUCKET}/"
        counts = collections.Counter()
        with stack.db() as conn:
            rows = conn.execute("SELECT content->'assets' FROM pgstac.items").fetchall()
        for (assets,) in rows:
            keys = {a["href"][len(prefix):] for a in (assets or {}).values()
                    if a.get("href", "").startswith(prefix)}
            counts.update(keys)
        return counts

    def accounted(self, dead):
        landed = self.landed()
        good = set(self.single) | set(self.members)
        return len({k for k in good if landed[k]} | {k for k, _ in dead if k}), landed

    def terminate_pg(self):
        with psycopg.connect(stack.pgstac_url(), autocommit=True) as conn:
            n = conn.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend') t").fetchone()[0]
        self.figures["pg_connections_terminated"] += n

    def replay(self, *args):
        env = dict(os.environ, ZARRSTAC_WORKER__GROUP_ID=self.group, ZARRSTAC_WORKER__SINGLE_RECORD_BATCHES="true")
        proc = subprocess.run([os.environ["ZARRSTAC_BIN"], "replay", "--brokers", stack.brokers(),
                               "--topic", self.topic, "--dlq-topic", self.dlq, *args],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    # ------------------------------------------------------------------ the run
    def run(self, timeout=3600):
        tag = uuid.uuid4().hex[:8]
        self.topic, self.dlq, self.group = f"fault-{tag}", f"fault-{tag}-dlq", f"fault-group-{tag}"
        self.prepare()
        self.s3_proxy = FaultProxy(self.server.port, self.s3_rates, self.seed)
        api_port = int(stack.api_url().rsplit(":", 1)[1].split("/")[0])
        self.api_proxy = FaultProxy(api_port, self.api_rates, self.seed + 1)
        create_topics([self.topic, self.dlq], self.partitions)
        dead = DeadLetters(self.dlq, self.partitions)
        try:
            return self._run(dead, timeout)
        finally:
            for p in self.procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
            dead.close()
            self.s3_proxy.stop()
            self.api_proxy.stop()
            self.server.stop()

    def _run(self, dead, timeout):
        started = time.monotonic()
        # The messages first, then the workers: members joining while the broker takes
        # thousands of one-record batches have been seen never to get an assignment.
        produce(self.topic, [(k, json.dumps(s3_event(k, i % 4))) for i, k in enumerate(self.keys)])
        self.log(f"{len(self.keys)} messages produced in {time.monotonic() - started:.0f} s")
        for k in range(1, self.n_workers + 1):
            self.start_worker(k)
        # Faults at points of progress; pg terminations throughout.
        timeline = [(0.15, "kill"), (0.35, "broker"), (0.5, "outage"), (0.55, "kill")]
        victim = min(2, self.n_workers)
        last_pg = time.monotonic()
        deadline = started + timeout
        while True:
            self.check_workers()
            done, _ = self.accounted(dead.snapshot())
            progress = done / len(self.keys)
            if timeline and progress >= timeline[0][0]:
                _, fault = timeline.pop(0)
                if fault == "kill":
                    self.log(f"{progress:.0%}: SIGKILL worker {victim}, restart in 2 s")
                    self.kill_worker(victim)
                    time.sleep(2)
                    self.start_worker(victim)
                elif fault == "outage":
                    # Longer than the catalog sink's retries: its messages are dead-lettered
                    # as transient, for the replay below.
                    self.log(f"{progress:.0%}: STAC API unavailable for {self.outage_s} s")
                    rates = dict(self.api_proxy.rates)
                    self.api_proxy.rates = {"503": 1.0}
                    time.sleep(self.outage_s)
                    self.api_proxy.rates = rates
                    self.figures["api_outages"] += 1
                else:
                    self.log(f"{progress:.0%}: broker restart on its durable store")
                    stack.stack("stop", "broker", "keep-store")
                    stack.stack("start", "broker")
                    self.figures["broker_restarts"] += 1
            if time.monotonic() - last_pg > 8:
                self.terminate_pg()
                last_pg = time.monotonic()
            if done >= len(self.keys) and not timeline:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {done} of {len(self.keys)} messages accounted for")
            time.sleep(3)
        self.figures["seconds_to_account"] = round(time.monotonic() - started)
        self.log(f"every message accounted for after {self.figures['seconds_to_account']} s")

        # The faults end; what failed for a transient reason (or crashed) is replayed.
        self.s3_proxy.rates.clear()
        self.api_proxy.rates.clear()
        letters = dead.snapshot()
        by_class = collections.Counter(h.get("zarrstac-error-class") for _, h in letters)
        self.figures.update({f"dead_letters_{c}": n for c, n in by_class.items()})
        for cls in ("transient", "crashed"):
            if by_class[cls]:
                moved = self.replay("--error-class", cls)
                self.log(moved.stderr.strip().splitlines()[-1])
        good = set(self.single) | set(self.members)
        replay_deadline = time.monotonic() + 600
        while True:
            self.check_workers()
            landed = self.landed()
            missing = sorted(k for k in good if not landed[k])
            if not missing:
                break
            if time.monotonic() > replay_deadline:
                raise AssertionError(f"{len(missing)} good files never landed, e.g. {missing[:5]}; "
                                     f"dead letters of them: {[l for l in dead.snapshot() if l[0] in missing][:5]}")
            time.sleep(3)
        self.figures["seconds_total"] = round(time.monotonic() - started)
        metrics = self.scrape()
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for k, p in self.procs.items():
            code = p.wait(timeout=120)
            if code != 0:
                self.unexpected_exits.append((k, code))
        self.figures.update(metrics)
        self.figures.update({f"s3_{f}": n for f, n in self.s3_proxy.counts.items()})
        self.figures.update({f"api_{f}": n for f, n in self.api_proxy.counts.items()})
        return self.verify(dead)

    def scrape(self):
        import httpx
        totals = collections.Counter()
        for k in self.procs:
            try:
                text = httpx.get(f"http://127.0.0.1:{self.metrics_base + k}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                for name in ("zarrstac_retries_total", "zarrstac_dlq_total", "zarrstac_crashed_total"):
                    if line.startswith(name + " "):
                        totals[name.removeprefix("zarrstac_") + "_since_last_start"] += int(float(line.split()[-1]))
        return totals

    def unacknowledged(self):
        """[(partition, committed, end)] where the group's committed offset (after the
        workers stopped) is short of the partition's end: messages never acknowledged."""
        c = Consumer({"bootstrap.servers": stack.brokers(), "group.id": self.group, "enable.auto.commit": False})
        try:
            parts = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            committed = {tp.partition: tp.offset for tp in c.committed(parts, timeout=30)}
            behind = []
            for p in range(self.partitions):
                _, end = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
                if end > 0 and committed[p] < end:  # -1001: nothing committed
                    behind.append((p, committed[p], end))
            return behind
        finally:
            c.close()

    def verify(self, dead):
        """The account: returns the figures; raises AssertionError on anything lost or doubled."""
        problems = []
        if self.unexpected_exits:
            problems.append(f"workers exited on their own: {self.unexpected_exits}")
        for log in sorted(self.workdir.glob("worker-*.log")):
            panics = [line for line in log.read_text(errors="replace").splitlines() if "panicked" in line]
            if panics:
                problems.append(f"{log.name}: {panics[:3]}")
        behind = self.unacknowledged()
        if behind:
            problems.append(f"partitions whose committed offset is short of their end (partition, committed, end): {behind}")
        landed = self.landed()
        for key in list(self.single) + list(self.members):
            if landed[key] != 1:
                problems.append(f"{key} is the file of {landed[key]} items")
        for key in self.bad:
            if landed[key]:
                problems.append(f"corrupt {key} landed in the catalog")
        with stack.db() as conn:
            dup = conn.execute("SELECT collection, id, count(*) FROM pgstac.items GROUP BY 1, 2 "
                               "HAVING count(*) > 1").fetchall()
            datasets = conn.execute("SELECT content->'assets' FROM pgstac.items WHERE id LIKE 'd%'").fetchall()
        if dup:
            problems.append(f"duplicate rows: {dup[:5]}")
        n_datasets = self.figures["datasets"]
        complete = sum(1 for (assets,) in datasets
                       if sum(1 for a in assets.values() if a.get("href", "").startswith(f"s3://{BUCKET}/ds/"))
                       == FILES_PER_DATASET)
        if complete != n_datasets:
            problems.append(f"{complete} of {n_datasets} dataset items hold all their files")
        # The live dead letters (after the replays) are the corrupt files, once each.
        listed = self.replay("--dry-run").stdout.splitlines()
        live = collections.Counter(line.split("\t")[0] for line in listed if line.strip())
        if sorted(live.elements()) != sorted(self.bad):
            extra = sorted(set(live) - set(self.bad))[:5]
            twice = sorted(k for k, n in live.items() if n > 1)[:5]
            absent = sorted(set(self.bad) - set(live))[:5]
            problems.append(f"live dead letters are not the corrupt files once each: extra {extra}, "
                            f"repeated {twice}, absent {absent}")
        permanent_good = sorted({k for k, h in dead.snapshot() if h.get("zarrstac-error-class") == "permanent"
                                 and k not in self.bad})
        if permanent_good:
            problems.append(f"good files dead-lettered as permanent: {permanent_good[:5]}")
        self.figures["live_dead_letters"] = sum(live.values())
        if problems:
            raise AssertionError("; ".join(problems))
        return dict(self.figures)
