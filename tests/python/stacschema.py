"""Offline STAC validation in Python, independent of the Rust validator it is checked against.

Every JSON schema under crates/stac/schemas is registered under the URL it is published at
(the folder layout mirrors those URLs; see that folder's README.md) and under its own `$id`.
A document is checked against the STAC 1.1.0 core schema of its type (Item, Collection,
Catalog) and against every schema listed in its `stac_extensions`; an extension whose
schema is not vendored is a failure, never a silent pass. Nothing is fetched over the network.

`date-time` strings are format-checked (RFC 3339) when rfc3339-validator is installed
(`FORMAT_CHECKS` says whether it is): a schema-valid string such as "2025-13-01T00:00:00Z"
or "2025-02-30T00:00:00Z" is then an error too. Year 0000 is accepted: RFC 3339's grammar
allows it (date-fullyear = 4DIGIT), and CF climatologies are dated in it.

    problems(doc) -> [str, ...]           what is wrong with one document (empty: valid)
    validate_path(path) -> {file: [str]}  every STAC document in a file or under a folder

Also usable by hand:  python stacschema.py FILE_OR_DIR...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7

SCHEMAS = Path(__file__).resolve().parents[2] / "crates" / "stac" / "schemas"
STAC_VERSION = "1.1.0"
CORE = f"https://schemas.stacspec.org/v{STAC_VERSION}"
CORE_SCHEMA = {
    "Feature": f"{CORE}/item-spec/json-schema/item.json",
    "Collection": f"{CORE}/collection-spec/json-schema/collection.json",
    "Catalog": f"{CORE}/catalog-spec/json-schema/catalog.json",
}
DRAFT7_META = "http://json-schema.org/draft-07/schema"

try:
    from rfc3339_validator import validate_rfc3339
except ImportError:  # pragma: no cover - tests/requirements.txt pins it
    validate_rfc3339 = None
FORMAT_CHECKS = validate_rfc3339 is not None


# ----------------------------------------------------------------------------- schema registry

def published_url(path: Path) -> str | None:
    """The URL a vendored schema file is published at, from where it sits in the tree;
    None for folders whose files are known only by their `$id`."""
    parts = path.relative_to(SCHEMAS).parts
    top = parts[0]
    if top == "core":  # core/v1.1.0/NAME.json: catalog and collection have their own spec folders
        version, name = parts[1], parts[-1]
        spec = {"catalog.json": "catalog-spec", "collection.json": "collection-spec"}.get(name, "item-spec")
        return f"https://schemas.stacspec.org/{version}/{spec}/json-schema/{name}"
    if top == "geojson":
        return f"https://geojson.org/schema/{parts[-1]}"
    if top == "extensions" and len(parts) >= 4:  # extensions/NAME/VERSION/...
        return "https://stac-extensions.github.io/" + "/".join(parts[1:])
    return None  # projjson/, extra/: by $id


def _names(path: Path, doc: dict) -> set[str]:
    names = set()
    url = published_url(path)
    if url:
        names.add(url)
    sid = doc.get("$id")
    if isinstance(sid, str) and sid.startswith(("http://", "https://")):
        names.add(sid.rstrip("#"))
    return names


def build_registry(root: Path = SCHEMAS) -> tuple[Registry, dict[str, Path]]:
    """A registry of every vendored schema, and {url: file} of what it holds."""
    resources, where = [], {}
    for path in sorted(root.rglob("*.json")):
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            continue
        resource = Resource.from_contents(doc, default_specification=DRAFT7)
        for name in _names(path, doc):
            where[name] = path
            resources += [(name, resource), (name + "#", resource)]
    meta = Resource.from_contents(Draft7Validator.META_SCHEMA, default_specification=DRAFT7)
    resources += [(DRAFT7_META, meta), (DRAFT7_META + "#", meta)]
    return Registry().with_resources(resources), where


REGISTRY, VENDORED = build_registry()


def _date_time(instance) -> bool:
    if not isinstance(instance, str):
        return True
    text = instance.upper()  # RFC 3339 section 5.6 note: "T" and "Z" may be lower case
    if text[:4] == "0000":
        # The library refuses year 0 outright. In the proleptic Gregorian calendar year 0 is a
        # leap year, as is 2000: checking the same month and day in 2000 keeps 29 February.
        text = "2000" + text[4:]
    return validate_rfc3339(text)


def format_checker() -> FormatChecker | None:
    if not FORMAT_CHECKS:
        return None
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_date_time)
    return checker


FORMATS = format_checker()
_VALIDATORS: dict[str, Draft7Validator] = {}


def _validator(url: str) -> Draft7Validator:
    key = url.rstrip("#")
    if key not in _VALIDATORS:
        schema = REGISTRY.contents(key)  # LookupError when not vendored
        _VALIDATORS[key] = Draft7Validator(schema, registry=REGISTRY, format_checker=FORMATS)
    return _VALIDATORS[key]


# ----------------------------------------------------------------------------- validation

def _label(url: str) -> str:
    if url.startswith("https://stac-extensions.github.io/"):
        return "/".join(url.split("/")[3:5])  # NAME/VERSION
    if url.startswith(CORE):
        return "core"
    return url


def _discriminated_out(errors) -> bool:
    """A branch written for another kind of object: it fails on that object's `type` value."""
    return any(e.validator in ("const", "enum") and e.absolute_path and e.absolute_path[-1] == "type"
               for e in errors)


