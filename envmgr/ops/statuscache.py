"""Each family's `envmgr status` entry, kept between calls while nothing it was made from changed.

A status reads every build's record, plans every build's gc decision and
probes every lease: about 200 µs a build, a second for a site of 5,000 builds,
although between two calls almost nothing changes (issue 14). This cache keeps
each family's computed entry in the user's own cache folder
(``$XDG_CACHE_HOME/envmgr/status-<hash of the root>.json``, trusted as
``yamlcache.ours`` says) with a *key* made of everything the entry was
computed from, read again on every call at the price of a ``stat``:

* the family's records folder and envs folder, each standing for what is in
  it, because every change there is a rename or an entry added or removed:
  ``records.save`` renames each ``build.json`` from ``records/<family>/`` and
  ``last-run.json`` is replaced there; publication, the latest link, failed
  prefixes, gc and restore rename in ``envs/<family>/``;
* the stable-release file and the governing spec: the specs directory's
  listing (paths and stats) maps each family to its spec file without parsing
  one, and a family with none there is keyed on its latest build's recorded
  spec;
* the leases, probed live as gc probes them: the names in the family's lease
  folder and gc's usage of each held one;
* for the whole file: the package's code (a stat of each module), the
  configuration, the last advisories check and today's date (a stable
  release's days left change at midnight).

An entry also has a horizon: the first moment a gc decision changes by time
alone (``retention.next_change``: a grace or an inspection period ending).
Two parts are never cached: who builds the family now (the lock is probed on
every call) and the warnings, made again from the entry and the clock; ages
are moved to now. ``--processes`` (gc's /proc scan) and ``ENVMGR_NO_CACHE=1``
bypass the cache; ``--refresh`` recomputes every entry and stores it.

Writers take no part beyond the rename rule above, so a writer killed at any
instant leaves nothing for the cache to get wrong. What a stat cannot see is
a second change within the same timestamp tick (git calls such files
"racy"): an entry whose inputs changed less than ``RACY_SECONDS`` before it
was computed is not stored. ``tests/test_status_cache.py`` checks, with audit
hooks, that every file an entry opens or lists is in its key, and that cached
and fresh reports agree through each kind of change.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import envmgr
from envmgr._internal import _json
from envmgr.config import Config
from envmgr.errors import EnvironmentProblem
from envmgr.fsutil import stat_key
from envmgr.layout import LATEST, NOT_SPECS, SPEC_SUFFIXES, Layout
from envmgr.yamlcache import read_private, user_cache_dir, write_private

if TYPE_CHECKING:
    from envmgr.catalog.governing import SpecChoice

FORMAT = 1
RACY_SECONDS = 2  # above the coarsest timestamp granularity of the filesystems we meet (1 s)
LEASE_SUFFIX = ".lease"
Stat = list[int]  # fsutil.stat_key as a list: (size, mtime_ns, inode, ctime_ns), compared after JSON


def _stat_value(st: os.stat_result) -> Stat:
    return list(stat_key(st))


def _racy(value: Stat | None, after_ns: int) -> bool:
    """Changed (mtime or ctime) after ``after_ns``: a second change in the same tick could hide."""
    return value is not None and max(value[1], value[3]) >= after_ns


@dataclass
class FamilyKey:
    """What one family's entry depends on, and whether it may be stored."""

    value: list[Any]  # JSON types only: compared with the stored key after a JSON round trip
    storable: bool = True
    files: set[str] = field(default_factory=set)  # stat'ed files
    folders: set[str] = field(default_factory=set)  # stat'ed folders (standing for their contents) or listed


