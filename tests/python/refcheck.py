"""Check virtual Zarr references (kerchunk JSON v1) against the file they point into.

Every array of the source is read twice: from the source itself (netCDF4 for NetCDF-3,
h5py for HDF5/NetCDF-4, no CF decoding) and through the references (fsspec's
ReferenceFileSystem + zarr, Zarr format 2). Values (NaN equals NaN), shape, dtype and
`_ARRAY_DIMENSIONS` must agree. For NetCDF sources xarray then opens both, group by
group, with CF decoding on, and the decoded variables and their attributes must agree too.

    check(refs_json, source, refused={"var": "reason"}) -> [Failure, ...]

`refused` holds the variables the tool declined (its `refused  VAR: REASON` lines). A
refused variable passes only when the source gives a reason a tool may decline it
(variable-length or compound type, a filter numcodecs cannot decode, ...); a plain
numeric or fixed-string array must always be referenced.

Also usable by hand:  python refcheck.py REFS.json SOURCE
"""
from __future__ import annotations

import json
import math
import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

try:  # HDF5 filter plugins (blosc, zstd, lz4, bitshuffle) for h5py
    import hdf5plugin  # noqa: F401
except ImportError:  # pragma: no cover
    pass

# HDF5 filters with a numcodecs codec: deflate, shuffle, fletcher32, blosc, zstd
CODEC_FILTERS = {1, 2, 3, 32001, 32015}
# compact datasets up to this size are expected to be inlined; larger ones may be refused
COMPACT_INLINE_LIMIT = 4096
NETCDF_BARE_DIMENSION = "This is a netCDF dimension but not a netCDF variable"
NON_COORD_PREFIX = "_nc4_non_coord_"
REFUSED_LINE = re.compile(r"^refused\s+(?P<name>.+?):\s+(?P<reason>\S.*)$")


@dataclass
class Failure:
    name: str
    reason: str

    def __str__(self):
        return f"{self.name}: {self.reason}"


@dataclass
class SourceArray:
    name: str  # netCDF path of the variable (HDF5 path for plain HDF5), e.g. "g1/g2/w"
    values: object = None  # numpy array; None when it cannot be read here
    dims: tuple | None = None  # netCDF dimension names; None for plain HDF5
    refusable: str | None = None  # why a tool may decline it; None: it must be referenced
    unreadable: str | None = None  # why the source itself cannot be read here
    aliases: tuple = ()  # other names the references may use (the stored HDF5 name)


@dataclass
class Report:
    passed: list = field(default_factory=list)
    refused: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    def fail(self, name, reason):
        self.failures.append(Failure(name, reason))


def parse_refused(stderr: str) -> dict:
    """{variable: reason} from the `refused  VAR: REASON` lines of the tool's stderr."""
    out = {}
    for line in stderr.splitlines():
        m = REFUSED_LINE.match(line.strip())
        if m:
            out[m.group("name").strip().strip("/")] = m.group("reason").strip()
    return out


def file_kind(path):
    """'cdf' (NetCDF-3), 'netcdf4' (HDF5 written as NetCDF-4) or 'hdf5'."""
    with open(path, "rb") as f:
        if f.read(3) == b"CDF":
            return "cdf"
    import h5py

    with h5py.File(path, "r") as f:
        if "_NCProperties" in f.attrs:
            return "netcdf4"
        marks = []
        f.visititems(lambda n, o: marks.append(n) if "_Netcdf4Dimid" in o.attrs or "DIMENSION_LIST" in o.attrs else None)
        return "netcdf4" if marks else "hdf5"


# ----------------------------------------------------------------------------- source side

def _netcdf_structure(path):
    """What netCDF-C says about a NetCDF-3/4 file: ({variable path: dimension names},
    [(group path, variables xarray cannot open)]).

    A variable named like one of its dimensions without being that dimension's 1-D
    coordinate (netCDF-4 stores it as `_nc4_non_coord_<name>`) is no valid xarray variable.
    """
    import netCDF4

    dims, groups = {}, []

    def walk(group, path):
        prefix = path.strip("/") + "/" if path != "/" else ""
        odd = []
        for name, var in group.variables.items():
            dims[prefix + name] = tuple(var.dimensions)
            if name in var.dimensions and tuple(var.dimensions) != (name,):
                odd.append(name)
        groups.append((path, odd))
        for name, child in group.groups.items():
            walk(child, f"/{prefix}{name}")

    with netCDF4.Dataset(path) as ds:
        walk(ds, "/")
    return dims, groups


