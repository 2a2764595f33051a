"""`zarrstac worker`, `replay` and `backfill` against a real Kafka-protocol broker (tansu,
durable storage) and the real catalog (pgstac, stac-fastapi-pgstac), with sources on a
real S3 server (s3s-fs). Workers are started and killed through deploy/stack.sh.

* end to end: 200 object-store events (10% corrupt or unsupported) through two workers of
  one group: every message ends as its item, an asset of its dataset's item, or exactly
  one dead-letter record;
* crash safety: a worker killed with SIGKILL and restarted, then a broker restart: nothing
  lost, nothing duplicated;
* an outage of the catalog API: retries, dead letters, then `replay` lands everything;
* a poison message cannot block its partition;
* backfill of 10,000 keys: each enqueued once; killed halfway, it resumes after its last
  finished page;
* uploaded Zarr stores (v2 and v3), one event per object: one item per store;
* a message that kills its worker each time is dead-lettered as `crashed` after two
  crashes, and the worker goes on.
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

import stack
from conftest import FIXTURES, REPO, SINGLE_ITEM_FILES
from kafkaio import BUCKET, create_topics, produce, read_topic, s3_event
from test_zarr3 import CF_GRID, GEOZARR, S1_V2, stores  # noqa: F401 (stores: a fixture)

CMIP5 = sorted((FIXTURES / "shared" / "cmip5-netcdf3-series").glob("*.nc"))
SINGLE = SINGLE_ITEM_FILES


def wait_until(predicate, timeout, what, state=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f": {state()}" if state else ""))


class Bucket:
    """Objects on a real S3 server, announced to the worker by events."""

    def __init__(self, tmp_path):
        self.root = tmp_path / "s3"
        (self.root / BUCKET).mkdir(parents=True)
        self.server = stack.S3Server(self.root)

    def put(self, key, data):
        dest = self.root / BUCKET / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return key


@pytest.fixture
def bucket(tmp_path):
    b = Bucket(tmp_path)
    yield b
    b.server.stop()


class Workers:
    """Worker processes of one consumer group, via deploy/stack.sh."""

    def __init__(self, tmp_path, bucket, catalog, **settings):
        tag = uuid.uuid4().hex[:8]
        self.topic, self.dlq = f"ingest-{tag}", f"ingest-{tag}-dlq"
        self.env = dict(os.environ, **bucket.server.env(),
                        ZARRSTAC_BIN=os.environ["ZARRSTAC_BIN"], ZARRSTAC_LOG="info",
                        ZARRSTAC_OUTPUT__CATALOG=catalog,
                        ZARRSTAC_OUTPUT__REFS_ROOT=str(tmp_path / "refs"),
                        ZARRSTAC_OUTPUT__FAILED=str(tmp_path / "failed.jsonl"),
                        ZARRSTAC_WORKER__TOPIC=self.topic, ZARRSTAC_WORKER__DLQ_TOPIC=self.dlq,
                        ZARRSTAC_WORKER__GROUP_ID=f"group-{tag}")
        self.env.setdefault("ZARRSTAC_WORKER__PARTITIONS", "4")
        self.env.update(settings)
        create_topics([self.topic, self.dlq], int(self.env["ZARRSTAC_WORKER__PARTITIONS"]))

    def start(self, n):
        subprocess.run([str(stack.STACK), "start", "workers", str(n)], env=self.env, check=True, timeout=60)

    def stop(self):
        subprocess.run([str(stack.STACK), "stop", "workers"], env=self.env, check=True, timeout=120)

    def pid(self, k):
        return int((Path(os.environ.get("ZARRSTAC_STACK_DIR", REPO / ".cache" / "stack")) / f"worker-{k}.pid").read_text())

    def kill(self, k):
        os.killpg(self.pid(k), signal.SIGKILL)

    def replay(self, *args):
        return subprocess.run([os.environ["ZARRSTAC_BIN"], "replay", "--brokers", stack.brokers(),
                               "--topic", self.topic, "--dlq-topic", self.dlq, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)


def stored():
    """{item id: number of assets} of pgstac."""
    with stack.db() as conn:
        rows = conn.execute("SELECT id, content->'assets' FROM pgstac.items").fetchall()
    return {r[0]: len(r[1] or {}) for r in rows}


def good_copies(bucket, n, prefix="data"):
    """n distinct single-item objects; returns {key: expected item id}."""
    keys = {}
    for i in range(n):
        src = SINGLE[i % len(SINGLE)]
        stem = f"g{i:03d}_{src.stem}"
        keys[bucket.put(f"{prefix}/{stem}{src.suffix}", src.read_bytes())] = stem
    return keys


def dataset_item_id():
    return "CMIP5.output.MOHC.HadGEM2-ES.rcp85.mon.atmos.Amon.r1i1p1.tas"


@pytest.fixture
def clean():
    stack.clear_catalog()


def test_two_workers_account_for_every_message(tmp_path, bucket, clean):
    good = good_copies(bucket, 167)
    cmip = [bucket.put(f"cmip5/{p.name}", p.read_bytes()) for p in CMIP5]
    bad = []
    for i in range(10):
        src = SINGLE[i]
        bad.append(bucket.put(f"bad/truncated_{i}{src.suffix}", src.read_bytes()[:200]))
        bad.append(bucket.put(f"bad/text_{i}.nc", b"this is not a NetCDF file\n" * 4))
    keys = list(good) + cmip + bad
    assert len(keys) == 200
    workers = Workers(tmp_path, bucket, stack.pgstac_url())
    # The messages first, then the workers, as in the fault run: on tansu 0.6, members
    # that joined while the broker took 200 one-record batches once never got a message
    # (600 s, nothing in flight, on a fresh CI machine).
    produce(workers.topic, [(k, json.dumps(s3_event(k, i % 4))) for i, k in enumerate(keys)])
    workers.start(int(os.environ.get("TEST_WORKERS", "2")))
    try:

        def finished():
            items = stored()
            return len(items) >= len(good) + 1 and len(read_topic(workers.dlq, idle=1)) >= len(bad)
        def state():
            items = stored()
            missing = sorted(set(good.values()) - set(items))
            import httpx
            metrics = []
            for port in (9101, 9102):
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                    metrics.append([l for l in text.splitlines() if l.startswith(("zarrstac_in_flight", "zarrstac_messages"))])
                except Exception as e:  # noqa: BLE001 - diagnostics only
                    metrics.append(str(e))
            return (f"{len(items)} items; missing {missing[:10]}; unexpected "
                    f"{sorted(set(items) - set(good.values()))}; workers: {metrics}")
        wait_until(finished, 600, "200 messages to end in the catalog or the dead-letter topic", state)
        time.sleep(3)  # anything extra (a duplicate) would show now
    finally:
        workers.stop()
    items = stored()
    dataset = [i for i in items if i.startswith(dataset_item_id())]
    assert len(dataset) == 1, items.keys()
    assert items[dataset[0]] >= len(cmip), "every CMIP5 file is an asset of its dataset's item"
    assert set(items) == set(good.values()) | set(dataset)
    dlq = read_topic(workers.dlq)
    dlq_keys = [k for k, _, _ in dlq]
    assert sorted(dlq_keys) == sorted(bad), "each bad message exactly once in the dead-letter topic"
    for key, value, headers in dlq:
        assert headers["zarrstac-error-class"] == "permanent", headers
        assert headers["zarrstac-origin-topic"] == workers.topic
        assert int(headers["zarrstac-attempts"]) >= 1 and headers["zarrstac-first-failure"]
        assert json.loads(value)  # the original payload, untouched
        assert key.split("/")[-1].split(".")[0] in headers["zarrstac-error"] or headers["zarrstac-error"]


def test_killed_worker_and_restarted_broker_lose_and_duplicate_nothing(tmp_path, bucket, clean):
    first = good_copies(bucket, 60, prefix="first")
    workers = Workers(tmp_path, bucket, stack.pgstac_url())
    produce(workers.topic, [(k, json.dumps(s3_event(k, 0))) for k in first])
    workers.start(1)
    try:
        wait_until(lambda: len(stored()) >= 10, 300, "the first items")
        workers.kill(1)
        workers.start(1)
        wait_until(lambda: set(stored()) >= set(first.values()), 300, "every item after the restart")
        # The broker restarts with its durable store; the worker reconnects.
        stack.stack("stop", "broker", "keep-store")
        stack.stack("start", "broker")
        second = good_copies(bucket, 20, prefix="second")
        produce(workers.topic, [(k, json.dumps(s3_event(k, 0))) for k in second])
        expected = set(first.values()) | set(second.values())
        wait_until(lambda: set(stored()) >= expected, 300, "every item after the broker restart")
    finally:
        workers.stop()
    ids = stack.item_ids()
    assert len(ids) == len(set(ids)) == len(expected)
    assert read_topic(workers.dlq, idle=2) == []


def test_catalog_outage_dead_letters_then_replay_lands_all(tmp_path, bucket, clean):
    files = good_copies(bucket, 12)
    workers = Workers(tmp_path, bucket, stack.api_url(),
                      ZARRSTAC_CATALOG__RETRY__ATTEMPTS="2", ZARRSTAC_CATALOG__RETRY__MAX_BACKOFF_MS="200",
                      ZARRSTAC_RUN__RETRY__ATTEMPTS="2", ZARRSTAC_RUN__RETRY__INITIAL_BACKOFF_MS="100")
    stack.stack("stop", "api")
    try:
        workers.start(1)
        produce(workers.topic, [(k, json.dumps(s3_event(k, 3))) for k in files])
        wait_until(lambda: len(read_topic(workers.dlq, idle=1)) >= len(files), 300, "dead letters")
    finally:
        stack.stack("start", "api")
    try:
        dlq = read_topic(workers.dlq)
        assert sorted(k for k, _, _ in dlq) == sorted(files)
        assert all(h["zarrstac-error-class"] == "transient" and int(h["zarrstac-attempts"]) == 2
                   for _, _, h in dlq), dlq[0][2]
        dry = workers.replay("--dry-run", "--error-class", "transient")
        assert f"{len(files)} would move" in dry.stderr, dry.stderr
        moved = workers.replay("--error-class", "transient")
        assert moved.returncode == 0 and f"{len(files)} moved back" in moved.stderr, moved.stderr
        wait_until(lambda: set(stored()) >= set(files.values()), 300, "replayed items")
    finally:
        workers.stop()
    ids = stack.item_ids()
    assert len(ids) == len(set(ids)) == len(files)
    again = workers.replay("--dry-run")
    assert "0 would move" in again.stderr, again.stderr


def test_poison_message_does_not_block_its_partition(tmp_path, bucket, clean):
    poison = bucket.put("poison/always_fails.nc", b"CDF\x01" + b"\xff" * 64)
    files = good_copies(bucket, 8)
    workers = Workers(tmp_path, bucket, stack.pgstac_url(), ZARRSTAC_WORKER__PARTITIONS="1")
    messages = [(poison, json.dumps(s3_event(poison, 0)))] + [(k, json.dumps(s3_event(k, 0))) for k in files]
    messages.insert(4, ("garbage", b"\x00\x01 not an event"))
    workers.start(1)
    try:
        produce(workers.topic, messages)
        wait_until(lambda: set(stored()) >= set(files.values()), 300, "the messages behind the poison")
    finally:
        workers.stop()
    dlq = read_topic(workers.dlq)
    assert sorted(k for k, _, _ in dlq) == sorted([poison, "garbage"])


def count_keys(records):
    counts = {}
    for k, _, _ in records:
        counts[k] = counts.get(k, 0) + 1
    return counts


def test_backfill_enqueues_each_key_once_and_resumes(tmp_path, bucket):
    n = 10_000
    folder = bucket.root / BUCKET / "many"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"obj{i:05d}.nc").write_bytes(b"x")
    urls = {f"s3://{BUCKET}/many/obj{i:05d}.nc" for i in range(n)}
    workers = Workers(tmp_path, bucket, stack.pgstac_url())
    base = [os.environ["ZARRSTAC_BIN"], "backfill", f"s3://{BUCKET}/many/", "--brokers", stack.brokers(),
            "--page-size", "500"]
    whole = subprocess.run([*base, "--topic", workers.topic, "--checkpoint", str(tmp_path / "whole.json")],
                           env=workers.env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert f"{n} objects in 20 pages" in whole.stderr
    counts = count_keys(read_topic(workers.topic, idle=5, timeout=300))
    assert set(counts) == urls and set(counts.values()) == {1}
    # Interrupted halfway, then run again with the same checkpoint.
    topic = workers.topic + "-resume"
    create_topics([topic], 4)
    checkpoint = tmp_path / "resume.json"
    proc = subprocess.Popen([*base, "--topic", topic, "--checkpoint", str(checkpoint)], env=workers.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if json.loads(checkpoint.read_text())["pages"] >= 8:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = json.loads(checkpoint.read_text())
    assert not done_at_kill["finished"] and 8 <= done_at_kill["pages"] < 20
    resumed = subprocess.run([*base, "--topic", topic, "--checkpoint", str(checkpoint)], env=workers.env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    counts = count_keys(read_topic(topic, idle=5, timeout=300))
    assert set(counts) == urls
    after = f"s3://{BUCKET}/{done_at_kill['after']}"
    finished_pages = {u for u in urls if u <= after}
    assert all(counts[u] == 1 for u in finished_pages), "a finished page was enqueued again"
    assert sum(counts.values()) - n <= 500, "more than the one unfinished page was repeated"


def test_uploaded_zarr_stores_are_ingested_once_from_their_root_metadata(tmp_path, bucket, stores, clean):
    """Every object of three uploaded stores (a Zarr v2 EOPF product, a consolidated and an
    unconsolidated Zarr v3 store, chunks included) announced by its own event: each store
    becomes its item, read from S3, and no event is dead-lettered."""
    uploads = {S1_V2.stem: S1_V2, "geozarr_s2_multiscales": stores / GEOZARR,
               "cf_grid_unconsolidated": stores / CF_GRID}
    keys = []
    for store in uploads.values():
        for p in sorted(store.rglob("*")):
            if p.is_file():
                keys.append(bucket.put(f"zarr/{store.name}/{p.relative_to(store)}", p.read_bytes()))
        # Chunks as an upload writes them: their events must not ingest the store again.
        keys.append(bucket.put(f"zarr/{store.name}/chunk/c/0/0", b"\x00" * 16))
    # Root metadata last, as zarr-python writes a consolidated store.
    keys.sort(key=lambda k: k.rsplit("/", 1)[-1] in ("zarr.json", ".zmetadata") and k.count("/") == 2)
    workers = Workers(tmp_path, bucket, stack.pgstac_url())
    workers.start(1)
    try:
        produce(workers.topic, [(k, json.dumps(s3_event(k, 0))) for k in keys])
        wait_until(lambda: set(stored()) >= set(uploads), 300, "the three store items")
    finally:
        workers.stop()
    assert read_topic(workers.dlq, idle=3) == []
    with stack.db() as conn:
        rows = {r[0]: (r[1], r[2]) for r in
                conn.execute("SELECT id, collection, content->'assets' FROM pgstac.items").fetchall()}
    collections = {i: (rows[i][0], rows[i][1]["product"]["type"]) for i in uploads}
    assert collections == {
        S1_V2.stem: ("eopf-s01siwgrh", "application/vnd.zarr; version=2"),
        "geozarr_s2_multiscales": ("zarr", "application/vnd.zarr; version=3"),
        "cf_grid_unconsolidated": ("zarr", "application/vnd.zarr; version=3"),
    }, collections
    assert rows["geozarr_s2_multiscales"][1]["measurements_reflectance"]["href"] == \
        f"s3://{BUCKET}/zarr/{GEOZARR}/measurements/reflectance"


class StallingSource:
    """An HTTP server whose every request stalls: a worker reading from it is busy with
    that message for as long as the test wants, and can be killed there, as an
    out-of-memory kill or an abort would stop it."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.requests = []
        self.release = threading.Event()
        source = self

        class Stall(BaseHTTPRequestHandler):
            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except OSError:  # the worker died mid-request
                    pass

            def do_GET(self):
                source.requests.append((time.monotonic(), self.command, self.path))
                source.release.wait(120)
                self.send_error(503)

            do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Stall)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.release.set()
        self.server.shutdown()


