"""CMIP6 dataset items as ESGF publishes them: cmip6 v3.0.2 declared with alternate-assets
v1.2.0 and file v2.1.0 when the dataset's PID is known, from `ingest`, `combine --item` and
the worker, on the shared CMIP6 files and a generated multi-file dataset served by a real S3
server (s3s-fs). Without a PID (or with another collection) the item stays valid, the
extension is left out and the run says why.
"""
import json
import os
import subprocess
import uuid

import netCDF4
import numpy as np
import pytest

import stack
import stacschema
from conftest import FIXTURES
from test_stac import clean_env, run

CMIP6 = "https://stac-extensions.github.io/cmip6/v3.0.2/schema.json"
ALTERNATE = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
FILE = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
BUCKET = "esgf"

# (DRS directory, file) of the shared CMIP6 files, each a one-file dataset.
SHARED = [
    ("CMIP6/CMIP/NOAA-GFDL/GFDL-ESM4/historical/r1i1p1f1/Amon/o3/gr1/v20190726",
     "o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc"),
    ("CMIP6/CMIP/CCCma/CanESM5/historical/r1i1p1f1/day/prsn/gn/v20190429",
     "prsn_day_CanESM5_historical_r1i1p1f1_gn_19910101-20101231.nc"),
]
GENERATED_DIR = "CMIP6/CMIP/NCAR/CESM2/historical/r1i1p1f1/Amon/tas/gn/v20190308"
MONTHS = 3


def instance_id(drs_dir):
    *facets, version = drs_dir.split("/")
    return ".".join(facets) + "." + version


O3_ID, PRSN_ID = (instance_id(d) for d, _ in SHARED)
TAS_ID = instance_id(GENERATED_DIR)


def pid_of(instance):
    return f"hdl:21.14100/{uuid.uuid5(uuid.NAMESPACE_URL, instance)}"


def write_month(path, month):
    """Month `month` of a CESM2 tas dataset, with attributes the CMIP6 controlled
    vocabularies know."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(dict(
            mip_era="CMIP6", activity_id="CMIP", institution_id="NCAR", source_id="CESM2",
            experiment_id="historical", variant_label="r1i1p1f1", sub_experiment_id="none",
            table_id="Amon", variable_id="tas", grid_label="gn", frequency="mon", realm="atmos",
            product="model-output", source_type="AOGCM BGC", data_specs_version="01.00.29",
            nominal_resolution="100 km", Conventions="CF-1.7 CMIP-6.2",
            creation_date=f"2019-03-0{month + 1}T12:00:00Z",
            tracking_id=f"hdl:21.14100/{uuid.uuid5(uuid.NAMESPACE_URL, f'tas-{month}')}",
            license="CMIP6 model data produced by NCAR is licensed under a Creative Commons "
                    "Attribution 4.0 International License (https://creativecommons.org/licenses/).",
            further_info_url="https://furtherinfo.es-doc.org/CMIP6.NCAR.CESM2.historical.none.r1i1p1f1",
            forcing_index=np.int32(1), initialization_index=np.int32(1),
            physics_index=np.int32(1), realization_index=np.int32(1),
        ))
        ds.createDimension("time", None)
        ds.createDimension("lat", 6)
        ds.createDimension("lon", 12)
        t = ds.createVariable("time", "f8", ("time",))
        t.setncatts(dict(units="days since 1850-01-01", calendar="noleap", axis="T", standard_name="time"))
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.setncatts(dict(units="degrees_north", standard_name="latitude", axis="Y"))
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.setncatts(dict(units="degrees_east", standard_name="longitude", axis="X"))
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"), chunksizes=(1, 6, 12), zlib=True)
        tas.setncatts(dict(units="K", standard_name="air_temperature", long_name="Near-Surface Air Temperature"))
        lat[:] = np.linspace(-75, 75, 6)
        lon[:] = np.linspace(0, 330, 12)
        t[0] = month * 365 / 12 + 15
        tas[0] = 280 + np.random.default_rng(month).random((6, 12), dtype=np.float32)


class Archive:
    """The files on a real S3 server: s3:// URLs, and the server's credentials."""

    def __init__(self, root):
        self.root = root
        self.urls = []
        for drs, name in SHARED:
            self._put(drs, name, (FIXTURES / "shared" / "cmip6" / name).read_bytes())
        self.generated = []
        for month in range(MONTHS):
            name = f"tas_Amon_CESM2_historical_r1i1p1f1_gn_18500{month + 1}-18500{month + 1}.nc"
            dest = root / BUCKET / GENERATED_DIR / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_month(dest, month)
            self.generated.append(f"s3://{BUCKET}/{GENERATED_DIR}/{name}")
        self.urls += self.generated
        self.server = stack.S3Server(root)
        self.env = self.server.env()

    def _put(self, drs, name, data):
        dest = self.root / BUCKET / drs / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        self.urls.append(f"s3://{BUCKET}/{drs}/{name}")

    def size(self, url):
        return (self.root / url.removeprefix("s3://")).stat().st_size


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    a = Archive(tmp_path_factory.mktemp("esgf-s3"))
    yield a
    a.server.stop()