def _cdf_arrays(path):
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        ds.set_auto_chartostring(False)
        for name, v in ds.variables.items():
            yield SourceArray(name, np.asarray(v[...]), tuple(v.dimensions))


def _refusable_hdf5(d):
    """Why a tool may decline this HDF5 dataset, or None when it must reference it."""
    import h5py

    dt = d.dtype
    if dt.kind == "O" or h5py.check_vlen_dtype(dt) is not None:
        return "variable-length type"
    if dt.kind == "V" and dt.names is None:
        return "opaque type"
    if dt.names is not None or (h5py.check_enum_dtype(dt) is not None and dt.kind != "b"):
        return "compound or enum type"
    dcpl = d.id.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.COMPACT and d.id.get_storage_size() > COMPACT_INLINE_LIMIT:
        return "compact dataset too large to inline"
    if dcpl.get_external_count():
        return "external storage"
    for i in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(i)[0]
        if code not in CODEC_FILTERS:
            return f"HDF5 filter {code} has no numcodecs codec"
    if d.chunks is not None and dcpl.get_nfilters():
        for i in range(d.id.get_num_chunks()):
            if d.id.get_chunk_info(i).filter_mask:
                return "a chunk skipped part of the filter pipeline"
    return None


def _hdf5_arrays(path, netcdf):
    import h5py

    dims = _netcdf_structure(path)[0] if netcdf else {}
    names = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for hname in names:
            d = f[hname]
            if netcdf and NETCDF_BARE_DIMENSION in str(d.attrs.get("NAME", b"")):
                continue  # a bare netCDF dimension: no data, not a variable
            head, _, leaf = hname.rpartition("/")
            if netcdf and leaf.startswith(NON_COORD_PREFIX):
                leaf = leaf[len(NON_COORD_PREFIX):]
            name = f"{head}/{leaf}" if head else leaf
            arr = SourceArray(name, dims=dims.get(name) if netcdf else None,
                              aliases=(hname,) if hname != name else ())
            try:
                arr.refusable = _refusable_hdf5(d)
            except Exception as e:  # a damaged layout is still the tool's business
                arr.refusable = f"unreadable layout ({type(e).__name__})"
            try:
                if h5py.check_string_dtype(d.dtype) is not None and d.dtype.kind == "O":
                    arr.values = np.asarray(d.asstr()[()], dtype=object)
                else:
                    arr.values = np.asarray(d[()])
            except Exception as e:  # e.g. a corrupt chunk that HDF5 itself cannot decode
                arr.unreadable = f"{type(e).__name__}: {e}"
            yield arr


def source_arrays(path):
    kind = file_kind(path)
    if kind == "cdf":
        return kind, list(_cdf_arrays(path))
    return kind, list(_hdf5_arrays(path, kind == "netcdf4"))


# ----------------------------------------------------------------------------- comparison

def _text(x):
    x = np.asarray(x)
    if x.dtype.kind == "T":
        x = x.astype(object)
    if x.dtype.kind == "O":
        conv = lambda e: e.decode("utf-8", "replace") if isinstance(e, bytes) else str(e)
        return np.vectorize(conv, otypes=["U"])(x) if x.size else x.astype("U")
    return x


def same_values(src, got):
    """None when equal (NaN equals NaN), else why not."""
    a, b = _text(src), _text(got)
    if a.shape != b.shape:
        return f"shape {b.shape} != source {a.shape}"
    if a.dtype.kind in "SU" or b.dtype.kind in "SU":
        enc = lambda x: np.char.encode(x, "utf-8") if x.dtype.kind == "U" else x
        return None if np.array_equal(enc(a), enc(b)) else "string values differ"
    if a.dtype.names or b.dtype.names:
        if a.dtype.names != b.dtype.names:
            return f"fields {b.dtype.names} != source {a.dtype.names}"
        bad = [n for n in a.dtype.names if same_values(a[n], b[n])]
        return f"compound fields {bad} differ" if bad else None
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        ok = np.array_equal(a.astype("c16" if "c" in a.dtype.kind + b.dtype.kind else "f8"),
                            b.astype("c16" if "c" in a.dtype.kind + b.dtype.kind else "f8"), equal_nan=True)
    else:
        ok = np.array_equal(a, b)
    if ok:
        return None
    diff = np.flatnonzero(~((a == b) | (_isnan(a) & _isnan(b)))) if a.shape else [0]
    first = np.unravel_index(diff[0], a.shape) if a.shape else ()
    return f"values differ at {len(diff)} of {a.size} elements, first {tuple(int(i) for i in first)}: " \
           f"{b[first]!r} != source {a[first]!r}"