def test_a_message_that_kills_its_worker_is_dead_lettered_as_crashed(tmp_path, bucket, clean):
    """Kafka keeps no delivery count: the worker records what it has in flight, so a
    message whose worker dies on it twice (SIGKILL here, as the OOM killer sends) is
    dead-lettered as `crashed` on its third delivery without being run, and the worker
    goes on with the messages behind it."""
    source = StallingSource()
    crashing = f"{source.url}/crash/kills_its_worker.nc"
    workers = Workers(tmp_path, bucket, stack.pgstac_url(), ZARRSTAC_WORKER__PARTITIONS="1",
                      ZARRSTAC_RUN__CONCURRENCY="1")
    try:
        workers.start(1)
        produce(workers.topic, [("crash", json.dumps({"url": crashing}))])
        for crash in (1, 2):
            wait_until(lambda: source.requests, 120, f"delivery {crash} of the crashing message")
            workers.kill(1)
            requests_at_kill = len(source.requests)
            source.requests.clear()
            workers.start(1)
        # Behind it: the inputs that used to abort the reader (they are refused now, as
        # corrupt), and good files.
        huge = bytearray((FIXTURES / "generated" / "nc3_one_record_var.nc").read_bytes())
        huge[4:8] = (0xFFFFFFFE).to_bytes(4, "big")  # numrecs
        hostile = [bucket.put("hostile/huge_record_count.nc", bytes(huge)),
                   bucket.put("hostile/zero_record_stride.nc",
                              (FIXTURES / "fuzz" / "nc3_zero_record_stride.fuzz").read_bytes())]
        behind = good_copies(bucket, 3, prefix="behind")
        produce(workers.topic, [(k, json.dumps(s3_event(k, 0))) for k in hostile + list(behind)])
        wait_until(lambda: set(stored()) >= set(behind.values()), 300, "the messages behind it")
        dlq = read_topic(workers.dlq, idle=2)
        pid = workers.pid(1)
        os.killpg(pid, 0)  # still running: raises if the worker exited
    finally:
        source.stop()
        workers.stop()
    assert requests_at_kill >= 1
    assert source.requests == [], "the third delivery must not run the message"
    assert [k for k, _, _ in dlq] == ["crash"] + hostile, dlq
    assert json.loads(dlq[0][1]) == {"url": crashing}
    headers = dlq[0][2]
    assert headers["zarrstac-error-class"] == "crashed", headers
    assert int(headers["zarrstac-attempts"]) == 2, headers
    assert "stopped without finishing it 2 times" in headers["zarrstac-error"], headers
    for (_, _, h), reason in zip(dlq[1:], ("4294967294 records", "would overlap")):
        assert h["zarrstac-error-class"] == "permanent" and reason in h["zarrstac-error"], h
    # Every finished message removed its record; a dead-lettered one keeps it, marked, so
    # that a redelivery before its offset was committed is not dead-lettered again.
    in_flight = tmp_path / "refs" / ".in-flight"
    assert in_flight.is_dir(), "the worker records messages in flight beside the references"
    records = [json.loads(p.read_text()) for p in in_flight.rglob("*.json")]
    assert sorted(r["offset"] for r in records) == sorted(int(h["zarrstac-origin-offset"]) for _, _, h in dlq)
    assert all(r["dead_lettered"] for r in records), records


