"""The STAC API and pgstac sinks against the real stack: PostgreSQL + PostGIS + pgstac
behind stac-fastapi-pgstac, started by deploy/stack.sh.

For each sink (`--catalog http://...` and `--catalog postgresql://...`):
* every fixture ingests; every item is then retrievable by id and found by /search with a
  bbox and a datetime interval that contain it; collection extents cover the items;
* ingesting again keeps the item count and moves `updated`; a changed input replaces its
  item; sea ice on a curvilinear grid across the antimeridian is found by its region;
* a batch holding one invalid item lands the others and names the invalid one with the
  server's reason;
and, for the embedded pipeline, an API stopped mid-run: retries, then the dead-letter file;
after the restart, `replay` lands everything, nothing lost or duplicated.
"""
import copy
import json
import os
import re
import subprocess
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import stack
from conftest import FIXTURES

FOLDERS = [FIXTURES / "shared", FIXTURES / "generated", FIXTURES / "eopf"]
SINKS = ["api", "pgstac"]
ERROR_LINE = re.compile(r"^error: (?P<source>.+?): (?P<reason>.+)$", re.M)
TIMEOUT = 300
# A CF climatology's nominal year 0 cannot be stored by PostgreSQL (see docs/stac.md).
YEAR_ZERO = "coads_climatology"
# Single-file items of several formats, for the shorter runs.
SOME_FILES = sorted(p for d in ("netcdf3", "netcdf4", "hdf5-edge") for p in (FIXTURES / "shared" / d).iterdir())


def catalog_url(sink):
    return stack.api_url() if sink == "api" else stack.pgstac_url()


