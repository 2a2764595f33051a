"""Items with many files in pgstac: their files as asset documents in zarrstac's own table,
served by `zarrstac serve` (the asset-list and asset-search API) beside stac-fastapi-pgstac.

Against the real stack (deploy/stack.sh): PostgreSQL + PostGIS + pgstac, stac-fastapi-pgstac
and the asset API on the same database. The 13-file CMIP5 series is ingested with
`stac.max_item_assets = 4`, so its dataset item keeps only its combined store inline.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import netCDF4
import pystac_client
import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

import stack
from conftest import FIXTURES, REPO

SERIES = sorted((FIXTURES / "shared" / "cmip5-netcdf3-series").glob("*.nc"))
SPEC = FIXTURES / "specs" / "asset-api"
MAX_ASSETS = {"ZARRSTAC_STAC__MAX_ITEM_ASSETS": "4"}


def assets_url():
    return stack.env("ZARRSTAC_TEST_ASSETS")


def client():
    return httpx.Client(base_url=assets_url(), timeout=30)


def run(zarrstac, *args, cwd, env_extra=None):
    env = dict(os.environ, ZARRSTAC_LOG="warn", ZARRSTAC_OUTPUT__FAILED=str(cwd / "failed.jsonl"),
               **MAX_ASSETS, **(env_extra or {}))
    return subprocess.run([zarrstac.binary, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)


def ingest(zarrstac, cwd, *sources):
    r = run(zarrstac, "ingest", *sources, "--catalog", stack.pgstac_url(), "--refs-root", cwd / "refs", cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def clear():
    stack.clear_catalog()
    with stack.db() as conn:
        conn.execute("DELETE FROM zarrstac.assets")


def asset_rows():
    """{(collection, item, id): (digest, xmin)}: xmin changes whenever a row is written."""
    with stack.db() as conn:
        rows = conn.execute("SELECT collection, item, id, digest, xmin::text FROM zarrstac.assets").fetchall()
    return {(c, i, a): (d, x) for c, i, a, d, x in rows}


def dataset_items():
    with stack.db() as conn:
        return conn.execute("SELECT collection, id, content FROM pgstac.items").fetchall()


def copy_series(folder):
    folder.mkdir(parents=True)
    for f in SERIES:
        shutil.copy(f, folder / f.name)
    return folder


@pytest.fixture(scope="module")
def series(zarrstac, tmp_path_factory):
    """The series ingested once: (collection, item id, the item as pgstac holds it)."""
    clear()
    cwd = tmp_path_factory.mktemp("assets")
    ingest(zarrstac, cwd, *SERIES)
    items = dataset_items()
    assert len(items) == 1, [i[1] for i in items]
    yield items[0]
    clear()


def walk(c, first_url, params=None):
    """Every page from the first, following `next` links: (pages, documents)."""
    pages, docs = [], []
    r = c.get(first_url, params=params)
    while True:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/geo+json"
        page = r.json()
        pages.append(page)
        docs += page["features"]
        nxt = [l for l in page["links"] if l["rel"] == "next"]
        if not nxt:
            return pages, docs
        r = c.get(nxt[0]["href"])


def test_item_keeps_summary_assets_and_links_its_asset_list(series):
    collection, item_id, item = series
    files = [a for a in item["assets"].values() if a["href"].endswith(".nc")]
    assert files == [], "the files' assets are asset documents, not inline"
    assert "zarr" in item["assets"]
    links = [l for l in item["links"] if l["rel"] == "asset"]
    assert [l["href"] for l in links] == [f"{assets_url()}/collections/{collection}/items/{item_id}/assets"]
    assert len(json.dumps(item)) < 50_000


def test_pystac_client_reads_the_item_through_the_stac_api(series):
    collection, item_id, _ = series
    api = pystac_client.Client.open(stack.api_url())
    found = list(api.search(collections=[collection], max_items=10).items())
    assert [i.id for i in found] == [item_id]
    asset_links = [l.href for l in found[0].links if l.rel == "asset"]
    assert asset_links == [f"{assets_url()}/collections/{collection}/items/{item_id}/assets"]


def test_asset_list_pages_every_file_exactly_once(series):
    collection, item_id, item = series
    with client() as c:
        url = f"/collections/{collection}/items/{item_id}/assets"
        pages, docs = walk(c, url, {"limit": 5})
        assert [p["numberReturned"] for p in pages] == [5, 5, 3]
        assert {p["numberMatched"] for p in pages} == {13}
        assert sorted(d["href"] for d in docs) == sorted(Path(f).resolve().as_uri() for f in SERIES)
        starts = [d["properties"]["start_datetime"] for d in docs]
        assert starts == sorted(starts), "documents come in time order"
        # Back from the last page by `prev`: the same pages in reverse.
        back = pages[-1]
        seen = []
        while prev := [l for l in back["links"] if l["rel"] == "prev"]:
            back = c.get(prev[0]["href"]).json()
            seen.append([d["id"] for d in back["features"]])
        assert seen == [[d["id"] for d in p["features"]] for p in reversed(pages[:-1])]
        for d in docs:
            rels = {l["rel"]: l["href"] for l in d["links"]}
            assert rels["item"] == f"{stack.api_url()}/collections/{collection}/items/{item_id}"
            assert c.get(rels["self"]).json()["href"] == d["href"]
            assert d["item"] == item_id and d["collection"] == collection


def overlapping(docs, start, end):
    """The documents whose span [start_datetime, end_datetime) meets [start, end]."""
    return sorted(d["id"] for d in docs
                  if d["properties"]["start_datetime"] <= end and d["properties"]["end_datetime"] > start)


def test_datetime_filters_return_exactly_the_window(series):
    collection, item_id, _ = series
    with client() as c:
        url = f"/collections/{collection}/items/{item_id}/assets"
        _, docs = walk(c, url, {"limit": 100})
        for start, end in [("2050-01-01T00:00:00Z", "2050-12-31T23:59:59Z"),
                           ("2100-01-01T00:00:00Z", "2150-01-01T00:00:00Z"),
                           ("1900-01-01T00:00:00Z", "1901-01-01T00:00:00Z")]:
            want = overlapping(docs, start, end)
            _, got = walk(c, url, {"datetime": f"{start}/{end}", "limit": 2})
            assert sorted(d["id"] for d in got) == want, (start, end)
        assert len(overlapping(docs, "2050-01-01T00:00:00Z", "2050-12-31T23:59:59Z")) == 1
        # Open ends and instants.
        first_end = docs[0]["properties"]["end_datetime"]
        _, got = walk(c, url, {"datetime": f"../{first_end}"})
        assert [d["id"] for d in got] == overlapping(docs, "0001-01-01T00:00:00Z", first_end)
        _, got = walk(c, url, {"datetime": "2060-06-01T00:00:00Z"})
        assert [d["id"] for d in got] == overlapping(docs, "2060-06-01T00:00:00Z", "2060-06-01T00:00:00Z")


def test_asset_search_across_items(series):
    collection, item_id, _ = series
    with client() as c:
        _, everything = walk(c, "/asset/search", {"collections": collection, "limit": 4})
        assert len(everything) == 13
        window = {"collections": [collection], "datetime": "2100-01-01T00:00:00Z/2150-01-01T00:00:00Z", "limit": 3}
        r = c.post("/asset/search", json=window)
        assert r.status_code == 200, r.text
        page = r.json()
        got = [d["id"] for d in page["features"]]
        while nxt := [l for l in page["links"] if l["rel"] == "next"]:
            assert nxt[0]["method"] == "POST"
            page = c.post(nxt[0]["href"], json=nxt[0]["body"]).json()
            got += [d["id"] for d in page["features"]]
        assert sorted(got) == overlapping(everything, "2100-01-01T00:00:00Z", "2150-01-01T00:00:00Z")
        one = everything[3]["id"]
        assert [d["id"] for d in c.get("/asset/search", params={"ids": one}).json()["features"]] == [one]
        assert c.get("/asset/search", params={"items": "no-such-item"}).json()["numberMatched"] == 0
        bbox = everything[0]["bbox"]
        inside = ",".join(str(x) for x in bbox)
        assert c.get("/asset/search", params={"bbox": inside, "collections": collection}).json()["numberMatched"] == 13
        # The series' grid reaches 35N: a point north of it is not met; roles select.
        north = {"type": "Point", "coordinates": [10.0, 60.0]}
        assert c.post("/asset/search", json={"intersects": north, "collections": [collection]}).json()["numberMatched"] == 0
        assert c.get("/asset/search", params={"bbox": "0,50,10,60", "collections": collection}).json()["numberMatched"] == 0
        assert c.get("/asset/search", params={"roles": "thumbnail", "collections": collection}).json()["numberMatched"] == 0
        assert c.get("/asset/search", params={"roles": "data", "collections": collection}).json()["numberMatched"] == 13
        point = {"type": "Point", "coordinates": [10.0, 0.0]}
        r = c.post("/asset/search", json={"intersects": point, "collections": [collection]})
        assert r.status_code == 200 and r.json()["numberMatched"] == 13, r.text


def test_bad_parameters_and_unknown_things(series):
    collection, item_id, _ = series
    with client() as c:
        url = f"/collections/{collection}/items/{item_id}/assets"
        for params, name in [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
                             ({"datetime": "yesterday"}, "datetime"), ({"bbox": "1,2,3"}, "bbox"),
                             ({"bbox": "0,50,1,40"}, "bbox"), ({"token": "garbage"}, "token")]:
            r = c.get(url, params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["description"].startswith(f"{name}:"), r.text
        bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
        r = c.post("/asset/search", json={"intersects": bowtie})
        assert r.status_code == 400 and r.json()["description"].startswith("intersects:"), r.text
        r = c.post("/asset/search", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["description"].startswith("body:")
        assert c.get(f"/collections/{collection}/items/no-such-item/assets").status_code == 404
        assert c.get(f"{url}/no-such-file.nc").status_code == 404
        first = c.get(url, params={"limit": 1}).json()["features"][0]
        r = c.get(f"{url}/{first['id']}")
        assert r.status_code == 200 and r.json()["href"] == first["href"]
        # Read-only.
        assert c.delete(f"{url}/{first['id']}").status_code == 405


def test_landing_page_conformance_and_openapi(series):
    with client() as c:
        landing = c.get("/").json()
        rels = {l["rel"]: l["href"] for l in landing["links"]}
        assert rels["asset-search"] == f"{assets_url()}/asset/search"
        assert rels["service-desc"] == f"{assets_url()}/api"
        assert "https://api.stacspec.org/v1.0.0-beta.5/asset-list" in landing["conformsTo"]
        assert c.get("/conformance").json()["conformsTo"] == landing["conformsTo"]
        api = c.get("/api")
        assert api.headers["content-type"].startswith("application/vnd.oai.openapi+json")
        doc = api.json()
        assert set(doc["paths"]) == {"/", "/conformance", "/api", "/asset/search",
                                     "/collections/{collection}/items/{item}/assets",
                                     "/collections/{collection}/items/{item}/assets/{asset}"}


def asset_validator():
    """The draft's asset schema, with its quoted GeoJSON reference read as what it means."""
    text = (SPEC / "asset-spec" / "asset.json").read_text()
    quoted = '"\\"https://geojson.org/schema/Feature.json\\""'
    assert quoted in text, "the draft's quoted reference is where the README says"
    schema = json.loads(text.replace(quoted, '"https://geojson.org/schema/Feature.json"'))
    geojson = REPO / "fixtures" / "stac-schemas" / "geojson"
    resources = []
    for name in ("Feature.json", "Geometry.json"):
        doc = json.loads((geojson / name).read_text())
        resources.append((f"https://geojson.org/schema/{name}", Resource.from_contents(doc, default_specification=DRAFT7)))
    return Draft7Validator(schema, registry=Registry().with_resources(resources))


