"""uv's cache beside the package cache (``pkgs_dir/uv-cache``): pruned by gc with uv's own rules.

Specs with ``pip:`` packages are locked and installed by uv (``_internal/_uv.py``)
with this cache. uv installs with ``--link-mode copy``, so no prefix shares a
file with it: what it holds only saves downloads. What uv no longer reaches
still takes disk: wheels whose archive was replaced, source archives, and
whole buckets of an older cache layout after uv is upgraded (``wheels-v0``
beside ``wheels-v5``). ``uv cache prune`` removes exactly those and keeps what
a later lock or install would reuse; it takes uv's own cache lock, and gc runs
it only while no build holds a family lock (as for the other caches).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr._internal import _uv
from envmgr.errors import EnvironmentProblem
from envmgr.fsutil import disk_usage

DIR_NAME = "uv-cache"


@dataclass
class UvPrune:
    ran: bool = False
    bytes: int = 0  # freed (a run) or held now (a dry run)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ran": self.ran, "bytes": self.bytes, "error": self.error}


def cache_dir(pkgs_dir: Path) -> Path:
    return pkgs_dir / DIR_NAME


def _size(path: Path) -> int:
    used, _ = disk_usage([path])
    return used


def measure(pkgs_dir: Path) -> UvPrune:
    """A dry run: how much the cache holds (uv has no dry run of its prune)."""
    folder = cache_dir(pkgs_dir)
    return UvPrune(bytes=_size(folder) if folder.is_dir() else 0)


def prune(pkgs_dir: Path) -> UvPrune:
    """``uv cache prune`` on the cache, if there is one; a failure is reported, never raised."""
    folder = cache_dir(pkgs_dir)
    if not folder.is_dir():
        return UvPrune()
    before = _size(folder)
    try:
        result = _uv.run(["cache", "prune", "--cache-dir", os.fspath(folder)], env={}, cwd=pkgs_dir)
    except EnvironmentProblem as exc:  # no uv binary: the rest of gc still runs
        return UvPrune(error=exc.message)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return UvPrune(ran=True, error=f"uv cache prune failed (exit {result.returncode}): {tail}")
    return UvPrune(ran=True, bytes=max(0, before - _size(folder)))