def ingest(zarrstac, archive, out, *args, **settings):
    env = clean_env(**archive.env, ZARRSTAC_OUTPUT__FAILED=str(out / "failed.jsonl"), **settings)
    return run(zarrstac.binary, "ingest", *archive.urls, "--catalog", out / "catalog", "--refs-root", out / "refs",
               *args, env=env)


def item_at(out, collection, item_id):
    return json.loads((out / "catalog" / collection / item_id / f"{item_id}.json").read_text())


def declares(item):
    return {CMIP6, ALTERNATE, FILE} <= set(item["stac_extensions"])


def check_published(item, archive, instance, pid, retracted=False):
    """What the cmip6 schema requires, with the values it must have."""
    assert not stacschema.problems(item), stacschema.problems(item)
    assert declares(item), item["stac_extensions"]
    assert item["id"] == instance and item["collection"] == "CMIP6"
    p = item["properties"]
    assert p["cmip6:pid"] == pid
    assert (p["latest"], p["retracted"]) == (True, retracted)
    base, version = instance.rsplit(".v", 1)
    assert (p["base_id"], p["version"]) == (base, version)
    cite = [link for link in item["links"] if link["rel"] == "cite-as"]
    assert cite == [{"rel": "cite-as", "href": f"https://cera-www.dkrz.de/WDCC/meta/CMIP6/{instance}.json",
                     "type": "application/json", "title": "Citation URL"}], cite
    files = {k: a for k, a in item["assets"].items() if k != "zarr"}
    drs_dir = instance.replace(".", "/")  # facets hold no dots
    urls = [u for u in archive.urls if f"/{drs_dir}/" in u]
    assert sorted(files) == sorted(u.rsplit("/", 1)[-1].removesuffix(".nc") for u in urls)
    assert p["size"] == sum(archive.size(u) for u in urls)
    for key, asset in files.items():
        assert asset["protocol"] == "s3" and asset["href"].startswith(f"s3://{BUCKET}/")
        assert asset["created"].endswith("Z")
    assert item["assets"]["zarr"]["protocol"] == "kerchunk"
    assert p["created"] == min(a["created"] for a in files.values())


def test_ingest_declares_cmip6_for_datasets_whose_pid_is_listed(zarrstac, archive, tmp_path):
    """o3 and tas listed (tas as retracted), prsn not: two published items, one plain one,
    and a line saying which dataset has no PID."""
    table = tmp_path / "pids.csv"
    table.write_text(f"dataset_id,pid,retracted\n{O3_ID},{pid_of(O3_ID)},false\n{TAS_ID},{pid_of(TAS_ID)},true\n")
    proc = ingest(zarrstac, archive, tmp_path, ZARRSTAC_DATASETS__PID_TABLE=str(table),
                  ZARRSTAC_DATASETS__DATA_NODE="esgf.example.org")
    assert proc.returncode == 0, proc.stderr[-3000:]
    o3, tas = item_at(tmp_path, "CMIP6", O3_ID), item_at(tmp_path, "CMIP6", TAS_ID)
    check_published(o3, archive, O3_ID, pid_of(O3_ID))
    check_published(tas, archive, TAS_ID, pid_of(TAS_ID), retracted=True)
    # The generated dataset: three files, their own creation dates, the variable's own facts.
    p = tas["properties"]
    assert len([k for k in tas["assets"] if k != "zarr"]) == MONTHS
    assert (p["created"], p["updated"]) == ("2019-03-01T12:00:00Z", f"2019-03-0{MONTHS}T12:00:00Z")
    assert (p["cmip6:variable_units"], p["cmip6:variable_cf_standard_name"]) == ("K", "air_temperature")
    assert p["cmip6:variable_long_name"] == "Near-Surface Air Temperature"
    assert p["cmip6:source_type"] == ["AOGCM", "BGC"] and p["cmip6:realm"] == ["atmos"]
    assert p["cmip6:license"] == "CC-BY-4.0" and p["cmip6:realization_index"] == "1"
    assert all(a["alternate:name"] == "esgf.example.org" for a in tas["assets"].values())
    assert [link["href"] for link in tas["links"] if link["rel"] == "describedby"] == [
        "https://furtherinfo.es-doc.org/CMIP6.NCAR.CESM2.historical.none.r1i1p1f1"]

    prsn = item_at(tmp_path, "CMIP6", PRSN_ID)
    assert not stacschema.problems(prsn), stacschema.problems(prsn)
    assert CMIP6 not in prsn["stac_extensions"] and "cmip6:pid" not in prsn["properties"]
    assert prsn["properties"]["cmip6:source_id"] == "CanESM5"
    assert (f"dataset item {PRSN_ID}: the cmip6 extension is not declared: no PID is known for {PRSN_ID}"
            in proc.stderr), proc.stderr[-3000:]
    assert O3_ID not in proc.stderr and TAS_ID not in proc.stderr, proc.stderr[-3000:]
    validated = run(zarrstac.binary, "validate", tmp_path / "catalog")
    assert validated.returncode == 0, validated.stdout[-2000:] + validated.stderr[-2000:]


