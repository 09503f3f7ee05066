"""What deleting one build frees, measured once and kept with its build record.

Sizing a deletion hardlink-aware costs one ``lstat`` per file (13,000 for a
scientific prefix), and ``gc --dry-run`` used to pay it for every planned
deletion on every call. A published prefix never changes, and what deleting it
*alone* frees -- the inodes all of whose links are inside it -- changes only
if someone hardlinks its own files elsewhere: its package and ``.pyc`` files
stay shared with the caches while any kept build needs them. So the figure is
measured the first time gc sizes the deletion and stored in
``records/<family>/<build-id>/size.json`` (beside ``build.json``), keyed on the
deletion target (the published prefix or the ``.failed-`` one); later runs
read it. Writing it is best effort: a user's dry run that cannot write the
record just measures.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from envmgr.clock import iso, utcnow
from envmgr.fsutil import atomic_write_json, read_json
from envmgr.gc import trash
from envmgr.layout import Layout

FILE_NAME = "size.json"


def _file(layout: Layout, family: str, build_id: str) -> Path:
    return layout.record_dir(family, build_id) / FILE_NAME


def recorded(layout: Layout, family: str, build_id: str, target: str) -> int | None:
    """The stored figure for deleting ``target`` of this build, if it was measured."""
    try:
        data = read_json(_file(layout, family, build_id))
    except (OSError, ValueError):
        return None
    if not data or data.get("target") != target or not isinstance(data.get("bytes"), int):
        return None
    return data["bytes"]


def measure(layout: Layout, family: str, build_id: str, target: str, path: Path
            ) -> tuple[int, trash.Inodes]:
    """Size the deletion now (hardlink-aware) and keep the figure; returns (bytes, inode table)."""
    table = trash.inode_table(path)
    freed = trash.freed_bytes([table])
    if table and layout.record_dir(family, build_id).is_dir():
        with contextlib.suppress(OSError):  # read-only for this user: measured, not kept
            atomic_write_json(_file(layout, family, build_id),
                              {"target": target, "bytes": freed, "measured": iso(utcnow())})
    return freed, table
