"""The trash: where gc renames what it deletes, so a deletion is one atomic step.

A prefix (or a package-cache entry) leaves its place by one ``rename`` into
``ROOT/trash``; from then on no launcher can reach it and removing the files is
just cleanup. A gc killed at any instant leaves either the prefix in place or
an entry in the trash, and the next gc empties the trash (``pending``).

    ROOT/trash/<family>/<build-id>[.<n>]    a build's prefix (published or .failed-)
    PKGS_DIR/.envmgr-trash/<entry>.<random>  a pruned package-cache entry (same
                                             filesystem as the cache, which may
                                             live outside the root)

Freed bytes are counted hardlink-aware: an inode frees space only when every
one of its links is being removed (prefixes are hardlinked from the package
cache, so deleting a build alone often frees little; pruning the cache with it
frees the rest).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from envmgr.layout import BUILD_ID_RE, Layout

PKGS_TRASH = ".envmgr-trash"

Inodes = dict[tuple[int, int], list[int]]  # (dev, ino) -> [nlink, bytes, links seen]


def build_slot(layout: Layout, family: str, build_id: str) -> Path:
    """A free name in the trash for a build's prefix (the directory is created)."""
    directory = layout.trash_dir / family
    directory.mkdir(parents=True, exist_ok=True)
    slot, n = directory / build_id, 1
    while slot.exists():
        n += 1
        slot = directory / f"{build_id}.{n}"
    return slot


def package_slot(pkgs_dir: Path, name: str) -> Path:
    directory = pkgs_dir / PKGS_TRASH
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class TrashEntry:
    path: Path
    family: str | None  # None: a package-cache entry
    build_id: str | None


def pending(layout: Layout, pkgs_dir: Path) -> list[TrashEntry]:
    """Everything in the trash: builds first, then cache entries (sorted, so reports are stable)."""
    found: list[TrashEntry] = []
    if layout.trash_dir.is_dir():
        for group in sorted(layout.trash_dir.iterdir()):
            if not group.is_dir() or group.is_symlink():
                continue
            for entry in sorted(group.iterdir()):
                build_id = entry.name.split(".", 1)[0]
                found.append(TrashEntry(entry, group.name,
                                        build_id if BUILD_ID_RE.match(build_id) else None))
    cache_trash = pkgs_dir / PKGS_TRASH
    if cache_trash.is_dir():
        found.extend(TrashEntry(entry, None, None) for entry in sorted(cache_trash.iterdir()))
    return found


# -- hardlink-aware accounting ------------------------------------------------------------


def inode_table(root: Path) -> Inodes:
    """Every non-directory inode below ``root`` (symlinks not followed), with its link count."""
    table: Inodes = {}
    stack = [str(root)]
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        return table
    if not stat.S_ISDIR(top.st_mode):
        _add(table, top)
        return table
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            else:
                _add(table, st)
    return table


def _add(table: Inodes, st: os.stat_result) -> None:
    key = (st.st_dev, st.st_ino)
    row = table.get(key)
    if row is None:
        table[key] = [st.st_nlink, st.st_blocks * 512 if st.st_blocks else st.st_size, 1]
    else:
        row[2] += 1


def freed_bytes(tables: Iterable[Inodes]) -> int:
    """Bytes freed by removing all these trees together: inodes whose every link is in them."""
    merged: dict[tuple[int, int], list[int]] = {}
    for table in tables:
        for key, (nlink, size, seen) in table.items():
            row = merged.get(key)
            if row is None:
                merged[key] = [nlink, size, seen]
            else:
                row[2] += seen
    return sum(size for nlink, size, seen in merged.values() if seen >= nlink)


# -- removal ----------------------------------------------------------------------------


def remove_tree(path: Path, after_first: Callable[[], None] = lambda: None) -> None:
    """Remove ``path`` completely, even where a package dropped the owner's write bit on a directory.

    Only directories are ever chmod-ed: files of a prefix are hardlinks shared
    with the package cache and kept builds, and a chmod would change them there
    too. ``after_first`` runs once after the first child is gone (the kill-test hook).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    _allow_owner(path)
    for dirpath, dirnames, _files in os.walk(path):  # top-down: fixed before it is entered
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                _allow_owner(full)
    for n, name in enumerate(sorted(os.listdir(path))):
        child = path / name
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink(missing_ok=True)
        if n == 0:
            after_first()
    os.rmdir(path)


def _allow_owner(directory: Path | str) -> None:
    mode = stat.S_IMODE(os.lstat(directory).st_mode)
    if mode & stat.S_IRWXU != stat.S_IRWXU:
        os.chmod(directory, mode | stat.S_IRWXU)
