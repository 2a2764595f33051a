"""Zarr v3 stores as input: `zarrstac item` and `ingest` on stores written by zarr-python 3.

The stores come from fixtures/generate_zarr3.py, run here into a scratch folder: the
shared Sentinel-2 L2A product converted to Zarr v3 (every attribute kept, consolidated),
a GeoZarr-like multiscale store without stac_discovery, and a CF-style grid without
consolidated metadata. What is pinned:

* the v3 product's item means what the v2 product's item means (same id, collection,
  assets, bands, projection, gsd, common names), with the v3 media type and
  `zarr:zarr_format: 3`;
* the GeoZarr store's multiscales group is one asset of type `...; profile=multiscales`
  described by its base level, and its footprint is its UTM `spatial:bbox` reprojected
  to WGS 84, checked against PROJ (pyproj);
* a store without consolidated metadata is walked, and one stating no time takes its
  root document's modification time;
* `ingest` of a folder with v2 and v3 stores puts each in its collection, valid;
* the same items from the stores on an S3 server (s3s-fs) as from local disk.
"""
import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pyproj import Transformer

import stacschema
from conftest import FIXTURES
from test_s3 import BUCKET, s3_env, serve
from test_stac import SUMMARY, Workspace, item_from_cli, run

GENERATOR = FIXTURES / "generate_zarr3.py"
S2_V2 = FIXTURES / "eopf" / "S02MSIL2A_20250109T100401_0000_A122_T461.zarr"
S1_V2 = next((FIXTURES / "eopf").glob("S01*.zarr"))
S2_V3 = "S02MSIL2A_20250109T100401_0000_A122_T461_v3.zarr"
GEOZARR = "geozarr_s2_multiscales.zarr"
CF_GRID = "cf_grid_unconsolidated.zarr"
V3_MEDIA = "application/vnd.zarr; version=3"
# What the generator puts in the GeoZarr store's spatial:bbox (UTM 32N).
GEOZARR_UTM_BBOX = [600000.0, 5090220.0, 709800.0, 5200020.0]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    out = tmp_path_factory.mktemp("zarr3")
    proc = subprocess.run([sys.executable, str(GENERATOR), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def zarr_format_of(item):
    return {a.get("zarr:zarr_format") for a in item["assets"].values()}


def test_eopf_v3_product_item_means_what_the_v2_item_means(zarrstac, stores):
    v2 = item_from_cli(zarrstac, S2_V2)
    v3 = item_from_cli(zarrstac, stores / S2_V3)
    assert not stacschema.problems(v3), stacschema.problems(v3)
    assert zarr_format_of(v3) == {3} and zarr_format_of(v2) == {2}
    assert {a["type"] for a in v3["assets"].values()} == {V3_MEDIA}
    store_link = next(link for link in v3["links"] if link["rel"] == "store")
    assert store_link["type"] == V3_MEDIA and store_link["href"].endswith(S2_V3)
    assert v3["assets"]["product"].get("zarr:consolidated") is True
    # Everything else is the same, once the store's own name and version are set aside.
    text = json.dumps(v2)
    for a, b in [(S2_V2.as_uri(), (stores / S2_V3).as_uri()), ("version=2", "version=3"),
                 ('"zarr:zarr_format": 2', '"zarr:zarr_format": 3')]:
        text = text.replace(a, b)
    expected = json.loads(text)
    assert v3["id"] == v2["id"] == "S2A_MSIL2A_20250109T100401_N0511_R122_T34UCE_20250109T122750"
    assert v3["collection"] == v2["collection"] == "eopf-s02msil2a"
    assert list(v3["assets"]) == list(expected["assets"])
    for key, asset in expected["assets"].items():
        got = v3["assets"][key]
        for band, want in zip(got.get("bands", []), asset.get("bands", [])):
            # A Zarr v3 array always has a fill value where the v2 one had null: a nodata
            # the v2 item cannot state.
            if "nodata" not in want:
                band.pop("nodata", None)
        assert got == asset, key
    assert {k: v for k, v in v3.items() if k != "assets"} == {k: v for k, v in expected.items() if k != "assets"}
    ten_m = v3["assets"]["measurements_reflectance_r10m"]
    assert ten_m["gsd"] == 10 and ten_m["proj:code"] == "EPSG:32634"
    assert [b.get("eo:common_name") for b in ten_m["bands"]] == ["blue", "green", "red", "nir"]


def test_geozarr_multiscales_store_without_stac_discovery(zarrstac, stores):
    item = item_from_cli(zarrstac, stores / GEOZARR)
    assert not stacschema.problems(item), stacschema.problems(item)
    assert item["id"] == "geozarr_s2_multiscales" and item["collection"] == "zarr"
    assert item["properties"]["datetime"] == "2025-06-01T10:20:31.024Z"
    assert item["properties"]["title"] == "Sentinel-2 L2A reflectance, GeoZarr multiscales"
    # One asset for the multiscale group; its levels get none of their own.
    assert sorted(item["assets"]) == ["measurements_reflectance", "product"]
    pyramid = item["assets"]["measurements_reflectance"]
    assert pyramid["type"] == f"{V3_MEDIA}; profile=multiscales", pyramid["type"]
    assert pyramid["href"] == (stores / GEOZARR / "measurements/reflectance").as_uri()
    assert [b["name"] for b in pyramid["bands"]] == ["b02", "b03", "b04", "b08"]
    assert pyramid["gsd"] == 10
    assert pyramid["proj:code"] == "EPSG:32632"
    assert pyramid["proj:shape"] == [10980, 10980]
    assert pyramid["proj:transform"] == [10.0, 0.0, 600000.0, 0.0, -10.0, 5200020.0]
    assert pyramid["roles"] == ["data"]
    assert {b["raster:scale"] for b in pyramid["bands"]} == {0.0001}
    # The footprint: the UTM box through PROJ, 17 points along each edge as zarrstac takes.
    to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    expected = to_wgs84.transform_bounds(*GEOZARR_UTM_BBOX, densify_pts=15)
    assert item["bbox"] == pytest.approx(expected, abs=1e-5), (item["bbox"], expected)
    ring = item["geometry"]["coordinates"][0]
    assert min(p[0] for p in ring) == item["bbox"][0] and max(p[1] for p in ring) == item["bbox"][3]


def test_store_without_consolidated_metadata_or_time(zarrstac, stores):
    store = stores / CF_GRID
    assert "consolidated_metadata" not in json.loads((store / "zarr.json").read_text())
    item = item_from_cli(zarrstac, store)
    assert not stacschema.problems(item), stacschema.problems(item)
    # No time attribute: the root document's modification time, to the second.
    mtime = datetime.fromtimestamp((store / "zarr.json").stat().st_mtime, timezone.utc)
    assert item["properties"]["datetime"] == mtime.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert item["bbox"] == [5.0, 45.0, 15.0, 55.0]
    assert "zarr:consolidated" not in item["assets"]["product"]
    data = item["assets"]["data"]
    # lat/lon are coordinates, not bands.
    assert [b["name"] for b in data["bands"]] == ["tas"]
    assert data["cf:parameter"] == [{"name": "air_temperature", "unit": "K"}]
    assert data["proj:code"] == "EPSG:4326" and "gsd" not in data
    assert item["assets"]["quality_flags"]["roles"] == ["quality"]
    assert item["assets"]["quality_flags"]["bands"][0]["nodata"] == 255


def test_broken_v3_arrays_are_left_out_with_the_reason_and_broken_stores_fail(zarrstac, stores, tmp_path):
    store = tmp_path / "partly.zarr"
    shutil.copytree(stores / CF_GRID, store)
    tas = store / "data" / "tas" / "zarr.json"
    doc = json.loads(tas.read_text())
    doc["data_type"] = "complex64"
    doc["fill_value"] = [0.0, 0.0]
    tas.write_text(json.dumps(doc))
    proc = run(zarrstac.binary, "item", store, "--log", "warn,zarrstac::report=info")
    assert proc.returncode == 0, proc.stderr[-3000:]
    item = json.loads(proc.stdout)
    assert "data" not in item["assets"], item["assets"].keys()
    assert "array 'data/tas' left out: data type 'complex64' (complex) is not supported" in proc.stderr, \
        proc.stderr[-2000:]

    (store / "quality" / "zarr.json").write_text("{not json")
    proc = run(zarrstac.binary, "item", store)
    assert proc.returncode != 0
    assert "quality/zarr.json is not valid JSON" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout == ""


def test_ingest_puts_v2_and_v3_stores_in_their_collections(zarrstac, stores, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copytree(S1_V2, folder / S1_V2.name)
    for name in (S2_V3, GEOZARR, CF_GRID):
        shutil.copytree(stores / name, folder / name)
    ws = Workspace(tmp_path / "ws")
    proc = ws.ingest(zarrstac.binary, [folder])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = SUMMARY.search(proc.stderr)
    assert summary and summary["ingested"] == "4" and summary["failed"] == "0", proc.stderr[-2000:]
    items = {}
    for path in ws.catalog.rglob("*.json"):
        doc = json.loads(path.read_text())
        assert not stacschema.problems(doc), (path, stacschema.problems(doc))
        if doc.get("type") == "Feature":
            items[doc["id"]] = (doc["collection"], zarr_format_of(doc))
    # S1 names itself "SAR Standard L1 Product": its id is the store's name.
    assert items == {
        S1_V2.stem: ("eopf-s01siwgrh", {2}),
        "S2A_MSIL2A_20250109T100401_N0511_R122_T34UCE_20250109T122750": ("eopf-s02msil2a", {3}),
        "geozarr_s2_multiscales": ("zarr", {3}),
        "cf_grid_unconsolidated": ("zarr", {3}),
    }, items


def test_stores_on_s3_give_the_items_of_local_stores(zarrstac, stores, tmp_path):
    root = tmp_path / "s3root"
    for name in (GEOZARR, CF_GRID):
        shutil.copytree(stores / name, root / BUCKET / "v3" / name)
    with serve(root) as endpoint:
        for name in (GEOZARR, CF_GRID):
            url = f"s3://{BUCKET}/v3/{name}"
            proc = run(zarrstac.binary, "item", url, env=s3_env(endpoint) | {"NO_COLOR": "1"})
            assert proc.returncode == 0, proc.stderr[-3000:]
            remote = json.loads(proc.stdout)
            local = item_from_cli(zarrstac, root / BUCKET / "v3" / name)
            text = json.dumps(local).replace((root / BUCKET / "v3" / name).as_uri(), url)
            expected = json.loads(text)
            # The unconsolidated store's time is its zarr.json's modification time, which
            # the server reports as the file's.
            assert remote == expected, name
