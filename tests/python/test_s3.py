"""`zarrstac refs` on remote sources: s3:// URLs against a real S3 server (s3s-fs) on
loopback, and http:// URLs against a loopback HTTP range server (tests/python/rangeserver.py).

The references written from S3 or HTTP must equal those written from the same file on local
disk, once the source URL (s3://BUCKET/KEY or http://HOST/KEY against file:///abs/path) is
swapped.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

import rangeserver
from conftest import FIXTURES, file_url

BUCKET = "zarrstac-test"
ACCESS_KEY = "zarrstac-access"
SECRET_KEY = "zarrstac-secret-key"
REPORT_LINE = re.compile(r"^(virtual|inlined|refused)\s")
# NetCDF-3 (CDF-1, CDF-2, CDF-5), NetCDF-4 (real CMIP6, nested groups) and HDF5 (all chunk indexes, filters)
S3_SOURCES = [
    "shared/cmip5-netcdf3-series/tas_Amon_HadGEM2-ES_rcp85_r1i1p1_229912-229912.nc",
    "shared/netcdf3/ref_nctest_64bit_offset.nc",
    "generated/cdf5.nc",
    "shared/cmip6/o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc",
    "generated/groups.nc",
    "generated/chunk_indexes.h5",
    "generated/filters.h5",
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(root):
    """An s3s-fs server on loopback serving ROOT/BUCKET/KEY as object KEY of bucket BUCKET;
    yields its endpoint URL and stops it on exit."""
    binary = shutil.which("s3s-fs")
    if binary is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("s3s-fs is not on PATH (cargo install s3s-fs --locked --version '~0.14' --features binary)")
        pytest.skip("s3s-fs is not on PATH (cargo install s3s-fs --locked --version '~0.14' --features binary)")
    port = _free_port()
    log = open(root.parent / f"s3s-fs-{root.name}.log", "w+")
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--access-key", ACCESS_KEY,
                             "--secret-key", SECRET_KEY, str(root)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"s3s-fs exited with {proc.returncode}:\n{log.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"s3s-fs did not listen on 127.0.0.1:{port} within 15 s")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3root")
    for rel in S3_SOURCES:
        dest = root / BUCKET / "fixtures" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / rel, dest)
    with serve(root) as endpoint:
        yield endpoint


def s3_env(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key, AWS_REGION="us-east-1",
               AWS_ENDPOINT=endpoint, AWS_ALLOW_HTTP="true")
    return env


def _first_difference(a, b, path="refs"):
    if type(a) is not type(b):
        return f"{path}: {a!r:.200} != {b!r:.200}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}[{k!r}] only in the {'local' if k in a else 's3'} references"
            d = _first_difference(a[k], b[k], f"{path}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {a!r:.200} != {b!r:.200}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r:.200} != {b!r:.200}"


def _same_as_local(zarrstac, rel, url, env, tmp_path):
    source = FIXTURES / rel
    local = zarrstac.refs(source, tmp_path / "local.json")
    assert local.returncode == 0, local.stderr
    remote = zarrstac.refs(url, tmp_path / "remote.json", env=env)
    assert remote.returncode == 0, remote.stderr
    assert "panicked" not in remote.stderr, remote.stderr

    local_text = (tmp_path / "local.json").read_text()
    remote_doc = json.loads((tmp_path / "remote.json").read_text())
    # swap the URL inside the JSON text, so that it is replaced wherever the tool wrote it
    expected = json.loads(local_text.replace(json.dumps(file_url(source))[1:-1], json.dumps(url)[1:-1]))
    assert url in (tmp_path / "remote.json").read_text() or not any(
        isinstance(v, list) for v in remote_doc["refs"].values()), "the remote references do not name the URL"
    diff = _first_difference(expected, remote_doc)
    assert diff is None, f"references from {url} differ from the local ones: {diff}"
    # the per-variable report (virtual / inlined / refused) is the same wherever the file lives
    report = lambda text: sorted(line for line in text.splitlines() if REPORT_LINE.match(line))
    assert report(local.stderr), f"no per-variable report on stderr:\n{local.stderr}"
    assert report(local.stderr) == report(remote.stderr)
    return remote


@pytest.mark.parametrize("rel", S3_SOURCES)
def test_s3_matches_local(zarrstac, s3_server, rel, tmp_path):
    _same_as_local(zarrstac, rel, f"s3://{BUCKET}/fixtures/{rel}", s3_env(s3_server), tmp_path)


@pytest.fixture(scope="module")
def http_server():
    with rangeserver.serve(FIXTURES) as server:
        yield server


CMIP6_FILES = sorted(f"shared/cmip6/{p.name}" for p in (FIXTURES / "shared" / "cmip6").glob("*.nc"))


@pytest.mark.parametrize("rel", S3_SOURCES + CMIP6_FILES)
def test_http_matches_local(zarrstac, http_server, rel, tmp_path):
    """Plain http:// is read (object_store refuses it unless told), with the same result."""
    http_server.reset()
    _same_as_local(zarrstac, rel, f"{http_server.url}/{rel}", dict(os.environ), tmp_path)
    assert http_server.requests, "the range server saw no request"
    assert all(method == "GET" and header and header.startswith("bytes=")
               for method, header in http_server.requests), http_server.requests


