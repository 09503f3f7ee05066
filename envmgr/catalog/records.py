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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def evolve(self, **changes: Any) -> BuildRecord:
        return replace(self, **changes)


def record_file(layout: Layout, family: str, build_id: str) -> Path:
    return layout.record_file(family, build_id)


def save(layout: Layout, record: BuildRecord) -> None:
    atomic_write_json(record_file(layout, record.family, record.build_id), record.to_json())


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
    """Every record of a family, oldest first (build ids sort by time)."""
    directory = layout.family_records(family)
    if not directory.is_dir():
        return []
    found = []
    for entry in sorted(directory.iterdir()):
        if BUILD_ID_RE.match(entry.name) and (rec := load(layout, family, entry.name)):
            found.append(rec)
    return found


def package_set(layout: Layout, family: str, build_id: str) -> PackageSet | None:
    data = read_json(layout.recorded_packages(family, build_id))
    return PackageSet.from_json(data) if data else None
