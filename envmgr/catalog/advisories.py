"""Vulnerability advisories in OSV format, read offline from a directory, matched to packages.

The database is a directory a site mirrors (osv.dev's bulk export: ``<ECOSYSTEM>/all.zip``
or the unpacked ``<ID>.json`` files) or curates by hand; every ``*.json`` file and every
``*.json`` member of a ``*.zip`` below it is one OSV record (docs/security.md).

Which entries count (``affected[].package``):

* ecosystem ``PyPI``: matched to conda packages by PEP 503 normalised name, which is how
  the channel builder names the conda packages it makes from Python distributions
  (``_internal._condapkg.normalize_name``), and to pip packages of a lock directly;
* ecosystem ``conda`` (also ``conda:<anything>``; the suffix is not used): conda packages by name.

Versions are ordered as their ecosystem orders them: PEP 440 (``packaging``) for PyPI,
conda's ordering (rattler's ``Version``) for conda. ``ranges`` of type ``ECOSYSTEM`` or
``SEMVER`` are read with the ecosystem's ordering; ``GIT`` ranges name commits, not
versions, and are skipped. ``versions`` lists exact affected versions.

A file that is not JSON, or not an OSV record where it matters (``id``, ``affected``,
``package``, ``ranges``/``events`` of the wrong type), is an ``AdvisoryDBError`` naming the
file and line (exit 2). A version in a range that its ecosystem cannot parse is a warning
and that range is skipped: one odd record in a 15,000-record dump must not stop the check.
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from envmgr.errors import UsageError

PYPI, CONDA = "PyPI", "conda"
MANAGER_CONDA, MANAGER_PIP = "conda", "pip"
RANGE_TYPES = ("ECOSYSTEM", "SEMVER")
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_SEP = re.compile(r"[-_.]+")


class AdvisoryDBError(UsageError):
    """A database file that is not an OSV record (exit 2): names the file and line."""


def normalize(name: str) -> str:
    """PEP 503 normalisation (the channel builder names converted conda packages this way)."""
    return _SEP.sub("-", name).lower()


# -- version ordering ------------------------------------------------------------------------

@functools.lru_cache(maxsize=65536)  # the same few thousand event versions, for every build checked
def _pep440(text: str) -> Version:
    return Version(text)


@functools.lru_cache(maxsize=65536)
def _conda(text: str) -> Any:
    from envmgr._internal import _rattler

    return _rattler.conda_version(text)


def order_for(ecosystem: str, manager: str) -> Callable[[str], Any]:
    """The version key for an advisory's ecosystem (PEP 440 for PyPI, conda's for conda)."""
    return _pep440 if ecosystem == PYPI else _conda


def _key(order: Callable[[str], Any], text: str) -> Any:
    """A comparable key; raises ValueError when the ecosystem cannot read ``text``."""
    try:
        return order(text)
    except InvalidVersion as exc:
        raise ValueError(str(exc)) from None


# -- the records -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    events: tuple[tuple[str, str], ...]  # (introduced|fixed|last_affected|limit, version)


@dataclass(frozen=True)
class AffectedPackage:
    ecosystem: str  # PyPI | conda
    name: str  # normalised
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    severity: str = ""


@dataclass(frozen=True)
class Advisory:
    id: str
    summary: str
    aliases: tuple[str, ...]
    severity: str
    modified: str
    source: str  # the file (or zip:member) it came from
    affected: tuple[AffectedPackage, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "aliases": list(self.aliases), "summary": self.summary,
                "severity": self.severity, "modified": self.modified, "source": self.source}


@dataclass(frozen=True)
class Match:
    """An advisory that affects one package version of a build."""

    advisory: Advisory
    manager: str  # conda | pip
    package: str
    version: str
    fixed: str | None
    severity: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.advisory.id, self.package)

    def to_json(self) -> dict[str, Any]:
        return {"advisory": self.advisory.id, "aliases": list(self.advisory.aliases),
                "summary": self.advisory.summary, "severity": self.severity,
                "package": self.package, "manager": self.manager, "version": self.version,
                "fixed": self.fixed, "source": self.advisory.source}


@dataclass
class AdvisoryDB:
    directory: Path
    advisories: list[Advisory]
    files: int = 0
    skipped: int = 0  # records with no PyPI/conda entry, or withdrawn
    warnings: list[str] = field(default_factory=list)
    _index: dict[tuple[str, str], list[tuple[Advisory, AffectedPackage]]] | None = None

    def entries(self, ecosystem: str, name: str) -> list[tuple[Advisory, AffectedPackage]]:
        if self._index is None:
            self._index = {}
            for adv in self.advisories:
                for aff in adv.affected:
                    self._index.setdefault((aff.ecosystem, aff.name), []).append((adv, aff))
        return self._index.get((ecosystem, name), [])

    def summary(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "files": self.files,
                "advisories": len(self.advisories), "skipped": self.skipped, "warnings": self.warnings}


# -- reading the directory ----------------------------------------------------------------------

def _documents(directory: Path) -> Iterator[tuple[str, bytes]]:
    """(source name, bytes) of every JSON file and every JSON member of every zip, sorted."""
    for path in sorted(directory.rglob("*")):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".json":
            try:
                yield str(path), path.read_bytes()
            except OSError as exc:
                raise AdvisoryDBError(f"cannot read advisory file {path}: {exc.strerror or exc}") from None
        elif path.suffix == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    for member in sorted(zf.namelist()):
                        if member.endswith(".json"):
                            yield f"{path}:{member}", zf.read(member)
            except (zipfile.BadZipFile, OSError) as exc:
                raise AdvisoryDBError(f"{path} is not a readable zip of OSV records: {exc}",
                                      hint="download it again (osv.dev: <ECOSYSTEM>/all.zip)") from None


def load_db(directory: Path) -> AdvisoryDB:
    """Every PyPI and conda advisory under ``directory`` (see the module doc for the rules)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"advisories database {directory} is not a directory",
                         hint="pass --db DIR or fix advisories_dir in the site config "
                              "(docs/security.md: mirroring an OSV dump)")
    db = AdvisoryDB(directory, [])
    for source, raw in _documents(directory):
        db.files += 1
        adv = parse_record(source, raw, db.warnings)
        if adv is None:
            db.skipped += 1
        else:
            db.advisories.append(adv)
    return db


