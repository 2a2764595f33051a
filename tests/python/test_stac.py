"""`zarrstac ingest`, `item` and `validate`: the STAC side of the pipeline.

One ingest of every fixture (shared and generated NetCDF/HDF5 files, the EOPF Zarr stores)
into a fresh static catalog, run from a scratch working directory with --catalog,
--refs-root and ZARRSTAC_OUTPUT__FAILED, is checked for:

* schema validity of every catalog, collection and item, by two independent validators
  (stacschema.py here, `zarrstac validate` in the binary);
* a sound catalog tree: every link resolves, nothing is orphaned, collection extents hold
  their items' bboxes and times (also for times that differ only in a written fraction of
  a second, which sort wrongly as text);
* idempotence: a second run writes nothing (bytes and mtimes unchanged) and says so;
* references that reproduce their source (refcheck, as in the `refs` round trip).

Then bad input (a truncated and a foreign file among good ones: the dead-letter file),
the meaning of a few items pinned through `zarrstac item`, and `zarrstac validate` on
broken items.
"""
import copy
import json
import os
import random
import re
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import refcheck
import stacschema
from conftest import FIXTURES, GENERATED, SHARED, file_url, source_id

# what `ingest` looks for when it walks a folder
INGEST_SUFFIXES = {".nc", ".nc4", ".h5", ".hdf5", ".he5", ".hdf", ".cdf"}
NETCDF_SOURCES = [p for p in SHARED + GENERATED if p.suffix in INGEST_SUFFIXES]
EOPF_STORES = sorted(p for p in (FIXTURES / "eopf").iterdir() if p.is_dir() and (p / ".zmetadata").exists())
INGEST_FOLDERS = [FIXTURES / "shared", FIXTURES / "generated", FIXTURES / "eopf"]
SUMMARY = re.compile(r"^summary: (?P<ingested>\d+) ingested, (?P<failed>\d+) failed, "
                     r"(?P<skipped>\d+) skipped \(unchanged\)", re.M)
