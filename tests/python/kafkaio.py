"""Kafka and object-store event helpers shared by the worker tests and the fault run."""
import time
import uuid

from confluent_kafka import Consumer, Producer

import stack

BUCKET = "archive"


def produce(topic, messages):
    # One record per batch: tansu 0.6 serves nothing when a consumer (after a rebalance)
    # fetches from an offset inside a multi-record batch.
    p = Producer({"bootstrap.servers": stack.brokers(), "linger.ms": 0, "batch.num.messages": 1})
    n = 0
    for key, value in messages:
        p.produce(topic, key=key, value=value)
        n += 1
        p.poll(0)
    # One record per request takes its time: about 300 records a second on tansu.
    assert p.flush(30 + n / 50) == 0


def create_topics(names, partitions):
    """The broker creates no topic on first use: make them before producing."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": stack.brokers()})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(timeout=30)


def read_topic(topic, idle=4.0, timeout=60):
    """Every record of a topic: (key, value, headers)."""
    c = Consumer({"bootstrap.servers": stack.brokers(), "group.id": f"reader-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out, last, start = [], None, time.monotonic()
    try:
        # Joining the group takes a moment: idle time counts from the first assignment.
        while (last is None or time.monotonic() - last < idle) and time.monotonic() - start < timeout:
            m = c.poll(0.5)
            if last is None and c.assignment():
                last = time.monotonic()
            if m is None or m.error():
                continue
            last = time.monotonic()
            out.append((m.key().decode() if m.key() else None, m.value(),
                        {k: v.decode() for k, v in (m.headers() or [])}))
    finally:
        c.close()
    return out


def s3_event(key, shape):
    """An object-created event for KEY in one of the shapes the worker accepts."""
    encoded = key.replace(" ", "+")
    if shape == 0:
        return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": BUCKET}, "object": {"key": encoded, "size": 1}}}]}
    if shape == 1:  # MinIO
        return {"EventName": "s3:ObjectCreated:Put", "Key": f"{BUCKET}/{key}",
                "Records": [{"eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
                             "s3": {"bucket": {"name": BUCKET}, "object": {"key": encoded}}}]}
    if shape == 2:  # EventBridge
        return {"version": "0", "detail-type": "Object Created", "source": "aws.s3",
                "detail": {"bucket": {"name": BUCKET}, "object": {"key": key}}}
    return {"specversion": "1.0", "type": "com.amazonaws.s3.ObjectCreated", "source": "zarrstac-test",
            "id": key, "data": {"url": f"s3://{BUCKET}/{key}"}}
