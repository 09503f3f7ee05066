"""Build records: what each build was, how it went, and what it contained.

A record lives under ``records/<family>/<build-id>/`` beside (not inside) the
prefix, so it outlives the prefix as a tombstone after gc. Files:

    build.json       status and facts (this module's BuildRecord)
    spec.yaml        the spec as it was built
    conda-lock.yml   the lock, in conda-lock's format
    packages.json    the installed package set (for diffs and "unchanged")
    build.log        the build's log
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from envmgr import __version__
from envmgr.fsutil import atomic_write_json, read_json
from envmgr.layout import BUILD_ID_RE, Layout
from envmgr.lockfile import PackageSet

BUILDING, OK, FAILED, INTERRUPTED = "building", "ok", "failed", "interrupted"


@dataclass(frozen=True)
class BuildRecord:
    family: str
    build_id: str
    status: str
    started: str
    finished: str | None = None
    host: str = field(default_factory=socket.gethostname)
    user: str = field(default_factory=getpass.getuser)
    pid: int = field(default_factory=os.getpid)
    envmgr_version: str = __version__
    spec_hash: str = ""
    lock_digest: str = ""
    package_count: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    step: str | None = None  # the step in progress or the one that failed
    forced: bool = False
    from_lock: str | None = None
    command: str = ""
    rolled_back: bool = False  # latest was moved off this build by `envmgr rollback`
    latest_since: str | None = None
    latest_until: str | None = None
    deleted: str | None = None  # when gc removed the prefix; the record is a tombstone
    failed_prefix: str | None = None  # where a failed build is kept for inspection
    history: tuple[dict[str, str], ...] = ()  # earlier lives: {"event": deleted|restored, "when", "user"}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = [dict(e) for e in self.history]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord:
        fields = cls.__dataclass_fields__
        known = dict(data) if data.keys() <= fields.keys() else {k: v for k, v in data.items() if k in fields}
        known["history"] = tuple(known.get("history") or ())
        return cls(**known)

    def evolve(self, **changes: Any) -> BuildRecord:
        return replace(self, **changes)


def record_file(layout: Layout, family: str, build_id: str) -> Path:
    return layout.record_file(family, build_id)


def save(layout: Layout, record: BuildRecord) -> None:
    """Replace the record by a rename from the family's records folder.

    The temporary file lives in ``records/<family>/``, not beside ``build.json``:
    the rename that publishes the record also changes that folder's mtime, in the
    same atomic step, so one ``stat`` of the folder tells whether any record of
    the family changed (the status cache keys on it, ops/statuscache.py). Every
    writer of a record comes through here.
    """
    atomic_write_json(record_file(layout, record.family, record.build_id), record.to_json(),
                      tmp_dir=layout.family_records(record.family))


def load(layout: Layout, family: str, build_id: str) -> BuildRecord | None:
    data = read_json(record_file(layout, family, build_id))
    return BuildRecord.from_json(data) if data else None


def update(layout: Layout, family: str, build_id: str, **changes: Any) -> BuildRecord | None:
    record = load(layout, family, build_id)
    if record is None:
        return None
    record = record.evolve(**changes)
    save(layout, record)
    return record


def all_records(layout: Layout, family: str) -> list[BuildRecord]:
    """Every record of a family, oldest first (build ids sort by time).

    Plain ``os`` calls on strings: status and gc read every record of the site on
    each call, and at 5,000 builds pathlib's joins cost more than the reads (issue 14).
    """
    directory = os.fspath(layout.family_records(family))
    try:
        names = sorted(name for name in os.listdir(directory) if BUILD_ID_RE.match(name))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        try:
            with open(f"{directory}/{name}/build.json", "rb") as handle:
                data = json.loads(handle.read())  # bytes: json detects UTF-8, no text layer
        except (FileNotFoundError, NotADirectoryError):
            continue
        if data:
            found.append(BuildRecord.from_json(data))
    return found


def package_set(layout: Layout, family: str, build_id: str) -> PackageSet | None:
    data = read_json(layout.recorded_packages(family, build_id))
    return PackageSet.from_json(data) if data else None


def superseded_at(record: BuildRecord, others: list[BuildRecord]) -> str | None:
    """When the next build took over as latest from ``record`` (its missing ``latest_until``).

    The earliest ``latest_since`` after ``record``'s own: a fixed point in the
    past, so a build whose ``latest_until`` a crash lost does not get a
    retirement time that moves forward with every new build.
    """
    if not record.latest_since:
        return None
    later = [r.latest_since for r in others
             if r.build_id != record.build_id and r.latest_since and r.latest_since >= record.latest_since]
    return min(later) if later else None
