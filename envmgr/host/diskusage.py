"""Disk used by the root, hardlink-aware, against free space — cheap to ask often.

Walking every file of every prefix costs seconds on a real site (tens of
thousands of files per build, hundreds of builds), and on NFS much more. But
published prefixes never change, so the figures only change when a build
appears or disappears. The measurement is therefore cached in
``logs/disk-usage.json`` together with a fingerprint of what exists (the
directory listings of every family, of trash and of the package cache); while
the fingerprint matches and the measurement is younger than ``MAX_AGE``, it is
reused. Free space is always read live (one statvfs).

Counting: the package cache is walked first; each family then counts only the
inodes it does not share with the cache or an earlier tree (``fsutil.disk_usage``
with ``exclude_inodes``), so a family's figure is what it adds on top of the
shared cache, and the parts add up to the root's real usage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envmgr.config import Config
from envmgr.fsutil import atomic_write_json, disk_usage, read_json, stat_key
from envmgr.clock import iso, parse_iso, utcnow

MAX_AGE = dt.timedelta(hours=24)
CACHE_VERSION = 1


@dataclass(frozen=True)
class DiskUsage:
    families: dict[str, int]  # bytes each family's envs dir adds beyond the package cache
    pkgs_bytes: int
    other_bytes: int  # records, trash, channels, logs, leases, locks, stable
    free_bytes: int
    fs_total_bytes: int
    min_free_bytes: int
    measured_at: str
    measure_seconds: float
    cached: bool = False
    cache_note: str = ""
    extra: dict[str, int] = field(default_factory=dict)  # named parts of other_bytes

    @property
    def used_bytes(self) -> int:
        return self.pkgs_bytes + sum(self.families.values()) + self.other_bytes

    @property
    def low(self) -> bool:
        return self.free_bytes < self.min_free_bytes

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["used_bytes"] = self.used_bytes
        data["low"] = self.low
        return data


def _folder_stamp(path: str) -> str:
    """A folder's stat key: every entry added, removed or renamed changes its mtime."""
    try:
        return ":".join(map(str, stat_key(os.stat(path))))
    except OSError:
        return "-"


def fingerprint(config: Config, families: list[str]) -> str:
    """Changes whenever a build, a failed or staged prefix, trash or a cached package changes.

    One stat per folder, not a listing (issue 14: 500 families): published prefixes
    never change, so what can change a family's bytes is an entry of its envs folder
    appearing or going, which changes the folder's mtime.
    """
    layout = config.layout
    h = hashlib.sha256()
    envs = os.fspath(layout.envs_dir)
    parts = [("pkgs", os.fspath(config.pkgs_dir)), ("trash", os.fspath(layout.trash_dir))]
    parts += [(f"family:{f}", f"{envs}/{f}") for f in families]
    for name, path in parts:
        h.update(f"{name}\0{path}\0{_folder_stamp(path)}\n".encode())
    return h.hexdigest()


def cache_file(config: Config) -> Path:
    return config.layout.logs_dir / "disk-usage.json"


def _free(config: Config) -> tuple[int, int]:
    probe = config.root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return usage.free, usage.total


def measure(config: Config, families: list[str]) -> tuple[dict[str, int], int, dict[str, int]]:
    """Walk everything once: (per-family bytes, package cache bytes, other parts)."""
    layout = config.layout
    pkgs_bytes, seen = disk_usage([Path(config.pkgs_dir)])
    per_family: dict[str, int] = {}
    for family in families:
        used, inodes = disk_usage([layout.family_dir(family)], exclude_inodes=seen)
        per_family[family] = used
        seen |= inodes
    extra: dict[str, int] = {}
    for name, path in (("records", layout.records_dir), ("trash", layout.trash_dir),
                       ("channels", layout.channels_dir), ("logs", layout.logs_dir),
                       ("leases", layout.leases_root), ("locks", layout.locks_dir),
                       ("stable", layout.stable_dir)):
        used, inodes = disk_usage([path], exclude_inodes=seen)
        extra[name] = used
        seen |= inodes
    return per_family, pkgs_bytes, extra


def disk_report(config: Config, families: list[str], *, refresh: bool = False,
                max_age: dt.timedelta = MAX_AGE) -> DiskUsage:
    """The cached measurement if still valid, else a new one (cached when writable)."""
    free, total = _free(config)
    stamp = fingerprint(config, families)
    cached = None if refresh else _load_cache(config, stamp, max_age)
    if cached is not None:
        return DiskUsage(families=cached["families"], pkgs_bytes=cached["pkgs_bytes"],
                         other_bytes=sum(cached["extra"].values()), free_bytes=free,
                         fs_total_bytes=total, min_free_bytes=config.min_free_bytes,
                         measured_at=cached["measured_at"], measure_seconds=cached["measure_seconds"],
                         cached=True, extra=cached["extra"])
    start = time.monotonic()
    per_family, pkgs_bytes, extra = measure(config, families)
    seconds = round(time.monotonic() - start, 3)
    now = iso(utcnow()) or ""
    note = _store_cache(config, {"version": CACHE_VERSION, "fingerprint": stamp, "measured_at": now,
                                 "measure_seconds": seconds, "families": per_family,
                                 "pkgs_bytes": pkgs_bytes, "extra": extra})
    return DiskUsage(families=per_family, pkgs_bytes=pkgs_bytes, other_bytes=sum(extra.values()),
                     free_bytes=free, fs_total_bytes=total, min_free_bytes=config.min_free_bytes,
                     measured_at=now, measure_seconds=seconds, cache_note=note, extra=extra)


def _load_cache(config: Config, stamp: str, max_age: dt.timedelta) -> dict[str, Any] | None:
    try:
        data = read_json(cache_file(config))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    if data.get("fingerprint") != stamp:
        return None
    measured = parse_iso(data.get("measured_at"))
    if measured is None or utcnow() - measured > max_age:
        return None
    return data


def _store_cache(config: Config, data: dict[str, Any]) -> str:
    """Cache the measurement; a user without write access simply measures every time."""
    if not config.layout.root.is_dir():
        return "not cached: the root does not exist"
    try:
        atomic_write_json(cache_file(config), data)
    except OSError as exc:
        return f"not cached: {exc.strerror or exc}"
    return ""