def test_asset_documents_validate_against_the_draft_schema(series):
    collection, item_id, _ = series
    validator = asset_validator()
    with client() as c:
        _, docs = walk(c, f"/collections/{collection}/items/{item_id}/assets", {"limit": 100})
    assert len(docs) == 13
    for d in docs:
        errors = [e.message for e in validator.iter_errors(d)]
        assert errors == [], (d["id"], errors[:3])
    # The validator is not blind.
    broken = dict(docs[0], href="")
    assert list(validator.iter_errors(broken))


def test_reingest_changes_nothing_and_a_replaced_file_replaces_its_document(zarrstac, tmp_path):
    clear()
    folder = copy_series(tmp_path / "src")
    ingest(zarrstac, tmp_path, folder)
    before = asset_rows()
    assert len(before) == 13
    r = ingest(zarrstac, tmp_path, folder)
    assert asset_rows() == before, "re-ingesting the same files wrote asset rows"
    # One file replaced at its source: a new tracking id.
    victim = sorted(folder.glob("*.nc"))[5]
    with netCDF4.Dataset(victim, "a") as ds:
        ds.setncattr("tracking_id", "replaced-0000-1111-2222")
    ingest(zarrstac, tmp_path, folder)
    after = asset_rows()
    assert after.keys() == before.keys()
    changed = [k for k in after if after[k] != before[k]]
    assert [k[2] for k in changed] == [victim.stem], changed
    (collection, item_id, _), = changed
    with client() as c:
        doc = c.get(f"/collections/{collection}/items/{item_id}/assets/{victim.stem}").json()
    assert doc["properties"]["file:size"] == victim.stat().st_size
    clear()