def _isnan(x):
    return np.isnan(x) if x.dtype.kind in "fc" else np.zeros(x.shape, bool)


def dtype_problem(src, got):
    """None when the reference dtype can hold the source dtype exactly."""
    s, g = np.dtype(src), np.dtype(got)
    if s.kind in "iuf":
        if g.kind != s.kind or g.itemsize != s.itemsize:
            return f"dtype {g} for a source {s}"
        return None
    if s.kind == "b":
        return None if g.kind == "b" or (g.kind in "iu" and g.itemsize == 1) else f"dtype {g} for a source bool"
    if s.kind == "S":
        return None if g.kind == "S" and g.itemsize == s.itemsize else f"dtype {g} for a source {s}"
    if s.kind == "O":  # variable-length strings read back as str objects
        return None if g.kind in "OUT" else f"dtype {g} for variable-length strings"
    if s.names is not None:
        return None if g.names == s.names else f"fields {g.names} for a source with {s.names}"
    return None


def _open_refs(refs):
    import fsspec
    import zarr

    fs = fsspec.filesystem("reference", fo=refs, remote_protocol="file")
    return zarr.open_group(fs.get_mapper(""), mode="r", zarr_format=2)


def _compare_arrays(report, refs, arrays, refused):
    try:
        group = _open_refs(refs)
    except Exception as e:
        report.fail("(root)", f"references do not open as a Zarr v2 group: {type(e).__name__}: {e}")
        return
    known = set()
    for arr in arrays:
        names = (arr.name, *arr.aliases)
        known.update(names)
        name = next((n for n in names if n in refused), None)
        if name is not None:
            if arr.refusable is None:
                report.fail(name, f"refused ({refused[name]}) although it is a plain array zarr can describe")
            else:
                report.refused[name] = refused[name]
            continue
        z = None
        for name in names:
            try:
                z = group[name]
                break
            except KeyError:
                pass
        if z is None:
            report.fail(arr.name, "missing from the references and not reported as refused")
            continue
        if arr.unreadable:
            report.skipped[name] = f"source unreadable here ({arr.unreadable})"
            continue
        try:
            got = np.asarray(z[...])
        except Exception as e:
            report.fail(name, f"reading through the references raised {type(e).__name__}: {e}")
            continue
        why = same_values(arr.values, got) or dtype_problem(arr.values.dtype, got.dtype)
        if why is None:
            zd = z.attrs.get("_ARRAY_DIMENSIONS")
            if not isinstance(zd, list) or len(zd) != len(z.shape) or not all(isinstance(x, str) for x in zd):
                why = f"_ARRAY_DIMENSIONS {zd!r} does not name the {len(z.shape)} dimensions"
            elif arr.dims is not None and tuple(zd) != arr.dims:
                why = f"_ARRAY_DIMENSIONS {tuple(zd)} != netCDF dimensions {arr.dims}"
        if why:
            report.fail(name, why)
        else:
            report.passed.append(name)
    for name in sorted(set(refused) - known):
        report.fail(name, "reported as refused, but the source has no such array")


# ----------------------------------------------------------------------------- CF decoded

def _mask_default_fill(values, masked):
    """Values equal to netCDF's default fill for their type, as NaN where `masked`.

    xarray leaves netCDF's implicit default fill unmasked when it reads the file, and masks
    it when the references carry it as the Zarr fill_value: the same data either way.
    """
    from netCDF4 import default_fillvals

    code = values.dtype.str[1:]
    if code not in default_fillvals or masked.shape != values.shape:
        return values
    out = values.astype("f8")
    out[(values == np.array(default_fillvals[code], dtype=values.dtype)) & masked] = np.nan
    return out


