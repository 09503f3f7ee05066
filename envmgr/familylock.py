"""One build of a family at a time, on any host that shares the root.

The lock is a ``filelock`` on ``locks/<family>.lock``; beside it the holder
writes who it is (pid, host, user, since, step) so that a second build — or
``envmgr status`` — can say who holds it instead of hanging silently.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from filelock import FileLock, Timeout

from .errors import Busy
from .fsutil import atomic_write_json, read_json
from .layout import Layout
from envmgr.clock import iso, utcnow
from .results import Progress, no_progress


@dataclass
class Holder:
    """Written beside the lock by whoever holds it; updated as steps progress."""

    layout: Layout
    family: str
    since: str

    def set_step(self, step: str) -> None:
        atomic_write_json(self.layout.build_lock_holder(self.family), {
            "pid": os.getpid(), "host": socket.gethostname(), "user": _user(),
            "since": self.since, "step": step})


def _user() -> str:
    import getpass

    return getpass.getuser()


def describe_holder(layout: Layout, family: str) -> str:
    info = read_json(layout.build_lock_holder(family)) or {}
    if not info:
        return "another process (no holder information yet)"
    return (f"pid {info.get('pid')} on {info.get('host')} (user {info.get('user')}), "
            f"since {info.get('since')}, step: {info.get('step')}")


def holder_info(layout: Layout, family: str) -> dict | None:
    """Who is building ``family`` now, or None if nobody holds the lock."""
    lock = FileLock(str(layout.build_lock(family)))
    if not layout.build_lock(family).exists():
        return None
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return read_json(layout.build_lock_holder(family)) or {"step": "unknown"}
    lock.release()
    return None


@contextlib.contextmanager
def family_lock(layout: Layout, family: str, *, wait: bool = True,
                progress: Progress = no_progress) -> Iterator[Holder]:
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(layout.build_lock(family)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = describe_holder(layout, family)
        if not wait:
            raise Busy(f"family '{family}' is being built by {who}",
                       hint="Wait for it to finish, or run without --no-wait to queue behind it.") from None
        progress(f"waiting for the build of {family} held by {who}")
        lock.acquire()
    holder = Holder(layout, family, iso(utcnow()) or "")
    try:
        holder.set_step("starting")
        yield holder
    finally:
        with contextlib.suppress(FileNotFoundError):
            layout.build_lock_holder(family).unlink()
        lock.release()
