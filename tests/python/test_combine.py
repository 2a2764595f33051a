"""`zarrstac combine`: the files of one dataset combined along time into one references file.

* The real CMIP5 series (13 NetCDF-3 files, 360_day calendar, Dec 2099 in two files) opened
  through the combined references equals `xr.open_mfdataset` of the files (decoded and raw),
  and the references do not depend on the order the files are given in.
* Files that one regular Zarr chunk grid cannot hold together are refused with one
  `error:` line naming the files and the reason: jan.nc4/feb.nc4 (time chunks 31 and 28)
  and the generated pairs of fixtures/generated/combine/ (fixtures/generate_combine.py).
* Different time units are re-encoded in the units of the earliest file.
* A source that is not NetCDF fails the run and nothing is written.
"""
import random
import re
import subprocess

import h5py
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import FIXTURES

SERIES = sorted((FIXTURES / "shared" / "cmip5-netcdf3-series").glob("*.nc"))
GENERATED = FIXTURES / "generated" / "combine"
JAN = FIXTURES / "shared" / "netcdf4" / "jan.nc4"
FEB = FIXTURES / "shared" / "netcdf4" / "feb.nc4"

# how xarray combines a time series split into files: concatenate what has a time dimension,
# take everything else (and the global attributes) from the first file
MF_KWARGS = dict(combine="by_coords", data_vars="minimal", coords="minimal", compat="override",
                 combine_attrs="override")


