"""The package cache (``pkgs_dir``): which entries no kept build needs any more.

rattler's cache holds one extracted directory per package file,
``<name>-<version>-<build>/`` (with ``info/index.json``), plus a
``<name>-<version>-<build>.lock`` file rattler locks while it fills the entry;
``.cache.lock`` and anything else is left alone. Prefixes hardlink their files
from these directories, so deleting old builds frees their space only once the
cache entries they used are pruned too.

An entry is needed while any build record that is not a tombstone lists the
package in its ``packages.json`` (kept builds, builds kept for inspection,
builds in progress). Pruning runs only while no build holds a family lock: an
install in progress may be about to link an entry no record lists yet.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


from envmgr.catalog import records
from envmgr.familylock import LockFile, describe_holder
from envmgr.layout import BUILD_ID_RE, Layout

ARCHIVE_SUFFIXES = (".conda", ".tar.bz2")
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class CacheEntry:
    name: str  # <name>-<version>-<build>
    path: Path

    def lock_file(self) -> Path:
        return self.path.with_name(self.name + LOCK_SUFFIX)


def entries(pkgs_dir: Path) -> list[CacheEntry]:
    """Extracted packages and package archives in the cache, sorted by name."""
    found = []
    if not pkgs_dir.is_dir():
        return found
    for path in pkgs_dir.iterdir():
        if path.name.startswith("."):
            continue
        if path.is_dir() and not path.is_symlink() and (path / "info" / "index.json").is_file():
            found.append(CacheEntry(path.name, path))
        elif path.is_file():
            for suffix in ARCHIVE_SUFFIXES:
                if path.name.endswith(suffix):
                    found.append(CacheEntry(path.name[: -len(suffix)], path))
    return sorted(found, key=lambda e: (e.name, str(e.path)))


def needed(layout: Layout, families: Iterable[str], *, gone: Iterable[tuple[str, str]] = ()) -> set[str]:
    """Cache names used by every build record that stays.

    ``gone``: builds the caller knows are (or are about to be) tombstones; their
    records are not even read, which keeps this cheap on roots with thousands of
    deleted builds. Every other record is read fresh, so a build that finished
    after the caller's plan still protects its packages.
    """
    skip = set(gone)
    names: set[str] = set()
    for family in families:
        directory = layout.family_records(family)
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if (family, entry.name) in skip or not BUILD_ID_RE.match(entry.name):
                continue
            rec = records.load(layout, family, entry.name)
            if rec is None or rec.deleted:
                continue
            pkg_set = records.package_set(layout, family, entry.name)
            if pkg_set is not None:
                names.update(f"{p.name}-{p.version}-{p.build}" for p in pkg_set.packages)
    return names


def unused(pkgs_dir: Path, keep: set[str]) -> list[CacheEntry]:
    return [e for e in entries(pkgs_dir) if e.name not in keep]


@contextlib.contextmanager
def no_build_running(layout: Layout) -> Iterator[str | None]:
    """Hold every family's build lock (non-blocking); yields None, or who is building.

    Family locks are found both by family and by lock file, so a family's very
    first build (no envs/ or records/ yet) counts too.
    """
    names = set(layout.families())
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    if layout.locks_dir.is_dir():
        names.update(p.stem for p in layout.locks_dir.glob("*.lock") if p != layout.gc_lock)
    with contextlib.ExitStack() as stack:
        for family in sorted(names):
            lock = LockFile(layout.build_lock(family))
            if not lock.try_acquire():
                yield f"a build of {family} holds its lock ({describe_holder(layout, family)})"
                return
            stack.callback(lock.release)
        yield None