def test_a_superseded_version_takes_its_documents_with_it(zarrstac, tmp_path):
    """The dataset's version (here the newest creation_date: the files sit in no
    vYYYYMMDD folder) moves when a file is republished; the item of the old version goes,
    and its documents with it, in the same transaction."""
    clear()
    folder = copy_series(tmp_path / "src")
    ingest(zarrstac, tmp_path, folder)
    (collection, old_id, _), = dataset_items()
    assert {k[1] for k in asset_rows()} == {old_id}
    republished = sorted(folder.glob("*.nc"))[0]
    with netCDF4.Dataset(republished, "a") as ds:
        ds.setncattr("creation_date", "2031-06-01T00:00:00Z")
    ingest(zarrstac, tmp_path, folder)
    ids = [i[1] for i in dataset_items()]
    assert len(ids) == 1 and ids[0].endswith(".v20310601") and ids != [old_id], ids
    rows = asset_rows()
    assert {k[1] for k in rows} == set(ids), "the old version's documents stayed"
    assert len(rows) == 13
    with client() as c:
        assert c.get(f"/collections/{collection}/items/{old_id}/assets").status_code == 404
        assert c.get(f"/collections/{collection}/items/{ids[0]}/assets").json()["numberMatched"] == 13
    clear()


@pytest.mark.parametrize("paths", ["generated", "of the series"])
def test_schemathesis_finds_no_server_error_and_no_violation_of_the_document(series, tmp_path, paths):
    """schemathesis (from PyPI) generates requests from the served OpenAPI document, valid
    and invalid, and checks every answer against it: once with generated path values
    (unknown items: 404s), once with the path naming the series' item, so that the
    filters reach the database."""
    collection, item_id, _ = series
    cli = Path(sys.executable).parent / "schemathesis"
    config = tmp_path / "schemathesis.toml"
    config.write_text("" if paths == "generated" else
                      f'[parameters]\n"path.collection" = "{collection}"\n"path.item" = "{item_id}"\n')
    r = subprocess.run([str(cli), "--config-file", str(config), "run", f"{assets_url()}/api",
                        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                                    "response_schema_conformance,response_headers_conformance",
                        "--max-examples", "40", "--seed", "1", "--no-color", "--generation-database", "none"],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path, stdin=subprocess.DEVNULL)
    tail = r.stdout[-6000:]
    assert r.returncode == 0, tail + r.stderr[-2000:]
    assert "7 selected / 7 total" in r.stdout and "passed" in tail, tail