def run(zarrstac, *args, cwd, env_extra=None, timeout=TIMEOUT):
    env = dict(os.environ, ZARRSTAC_LOG="warn", ZARRSTAC_OUTPUT__FAILED=str(cwd / "failed.jsonl"),
               **(env_extra or {}))
    return subprocess.run([zarrstac.binary, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def ingest(zarrstac, sink, cwd, *sources, env_extra=None):
    return run(zarrstac, "ingest", *(sources or FOLDERS), "--catalog", catalog_url(sink),
               "--refs-root", cwd / "refs", cwd=cwd, env_extra=env_extra)


@pytest.fixture(scope="module")
def expected_items(zarrstac, tmp_path_factory):
    """The items of every fixture, as the static catalog holds them."""
    cwd = tmp_path_factory.mktemp("static")
    r = run(zarrstac, "ingest", *FOLDERS, "--catalog", cwd / "catalog", "--refs-root",
            cwd / "refs", cwd=cwd)
    assert r.returncode == 0, r.stderr
    items = {}
    for p in (cwd / "catalog").rglob("*.json"):
        doc = json.loads(p.read_text())
        if doc.get("type") == "Feature":
            items[(doc["collection"], doc["id"])] = doc
    assert len(items) > 40
    return items


@pytest.fixture
def clean():
    stack.clear_catalog()
    yield
    stack.clear_catalog()


def when(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def time_range(item):
    p = item["properties"]
    start = p.get("start_datetime") or p["datetime"]
    end = p.get("end_datetime") or p["datetime"]
    return when(start), when(end)


def world_if_missing(item):
    return item.get("bbox") or [-180.0, -90.0, 180.0, 90.0]


def longitudes_cover(outer, inner):
    """Whether the west..east range `outer` holds `inner`; either may cross the
    antimeridian (west > east)."""
    def arcs(w, e):
        return [(w, 180.0), (-180.0, e)] if w > e else [(w, e)]
    return all(any(ow <= iw + 1e-6 and oe >= ie - 1e-6 for ow, oe in arcs(*outer))
               for iw, ie in arcs(*inner))


def assert_lands_everywhere(expected):
    """Every expected item: by id, by /search with a containing bbox and datetime, and
    inside its collection's extent."""
    with stack.api() as api:
        collections = {}
        for (collection, item_id), item in expected.items():
            got = api.get(f"/collections/{collection}/items/{item_id}")
            assert got.status_code == 200, (item_id, got.text)
            assert got.json()["id"] == item_id
            w, s, e, n = world_if_missing(item)[:4]
            start, end = time_range(item)
            window = f"{(start - timedelta(seconds=1)).isoformat()}/{(end + timedelta(seconds=1)).isoformat()}"
            # A box across the antimeridian (west > east) is searched on either side.
            halves = [(w, 180.0), (-180.0, e)] if w > e else [(w, e)]
            for hw, he in halves:
                search_bbox = [max(hw - 0.01, -180), max(s - 0.01, -90), min(he + 0.01, 180), min(n + 0.01, 90)]
                body = {"collections": [collection], "bbox": search_bbox,
                        "datetime": window.replace("+00:00", "Z"), "limit": 1000}
                found = api.post("/search", json=body)
                assert found.status_code == 200, (item_id, found.text)
                assert item_id in {f["id"] for f in found.json()["features"]}, (item_id, body)
            if collection not in collections:
                collections[collection] = api.get(f"/collections/{collection}").json()
            extent = collections[collection]["extent"]
            cw, cs, ce, cn = extent["spatial"]["bbox"][0][:4]
            assert cs <= s + 1e-6 and cn >= n - 1e-6, (collection, extent, item_id)
            assert longitudes_cover((cw, ce), (w, e)), (collection, extent, item_id)
            c_start, c_end = (when(t) for t in extent["temporal"]["interval"][0])
            assert c_start <= start and c_end >= end, (collection, extent, item_id)


@pytest.mark.parametrize("sink", SINKS)
def test_every_fixture_lands_and_is_found(zarrstac, sink, expected_items, tmp_path, clean):
    r = ingest(zarrstac, sink, tmp_path)
    errors = ERROR_LINE.findall(r.stderr)
    # The one refusal: the climatology dated in year 0, with the reason.
    assert r.returncode == 1, r.stderr
    assert len(errors) == 1 and YEAR_ZERO in errors[0][0] and "year 0" in errors[0][1], r.stderr
    expected = {k: v for k, v in expected_items.items() if k[1] != YEAR_ZERO}
    stored = stack.item_ids()
    assert sorted(stored) == sorted(expected), "items in pgstac differ from the static catalog's"
    assert_lands_everywhere(expected)


@pytest.mark.parametrize("sink", SINKS)
def test_ingesting_again_replaces_in_place(zarrstac, sink, tmp_path, clean):
    sources = SOME_FILES
    first = ingest(zarrstac, sink, tmp_path, *sources)
    assert first.returncode in (0, 1), first.stderr
    with stack.db() as conn:
        before = dict(conn.execute(
            "SELECT id, content->'properties'->>'updated' FROM pgstac.items").fetchall())
    assert len(before) >= 4
    second = ingest(zarrstac, sink, tmp_path, *sources)
    assert second.returncode == first.returncode, second.stderr
    with stack.db() as conn:
        after = dict(conn.execute(
            "SELECT id, content->'properties'->>'updated' FROM pgstac.items").fetchall())
    assert after.keys() == before.keys()
    assert stack.item_count() == len(before)
    for item_id, updated in after.items():
        assert when(updated) > when(before[item_id]), item_id


def write_series(path, start_day, title):
    """A small CF file whose time axis and title are chosen by the caller."""
    import netCDF4
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = title
        ds.createDimension("time", 3)
        ds.createDimension("lat", 2)
        ds.createDimension("lon", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.standard_name, t.axis = "days since 2000-01-01", "standard", "time", "T"
        t[:] = np.arange(3) + start_day
        for name, values, units in (("lat", [10.0, 20.0], "degrees_north"),
                                    ("lon", [30.0, 40.0], "degrees_east")):
            v = ds.createVariable(name, "f4", (name,))
            v.units, v.standard_name = units, {"lat": "latitude", "lon": "longitude"}[name]
            v[:] = values
        x = ds.createVariable("tas", "f4", ("time", "lat", "lon"))
        x.units, x.standard_name = "K", "air_temperature"
        x[:] = np.full((3, 2, 2), 280.0, dtype="f4")


@pytest.mark.parametrize("sink", SINKS)
def test_changed_input_replaces_its_item(zarrstac, sink, tmp_path, clean):
    src = tmp_path / "series.nc"
    write_series(src, 0, "first version")
    assert ingest(zarrstac, sink, tmp_path, src).returncode == 0
    write_series(src, 400, "second version")
    r = ingest(zarrstac, sink, tmp_path, src)
    assert r.returncode == 0, r.stderr
    with stack.db() as conn:
        rows = conn.execute("SELECT content FROM pgstac.items WHERE id = 'series'").fetchall()
    assert len(rows) == 1
    props = rows[0][0]["properties"]
    assert props["start_datetime"].startswith("2001-02-04"), props
    assert props.get("title", "second version") == "second version"


def test_curvilinear_sea_ice_is_found_by_its_region(zarrstac, tmp_path, clean):
    """CMIP6 sea ice on curvilinear grids (2-D latitude/longitude, `i`/`j` index axes):
    `ingest` into pgstac gives each item the region its grid covers, so /search finds the
    Bering Sea grid on either side of the antimeridian and nowhere else, and the global
    grid everywhere."""
    files = sorted((FIXTURES / "generated").glob("siconc_SImon_curvilinear_*.nc"))
    assert len(files) == 2
    r = ingest(zarrstac, "pgstac", tmp_path, *files)
    assert r.returncode == 0, r.stderr
    ids = {i for c, i in stack.item_ids() if c == "CMIP6"}
    bering = next(i for i in ids if ".CESM2-FV2." in i)
    world = next(i for i in ids if ".CESM2." in i)

    def found(bbox):
        with stack.api() as api:
            got = api.post("/search", json={"collections": ["CMIP6"], "bbox": bbox, "limit": 100})
        assert got.status_code == 200, got.text
        return {f["id"] for f in got.json()["features"]} & {bering, world}

    assert found([170, 58, 175, 62]) == {bering, world}  # east of 180
    assert found([-170, 58, -165, 62]) == {bering, world}  # west of 180
    assert found([0, 40, 20, 60]) == {world}  # Europe
    assert found([150, 55, 160, 60]) == {world}  # just west of the grid's edge
    assert found([170, 10, 175, 20]) == {world}  # south of it
    with stack.api() as api:
        item = api.get(f"/collections/CMIP6/items/{bering}").json()
    assert item["geometry"]["type"] == "MultiPolygon"
    assert item["bbox"][0] > item["bbox"][2]
    assert item["properties"]["cube:dimensions"]["i"]["type"] == "index"


@pytest.mark.parametrize("sink", SINKS)
def test_one_invalid_item_does_not_fail_its_batch(zarrstac, sink, expected_items, tmp_path, clean):
    good = [v for k, v in sorted(expected_items.items()) if k[1] != YEAR_ZERO][:5]
    bad = copy.deepcopy(good[0])
    bad["id"] = "no-time-at-all"
    bad["properties"]["datetime"] = None
    bad["properties"].pop("start_datetime", None)
    bad["properties"].pop("end_datetime", None)
    batch = tmp_path / "batch.ndjson"
    batch.write_text("".join(json.dumps(i) + "\n" for i in good[:3] + [bad] + good[3:]))
    r = run(zarrstac, "publish", batch, "--no-validate", "--batch-size", "10",
            "--catalog", catalog_url(sink), cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    errors = ERROR_LINE.findall(r.stderr)
    assert [e[0] for e in errors] == ["no-time-at-all"], r.stderr
    # the server's own words about the missing time
    assert re.search(r"datetime", errors[0][1], re.I), errors
    assert "summary: 5 published, 1 refused" in r.stderr
    assert sorted(stack.item_ids()) == sorted((i["collection"], i["id"]) for i in good)


def test_api_outage_then_replay_lands_everything(zarrstac, tmp_path, clean):
    sources = SOME_FILES
    first = ingest(zarrstac, "api", tmp_path, sources[0])
    assert first.returncode == 0, first.stderr
    stack.stack("stop", "api")
    try:
        retry = {"ZARRSTAC_CATALOG__RETRY__ATTEMPTS": "3", "ZARRSTAC_CATALOG__RETRY__MAX_BACKOFF_MS": "300"}
        down = ingest(zarrstac, "api", tmp_path, *sources[1:], env_extra=retry)
    finally:
        stack.stack("start", "api")
    assert down.returncode == 1
    assert "after 3 attempts" in down.stderr, down.stderr
    records = [json.loads(l) for l in (tmp_path / "failed.jsonl").read_text().splitlines()]
    # The outage is transient for every file; the year-0 climatology is refused for good by
    # the sink itself (PostgreSQL cannot store year 0), outage or not.
    outage = [r for r in records if YEAR_ZERO not in r["source"]]
    assert outage and all(r["error_class"] == "transient" for r in outage), records
    replayed = run(zarrstac, "replay", "--error-class", "transient", "--catalog", stack.api_url(),
                   "--refs-root", tmp_path / "refs", cwd=tmp_path)
    left = (tmp_path / "failed.jsonl").read_text().strip()
    expected_left = [l for l in left.splitlines() if YEAR_ZERO in l]
    assert left.splitlines() == expected_left, left
    ids = stack.item_ids()
    assert len(ids) == len(set(ids)), "an item is stored twice"
    landed = {i for _, i in ids}
    wanted = {p.name.split(".")[0] for p in sources} - {YEAR_ZERO}
    assert wanted <= landed, (wanted - landed, replayed.stderr)
