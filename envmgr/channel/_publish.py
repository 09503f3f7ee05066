"""Publish a built channel by renaming a symlink, and keep its directory tidy.

``dest`` is a relative symlink to ``.<name>.v-<id>`` next to it. A build
happens in such a sibling directory under a lock (``lock``) and is published
by atomically replacing the symlink (``publish``), so readers never see a
half-built channel and a killed build leaves the previous one intact;
``clean_leftovers`` removes the version directories nothing points at.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path

import filelock

from envmgr.errors import UsageError

LOCK_TIMEOUT_S = 900


def _version_dir_re(dest: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(dest.name)}\.(v|old|link)-[0-9a-f]+$")


def check_dest(dest: Path) -> None:
    """Refuse to publish over something that is not a channel we made."""
    if dest.is_symlink():
        if _version_dir_re(dest).match(os.readlink(dest)) is None:
            raise UsageError(f"{dest} is a symlink not made by envmgr; refusing to replace it")
        return
    if not dest.exists():
        return
    if not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory")
    if any(dest.iterdir()) and not (dest / "noarch").is_dir():
        raise UsageError(f"{dest} exists and is not a conda channel; refusing to replace it",
                         hint="choose an empty or new directory")


def current_target(dest: Path) -> Path | None:
    """The directory ``dest`` currently points at, if any (to reuse packages from)."""
    if dest.is_dir():
        return dest.resolve()
    return None


def clean_leftovers(dest: Path) -> None:
    """Remove version dirs of killed or superseded builds (caller holds the lock)."""
    pattern = _version_dir_re(dest)
    keep = os.readlink(dest) if dest.is_symlink() else None
    for entry in dest.parent.iterdir():
        if entry.name == keep or not pattern.match(entry.name):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def publish(staged: Path, dest: Path) -> None:
    """Point ``dest`` at ``staged`` with one atomic rename of a symlink.

    A pre-existing real directory (a channel from before envmgr used
    symlinks) is first renamed aside; it is deleted by the next cleanup.
    """
    token = secrets.token_hex(4)
    link = dest.parent / f".{dest.name}.link-{token}"
    os.symlink(staged.name, link)
    try:
        if dest.exists() and not dest.is_symlink():
            os.rename(dest, dest.parent / f".{dest.name}.old-{token}")
        os.replace(link, dest)
    except OSError:
        link.unlink(missing_ok=True)
        raise


def lock(dest: Path) -> filelock.FileLock:
    """The lock serializing builds of ``dest`` (a file next to it)."""
    return filelock.FileLock(str(dest.parent / f".{dest.name}.lock"), timeout=LOCK_TIMEOUT_S)