ERROR_LINE = re.compile(r"^error: (?P<source>.+?): (?P<reason>.+)$", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STRUCTURAL_RELS = {"root", "parent", "child", "item", "collection"}
TIMEOUT = 120

CMIP6_O3 = FIXTURES / "shared/cmip6/o3_Amon_GFDL-ESM4_historical_r1i1p1f1_gr1_185001-194912.nc"
CMIP5_SERIES = sorted((FIXTURES / "shared/cmip5-netcdf3-series").glob("*.nc"))


def cmip_dataset(path):
    """The CMIP dataset a file belongs to (its DRS facets), or None: ingest gives such
    files one item per dataset instead of one per file."""
    import netCDF4
    try:
        with netCDF4.Dataset(path) as ds:
            attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
    except OSError:
        return None  # an HDF5 file netCDF-C cannot read (committed_types.h5) is no CMIP file
    if attrs.get("mip_era") == "CMIP6":
        keys = ["activity_id", "institution_id", "source_id", "experiment_id", "variant_label",
                "table_id", "variable_id", "grid_label"]
    elif attrs.get("project_id") == "CMIP5":
        keys = ["product", "institute_id", "model_id", "experiment_id", "frequency", "modeling_realm",
                "table_id", "realization", "initialization_method", "physics_version"]
    else:
        return None
    # CMIP5 table_id reads "Table Amon (<date>) <hash>": the table is its second word
    return tuple(str(attrs.get(k)).split()[1] if k == "table_id" and attrs.get("project_id") == "CMIP5"
                 else str(attrs.get(k)) for k in keys)


CMIP_DATASETS = {src: cmip_dataset(src) for src in NETCDF_SOURCES}
COADS = FIXTURES / "shared/netcdf4/coads_climatology.nc4"
AIR = FIXTURES / "shared/hdf5-edge/air.nc"
S2_L2A = next((p for p in EOPF_STORES if p.name.startswith("S02MSIL2A")), None)


# ----------------------------------------------------------------------------- helpers

def clean_env(**extra):
    """The environment without any ZARRSTAC_* setting of the caller (they would change the
    configuration under test), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZARRSTAC_") or k == "ZARRSTAC_BIN"}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def run(binary, *args, cwd=None, env=None):
    proc = subprocess.run([binary, *map(str, args)], cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, errors="replace", timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert "panicked" not in proc.stderr, proc.stderr[-3000:]
    return proc


class Workspace:
    """A scratch working directory with its catalog, references and dead-letter file."""

    def __init__(self, root: Path):
        self.root = root
        self.cwd = root / "cwd"
        self.catalog = root / "catalog"
        self.refs = root / "refs"
        self.failed = root / "failed.jsonl"
        self.cwd.mkdir(parents=True, exist_ok=True)

    def ingest(self, binary, sources, *args):
        return run(binary, "ingest", *sources, "--catalog", self.catalog, "--refs-root", self.refs, *args,
                   cwd=self.cwd, env=clean_env(ZARRSTAC_OUTPUT__FAILED=str(self.failed)))

    def snapshot(self):
        """{path: (bytes, mtime_ns)} of everything the run may write."""
        out = {}
        for top in (self.catalog, self.refs, self.cwd):
            for p in sorted(top.rglob("*")) if top.exists() else []:
                if p.is_file():
                    out[str(p)] = (p.read_bytes(), p.stat().st_mtime_ns)
        if self.failed.exists():
            out[str(self.failed)] = (self.failed.read_bytes(), self.failed.stat().st_mtime_ns)
        return out

    def failed_records(self):
        if not self.failed.exists():
            return []
        return [json.loads(line) for line in self.failed.read_text().splitlines() if line.strip()]


def summary(stderr):
    m = SUMMARY.search(stderr)
    assert m, f"no summary line on stderr:\n{stderr[-3000:]}"
    return {k: int(v) for k, v in m.groupdict().items()}


def url_path(href: str) -> Path:
    return Path(unquote(urlparse(href).path))


def resolve(doc_path: Path, href: str) -> Path:
    """The file a link of the document at doc_path points to."""
    if href.startswith("file://"):
        return url_path(href)
    assert "://" not in href, f"{doc_path}: link {href!r} is neither relative nor file://"
    return (doc_path.parent / href).resolve()


def load(path: Path):
    with open(path) as f:
        return json.load(f)


def links(doc, rel):
    return [link for link in doc.get("links", []) if link.get("rel") == rel]


def hrefs(item):
    """Every href of an item (assets and links), without a trailing slash."""
    out = [a.get("href", "") for a in item.get("assets", {}).values()]
    out += [link.get("href", "") for link in item.get("links", [])]
    return {h.rstrip("/") for h in out if h}


def refused_by_source(stderr):
    """{source: {variable: reason}} from the per-variable report lines (logged at info)."""
    out = {}
    for line in ANSI.sub("", stderr).splitlines():
        m = re.search(r"(?P<source>\S+): (?P<line>refused\s+.+)$", line)
        if m:
            out.setdefault(m.group("source"), {}).update(refcheck.parse_refused(m.group("line")))
    return out


def instant(text):
    """An RFC 3339 timestamp as a comparable aware datetime. Years are shifted by 2000 (a whole
    number of 400-year Gregorian cycles, so weekdays and leap days keep their places): year
    0000, valid RFC 3339 and used by climatologies, is out of Python's datetime range."""
    assert isinstance(text, str) and stacschema._date_time(text), f"{text!r} is not RFC 3339"
    year = int(text[:4])
    t = datetime.fromisoformat(f"{year + 2000:04d}{text[4:]}".upper().replace("Z", "+00:00"))
    assert t.tzinfo is not None, f"{text!r} has no UTC offset"
    return t


def item_span(props):
    """(start, end) instants of an item: start/end_datetime, or datetime for both."""
    start = props.get("start_datetime") or props.get("datetime")
    end = props.get("end_datetime") or props.get("datetime")
    return instant(start), instant(end)


def lon_within(inner, outer, eps=1e-9):
    """Longitude interval inner (west, east) inside outer; either may cross the antimeridian."""
    def spans(w, e):
        return [(w, e)] if w <= e else [(w, 180.0), (-180.0, e)]
    return all(any(o0 - eps <= i0 and i1 <= o1 + eps for o0, o1 in spans(*outer)) for i0, i1 in spans(*inner))


def bbox_within(inner, outer, eps=1e-9):
    n = len(inner) // 2
    iw, is_, ie, in_ = inner[0], inner[1], inner[n], inner[n + 1]
    ow, os_, oe, on = outer[0], outer[1], outer[len(outer) // 2], outer[len(outer) // 2 + 1]
    return os_ - eps <= is_ and in_ <= on + eps and lon_within((iw, ie), (ow, oe), eps)


def item_from_cli(zarrstac, source, *args):
    proc = run(zarrstac.binary, "item", source, *args)
    assert proc.returncode == 0, f"zarrstac item {source}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------------- the main ingest

class Ingested:
    def __init__(self, ws, proc):
        self.ws = ws
        self.proc = proc
        self.catalog_json = ws.catalog / "catalog.json"
        self.docs = {}
        for p in sorted(ws.catalog.rglob("*.json")):
            self.docs[p.resolve()] = load(p)
        self.items = {p: d for p, d in self.docs.items() if d.get("type") == "Feature"}
        self.collections = {p: d for p, d in self.docs.items() if d.get("type") == "Collection"}

    def item_for(self, source: Path):
        """(path, item) of the item made from a fixture file or store."""
        url = file_url(source).rstrip("/")
        found = [(p, d) for p, d in self.items.items() if url in hrefs(d)]
        assert len(found) == 1, f"{len(found)} items refer to {url}"
        return found[0]


@pytest.fixture(scope="module")
def ingested(zarrstac, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ingest"))
    proc = ws.ingest(zarrstac.binary, INGEST_FOLDERS, "--log", "warn,zarrstac::report=info")
    return Ingested(ws, proc)


@pytest.fixture(scope="module")
def second_run(zarrstac, ingested):
    ws = ingested.ws
    before = ws.snapshot()
    proc = ws.ingest(zarrstac.binary, INGEST_FOLDERS)
    return before, ws.snapshot(), proc


def test_fixture_inventory():
    """Every signature-detected source has a suffix `ingest` walks for, and the EOPF stores exist."""
    assert len(NETCDF_SOURCES) == len(SHARED + GENERATED), \
        sorted(set(map(str, SHARED + GENERATED)) - set(map(str, NETCDF_SOURCES)))
    assert len(EOPF_STORES) == 3, EOPF_STORES
    assert len(CMIP5_SERIES) == 13 and S2_L2A is not None


def test_ingest_succeeds(ingested):
    proc = ingested.proc
    errors = ERROR_LINE.findall(proc.stderr)
    assert proc.returncode == 0, f"exit {proc.returncode}; error lines:\n" + \
        "\n".join(f"{s}: {r}" for s, r in errors) + f"\n--- stderr tail:\n{proc.stderr[-2000:]}"
    assert not errors
    counts = summary(proc.stderr)
    expected = len(NETCDF_SOURCES) + len(EOPF_STORES)
    assert counts == {"ingested": expected, "failed": 0, "skipped": 0}, counts
    assert not ingested.ws.failed_records()
    # one item per file or store, except the files of a CMIP dataset: one item per dataset
    singles = [s for s, d in CMIP_DATASETS.items() if d is None]
    datasets = {d for d in CMIP_DATASETS.values() if d is not None}
    expected_items = len(singles) + len(datasets) + len(EOPF_STORES)
    assert len(datasets) == 5, datasets  # o3, prsn, the CMIP5 series, two sea-ice grids
    assert len(ingested.items) == expected_items, f"{len(ingested.items)} item files, expected {expected_items}"
    assert ingested.catalog_json.exists()


@pytest.mark.parametrize("source", NETCDF_SOURCES + EOPF_STORES, ids=source_id)
def test_every_source_has_one_item(ingested, source):
    path, item = ingested.item_for(source)
    assert path.name == f"{item['id']}.json" and path.parent.name == item["id"], path


def test_catalog_valid_stacschema(ingested):
    assert stacschema.FORMAT_CHECKS, "rfc3339-validator is missing: timestamps would go unchecked"
    bad = {str(p): stacschema.problems(d) for p, d in ingested.docs.items()}
    bad = {p: v for p, v in bad.items() if v}
    assert not bad, "\n".join(f"{p}: {line}" for p, v in bad.items() for line in v[:10])
    kinds = {d["type"] for d in ingested.docs.values()}
    assert kinds == {"Catalog", "Collection", "Feature"}, kinds


def test_catalog_valid_zarrstac_validate(zarrstac, ingested):
    proc = run(zarrstac.binary, "validate", ingested.ws.catalog)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    m = re.search(r"(\d+) passed, (\d+) failed", proc.stdout + proc.stderr)
    assert m, proc.stdout[-2000:]
    assert (int(m[1]), int(m[2])) == (len(ingested.docs), 0), m[0]


def test_catalog_links(ingested):
    """The tree is whole: catalog → collections → items and back, every link resolves."""
    catalog_path = ingested.catalog_json.resolve()
    catalog = ingested.docs[catalog_path]
    problems = []
    for path, doc in ingested.docs.items():
        for link in doc.get("links", []):
            if link.get("rel") in STRUCTURAL_RELS:
                href = link["href"]
                if "://" in href or href.startswith("/"):
                    problems.append(f"{path}: {link['rel']} link {href!r} is not relative")
                elif not resolve(path, href).is_file():
                    problems.append(f"{path}: {link['rel']} link {href!r} resolves to no file")
        roots = links(doc, "root")
        if len(roots) != 1 or resolve(path, roots[0]["href"]) != catalog_path:
            problems.append(f"{path}: root links {roots} do not lead to {catalog_path}")
    assert not problems, "\n".join(problems[:30])

    children = {resolve(catalog_path, link["href"]) for link in links(catalog, "child")}
    assert children == set(ingested.collections), \
        f"children {sorted(map(str, children))} != collections {sorted(map(str, ingested.collections))}"

    linked_items = {}
    for cpath, coll in ingested.collections.items():
        parents = links(coll, "parent")
        assert len(parents) == 1 and resolve(cpath, parents[0]["href"]) == catalog_path, f"{cpath}: parent {parents}"
        for link in links(coll, "item"):
            ipath = resolve(cpath, link["href"])
            assert ipath not in linked_items, f"{ipath} is linked from {linked_items[ipath]} and {cpath}"
            linked_items[ipath] = cpath
    assert set(linked_items) == set(ingested.items), \
        f"unlinked items: {sorted(map(str, set(ingested.items) - set(linked_items)))}"

    for ipath, item in ingested.items.items():
        cpath = linked_items[ipath]
        coll = ingested.collections[cpath]
        got = links(item, "collection")
        assert len(got) == 1 and resolve(ipath, got[0]["href"]) == cpath, f"{ipath}: collection link {got}"
        assert item.get("collection") == coll["id"], f"{ipath}: collection {item.get('collection')!r} in {cpath}"
        parents = links(item, "parent")
        assert len(parents) == 1 and resolve(ipath, parents[0]["href"]) == cpath, f"{ipath}: parent {parents}"


def test_collection_extents_hold_items(ingested):
    problems = []
    for cpath, coll in ingested.collections.items():
        bboxes = coll["extent"]["spatial"]["bbox"]
        intervals = coll["extent"]["temporal"]["interval"]
        lo = instant(intervals[0][0]) if intervals[0][0] else None
        hi = instant(intervals[0][1]) if intervals[0][1] else None
        if lo and hi and lo > hi:
            problems.append(f"{coll['id']}: interval {intervals[0]} ends before it starts")
        for link in links(coll, "item"):
            ipath = resolve(cpath, link["href"])
            item = ingested.items[ipath]
            if item.get("bbox") and not bbox_within(item["bbox"], bboxes[0]):
                problems.append(f"{coll['id']}: bbox {bboxes[0]} does not hold {item['id']} {item['bbox']}")
            start, end = item_span(item["properties"])
            if start > end:
                problems.append(f"{item['id']}: starts {start} after it ends {end}")
            if (lo and start < lo) or (hi and end > hi):
                problems.append(f"{coll['id']}: interval {intervals[0]} does not hold {item['id']} "
                                f"[{start.isoformat()}, {end.isoformat()}] (years +2000)")
    assert not problems, "\n".join(problems[:30])


def _eopf_copy(src: Path, dest: Path, product_id: str, start: str, end: str):
    """A metadata-only copy of an EOPF store (root documents; .zmetadata describes every node)
    with its own product id and acquisition times."""
    dest.mkdir(parents=True)
    (dest / ".zgroup").write_bytes((src / ".zgroup").read_bytes())
    attrs = load(src / ".zattrs")
    meta = load(src / ".zmetadata")
    sd = attrs["stac_discovery"]
    sd["id"] = product_id
    sd["properties"].update(start_datetime=start, end_datetime=end)
    meta["metadata"][".zattrs"] = attrs
    (dest / ".zattrs").write_text(json.dumps(attrs))
    (dest / ".zmetadata").write_text(json.dumps(meta))


def test_collection_extent_compares_instants_not_text(zarrstac, tmp_path):
    """Two products a fraction of a second apart, one time written with a fraction and one
    without: the collection interval must hold both ("...01Z" is before "...01.024Z",
    although it sorts after it as text)."""
    src = next(p for p in EOPF_STORES if p.name.startswith("S02MSIL2A"))
    times = {"A": "2025-01-09T10:04:01.024000+00:00", "B": "2025-01-09T10:04:01+00:00"}
    for name, t in times.items():
        _eopf_copy(src, tmp_path / "in" / f"{name}.zarr", f"S2A_MSIL2A_EXTENT_TEST_{name}", t, t)
    ws = Workspace(tmp_path / "ws")
    proc = ws.ingest(zarrstac.binary, [tmp_path / "in"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = Ingested(ws, proc)
    assert len(found.items) == 2 and len(found.collections) == 1, sorted(map(str, found.docs))
    (coll,) = found.collections.values()
    lo, hi = (instant(t) for t in coll["extent"]["temporal"]["interval"][0])
    assert lo <= hi, f"interval {coll['extent']['temporal']['interval'][0]} ends before it starts"
    for item in found.items.values():
        start, end = item_span(item["properties"])
        assert lo <= start and end <= hi, \
            f"interval {coll['extent']['temporal']['interval'][0]} does not hold {item['id']} " \
            f"{item['properties'].get('datetime') or item['properties'].get('start_datetime')}"


def test_second_run_writes_nothing(ingested, second_run):
    before, after, proc = second_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = len(NETCDF_SOURCES) + len(EOPF_STORES)
    written = [p for p in before if p.endswith(".json")]
    assert len(written) >= expected + len(NETCDF_SOURCES), f"only {len(written)} files after the first run"
    assert summary(proc.stderr) == {"ingested": 0, "failed": 0, "skipped": expected}, \
        SUMMARY.search(proc.stderr)[0]
    assert set(after) == set(before), \
        f"added {sorted(set(after) - set(before))[:10]}, removed {sorted(set(before) - set(after))[:10]}"
    changed = [p for p in before if before[p] != after[p]]
    detail = [f"{p}: {'bytes' if before[p][0] != after[p][0] else 'mtime only'}" for p in changed]
    assert not changed, f"{len(changed)} files rewritten:\n" + "\n".join(detail[:20])


@pytest.mark.parametrize("source", NETCDF_SOURCES, ids=source_id)
def test_ingested_references(ingested, source):
    """The references written by ingest reproduce their source (the `refs` round-trip checks)."""
    ipath, item = ingested.item_for(source)
    refs_assets = [a for a in item["assets"].values() if "references" in a.get("roles", [])]
    assert len(refs_assets) == 1, f"{ipath}: {len(refs_assets)} reference assets"
    refs_href = refs_assets[0]["href"]
    stores = links(item, "store")
    assert [s["href"] for s in stores] == [refs_href], f"store links {stores} != references asset {refs_href}"
    refs_path = url_path(refs_href)
    assert refs_path.is_file(), refs_path
    assert refs_path.parent == ingested.ws.refs / item["collection"] and refs_path.name == f"{item['id']}.json", \
        f"references at {refs_path}, expected <refs-root>/{item['collection']}/{item['id']}.json"
    if CMIP_DATASETS[source] is not None:
        # the item's store is the dataset's combined references; the file's own are beside it
        refs_path = refs_path.parent / f"{source.stem}.json"
        assert refs_path.is_file(), refs_path

    problems = refcheck.structure_problems(load(refs_path), file_url(source), os.path.getsize(source))
    assert not problems, "\n".join(problems[:20])
    refused = refused_by_source(ingested.proc.stderr).get(str(source), {})
    failures = refcheck.check(str(refs_path), str(source), refused)
    assert not failures, "\n".join(map(str, failures[:30]))


# ----------------------------------------------------------------------------- bad input

def test_bad_sources_go_to_the_dead_letter_file(zarrstac, tmp_path):
    ws = Workspace(tmp_path)
    bad_dir = tmp_path / "incoming"
    bad_dir.mkdir()
    truncated = bad_dir / "truncated_o3.nc"
    truncated.write_bytes(CMIP6_O3.read_bytes()[:20000])  # superblock intact, the rest gone
    foreign = bad_dir / "readme.nc"
    foreign.write_text("This is a text file with a NetCDF name.\n" * 20)
    good = [AIR, CMIP5_SERIES[0], COADS]
    bad = {truncated: r"truncat|corrupt|end of (the )?file",
           foreign: r"not a netcdf|signature|not .*hdf5|unrecognised|unrecognized|unknown format"}

    proc = ws.ingest(zarrstac.binary, [*good, truncated, foreign])
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert summary(proc.stderr) == {"ingested": len(good), "failed": len(bad), "skipped": 0}
    errors = ERROR_LINE.findall(proc.stderr)
    assert sorted(s for s, _ in errors) == sorted(map(str, bad)), errors

    # the good items are in the catalog, valid, and nothing was made of the bad files
    found = Ingested(ws, proc)
    for src in good:
        path, item = found.item_for(src)
        assert not stacschema.problems(item), stacschema.problems(item)
    for src in bad:
        url = file_url(src)
        assert not [p for p, d in found.items.items() if url in hrefs(d)], f"an item was made of {src}"

    records = ws.failed_records()
    by_source = {}
    for r in records:
        assert set(r) >= {"source", "error_class", "message", "time", "attempt"}, r
        by_source.setdefault(r["source"], []).append(r)
    # records name the source by its absolute URL, however the argument spelled it
    assert sorted(by_source) == sorted(map(file_url, bad)), f"records for {sorted(by_source)}"
    for src, pattern in bad.items():
        (r,) = by_source[file_url(src)]
        assert r["error_class"] == "permanent", r
        assert re.search(pattern, r["message"], re.I), f"message does not name the problem: {r['message']!r}"
        assert r["attempt"] == 1, r
        instant(r["time"])

    first = ws.failed.read_text()
    before = ws.snapshot()
    again = ws.ingest(zarrstac.binary, [*good, truncated, foreign])
    assert again.returncode == 1, again.stderr[-3000:]
    assert summary(again.stderr) == {"ingested": 0, "failed": len(bad), "skipped": len(good)}
    assert ws.failed.read_text() == first, "the second run added records:\n" + ws.failed.read_text()
    after = ws.snapshot()
    assert after == before, [p for p in set(before) | set(after) if before.get(p) != after.get(p)]


# ----------------------------------------------------------------------------- pinned meaning

def test_cmip6_o3_item(zarrstac):
    item = item_from_cli(zarrstac, CMIP6_O3)
    assert not stacschema.problems(item), stacschema.problems(item)
    props = item["properties"]
    assert props["cmip6:source_id"] == "GFDL-ESM4"
    assert props["start_datetime"] == "1850-01-16T12:00:00Z"
    assert props["end_datetime"] == "1949-12-16T12:00:00Z"
    plev = props["cube:dimensions"]["plev"]
    assert plev["axis"] == "z", plev
    assert plev.get("unit") == "Pa" and min(plev["extent"]) == 100.0 and max(plev["extent"]) == 100000.0, plev


def _cf_span(source):
    """First and last time of a NetCDF file, decoded by netCDF4/cftime in the file's calendar,
    as RFC 3339 text (the days here are all the 16th: no 30 February to map)."""
    import netCDF4

    with netCDF4.Dataset(source) as ds:
        t = ds["time"]
        first, last = netCDF4.num2date([t[0], t[-1]], t.units, getattr(t, "calendar", "standard"))
    return tuple(f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"
                 for d in (first, last))


def test_cmip5_360_day_series(zarrstac):
    """13 files of one 360_day run: each span is RFC 3339, equals the first and last time cftime
    decodes, matches the YYYYMM-YYYYMM of its file name, and moves forward from file to file.
    The upstream files share one month: 208012-209912 ends with 2099-12-16 and 209912-212411
    starts with it, so a file may start where the previous one ended, never before."""
    previous = None
    for source in CMIP5_SERIES:
        item = item_from_cli(zarrstac, source)
        assert not stacschema.problems(item), (source.name, stacschema.problems(item))
        props = item["properties"]
        start_text = props.get("start_datetime") or props["datetime"]
        end_text = props.get("end_datetime") or props["datetime"]
        assert (start_text, end_text) == _cf_span(source), source.name
        start = datetime.fromisoformat(start_text.replace("Z", "+00:00"))
        end = datetime.fromisoformat(end_text.replace("Z", "+00:00"))
        assert start <= end, (source.name, start_text, end_text)
        first, last = re.search(r"_(\d{6})-(\d{6})\.nc$", source.name).groups()
        assert start.strftime("%Y%m") == first and end.strftime("%Y%m") == last, \
            (source.name, start_text, end_text)
        if previous is not None:
            assert start > previous[0] and end > previous[1] and start >= previous[1], \
                (source.name, start_text, end_text, "after", previous)
        previous = (start, end)


def test_coads_climatology_in_year_zero(zarrstac):
    """'hour since 0000-01-01': a climatology dated in year 0000, valid RFC 3339 text.
    The last time, 8401.335 h, is 350 days 1 h 20 min 6 s after the origin."""
    item = item_from_cli(zarrstac, COADS)
    assert not stacschema.problems(item), stacschema.problems(item)
    props = item["properties"]
    start, end = props.get("start_datetime"), props.get("end_datetime")
    for t in (start, end):
        assert isinstance(t, str) and stacschema._date_time(t) and t.startswith("0000-"), (start, end)
    assert start == "0000-01-16T06:00:00Z", start
    assert end == "0000-12-16T01:20:06Z", end
    assert instant(start) < instant(end)
    time_dim = [d for d in props["cube:dimensions"].values() if d.get("type") == "temporal"]
    assert len(time_dim) == 1 and time_dim[0]["extent"] == [start, end], time_dim


def test_s2_l2a_item(zarrstac):
    assert S2_L2A is not None, f"no S02MSIL2A store among {EOPF_STORES}"
    item = item_from_cli(zarrstac, S2_L2A)
    assert not stacschema.problems(item), stacschema.problems(item)
    assert item["properties"]["proj:code"] == "EPSG:32634"
    ten_m = {"b02": "blue", "b03": "green", "b04": "red", "b08": "nir"}
    candidates = [(key, a) for key, a in item["assets"].items()
                  if "data" in a.get("roles", []) and {b.get("name") for b in a.get("bands", [])} == set(ten_m)]
    assert len(candidates) == 1, f"{len(candidates)} data assets with bands {sorted(ten_m)}: " \
                                 f"{[k for k, _ in candidates]}"
    key, asset = candidates[0]
    assert asset.get("gsd") == 10, (key, asset.get("gsd"))
    assert asset.get("proj:code", "EPSG:32634") == "EPSG:32634", key
    for band in asset["bands"]:
        assert band.get("eo:common_name") == ten_m[band["name"]], (key, band)
        assert band.get("nodata") == 0, (key, band)


# ----------------------------------------------------------------------------- validation of broken items

def _broken_items(item):
    """{what is broken: (document, text a validator line must contain)}."""
    proj = copy.deepcopy(item)
    proj["properties"]["proj:code"] = 4326
    no_datetime = copy.deepcopy(item)
    del no_datetime["properties"]["datetime"]
    bad_time = copy.deepcopy(item)
    bad_time["properties"]["start_datetime"] = "2014-02-30T00:00:00Z"
    unknown_ext = copy.deepcopy(item)
    unknown_ext["stac_extensions"].append("https://stac-extensions.github.io/nonexistent/v9.9.9/schema.json")
    return {
        "proj-code-integer": (proj, r"proj:code"),
        "missing-datetime": (no_datetime, r"""["'/]datetime["']? (is a required|is missing)|required.*["']datetime["']|/properties/datetime"""),
        "impossible-date": (bad_time, r"2014-02-30|start_datetime"),
        "unvendored-extension": (unknown_ext, r"nonexistent"),
    }


@pytest.fixture(scope="module")
def air_item(zarrstac):
    item = item_from_cli(zarrstac, AIR)
    assert "proj:code" in item["properties"] and "datetime" in item["properties"], sorted(item["properties"])
    assert any("projection" in u for u in item["stac_extensions"]), item["stac_extensions"]
    assert not stacschema.problems(item), stacschema.problems(item)
    return item


@pytest.mark.parametrize("case", ["proj-code-integer", "missing-datetime", "impossible-date", "unvendored-extension"])
def test_zarrstac_validate_names_the_problem(zarrstac, air_item, case, tmp_path):
    doc, pattern = _broken_items(air_item)[case]
    path = tmp_path / f"{case}.json"
    path.write_text(json.dumps(doc, indent=2))
    proc = run(zarrstac.binary, "validate", path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"zarrstac validate accepted a broken item ({case}):\n{out}"
    assert re.search(r"0 passed, 1 failed", out), out
    lines = [line for line in out.splitlines() if not re.match(r"^\d+ passed, \d+ failed", line)]
    assert any(re.search(pattern, line) for line in lines), \
        f"no line names the problem ({case}, expected /{pattern}/):\n{out[:3000]}"


@pytest.mark.parametrize("case", ["proj-code-integer", "missing-datetime", "impossible-date", "unvendored-extension"])
def test_stacschema_names_the_problem(air_item, case):
    doc, pattern = _broken_items(air_item)[case]
    found = stacschema.problems(doc)
    assert found, f"stacschema accepted a broken item ({case})"
    assert any(re.search(pattern, line) for line in found), found


def test_stacschema_registry_covers_the_vendored_tree():
    """Every vendored extension schema is reachable by its published URL."""
    root = stacschema.SCHEMAS / "extensions"
    for path in root.glob("*/*/schema.json"):
        name, version = path.parts[-3], path.parts[-2]
        url = f"https://stac-extensions.github.io/{name}/{version}/schema.json"
        assert stacschema.VENDORED.get(url) == path, url
    for kind, url in stacschema.CORE_SCHEMA.items():
        assert url in stacschema.VENDORED, url


def test_stacschema_year_zero_and_bad_dates():
    check = stacschema._date_time
    assert check("0000-01-16T06:00:00Z") and check("0000-02-29T00:00:00Z")  # year 0 is a leap year
    for bad in ("2025-02-29T00:00:00Z", "2025-13-01T00:00:00Z", "1850-01-16T12:00:00", "1850-01-16 12:00:00Z",
                "0000-02-30T00:00:00Z", "2025-01-01T24:00:00Z"):
        assert not check(bad), bad


# ----------------------------------------------------------------------------- datasets over time

def test_dataset_item_does_not_depend_on_arrival_order(zarrstac, tmp_path):
    """Files of a CMIP dataset arriving in batches, in any order, end in the same dataset
    item and combined references as all at once."""
    def outputs(ws):
        root = str(ws.root)
        found = {}
        for top in (ws.catalog / "cmip5-mon-tas", ws.refs / "cmip5-mon-tas"):
            for p in sorted(top.rglob("*.json")):
                found[str(p.relative_to(ws.root))] = p.read_text().replace(root, "<ROOT>")
        return found

    at_once = Workspace(tmp_path / "at_once")
    assert at_once.ingest(zarrstac.binary, CMIP5_SERIES).returncode == 0
    expected = outputs(at_once)
    assert any(k.startswith("catalog/") and "CMIP5.output.MOHC" in k for k in expected), sorted(expected)

    rng = random.Random(7)
    shuffled = CMIP5_SERIES[:]
    rng.shuffle(shuffled)
    batched = Workspace(tmp_path / "batched")
    for batch in (shuffled[:5], shuffled[5:9], shuffled[9:]):
        proc = batched.ingest(zarrstac.binary, batch)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert outputs(batched) == expected

    # the dataset item lists every file once, with its own times
    item_path = next(p for p in (batched.catalog / "cmip5-mon-tas").rglob("CMIP5.*.json"))
    item = load(item_path)
    files = {a["href"] for a in item["assets"].values() if a["href"].endswith(".nc")}
    assert files == {file_url(p) for p in CMIP5_SERIES}
    assert not stacschema.problems(item), stacschema.problems(item)


def test_path_template_groups_files_without_cmip_attributes(zarrstac, tmp_path):
    """Files that name no CMIP dataset are grouped by a configured path layout."""
    import shutil
    pair = sorted((FIXTURES / "generated" / "combine").glob("units_*.nc"))
    assert len(pair) == 2
    tree = tmp_path / "archive" / "proj" / "EUR-11" / "run1"
    tree.mkdir(parents=True)
    for k, src in enumerate(pair):
        shutil.copy(src, tree / f"part{k}.nc")
    ws = Workspace(tmp_path / "ws")
    proc = run(zarrstac.binary, "ingest", tmp_path / "archive", "--catalog", ws.catalog, "--refs-root", ws.refs,
               cwd=ws.cwd, env=clean_env(ZARRSTAC_OUTPUT__FAILED=str(ws.failed),
                                         ZARRSTAC_DATASETS__PATH_TEMPLATE="proj/{domain}/{run}/{filename}"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    items = [load(p) for p in ws.catalog.rglob("*.json") if load(p).get("type") == "Feature"]
    assert len(items) == 1, [i["id"] for i in items]
    (item,) = items
    assert item["id"].startswith("EUR-11.run1"), item["id"]
    files = sorted(a["href"] for a in item["assets"].values() if a["href"].endswith(".nc"))
    assert files == sorted(file_url(tree / f"part{k}.nc") for k in range(2))
    props = item["properties"]
    assert props["start_datetime"].startswith("2000-01-01") and props["end_datetime"].startswith("2000-01-20")
    assert not stacschema.problems(item), stacschema.problems(item)


def test_a_dataset_whose_files_differ_in_time_units_keeps_its_time_bounds(zarrstac, tmp_path):
    """Files arriving one by one, the later-dated first, with time bounds in each file's
    own units: the dataset's combined references give the bounds xr.open_mfdataset gives."""
    import shutil

    import xarray as xr
    pair = [FIXTURES / "generated" / "combine" / f"bounds3_{k}.nc" for k in "ab"]
    tree = tmp_path / "archive" / "proj" / "EUR-11" / "run1"
    tree.mkdir(parents=True)
    ws = Workspace(tmp_path / "ws")
    env = clean_env(ZARRSTAC_OUTPUT__FAILED=str(ws.failed),
                    ZARRSTAC_DATASETS__PATH_TEMPLATE="proj/{domain}/{run}/{filename}")
    for k in (1, 0):
        shutil.copy(pair[k], tree / f"part{k}.nc")
        proc = run(zarrstac.binary, "ingest", tree / f"part{k}.nc", "--catalog", ws.catalog,
                   "--refs-root", ws.refs, cwd=ws.cwd, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    (refs,) = [p for p in ws.refs.rglob("EUR-11.run1*.json")]
    combined = xr.open_dataset("reference://", engine="zarr", backend_kwargs={
        "consolidated": False, "zarr_format": 2, "storage_options": {"fo": str(refs), "remote_protocol": "file"}})
    with combined, xr.open_mfdataset(pair, combine="by_coords") as expected:
        assert (combined["time_bnds"].values == expected["time_bnds"].values).all()
        assert (combined["time"].values == expected["time"].values).all()