def _leaves(error) -> list:
    """The errors that say what is wrong. A oneOf/anyOf error ("is not valid under any of the
    given schemas") is replaced by the errors of the branch that fits the document best: not
    one written for another `type` (another document type, another geometry or dimension
    type), and of those the one whose errors lie deepest (it matched the most). When every
    branch is ruled out, the oneOf/anyOf error itself is the answer."""
    if not error.context:
        return [error]
    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    candidates = [b for b in branches.values() if not _discriminated_out(b)]
    if not candidates:
        return [error]
    depth = lambda errs: max(len(e.absolute_path) for e in errs)
    deepest = max(depth(b) for b in candidates)
    return [leaf for b in candidates if depth(b) == deepest for sub in b for leaf in _leaves(sub)]


def _describe(error) -> list[str]:
    out = []
    for leaf in _leaves(error):
        where = "/" + "/".join(str(p) for p in leaf.absolute_path)
        line = f"{where}: {leaf.message[:300]}"
        if line not in out:
            out.append(line)
    return out


def problems(doc) -> list[str]:
    """Every reason `doc` is not a valid STAC 1.1.0 document; empty when it is."""
    if not isinstance(doc, dict):
        return [f"not a JSON object ({type(doc).__name__})"]
    kind = doc.get("type")
    if kind not in CORE_SCHEMA:
        return [f"not a STAC document: type {kind!r}"]
    found = []
    if doc.get("stac_version") != STAC_VERSION:
        found.append(f"stac_version {doc.get('stac_version')!r}, expected {STAC_VERSION!r}")
    extensions = doc.get("stac_extensions", [])
    if not isinstance(extensions, list):
        extensions = []  # the core schema reports it
    for url in [CORE_SCHEMA[kind], *extensions]:
        if not isinstance(url, str):
            continue
        try:
            validator = _validator(url)
        except LookupError:
            found.append(f"{url}: schema not vendored, cannot validate offline")
            continue
        try:
            errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
        except Unresolvable as e:
            found.append(f"{_label(url)}: schema refers to {e.ref!r}, which is not vendored")
            continue
        for e in errors:
            found += [f"{_label(url)}: {line}" for line in _describe(e) if f"{_label(url)}: {line}" not in found]
    return found


def is_stac(doc) -> bool:
    return isinstance(doc, dict) and doc.get("type") in CORE_SCHEMA and "stac_version" in doc


def validate_path(path) -> dict[Path, list[str]]:
    """{file: problems} for a file, or for every STAC document (by its `type`) under a folder;
    JSON files in a folder that are not STAC (references, for instance) are left out."""
    path = Path(path)
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    out = {}
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            out[f] = [f"not readable as JSON: {e}"]
            continue
        if path.is_dir() and not is_stac(doc):
            continue
        out[f] = problems(doc)
    return out


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    passed = failed = 0
    for arg in argv:
        for f, found in validate_path(arg).items():
            if found:
                failed += 1
                for p in found:
                    print(f"{f}: {p}")
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