@pytest.mark.parametrize("rel", CMIP6_FILES)
def test_http_cmip6_file_is_read_in_one_request(zarrstac, http_server, rel, tmp_path):
    """The first ranged GET holds a whole shared CMIP6 file: no HEAD, no probe for a Zarr store."""
    http_server.reset()
    proc = zarrstac.refs(f"{http_server.url}/{rel}", tmp_path / "out.json", "--stats")
    assert proc.returncode == 0, proc.stderr
    assert len(http_server.requests) == 1, http_server.requests
    assert re.search(r"1 range requests in 1 round trips", proc.stderr), proc.stderr


def test_plain_http_can_be_forbidden(zarrstac, http_server, tmp_path):
    env = dict(os.environ, ZARRSTAC_ALLOW_HTTP="false")
    http_server.reset()
    proc = zarrstac.refs(f"{http_server.url}/{CMIP6_FILES[0]}", tmp_path / "out.json", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "plain http is forbidden by ZARRSTAC_ALLOW_HTTP=false" in proc.stderr, proc.stderr
    assert http_server.requests == [], "a forbidden URL must not be asked for"


def test_s3_all_referenced_matches_local(zarrstac, s3_server, tmp_path):
    """Every chunk as a byte-range reference: thousands of offsets read through ranged GETs."""
    rel = "generated/chunk_indexes.h5"
    source = FIXTURES / rel
    s3_url = f"s3://{BUCKET}/fixtures/{rel}"
    local = zarrstac.refs(source, tmp_path / "local.json", "--inline-threshold", "0")
    remote = zarrstac.refs(s3_url, tmp_path / "s3.json", "--inline-threshold", "0", env=s3_env(s3_server))
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    expected = (tmp_path / "local.json").read_text().replace(file_url(source), s3_url)
    diff = _first_difference(json.loads(expected), json.loads((tmp_path / "s3.json").read_text()))
    assert diff is None, diff


def test_s3_missing_object_is_an_error(zarrstac, s3_server, tmp_path):
    proc = zarrstac.refs(f"s3://{BUCKET}/fixtures/no/such/file.nc", tmp_path / "out.json", env=s3_env(s3_server))
    assert proc.returncode not in (0, 101) and proc.returncode > 0, proc.stderr
    assert any(line.startswith("error:") for line in proc.stderr.splitlines()), proc.stderr
    assert "panicked" not in proc.stderr


def test_s3_bad_credentials_are_an_error(zarrstac, s3_server, tmp_path):
    rel = S3_SOURCES[0]
    proc = zarrstac.refs(f"s3://{BUCKET}/fixtures/{rel}", tmp_path / "out.json",
                         env=s3_env(s3_server, secret_key="not-the-secret"), timeout=120)
    assert proc.returncode not in (0, 101) and proc.returncode > 0, proc.stderr
    assert any(line.startswith("error:") for line in proc.stderr.splitlines()), proc.stderr