def combine(zarrstac, sources, out, *args):
    cmd = [zarrstac.binary, "combine", *map(str, sources), "-o", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def open_refs(path, **kwargs):
    return xr.open_dataset("reference://", engine="zarr", backend_kwargs={
        "consolidated": False, "zarr_format": 2,
        "storage_options": {"fo": str(path), "remote_protocol": "file"}}, **kwargs)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def success_line(stderr, files, steps):
    pattern = re.compile(rf"^combined \S+: {files} files, {steps} time steps$")
    return [line for line in stderr.splitlines() if pattern.match(line)]


def assert_same_values(actual, expected, name):
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.shape == e.shape, f"{name}: shape {a.shape} != {e.shape}"
    assert a.dtype == e.dtype, f"{name}: dtype {a.dtype} != {e.dtype}"
    equal_nan = a.dtype.kind in "fc"
    assert np.array_equal(a, e, equal_nan=equal_nan), f"{name}: values differ"


def record_count(files):
    total = 0
    for f in files:
        with netCDF4.Dataset(f) as ds:
            total += len(ds.dimensions["time"])
    return total


# ------------------------------------------------------------------ the CMIP5 NetCDF-3 series

@pytest.fixture(scope="module", params=[None, "0", "parquet"],
                ids=["default-inline", "inline-threshold-0", "kerchunk-parquet"])
def series_refs(request, zarrstac, tmp_path_factory):
    """The series combined; with threshold 0 every chunk is a byte range into the files;
    as parquet, read through fsspec's LazyReferenceMapper (records of 100 chunks)."""
    assert len(SERIES) == 13
    parquet = request.param == "parquet"
    out = tmp_path_factory.mktemp("series") / ("series.parq" if parquet else "series.json")
    args = {None: [], "0": ["--inline-threshold", "0"],
            "parquet": ["--format", "kerchunk-parquet", "--record-size", "100"]}[request.param]
    proc = combine(zarrstac, SERIES, out, *args)
    assert proc.returncode == 0, proc.stderr
    assert not error_lines(proc.stderr), proc.stderr
    assert success_line(proc.stderr, 13, record_count(SERIES)), proc.stderr
    return out


def test_series_equals_open_mfdataset(series_refs):
    with xr.open_mfdataset(SERIES, **MF_KWARGS) as expected, open_refs(series_refs) as actual:
        expected = expected.load()
        actual = actual.load()
        assert set(actual.variables) == set(expected.variables)
        assert set(actual.coords) == set(expected.coords)
        assert dict(actual.sizes) == dict(expected.sizes)
        # decoded times (360_day: cftime objects), the repeated Dec 2099 kept as xarray keeps it
        assert_same_values(actual["time"].values, expected["time"].values, "time")
        assert actual.sizes["time"] == record_count(SERIES)
        for name in expected.variables:
            assert actual[name].dims == expected[name].dims, name
            assert_same_values(actual[name].values, expected[name].values, name)
            assert actual[name].attrs == expected[name].attrs, name
        assert actual.attrs == expected.attrs
        xr.testing.assert_identical(actual, expected)


def test_series_equals_open_mfdataset_raw(series_refs):
    raw = dict(decode_times=False, mask_and_scale=False)
    with xr.open_mfdataset(SERIES, **MF_KWARGS, **raw) as expected, open_refs(series_refs, **raw) as actual:
        for name in ("tas", "time"):
            assert_same_values(actual[name].values, expected[name].values, f"{name} (raw)")
            assert actual[name].attrs == expected[name].attrs, name


def test_series_arrival_order_does_not_matter(zarrstac, tmp_path):
    rng = random.Random(20240611)
    orders = [list(reversed(SERIES))]
    while len(orders) < 3:
        order = SERIES[:]
        rng.shuffle(order)
        if order != SERIES and order not in orders:
            orders.append(order)
    outputs = []
    for i, order in enumerate(orders):
        out = tmp_path / f"order{i}.json"
        proc = combine(zarrstac, order, out)
        assert proc.returncode == 0, proc.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


# ------------------------------------------------------------------ refusals

def test_jan_feb_chunk_shapes_refused(zarrstac, tmp_path):
    out = tmp_path / "janfeb.json"
    proc = combine(zarrstac, [JAN, FEB], out)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "jan.nc4" in line and "feb.nc4" in line, line
    shapes = {}
    for f in (JAN, FEB):
        with h5py.File(f, "r") as h:
            shapes[f.name] = {name: list(h[name].chunks) for name in ("P", "T")}
    assert shapes["jan.nc4"]["P"] == [31, 3, 4] and shapes["feb.nc4"]["P"] == [28, 3, 4]
    assert any(str(shapes["jan.nc4"][v]) in line and str(shapes["feb.nc4"][v]) in line
               for v in ("P", "T")), line
    assert not out.exists()


REFUSALS = {
    "packing": r"scale_factor",
    "partial": r"chunk|partial",
    "overlap": r"overlap",
    "dtype": r"dtype",
    "calendar": r"calendar",
}


@pytest.mark.parametrize("pair", sorted(REFUSALS))
def test_generated_pair_refused(zarrstac, tmp_path, pair):
    a, b = GENERATED / f"{pair}_a.nc", GENERATED / f"{pair}_b.nc"
    out = tmp_path / f"{pair}.json"
    proc = combine(zarrstac, [a, b], out)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert a.name in line and b.name in line, f"the error must name both files: {line}"
    assert re.search(REFUSALS[pair], line, re.IGNORECASE), f"the error must say why ({REFUSALS[pair]}): {line}"
    assert not out.exists()


# ------------------------------------------------------------------ different time units

@pytest.mark.parametrize("args", [[], ["--inline-threshold", "0"]], ids=["default-inline", "inline-threshold-0"])
@pytest.mark.parametrize("order", ["ab", "ba"])
@pytest.mark.parametrize("pair", ["units", "dangling", "bounds", "bounds3"])
def test_different_time_units_combined(zarrstac, tmp_path, pair, order, args):
    """`dangling`: the time coordinate names bounds that neither file holds; `bounds`
    (NetCDF-4) and `bounds3` (NetCDF-3): real bounds in each file's units, rewritten with
    the time coordinate, equal to what xr.open_mfdataset gives."""
    files = [GENERATED / f"{pair}_a.nc", GENERATED / f"{pair}_b.nc"]
    if order == "ba":
        files.reverse()
    out = tmp_path / "units.json"
    proc = combine(zarrstac, files, out, *args)
    assert proc.returncode == 0, proc.stderr
    assert success_line(proc.stderr, 2, 20), proc.stderr

    expected_times = pd.date_range("2000-01-01", "2000-01-20", freq="D").values.astype("datetime64[ns]")
    sources = [xr.open_dataset(f) for f in sorted(files)]
    try:
        expected_tas = xr.concat([s["tas"] for s in sources], dim="time").values
    finally:
        for s in sources:
            s.close()
    with open_refs(out) as ds:
        assert_same_values(ds["time"].values.astype("datetime64[ns]"), expected_times, "time")
        assert_same_values(ds["tas"].values, expected_tas, "tas")
    # re-encoded in the units of the earliest file
    with open_refs(out, decode_times=False) as raw:
        assert raw["time"].attrs["units"] == "days since 2000-01-01"
        assert_same_values(raw["time"].values, np.arange(20, dtype="f8"), "time (raw)")
        if pair.startswith("bounds"):
            days = np.arange(20, dtype="f8")
            assert_same_values(raw["time_bnds"].values, np.stack([days, days + 1], axis=1), "time_bnds (raw)")
    if pair.startswith("bounds"):
        with xr.open_mfdataset(sorted(files), combine="by_coords") as expected, open_refs(out) as ds:
            assert_same_values(ds["time_bnds"].values.astype("datetime64[ns]"),
                               expected["time_bnds"].values.astype("datetime64[ns]"), "time_bnds")


# ------------------------------------------------------------------ unreadable source

def test_not_netcdf_source_fails_and_writes_nothing(zarrstac, tmp_path):
    junk = tmp_path / "not_netcdf.nc"
    junk.write_text("this is not a NetCDF file\n")
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "combined.json"
    proc = combine(zarrstac, [GENERATED / "units_a.nc", GENERATED / "units_b.nc", junk], out)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert any(junk.name in line for line in lines), proc.stderr
    assert not out.exists()
    assert list(outdir.iterdir()) == []


# ------------------------------------------------------------------ the dataset-level item

def test_dataset_item_validates_and_dates_each_file(zarrstac, tmp_path):
    import json
    import stacschema

    out = tmp_path / "series.json"
    proc = combine(zarrstac, list(reversed(SERIES)), out, "--item")
    assert proc.returncode == 0, proc.stderr
    item = json.loads((tmp_path / "series.item.json").read_text())
    assert not stacschema.problems(item), stacschema.problems(item)
    assert item["id"].startswith("CMIP5.output.MOHC.HadGEM2-ES.rcp85.mon.atmos.Amon.r1i1p1.tas.v")
    props = item["properties"]
    assert (props["start_datetime"], props["end_datetime"]) == ("2005-12-16T00:00:00Z", "2299-12-16T00:00:00Z")
    store = [l for l in item["links"] if l["rel"] == "store"]
    assert store and store[0]["href"].endswith("/series.json")
    per_file = {k: a for k, a in item["assets"].items() if k != "zarr"}
    assert sorted(per_file) == sorted(p.stem for p in SERIES)
    for path in SERIES:
        asset = per_file[path.stem]
        with netCDF4.Dataset(path) as ds:
            t = ds["time"]
            first, last = netCDF4.num2date([t[0], t[-1]], t.units, t.calendar)
        assert asset["start_datetime"].startswith(f"{first.year:04d}-{first.month:02d}"), (path.name, asset)
        assert asset["end_datetime"].startswith(f"{last.year:04d}-{last.month:02d}"), (path.name, asset)
        assert asset["file:size"] == path.stat().st_size
