"""One build of a family at a time, on any host that shares the root.

The lock is an exclusive ``flock`` on ``locks/<family>.lock`` (``LockFile``,
the lock filelock's ``UnixFileLock`` takes, so both interoperate); beside it
the holder writes who it is (pid, host, user, since, step) so that a second
build — or ``envmgr status`` — can say who holds it instead of hanging silently.

Lock files are 0600: a ``flock`` needs only read access, so a lock file any
user can open is one any user can hold, stalling every build of the family
(the attack issue 13 closed for leases). Only the service account opens them;
status run by another user reads the holder file instead (marked unverified).

Why not filelock here: since 3.20 importing it pulls in asyncio and its
async and soft-lock modules, ~35 ms of every build run (a tenth of an
unchanged nightly, issue 14), for a non-blocking ``flock`` and a blocking one.
filelock stays for the channel builder's lock with a timeout.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import Busy
from .fsutil import atomic_write_json, read_json
from .layout import Layout
from .osfault import step_guard
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


LOCK_MODE = 0o600


class LockFile:
    """An exclusive ``flock`` on ``path`` (created 0600), released by ``release`` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock if free; False if another open file description holds it."""
        return self._take(fcntl.LOCK_EX | fcntl.LOCK_NB)

    def acquire(self) -> None:
        """Wait for the lock (interruptible: a signal still raises, e.g. KeyboardInterrupt)."""
        self._take(fcntl.LOCK_EX)

    def _take(self, how: int) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # a root made by an older envmgr had 0644 lock files
            if os.fstat(fd).st_mode & 0o777 != LOCK_MODE:
                os.fchmod(fd, LOCK_MODE)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the description drops the flock


def lock_held(path: str | os.PathLike[str]) -> bool:
    """Whether a builder holds the lock file at ``path`` (filelock's exclusive ``flock``).

    A shared, non-blocking ``flock`` on a read-only descriptor conflicts with
    the builder's exclusive one. Raises ``PermissionError`` for a user who may
    not open lock files (0600): callers then fall back to the holder file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # nobody ever built the family here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the probe
    return False


def holder_info(layout: Layout, family: str) -> dict | None:
    """Who is building ``family`` now, or None if nobody holds the lock."""
    if not lock_held(layout.build_lock(family)):
        return None
    return read_json(layout.build_lock_holder(family)) or {"step": "unknown"}


@contextlib.contextmanager
def family_lock(layout: Layout, family: str, *, wait: bool = True,
                progress: Progress = no_progress) -> Iterator[Holder]:
    lock = LockFile(layout.build_lock(family))
    with step_guard("take the family lock", layout.build_lock(family)):
        layout.locks_dir.mkdir(parents=True, exist_ok=True)
        free = lock.try_acquire()
    if not free:
        who = describe_holder(layout, family)
        if not wait:
            raise Busy(f"family '{family}' is being built by {who}",
                       hint="Wait for it to finish, or run without --no-wait to queue behind it.") from None
        progress(f"waiting for the build of {family} held by {who}")
        with step_guard("take the family lock", layout.build_lock(family)):
            lock.acquire()
    holder = Holder(layout, family, iso(utcnow()) or "")
    try:
        with step_guard("take the family lock", layout.build_lock_holder(family)):
            holder.set_step("starting")
        yield holder
    finally:
        with contextlib.suppress(FileNotFoundError):
            layout.build_lock_holder(family).unlink()
        lock.release()
