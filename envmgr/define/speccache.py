"""Parsed specs, cached on each file's path, size and mtime: every version is parsed once.

Parsing a spec (ruamel's round-trip YAML, kept for file:line:column errors,
plus match-spec validation by py-rattler) costs 10-25 ms; ``envmgr status`` and
``envmgr gc`` read every spec of the site on each call, so at 500 families
parsing was most of their time. Two layers, one key:

* in the process: a dict (the staff page's long-lived service, ``build --all``);
* across processes: ``ROOT/logs/spec-cache.json``, written (atomically) by
  whoever may write the root -- the service account's nightly -- and read by
  everyone. A reader who cannot write it still gets the in-process layer.

The key is (absolute path, size, mtime_ns, inode, ctime_ns): an edited or
replaced file (git checkout writes a new inode) misses. A hit returns the spec
as parsed before, or raises the same ``SpecError`` with the same problems.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr.config import PycOverride
from envmgr.define.spec import Retention, SmokeTest, Spec, SpecError, StablePin, load_spec
from envmgr.fsutil import atomic_write_json, stat_key as _key
from envmgr.layout import Layout
from envmgr.yamlcheck import Problem

FORMAT = 2  # 2: `pip` requirements; a store of another format is ignored (re-parsed)
FILE_NAME = "spec-cache.json"
Key = tuple[int, int, int, int]


# -- Spec <-> JSON (complete: everything load_spec returns) -----------------------------------------

def spec_to_doc(spec: Spec) -> dict[str, Any]:
    return {
        "name": spec.name, "display_name": spec.display_name, "group": spec.group,
        "description": spec.description, "channels": list(spec.channels),
        "dependencies": list(spec.dependencies), "platforms": list(spec.platforms),
        "pip": list(spec.pip), "kernel": spec.kernel, "env": dict(spec.env),
        "smoke_test": [list(spec.smoke_test.imports), spec.smoke_test.script],
        "stable": [[s.release, s.build, s.until.isoformat() if s.until else None] for s in spec.stable],
        "memory_limit": spec.memory_limit,
        "retention": [spec.retention.keep_previous, spec.retention.grace_days,
                      spec.retention.failed_days, list(spec.retention.pinned)],
        "pyc": None if spec.pyc is None else [spec.pyc.compile,
                                              None if spec.pyc.exclude is None else list(spec.pyc.exclude)],
        "path": str(spec.path) if spec.path else None, "source_text": spec.source_text,
    }


def spec_from_doc(doc: dict[str, Any]) -> Spec:
    keep, grace, failed, pinned = doc["retention"]
    pyc = doc["pyc"]
    return Spec(
        name=doc["name"], display_name=doc["display_name"], group=doc["group"],
        description=doc["description"], channels=tuple(doc["channels"]),
        dependencies=tuple(doc["dependencies"]), platforms=tuple(doc["platforms"]),
        pip=tuple(doc["pip"]), kernel=doc["kernel"], env=dict(doc["env"]),
        smoke_test=SmokeTest(tuple(doc["smoke_test"][0]), doc["smoke_test"][1]),
        stable=tuple(StablePin(r, b, dt.date.fromisoformat(u) if u else None) for r, b, u in doc["stable"]),
        memory_limit=doc["memory_limit"],
        retention=Retention(keep, grace, failed, tuple(pinned)),
        pyc=None if pyc is None else PycOverride(pyc[0], None if pyc[1] is None else tuple(pyc[1])),
        path=Path(doc["path"]) if doc["path"] else None, source_text=doc["source_text"],
    )


# -- the cache -------------------------------------------------------------------------------------

@dataclass
class _Entry:
    key: Key
    spec: Spec | None
    problems: list[Problem] | None  # the SpecError's problems when the file is invalid

    def result(self) -> Spec:
        if self.spec is None:
            raise SpecError(self.problems or [])
        return self.spec


class SpecCache:
    """``load`` = ``spec.load_spec``, parsing each version of a file once (see the module doc)."""

    def __init__(self, store: Path | None = None) -> None:
        self.store = store
        self._entries: dict[str, _Entry] = {}
        self._loaded = store is None
        self._dirty = False
        self.parsed = 0  # files parsed by this instance (tests and benchmarks read it)

    def load(self, path: Path) -> Spec:
        """The spec at ``path`` (raises what ``load_spec`` raises)."""
        absolute = os.path.abspath(path)
        try:
            st = os.stat(absolute)
        except OSError:
            return load_spec(Path(path))  # missing/unreadable: load_spec words the error
        self._read_store()
        entry = self._entries.get(absolute)
        if entry is None or entry.key != _key(st):
            entry = self._parse(Path(path), absolute, st)
        return entry.result()

    def _parse(self, path: Path, absolute: str, st: os.stat_result) -> _Entry:
        self.parsed += 1
        try:
            entry = _Entry(_key(st), load_spec(path), None)
        except SpecError as exc:
            entry = _Entry(_key(st), None, list(exc.problems))
        self._entries[absolute] = entry
        self._dirty = True
        return entry

    # -- the file shared between processes --------------------------------------------------------

    def _read_store(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            doc = json.loads(self.store.read_text(encoding="utf-8"))  # type: ignore[union-attr]
            if doc.get("format") != FORMAT:
                return
            for path, row in doc["files"].items():
                spec = spec_from_doc(row["spec"]) if row.get("spec") else None
                problems = [Problem(**p) for p in row["problems"]] if row.get("problems") else None
                self._entries[path] = _Entry(tuple(row["key"]), spec, problems)  # type: ignore[arg-type]
        except (OSError, ValueError, KeyError, TypeError):
            self._entries.clear()  # unreadable or foreign: parse afresh (and rewrite if allowed)

    def save(self) -> None:
        """Write the shared file if something was parsed and the root allows it (else skip)."""
        if self.store is None or not self._dirty:
            return
        files = {path: {"key": list(e.key), "spec": spec_to_doc(e.spec) if e.spec else None,
                        "problems": [p.to_json() for p in e.problems] if e.problems else None}
                 for path, e in self._entries.items() if os.path.exists(path)}
        if not self.store.parent.is_dir() or not os.access(self.store.parent, os.W_OK):
            return  # never create a root to cache specs; users read what the service wrote
        try:
            atomic_write_json(self.store, {"format": FORMAT, "files": files})
        except OSError:
            return  # a reader without write access: the in-process layer still served it
        self._dirty = False


_SHARED: dict[str, SpecCache] = {}


def for_root(layout: Layout) -> SpecCache:
    """The process-wide cache for ``layout``'s root (with its shared file)."""
    key = os.path.abspath(layout.root)
    cache = _SHARED.get(key)
    if cache is None:
        cache = _SHARED[key] = SpecCache(layout.logs_dir / FILE_NAME)
    return cache
