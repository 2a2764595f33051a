"""The real catalog stack and broker the tests run against, started by deploy/stack.sh
(./scripts/test.sh brings it up and down). URLs come from the environment it sets."""
import os
import subprocess

import httpx
import psycopg
import pytest

from conftest import REPO

STACK = REPO / "deploy" / "stack.sh"


def env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with ./scripts/test.sh, which starts the stack")
    return value


def api_url():
    return env("ZARRSTAC_TEST_API")


def pgstac_url():
    return env("ZARRSTAC_TEST_PGSTAC")


def brokers():
    return env("ZARRSTAC_TEST_BROKERS")


def stack(*args):
    """Runs deploy/stack.sh (start/stop a component)."""
    subprocess.run([str(STACK), *args], check=True, timeout=180, stdin=subprocess.DEVNULL)


def db():
    return psycopg.connect(pgstac_url(), autocommit=True)


def clear_catalog():
    """Removes every collection (and so every item) from pgstac."""
    with db() as conn:
        conn.execute("DELETE FROM pgstac.collections")


def item_count(collection=None):
    with db() as conn:
        if collection:
            return conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s",
                                (collection,)).fetchone()[0]
        return conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0]


def item_ids():
    """(collection, id) of every stored item, with repeats if any."""
    with db() as conn:
        return [tuple(r) for r in conn.execute("SELECT collection, id FROM pgstac.items")]


def api():
    return httpx.Client(base_url=api_url(), timeout=30)


class S3Server:
    """s3s-fs serving ROOT/BUCKET/KEY as object KEY of BUCKET, on a free loopback port."""

    ACCESS_KEY = "zarrstac-test-key"
    SECRET_KEY = "zarrstac-secret-key"

    def __init__(self, root):
        import shutil
        import socket
        import time
        binary = shutil.which("s3s-fs")
        if binary is None:
            pytest.fail("s3s-fs is not on PATH (cargo install s3s-fs --locked --version '~0.14' --features binary)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root = root
        self.log = open(root.parent / f"s3s-fs-{self.port}.log", "w+")
        self.proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", self.ACCESS_KEY,
             "--secret-key", self.SECRET_KEY, str(root)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                pytest.fail(f"s3s-fs exited with {self.proc.returncode}:\n{self.log.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"s3s-fs did not listen on 127.0.0.1:{self.port}")
                time.sleep(0.1)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        return {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
                "AWS_REGION": "us-east-1", "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
