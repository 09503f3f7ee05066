"""Build leases: how gc knows that no kernel anywhere still runs on a build.

Every kernel is started by ``launcher.sh``, which opens
``leases/<family>/<build-id>.lease`` **read-only** on fd 9, takes an
open-file-description (OFD) *read* lock on it (``fcntl(F_OFD_SETLK,
F_RDLCK)``, through a tiny helper that inherits fd 9 and exits; the lock
belongs to the open file description, not to the helper) and then execs the
interpreter. The kernel process therefore holds the lease for its whole life,
and so do forked children that inherit fd 9; the kernel dies, the lock goes,
on every host that shares the filesystem (NFS keeps OFD locks on the server).

Why OFD locks and not flock: a *write* lock needs a descriptor opened for
writing. Lease files are 0644 and belong to the service account, so users
(and their kernels) can only ever take read locks, which never stop another
kernel from starting. Only gc, opening the file read-write, can take the
write lock. ``flock(LOCK_EX)`` works on a read-only descriptor, so with flock
any user could lock every kernel of a family out (issue 13).

Protocol with gc (the launcher implements the other half):

1. gc takes a non-blocking OFD write lock on the lease (``mark_deleting``),
   plus ``flock(LOCK_EX|LOCK_NB)`` for kernels started by the previous,
   flock-based launcher (content-addressed launchers are never deleted, so
   such kernels restart with it). Failure means a kernel holds it: keep it.
2. Still holding both, gc writes ``<build-id>.deleting`` beside the lease and
   renames the prefix into ``ROOT/trash``.
3. A launcher that gets its read lock afterwards sees the marker (or the
   missing prefix) and refuses to start; one that got it before made step 1
   fail. So no kernel ever starts on a build being deleted.

Any reader can still hold a read lock without running a kernel and so keep a
build from gc; that cannot be prevented, only explained: ``holders`` names
every local process holding a lock (pid, user, command; ``procscan``), and the
report says "another host" only when no local holder exists.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from envmgr.errors import Busy, EnvironmentProblem, UsageError
from envmgr.fsutil import fsync_dir
from envmgr.layout import Layout
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # /proc and mount readers load for gc and status, not for a build run
    from envmgr.host.procscan import LockHolder

DELETING_SUFFIX = ".deleting"
LEASE_MODE = 0o644  # kernels of every user open it read-only; gc (the owner) read-write
DIR_MODE = 0o755
_WRLCK = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)  # struct flock, whole file


def deleting_marker(layout: Layout, family: str, build_id: str) -> Path:
    """Path of the marker gc writes before deleting a build.

    Derived from the lease path because launcher.sh derives it the same way
    (``<lease-dir>/<build-id>.deleting``); tests assert they agree.
    """
    return layout.lease_dir(family) / f"{build_id}{DELETING_SUFFIX}"


def ensure_lease(layout: Layout, family: str, build_id: str) -> Path:
    """Create the lease file of a build (idempotent; publication calls this).

    Kernels usually cannot create files in the lease dir, so the file must
    exist before the first kernel starts. Never truncates an existing lease.
    """
    lease = layout.lease_file(family, build_id)
    _mkdir_shared(lease.parent)
    try:
        fd = os.open(lease, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, LEASE_MODE)
    except FileExistsError:
        _not_writable_by_others(lease)
        return lease
    except OSError as exc:
        raise _environment(f"cannot create lease file {lease}", exc) from exc
    try:
        os.fchmod(fd, LEASE_MODE)  # umask must not make it unreadable for kernels
    finally:
        os.close(fd)
    return lease


def probe(lease_file: str | os.PathLike[str]) -> bool:
    """True if some kernel (on any host sharing the filesystem) holds the lease.

    Takes a non-blocking OFD write lock (and an exclusive flock, for kernels of
    the previous launcher) and drops them at once; the fd is opened read-write,
    which only the owner of the lease may. A missing file means nobody holds
    it; it is not created here, so probing has no side effects. A launcher
    that arrives during the probe waits (bounded) for its read lock.
    """
    try:
        fd = os.open(lease_file, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _environment(f"cannot open lease file {lease_file} to probe it", exc) from exc
    try:
        return not try_exclusive(fd)
    finally:
        os.close(fd)


@contextmanager
def mark_deleting(layout: Layout, family: str, build_id: str) -> Iterator[Path]:
    """Hold the build's lease exclusively and mark it as being deleted.

    Use as ``with mark_deleting(...) as marker: <move the prefix to trash>``.
    Raises ``Busy`` if a kernel holds the lease and ``UsageError`` if the build
    is the family's latest. If the block raises, the marker is removed again
    (the build was not deleted and stays usable); on success it stays, so a
    launcher that still reaches this build refuses with a clear message.
    """
    lease = ensure_lease(layout, family, build_id)
    try:
        fd = os.open(lease, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise _environment(f"cannot open lease file {lease}", exc) from exc
    try:
        if not try_exclusive(fd):
            raise Busy(f"build {build_id} of family {family} is in use by a running kernel",
                       hint="it is collected once every kernel on it has stopped")
        if layout.latest_build(family) == build_id:
            raise UsageError(f"build {build_id} is the latest of family {family}; not deleting it")
        marker = deleting_marker(layout, family, build_id)
        _write_marker(marker)
        try:
            yield marker
        except BaseException:
            marker.unlink(missing_ok=True)
            raise
    finally:
        os.close(fd)  # releases the exclusive lock


@dataclass(frozen=True)
class Holders:
    """Who holds a lease, as far as this host can tell.

    ``locks``: processes on this host holding a lock on the lease (pid, user,
    command). ``pids``: their pids. ``locked_here``: /proc/locks shows a lock
    on the file from this host. ``complete`` is False when some processes
    could not be inspected; ``note`` says what is unknown.
    """

    locks: tuple[LockHolder, ...]
    locked_here: bool
    complete: bool
    note: str

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(h.pid for h in self.locks)


def holders(lease_file: Path) -> Holders:
    """Best-effort list of the processes holding a lease on this host (``procscan``)."""
    if not lease_file.exists():
        return Holders((), False, True, "no lease file")
    from envmgr.host.mounts import network_fs_of
    from envmgr.host.procscan import lock_holders

    found = lock_holders(lease_file)
    notes = []
    if not found.complete:
        notes.append("some processes could not be inspected (run as root for a full list)")
    if (fs := network_fs_of(lease_file)) is not None:
        notes.append(f"{fs} filesystem: kernels on other hosts are not listed")
    return Holders(found.holders, found.locked_here, found.complete, "; ".join(notes))


# -- helpers -------------------------------------------------------------------


def try_exclusive(fd: int) -> bool:
    """Take gc's exclusive hold on an open lease (read-write fd); False if a kernel holds it.

    An OFD write lock (conflicts with every kernel's read lock, on any host
    that shares the filesystem) and an exclusive flock (conflicts with kernels
    of the previous, flock-based launcher). Both are released when ``fd`` is
    closed.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _WRLCK)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi", fcntl.F_UNLCK, 0, 0, 0, 0))
            return False
        raise
    return True


def _not_writable_by_others(path: Path) -> None:
    """Lease files must never be writable by users: a writable fd allows a write lock."""
    try:
        st = os.lstat(path)
        if st.st_mode & 0o022 and st.st_uid == os.geteuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
    except OSError:
        return


def _write_marker(marker: Path) -> None:
    """Write the marker atomically, durable before the prefix is touched."""
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = marker.with_name(f".{marker.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(info, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, LEASE_MODE)
        os.replace(tmp, marker)
        fsync_dir(marker.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _environment(f"cannot write deletion marker {marker}", exc) from exc


def _mkdir_shared(path: Path) -> None:
    """Create a directory (and parents) every user can traverse, whatever the umask.

    Kernels of all users open leases inside. Directories that already exist
    keep their owner; if they are ours, group/other write bits are dropped
    (a user who may create files here could create a lease they can write).
    """
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        try:
            d.mkdir()
            os.chmod(d, DIR_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _environment(f"cannot create {d}", exc) from exc
    _not_writable_by_others(path if not missing else missing[0])


def _environment(what: str, exc: OSError) -> EnvironmentProblem:
    return EnvironmentProblem(f"{what}: {exc.strerror or exc}",
                              hint="run gc/publication as the owner of the envmgr root")