def test_an_explicit_collection_keeps_the_extension_out_and_says_why(zarrstac, archive, tmp_path):
    table = tmp_path / "pids.json"
    table.write_text(json.dumps({i: pid_of(i) for i in (O3_ID, PRSN_ID, TAS_ID)}))
    proc = ingest(zarrstac, archive, tmp_path, "--collection", "cesm2",
                  ZARRSTAC_DATASETS__PID_TABLE=str(table))
    assert proc.returncode == 0, proc.stderr[-3000:]
    tas = item_at(tmp_path, "cesm2", TAS_ID)
    assert not stacschema.problems(tas) and CMIP6 not in tas["stac_extensions"]
    assert (f"dataset item {TAS_ID}: the cmip6 extension is not declared: its collection is 'cesm2'"
            in proc.stderr), proc.stderr[-3000:]


def test_an_unreadable_pid_table_stops_the_run_before_it_ingests(zarrstac, archive, tmp_path):
    table = tmp_path / "pids.csv"
    table.write_text(f"{O3_ID}\n")
    proc = ingest(zarrstac, archive, tmp_path, ZARRSTAC_DATASETS__PID_TABLE=str(table))
    assert proc.returncode != 0
    assert "line 1: 1 fields; expected dataset_id,pid[,retracted]" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "catalog").exists()


def test_combine_item_declares_cmip6_with_the_dataset_pid(zarrstac, archive, tmp_path):
    out = tmp_path / "tas.json"
    env = clean_env(**archive.env)
    proc = run(zarrstac.binary, "combine", *archive.generated, "-o", out, "--item", "--dataset-pid", pid_of(TAS_ID),
               env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    item = json.loads((tmp_path / "tas.item.json").read_text())
    check_published(item, archive, TAS_ID, pid_of(TAS_ID))
    # Without one: the same item, valid, without the extension, and the reason.
    proc = run(zarrstac.binary, "combine", *archive.generated, "-o", out, "--item", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    item = json.loads((tmp_path / "tas.item.json").read_text())
    assert not stacschema.problems(item) and CMIP6 not in item["stac_extensions"]
    assert f"no PID is known for {TAS_ID}" in proc.stderr, proc.stderr


def test_worker_publishes_the_pid_its_request_gave_for_the_dataset(zarrstac, archive, tmp_path):
    """The first file's message names the PID; the later ones do not: the dataset keeps it.
    The item lands in pgstac and stac-fastapi serves it valid, with the extension."""
    from kafkaio import produce, read_topic
    from test_worker import Workers, wait_until

    stack.clear_catalog()

    class Bucket:  # the archive's server, as the worker tests' bucket
        server = archive.server

    workers = Workers(tmp_path, Bucket, stack.pgstac_url(), ZARRSTAC_WORKER__PARTITIONS="1")
    messages = [json.dumps({"url": archive.generated[0], "dataset_pid": pid_of(TAS_ID)})]
    messages += [json.dumps({"url": u}) for u in archive.generated[1:]]
    def served(files):
        r = stack.api().get(f"/collections/CMIP6/items/{TAS_ID}")
        return r.status_code == 200 and len(r.json()["assets"]) == files + 1

    workers.start(1)
    try:
        # The first file alone, so that the others come to a dataset whose state holds it.
        produce(workers.topic, [("k0", messages[0])])
        wait_until(lambda: served(1), 300, "the dataset item of the first file")
        produce(workers.topic, [(f"k{i}", m) for i, m in enumerate(messages) if i])
        wait_until(lambda: served(MONTHS), 300, "the dataset item with every file")
    finally:
        workers.stop()
    assert read_topic(workers.dlq, idle=3) == []
    item = stack.api().get(f"/collections/CMIP6/items/{TAS_ID}").json()
    # pgstac 0.10 drops `datetime: null` when it rebuilds items (stac-utils/pgstac#425): the
    # one core problem of every ranged item it serves. Everything else must validate.
    assert stacschema.problems(item) == ["core: /properties: 'datetime' is a required property"]
    item["properties"]["datetime"] = None
    assert not stacschema.problems(item), stacschema.problems(item)
    assert declares(item) and item["properties"]["cmip6:pid"] == pid_of(TAS_ID)
    assert item["properties"]["updated"] >= "2026", "the catalog's stamp, not the files' dates"