def _line_of(raw: bytes, path: list[str | int]) -> int:
    """The line where ``path`` (keys and indexes) starts in the JSON text, for error messages.

    Only called for a record that is already known to be bad: it re-reads that one
    file with ruamel.yaml (JSON is YAML), which keeps line numbers; 1 if not found.
    """
    from ruamel.yaml import YAML

    try:
        node: Any = YAML(typ="rt").load(raw.decode("utf-8", "replace"))
        line = 0
        for step in path:
            if hasattr(node, "lc"):
                try:
                    line = (node.lc.key(step) if isinstance(step, str) else node.lc.item(step))[0]
                except (KeyError, IndexError, TypeError):
                    break
            node = node[step]
        return line + 1
    except Exception:  # noqa: BLE001 - a line number is a courtesy
        return 1


def _where(path: list[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(document)"


class _Bad(Exception):
    def __init__(self, path: list[str | int], problem: str):
        super().__init__(problem)
        self.path, self.problem = path, problem


def _expect(value: Any, kind: type | tuple[type, ...], path: list[str | int], what: str) -> Any:
    if not isinstance(value, kind):
        raise _Bad(path, f"must be {what}")
    return value


def parse_record(source: str, raw: bytes, warnings: list[str]) -> Advisory | None:
    """One OSV record, or None when it has nothing for PyPI or conda (or is withdrawn)."""
    try:
        doc = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise AdvisoryDBError(f"{source}: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise AdvisoryDBError(f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
                              hint="fix or remove the file; OSV records are JSON documents") from None
    try:
        return _record(source, doc, warnings)
    except _Bad as bad:
        line = _line_of(raw, bad.path)
        raise AdvisoryDBError(f"{source}:{line}: {_where(bad.path)} {bad.problem} (OSV schema)",
                              hint="fix or remove the file (https://ossf.github.io/osv-schema/)") from None


def _ecosystem(text: str) -> str | None:
    base = text.split(":", 1)[0].strip()
    if base == PYPI:
        return PYPI
    if base.lower() == CONDA:
        return CONDA
    return None


def _record(source: str, doc: Any, warnings: list[str]) -> Advisory | None:
    _expect(doc, dict, [], "a JSON object")
    rid = _expect(doc.get("id"), str, ["id"], "a string")
    affected = _expect(doc.get("affected", []), list, ["affected"], "a list")
    if doc.get("withdrawn"):
        return None
    entries = []
    for i, aff in enumerate(affected):
        path: list[str | int] = ["affected", i]
        _expect(aff, dict, path, "an object")
        package = aff.get("package")
        if package is None:
            continue  # e.g. only ranges over a git repository
        _expect(package, dict, [*path, "package"], "an object")
        ecosystem = _ecosystem(str(package.get("ecosystem") or ""))
        if ecosystem is None:
            continue
        name = _expect(package.get("name"), str, [*path, "package", "name"], "a string")
        key = normalize(name) if ecosystem == PYPI else name.strip().lower()
        entries.append(_affected(rid, ecosystem, key, aff, path, warnings))
    if not entries:
        return None
    return Advisory(id=rid, summary=str(doc.get("summary") or doc.get("details") or "")[:300].split("\n")[0],
                    aliases=tuple(str(a) for a in doc.get("aliases") or ()),
                    severity=_severity(doc), modified=str(doc.get("modified") or ""),
                    source=source, affected=tuple(entries))


def _affected(rid: str, ecosystem: str, name: str, aff: dict[str, Any], path: list[str | int],
              warnings: list[str]) -> AffectedPackage:
    ranges = []
    for j, rng in enumerate(_expect(aff.get("ranges", []), list, [*path, "ranges"], "a list")):
        rpath = [*path, "ranges", j]
        _expect(rng, dict, rpath, "an object")
        kind = _expect(rng.get("type"), str, [*rpath, "type"], "a string")
        events = _expect(rng.get("events"), list, [*rpath, "events"], "a list")
        if kind not in RANGE_TYPES:
            continue
        parsed = []
        for k, event in enumerate(events):
            epath = [*rpath, "events", k]
            _expect(event, dict, epath, "an object")
            found = [(e, event[e]) for e in EVENT_KINDS if e in event]
            if len(found) != 1 or not isinstance(found[0][1], str):
                raise _Bad(epath, "must have exactly one of introduced, fixed, last_affected, "
                                  "limit, with a version string")
            parsed.append(found[0])
        order = order_for(ecosystem, "")
        bad = [v for _, v in parsed if v != "0" and not _parses(order, v)]
        if bad:
            warnings.append(f"{rid}: {name} range {j} has versions {ecosystem} cannot order "
                            f"({', '.join(bad)}); that range is skipped")
            continue
        ranges.append(Range(tuple(parsed)))
    versions = _expect(aff.get("versions", []), list, [*path, "versions"], "a list")
    spec = aff.get("ecosystem_specific") if isinstance(aff.get("ecosystem_specific"), dict) else {}
    return AffectedPackage(ecosystem, name, tuple(ranges), tuple(str(v) for v in versions),
                           severity=str(spec.get("severity") or ""))


def _parses(order: Callable[[str], Any], text: str) -> bool:
    try:
        _key(order, text)
    except ValueError:
        return False
    return True


def _severity(doc: dict[str, Any]) -> str:
    """GHSA's ``database_specific.severity`` (HIGH, MODERATE...), else the CVSS vector."""
    specific = doc.get("database_specific")
    if isinstance(specific, dict) and specific.get("severity"):
        return str(specific["severity"])
    for entry in doc.get("severity") or ():
        if isinstance(entry, dict) and entry.get("score"):
            return f"{entry.get('type', '')} {entry['score']}".strip()
    return ""


# -- matching ---------------------------------------------------------------------------------

def _affects(order: Callable[[str], Any], version: Any, rng: Range) -> tuple[bool, str | None]:
    """Whether ``version`` lies in the range, and the first fixed version above it.

    The events, sorted by version ("0" first), switch the state: ``introduced`` on,
    ``fixed`` off at that version, ``last_affected`` off above it, ``limit`` off from it.
    """
    def sort_key(event: tuple[str, str]) -> tuple[int, Any, int]:
        kind, text = event
        rank = EVENT_KINDS.index(kind)
        return (0, 0, rank) if text == "0" else (1, _key(order, text), rank)

    events = sorted(rng.events, key=sort_key)
    state = False
    for kind, text in events:
        if text == "0":
            state = kind == "introduced" or state
            continue
        at = _key(order, text)
        if kind == "introduced" and version >= at:
            state = True
        elif kind == "fixed" and version >= at:
            state = False
        elif kind == "last_affected" and version > at:
            state = False
        elif kind == "limit" and version >= at:
            state = False
    if not state:
        return False, None
    fixes = [text for kind, text in events if kind == "fixed" and text != "0" and _key(order, text) > version]
    return True, (fixes[0] if fixes else None)


def affected_by(entry: AffectedPackage, version_text: str) -> tuple[bool, str | None]:
    """Whether ``version_text`` of the package is affected, and the version that fixes it."""
    order = order_for(entry.ecosystem, "")
    try:
        version = _key(order, version_text)
    except ValueError:
        if entry.ecosystem == PYPI:  # a conda version PEP 440 cannot read: conda's ordering
            return _conda_fallback(entry, version_text)
        return False, None
    if any(_same(order, version, v) for v in entry.versions):
        fixed = next((f for r in entry.ranges for f in [_affects(order, version, r)[1]] if f), None)
        return True, fixed
    for rng in entry.ranges:
        hit, fixed = _affects(order, version, rng)
        if hit:
            return True, fixed
    return False, None


def _same(order: Callable[[str], Any], version: Any, text: str) -> bool:
    try:
        return bool(version == _key(order, text))
    except ValueError:
        return False


def _conda_fallback(entry: AffectedPackage, version_text: str) -> tuple[bool, str | None]:
    try:
        version = _conda(version_text)
    except ValueError:
        return False, None
    if any(_same(_conda, version, v) for v in entry.versions):
        return True, None
    for rng in entry.ranges:
        try:
            hit, fixed = _affects(_conda, version, rng)
        except ValueError:
            continue
        if hit:
            return True, fixed
    return False, None


def match_packages(db: AdvisoryDB, packages: Iterable[tuple[str, str, str]]) -> list[Match]:
    """Every advisory that affects one of ``packages`` ((manager, name, version) triples).

    conda packages are looked up under ``conda`` and, by normalised name, ``PyPI``;
    pip packages under ``PyPI`` only.
    """
    found: list[Match] = []
    for manager, name, version in packages:
        key = normalize(name)
        ecosystems = (CONDA, PYPI) if manager == MANAGER_CONDA else (PYPI,)
        for ecosystem in ecosystems:
            lookup = key if ecosystem == PYPI else name.lower()
            for adv, entry in db.entries(ecosystem, lookup):
                hit, fixed = affected_by(entry, version)
                if hit:
                    found.append(Match(adv, manager, name, version, fixed,
                                       entry.severity or adv.severity or "unknown"))
    unique = {(m.advisory.id, m.manager, m.package): m for m in found}
    return sorted(unique.values(), key=lambda m: (m.package, m.advisory.id))


# -- the database per process, and what builds contain ----------------------------------------

_DB_CACHE: dict[str, tuple[tuple[Any, ...], AdvisoryDB]] = {}


def cached_db(directory: Path) -> AdvisoryDB:
    """``load_db``, re-read only when a file under ``directory`` changed (build --all, the page)."""
    directory = Path(directory)
    try:
        signature = tuple(sorted((str(p), st.st_size, st.st_mtime_ns) for p in directory.rglob("*")
                                 if p.suffix in (".json", ".zip") for st in [p.stat()]))
    except OSError:
        signature = ()
    hit = _DB_CACHE.get(str(directory))
    if hit is not None and hit[0] == signature and signature:
        return hit[1]
    db = load_db(directory)
    _DB_CACHE[str(directory)] = (signature, db)
    return db


def build_packages(layout: Any, record: Any) -> list[tuple[str, str, str]]:
    """(manager, name, version) of a recorded build, from its SBOM (made from the record if missing)."""
    from envmgr.catalog.sbom import ensure_sbom, sbom_packages

    text, _ = ensure_sbom(layout, record)
    return sbom_packages(json.loads(text))


def diff_advisories(config: Any, old: tuple[str, str], new: tuple[str, str]) -> dict[str, Any] | None:
    """For `envmgr diff A B`: advisories B introduces and resolves relative to A (None: not configured)."""
    from envmgr.catalog import records
    from envmgr.errors import EnvmgrError

    if config.advisories_dir is None:
        return None
    try:
        db = cached_db(Path(config.advisories_dir))
    except EnvmgrError as exc:
        return {"error": exc.message, "introduced": [], "resolved": []}
    found = []
    for family, build_id in (old, new):
        record = records.load(config.layout, family, build_id)
        packages = build_packages(config.layout, record) if record is not None else []
        found.append({(m.advisory.id, m.package, m.version): m for m in match_packages(db, packages)})
    before, after = found
    return {"introduced": [m.to_json() for k, m in after.items() if k not in before],
            "resolved": [m.to_json() for k, m in before.items() if k not in after]}