class FetchFromInsideBatchServedNothing(Exception):
    """The broker answered a fetch starting inside a multi-record batch with nothing."""


@pytest.mark.xfail(raises=FetchFromInsideBatchServedNothing, strict=True,
                   reason="tansu 0.6 serves nothing to a fetch starting inside a multi-record batch "
                          "(deploy/README.md, broker notes)")
def test_broker_serves_a_fetch_that_starts_inside_a_batch():
    """Where a worker resumes after a rebalance is the offset the previous owner committed,
    often inside a batch of a batching producer (linger.ms > 0). Kafka serves the batch
    and the client skips to the offset; this checks the broker does, with a plain
    librdkafka consumer (no zarrstac code). Expected to fail on tansu 0.6, strictly: once
    the broker serves it, this passes, fails the suite, and `worker.single_record_batches`
    and the one-record batches of the tests' producers can go."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    topic = f"batched-{uuid.uuid4().hex[:8]}"
    create_topics([topic], 1)
    p = Producer({"bootstrap.servers": stack.brokers(), "linger.ms": 200, "batch.num.messages": 100})
    for i in range(10):
        p.produce(topic, key=str(i), value=str(i))
    assert p.flush(30) == 0

    def read_from(offset):
        c = Consumer({"bootstrap.servers": stack.brokers(), "group.id": f"reader-{uuid.uuid4()}",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, offset)])
        out, deadline = [], time.monotonic() + 15
        try:
            while len(out) < 10 - offset and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    out.append(int(m.value()))
        finally:
            c.close()
        return out

    # From the batch's first record everything comes: the records are there.
    assert read_from(0) == list(range(10))
    resumed = read_from(5)
    if resumed == []:
        raise FetchFromInsideBatchServedNothing()
    assert resumed == list(range(5, 10))
