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