def _same_decoded(a, b):
    av, bv = a.values, b.values
    if a.dtype.kind in "Mm":
        return None if np.array_equal(av, bv) else "decoded times differ"
    if a.dtype.kind not in "MmOSUT" and b.dtype.kind == "f" and \
            "_FillValue" not in a.encoding and "missing_value" not in a.encoding:
        av = _mask_default_fill(av, np.isnan(bv))
    if av.dtype.kind == "f" and bv.dtype.kind == "f" and av.dtype != bv.dtype and av.shape == bv.shape:
        # packing attributes typed float32 in the file are plain JSON numbers in the references, so
        # xarray unpacks in float64 there: equal within float32 resolution is the same data
        eps = np.finfo(np.float32).eps
        if np.allclose(av.astype("f8"), bv.astype("f8"), rtol=4 * eps, atol=0, equal_nan=True):
            return None
    return same_values(av, bv)


def _same_attr(x, y):
    """Source attribute x equals reference attribute y, whatever holds them (numpy, list, JSON).

    JSON numbers carry no type: a float32 attribute written as its shortest decimal ("185.16")
    reads back as a float64 that differs from the widened float32, yet is the same float32.
    """
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if isinstance(y, bytes):
        y = y.decode("utf-8", "replace")
    if isinstance(x, str) or isinstance(y, str):
        return isinstance(x, str) and isinstance(y, str) and x == y
    xa, ya = np.asarray(x).ravel(), np.asarray(y).ravel()
    if xa.shape != ya.shape:
        return False
    if xa.dtype.kind in "biuf" and ya.dtype.kind in "biuf":
        as_type = "f4" if xa.dtype == np.float32 else "f8"
        return bool(np.array_equal(xa.astype(as_type), ya.astype(as_type), equal_nan=True))
    return [str(v) for v in _text(xa)] == [str(v) for v in _text(ya)]


def _compare_decoded(report, refs, source, refused):
    import fsspec
    import xarray as xr

    for group, odd in _netcdf_structure(source)[1]:
        prefix = "" if group == "/" else group.strip("/") + "/"
        label = f"xarray:{prefix}"
        skip = [k[len(prefix):] for k in refused if k.startswith(prefix) and "/" not in k[len(prefix):]]
        skip += odd + [NON_COORD_PREFIX + n for n in odd]
        kw = dict(decode_timedelta=False, drop_variables=skip)
        try:
            try:
                a = xr.open_dataset(source, engine="netcdf4", group=group, **kw)
                a.load()
            except ValueError:  # times the CF decoder itself cannot decode: compare them undecoded
                kw["decode_times"] = False
                a = xr.open_dataset(source, engine="netcdf4", group=group, **kw)
                a.load()
        except Exception as e:
            report.skipped[label] = f"xarray cannot open the source ({type(e).__name__}: {e})"
            continue
        try:
            if group == "/":  # the way users open references
                b = xr.open_dataset("reference://", engine="zarr", **kw,
                                    backend_kwargs={"consolidated": False, "zarr_format": 2,
                                                    "storage_options": {"fo": refs, "remote_protocol": "file"}})
            else:
                # zarr 3.1's FsspecStore lists "/g1" for a child group of a store rooted at "",
                # which a ReferenceFileSystem does not know: `group=` would show an empty
                # group. A mapper rooted at the group lists it correctly.
                fs = fsspec.filesystem("reference", fo=refs, remote_protocol="file")
                b = xr.open_dataset(fs.get_mapper(prefix.rstrip("/")), engine="zarr", consolidated=False,
                                    zarr_format=2, **kw)
        except Exception as e:
            report.fail(label, f"xarray cannot open the references: {type(e).__name__}: {e}")
            continue
        for k, v in a.attrs.items():
            if k not in b.attrs or not _same_attr(v, b.attrs[k]):
                report.fail(f"{label}.attrs[{k}]", f"global attribute {b.attrs.get(k)!r} != source {v!r}")
        for v in a.variables:
            name = label + v
            if v not in b.variables:
                report.fail(name, "missing when opened through the references")
                continue
            try:
                why = _same_decoded(a[v], b[v])
            except Exception as e:
                why = f"comparison raised {type(e).__name__}: {e}"
            if why is None and tuple(a[v].dims) != tuple(b[v].dims):
                why = f"dimensions {b[v].dims} != source {a[v].dims}"
            for k, val in a[v].attrs.items():
                if why is None and (k not in b[v].attrs or not _same_attr(val, b[v].attrs[k])):
                    why = f"attribute {k}: {b[v].attrs.get(k)!r} != source {val!r}"
            if why:
                report.fail(name, why + " (CF-decoded)")
            else:
                report.passed.append(name)
        a.close()
        b.close()