class _KeyMaker:
    def __init__(self, racy_after_ns: int) -> None:
        self.racy_after_ns = racy_after_ns
        self.key = FamilyKey([])

    def racy(self, value: Stat | None) -> bool:
        return _racy(value, self.racy_after_ns)

    def stat(self, path: str, *, folder: bool = False) -> Stat | None:
        (self.key.folders if folder else self.key.files).add(path)
        try:
            value = _stat_value(os.stat(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if self.racy(value):
            self.key.storable = False
        return value

    def names(self, folder: str) -> list[str]:
        self.key.folders.add(folder)
        try:
            return sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []


# -- which spec governs a family, without parsing one ----------------------------------------


def _spec_listing(config: Config) -> dict[str, Stat | None] | None:
    """Every spec file of the governing specs directory with its stat (define.spec.spec_files)."""
    specs_dir = config.governing_specs_dir
    if specs_dir is None:
        return None
    found: dict[str, Stat | None] = {}
    try:
        with os.scandir(specs_dir) as entries:
            for e in entries:
                if os.path.splitext(e.name)[1] in SPEC_SUFFIXES and e.name not in NOT_SPECS and e.is_file():
                    found[e.path] = _stat_value(e.stat())
    except OSError:  # spec_index reads no directory that is not one
        return {}
    return dict(sorted(found.items()))


class Governing:
    """Which spec governs each family (catalog.governing), parsing specs only for a miss.

    The mapping family -> (spec file, error) is kept with the listing of the
    specs directory it was made from (paths and stat keys): while the listing
    is the same, so is the mapping, and no spec is parsed. Families with no
    spec file there are governed by their latest build's recorded spec.
    """

    def __init__(self, config: Config, stored: Any, racy_after_ns: int) -> None:
        self.config = config
        self.listing = _spec_listing(config)
        self.racy_after_ns = racy_after_ns
        self._index: dict[str, SpecChoice] | None = None
        self.changed = False
        if isinstance(stored, dict) and stored.get("listing") == self.listing \
                and isinstance(stored.get("mapping"), dict):
            self.mapping: dict[str, list[Any]] = stored["mapping"]
        else:
            self.mapping = {name: [c.source, c.error] for name, c in self.index().items()}
            self.changed = True

    def index(self) -> dict[str, SpecChoice]:
        from envmgr.catalog.governing import spec_index

        if self._index is None:
            self._index = spec_index(self.config)
        return self._index

    def choice(self, family: str) -> SpecChoice:
        from envmgr.catalog.governing import family_spec

        return family_spec(self.config, family, self.index())

    def key_part(self, family: str, paths: _Paths, k: _KeyMaker) -> list[Any]:
        found = self.mapping.get(family)
        if found is not None:
            value = (self.listing or {}).get(found[0])
            if k.racy(value):
                k.key.storable = False
            k.key.files.add(found[0])
            return [found[0], found[1], value]
        try:
            latest = os.path.basename(os.readlink(f"{paths.envs}/{family}/{LATEST}"))
        except OSError:
            return ["recorded", None, None]
        return ["recorded", latest, k.stat(f"{paths.records}/{family}/{latest}/spec.yaml")]

    def to_json(self) -> dict[str, Any] | None:
        racy = any(_racy(v, self.racy_after_ns) for v in (self.listing or {}).values())
        return None if racy else {"listing": self.listing, "mapping": self.mapping}


# -- one family ------------------------------------------------------------------------------


def _lease_usage(config: Config, family: str, folder: str, k: _KeyMaker) -> dict[str, Any]:
    """The usage of every held lease in the family's lease ``folder``, as gc's probe sees it (live)."""
    layout = config.layout
    names = [n for n in k.names(folder) if n.endswith(LEASE_SUFFIX)]
    if not names:
        return {}
    from envmgr.kernels import lease  # only where kernels ran (start-up, issue 14)

    held: dict[str, Any] = {"files": names}
    for name in names:
        build_id = name[: -len(LEASE_SUFFIX)]
        try:
            if lease.probe(f"{folder}/{name}"):
                held[build_id] = _held_usage(layout, family, build_id)
        except EnvironmentProblem as exc:  # not the service account: status says so, as computed
            return {"error": exc.message}
    return held


def _held_usage(layout: Layout, family: str, build_id: str) -> dict[str, Any]:
    """gc's own description of a held lease (pids and holders on this host)."""
    from envmgr.gc.inputs import build_usage  # gc's readers: only for a lease a kernel holds
    from envmgr.host.procscan import ProcessScan

    return build_usage(layout, family, build_id, build_id, ProcessScan(), probe_lease=True).to_json()


def family_key(config: Config, family: str, governing: Governing, racy_after_ns: int,
               paths: _Paths | None = None) -> FamilyKey:
    """Everything ``family``'s status entry is computed from (read before computing it).

    Folders stand for what is in them where every change in them is a rename or
    an entry added or removed: ``records/<family>`` (records.save renames each
    ``build.json`` from there; ``last-run.json`` is replaced there) and
    ``envs/<family>`` (publication, the latest link, failed prefixes, gc and
    restore all rename there).
    """
    paths = paths or _paths(config.layout)
    k = _KeyMaker(racy_after_ns)  # a stat changed after this moment: do not store (see above)
    k.key.value = [
        k.stat(f"{paths.records}/{family}", folder=True),
        k.stat(f"{paths.envs}/{family}", folder=True),
        k.stat(f"{paths.stable}/{family}.json"),
        governing.key_part(family, paths, k),
        _lease_usage(config, family, f"{paths.leases}/{family}", k),
    ]
    return k.key


@dataclass(frozen=True)
class _Paths:
    """The layout's per-family folders as strings: pathlib's joins cost more than the stats
    at 500 families. Equal to ``Layout.family_records(f)`` and the rest (tests check)."""

    records: str
    envs: str
    stable: str
    leases: str


def _paths(layout: Layout) -> _Paths:
    return _Paths(os.fspath(layout.records_dir), os.fspath(layout.envs_dir), os.fspath(layout.stable_dir),
                  os.fspath(layout.leases_root))


# -- the site-wide part ------------------------------------------------------------------


def _code_stamp() -> list[list[Any]]:
    """(module, size, mtime_ns) of every module of the package: an upgrade or an edit
    invalidates every entry (about 100 stats)."""
    base = os.path.dirname(envmgr.__file__)
    found: list[list[Any]] = []
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(".py"):
                st = e.stat()
                found.append([e.path[len(base):], st.st_size, st.st_mtime_ns])
            elif e.is_dir() and e.name != "__pycache__" and not e.name.startswith("."):
                stack.append(e.path)
    return sorted(found)


def _site_key(config: Config, today: dt.date) -> list[Any]:
    import hashlib

    try:
        check: Stat | None = _stat_value(os.stat(config.layout.advisories_check))
    except OSError:
        check = None
    digest = hashlib.sha256(repr(config).encode()).hexdigest()  # no channel token in the file
    return [envmgr.__version__, _code_stamp(), digest, today.isoformat(), check]


def _store_path(config: Config) -> Path | None:
    import hashlib

    folder = user_cache_dir()
    if folder is None:
        return None
    name = hashlib.sha256(os.fsencode(os.path.abspath(config.root))).hexdigest()[:16]
    return folder / f"status-{name}.json"


class StatusCache:
    """The stored entries of one root, for one call of `envmgr status` (or a page, a scrape).

    Without a cache folder (``ENVMGR_NO_CACHE=1``, no home) or with
    ``enabled=False`` it reads, stores and serves nothing, but still answers
    which spec governs a family.
    """

    def __init__(self, config: Config, today: dt.date, *, enabled: bool = True) -> None:
        self.config = config
        self.racy_after_ns = time.time_ns() - RACY_SECONDS * 10**9
        self.paths = _paths(config.layout)
        self.path = _store_path(config) if enabled else None
        data = read_private(self.path) if self.path is not None else None
        self.site = _site_key(config, today) if self.path is not None else None  # lists, as stored
        valid = isinstance(data, dict) and data.get("format") == FORMAT and data.get("site") == self.site
        families = data.get("families") if valid else None
        self.entries: dict[str, Any] = families if isinstance(families, dict) else {}
        self.governing = Governing(config, data.get("specs") if valid else None, self.racy_after_ns)
        self.changed = self.governing.changed

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def key(self, family: str) -> FamilyKey:
        return family_key(self.config, family, self.governing, self.racy_after_ns, self.paths)

    def get(self, family: str, key: FamilyKey, now: dt.datetime) -> dict[str, Any] | None:
        """The stored entry if its key equals ``key`` and ``now`` is before its horizon."""
        entry = self.entries.get(family)
        if not isinstance(entry, dict) or entry.get("key") != key.value:
            return None
        until = entry.get("until")
        if until is not None and now.timestamp() >= until:
            return None
        return entry

    def put(self, family: str, key: FamilyKey, status: dict[str, Any], notices: list[dict[str, Any]],
            until: dt.datetime | None) -> None:
        if not key.storable:
            if self.entries.pop(family, None) is not None:
                self.changed = True
            return
        self.entries[family] = {"key": key.value, "until": until.timestamp() if until else None,
                                "status": status, "notices": notices}
        self.changed = True

    def save(self, families: list[str]) -> None:
        """Write the entries of ``families`` (others are gone from the root) if any changed."""
        keep = set(families)
        if set(self.entries) - keep:
            self.entries = {f: e for f, e in self.entries.items() if f in keep}
            self.changed = True
        if self.changed and self.path is not None:
            write_private(self.path, _json.dumps({"format": FORMAT, "site": self.site,
                                                  "specs": self.governing.to_json(),
                                                  "families": self.entries}))
