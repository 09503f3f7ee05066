"""Build leases: how gc knows that no kernel anywhere still runs on a build.

Every kernel is started by ``launcher.sh``, which opens
``leases/<family>/<build-id>.lease`` on fd 9, takes a *shared* flock and then
execs the interpreter. The kernel process itself therefore holds the lease for
its whole life (and forked children that inherit fd 9 hold it too); the kernel
dies, the lock goes, on every host that shares the filesystem.

Protocol with gc (the launcher implements the other half):

1. gc takes ``LOCK_EX | LOCK_NB`` on the lease (``mark_deleting``). Failure
   means a kernel holds it: the build is in use, keep it.
2. Still holding EX, gc writes ``<build-id>.deleting`` beside the lease and
   renames the prefix into ``ROOT/trash``.
3. A launcher that gets its shared lock afterwards sees the marker (or the
   missing prefix) and refuses to start; one that got it before made step 1
   fail. So no kernel ever starts on a build being deleted.

``probe`` is the cheap question "in use?". ``holders`` and ``procscan`` are
best-effort, this-host-only explanations for a report; they never decide.
On NFS, flock is emulated with POSIX locks (forked children do not keep the
lease, and ``local_lock=flock|all`` silently makes locks host-local): mount
the envmgr root without ``local_lock`` on every host.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from envmgr.errors import Busy, EnvironmentProblem, UsageError
from envmgr.fsutil import fsync_dir
from envmgr.layout import Layout

DELETING_SUFFIX = ".deleting"
LEASE_MODE = 0o644  # kernels of every user open it read-only; gc (the owner) read-write
DIR_MODE = 0o755
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs")


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
        return lease
    except OSError as exc:
        raise _environment(f"cannot create lease file {lease}", exc) from exc
    try:
        os.fchmod(fd, LEASE_MODE)  # umask must not make it unreadable for kernels
    finally:
        os.close(fd)
    return lease


def probe(lease_file: Path) -> bool:
    """True if some kernel (on any host sharing the filesystem) holds the lease.

    Takes an exclusive non-blocking flock and drops it at once. The fd is opened
    read-write because on NFS an exclusive (POSIX) lock needs a writable fd. A
    missing file means nobody holds it; it is not created here, so probing has
    no side effects. A launcher that arrives during the probe waits (bounded)
    for its shared lock, it does not fail.
    """
    try:
        fd = os.open(lease_file, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _environment(f"cannot open lease file {lease_file} to probe it", exc) from exc
    try:
        return not _try_lock(fd, fcntl.LOCK_EX)
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
        if not _try_lock(fd, fcntl.LOCK_EX):
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

    ``pids``: processes on this host with the lease file open (the kernel, and
    forked children that inherited fd 9). ``locked_here``: /proc/locks shows a
    lock on the file from this host. ``complete`` is False when some processes
    could not be inspected; ``note`` says what is unknown.
    """

    pids: tuple[int, ...]
    locked_here: bool
    complete: bool
    note: str


def holders(lease_file: Path) -> Holders:
    """Best-effort list of the processes holding a lease on this host.

    /proc/locks alone cannot name them: a lock taken with flock(1) records the
    pid of the flock helper, which exited long ago. So processes are found by
    their open fds (same device and inode) and /proc/locks only says whether
    a lock exists. Kernels on other hosts are invisible here.
    """
    try:
        st = lease_file.stat()
    except FileNotFoundError:
        return Holders((), False, True, "no lease file")
    key = (st.st_dev, st.st_ino)
    pids, complete = _scan_processes(lambda pid: _has_open_file(pid, key))
    notes = []
    if not complete:
        notes.append("some processes could not be inspected (run as root for a full list)")
    fs = _fs_type(lease_file)
    if fs in NETWORK_FS:
        notes.append(f"{fs} filesystem: kernels on other hosts are not listed")
    return Holders(tuple(pids), _locked_in_proc_locks(key), complete, "; ".join(notes))


# -- helpers -------------------------------------------------------------------


def _try_lock(fd: int, kind: int) -> bool:
    """Take a non-blocking flock; False if someone else holds a conflicting one."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


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

    Kernels of all users open leases inside. Directories that already exist are
    left as they are (they may belong to someone else).
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


def _environment(what: str, exc: OSError) -> EnvironmentProblem:
    return EnvironmentProblem(f"{what}: {exc.strerror or exc}",
                              hint="run gc/publication as the owner of the envmgr root")


def _pids() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def _scan_processes(match: Callable[[int], bool]) -> tuple[list[int], bool]:
    """Pids for which ``match(pid)`` is True; False as second item if some were unreadable."""
    found, complete = [], True
    for pid in _pids():
        try:
            if match(pid):
                found.append(pid)
        except PermissionError:
            complete = False
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
    return found, complete


def _has_open_file(pid: int, key: tuple[int, int]) -> bool:
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            st = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == key:
            return True
    return False


def _inside(path: str, root: str) -> bool:
    path = path.removesuffix(" (deleted)")
    return path == root or path.startswith(root + "/")


def _locked_in_proc_locks(key: tuple[int, int]) -> bool:
    dev, ino = key
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            return any(want in line.split() for line in fh)
    except OSError:
        return False


def _fs_type(path: Path) -> str:
    """Filesystem type of the mount holding ``path`` (longest mount point match)."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if _inside(real, mnt.rstrip("/") or "/") or mnt == "/":
                    if len(mnt) >= len(best):
                        best, fstype = mnt, parts[2]
    except OSError:
        return ""
    return fstype
