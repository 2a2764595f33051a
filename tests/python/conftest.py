"""Shared fixtures: the binary under test and the source files it is run on."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


def _is_source(path):
    with open(path, "rb") as f:
        head = f.read(8)
    return any(head.startswith(sig) for sig in SIGNATURES)


def sources(*folders):
    """Every NetCDF-3/NetCDF-4/HDF5 file under the given fixture folders, by signature."""
    found = []
    for folder in folders:
        for p in sorted((FIXTURES / folder).rglob("*")):
            if p.is_file() and _is_source(p):
                found.append(p)
    return found


SHARED = sources("shared")
GENERATED = sources("generated")
ALL_SOURCES = SHARED + GENERATED

# Files of every format the pipeline reads that give one item each, for the worker and
# fault runs that copy them under many names: no CMIP files (copies of one would overlap
# in time in their dataset: the shared cmip6/ and cmip5 series, the generated sea-ice
# grids `siconc_*`), no year-0 climatology (pgstac cannot hold it).
SINGLE_ITEM_FILES = sorted(p for d in ("netcdf3", "netcdf4", "hdf5-edge") for p in (FIXTURES / "shared" / d).iterdir()
                           if "coads" not in p.name) + sorted(
    p for p in (FIXTURES / "generated").iterdir() if p.suffix in (".nc", ".h5") and not p.name.startswith("siconc_"))


def source_id(path):
    return str(path.relative_to(FIXTURES))


def file_url(path):
    return Path(os.path.abspath(path)).as_uri()


class Zarrstac:
    """Runs the binary named by $ZARRSTAC_BIN."""

    def __init__(self, binary):
        self.binary = binary

    def refs(self, source, out, *args, env=None, timeout=120):
        cmd = [self.binary, "refs", str(source), "-o", str(out), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def zarrstac():
    binary = os.environ.get("ZARRSTAC_BIN")
    if not binary:
        pytest.fail("ZARRSTAC_BIN is not set: point it at the zarrstac binary (./scripts/test.sh does)")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"ZARRSTAC_BIN={binary} is not an executable file")
    return Zarrstac(os.path.abspath(binary))


def pytest_report_header(config):
    return [f"zarrstac: {os.environ.get('ZARRSTAC_BIN', '(ZARRSTAC_BIN not set)')}",
            f"fixtures: {len(SHARED)} shared, {len(GENERATED)} generated source files"]