def compare(refs, source, refused=None) -> Report:
    refused = {k.strip("/"): v for k, v in (refused or {}).items()}
    report = Report()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kind, arrays = source_arrays(source)
        _compare_arrays(report, refs, arrays, refused)
        if kind in ("cdf", "netcdf4"):
            _compare_decoded(report, refs, source, refused)
    return report


def check(refs, source, refused=None):
    """The failures (name, reason) of references `refs` against `source`; empty when they agree."""
    return compare(refs, source, refused).failures


# ----------------------------------------------------------------------------- document shape

def structure_problems(doc, source_url, source_size=None):
    """What is wrong with the shape of a kerchunk JSON v1 document pointing into `source_url`."""
    problems = []
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("refs"), dict):
        return ['not {"version": 1, "refs": {...}}']
    refs = doc["refs"]
    if ".zgroup" not in refs:
        problems.append("no .zgroup")
    meta = {}
    for key, val in refs.items():
        leaf = key.rsplit("/", 1)[-1]
        if leaf in (".zgroup", ".zattrs", ".zarray"):
            if not isinstance(val, str):
                problems.append(f"{key}: metadata is not a JSON string")
                continue
            try:
                meta[key] = json.loads(val)
            except ValueError:
                problems.append(f"{key}: metadata is not valid JSON")
    for key, zarray in meta.items():
        if not key.endswith(".zarray"):
            continue
        base = key[: -len(".zarray")]
        attrs = meta.get(base + ".zattrs", {})
        dims = attrs.get("_ARRAY_DIMENSIONS")
        if not isinstance(dims, list) or len(dims) != len(zarray.get("shape", [])):
            problems.append(f"{base or '/'}: no _ARRAY_DIMENSIONS for its {len(zarray.get('shape', []))} dimensions")
        grid = [max(1, math.ceil(s / c)) if c else 1 for s, c in zip(zarray.get("shape", []), zarray.get("chunks", []))]
        sep = zarray.get("dimension_separator", ".")
        for ckey in (k for k in refs if k.startswith(base) and "/" not in k[len(base):] and not k[len(base):].startswith(".z")):
            idx = ckey[len(base):].split(sep)
            if len(idx) != max(1, len(grid)) or not all(i.isdigit() for i in idx) or \
                    any(int(i) >= g for i, g in zip(idx, grid)):
                problems.append(f"{ckey}: chunk key outside the chunk grid {grid}")
    for key, val in refs.items():
        if isinstance(val, str):
            continue
        if not isinstance(val, list) or len(val) not in (1, 3):
            problems.append(f"{key}: reference is neither inline data nor [url] / [url, offset, length]")
            continue
        url = val[0]
        if url != source_url:
            problems.append(f"{key}: URL {url!r} is not the source {source_url!r}")
        if len(val) == 3:
            off, length = val[1], val[2]
            if not (isinstance(off, int) and isinstance(length, int) and off >= 0 and length > 0):
                problems.append(f"{key}: bad range {off!r}, {length!r}")
            elif source_size is not None and off + length > source_size:
                problems.append(f"{key}: range {off}+{length} past the end of the {source_size}-byte source")
    return problems


def main(argv):
    if len(argv) != 2:
        print(__doc__)
        return 2
    refs, source = argv
    report = compare(refs, source)
    for name in report.passed:
        print(f"ok    {name}")
    for name, why in report.skipped.items():
        print(f"SKIP  {name}: {why}")
    for f in report.failures:
        print(f"FAIL  {f}")
    print(f"{len(report.passed)} passed, {len(report.failures)} failed")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
