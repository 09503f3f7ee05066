"""Which processes on this host use which build, and who holds a lease: scans of /proc.

gc asks this once per run for every build, so the /proc scan is done once for
all prefixes and answers for each. The lease probe is the signal that counts
on every host; the scan is a second, this-host-only signal that also catches
processes started without the launcher.

A process uses a build when its exe, cwd, a mapped file, an open file or its
``ENVMGR_PREFIX`` lies inside the prefix -- or when it runs an interpreter that
the prefix's ``bin/`` only links to (the demo channel's ``bin/python`` is a
symlink out of the prefix: ``/proc/<pid>/exe`` then names the target, and only
argv[0] still says which prefix it was started from).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

Key = tuple[str, str]  # (family, entry): entry is a build id or ``.failed-<id>``


@dataclass(frozen=True)
class ProcessScan:
    """Pids per (family, entry) below ``envs/``; entry is a build id or ``.failed-<id>``."""

    users: dict[Key, tuple[int, ...]] = field(default_factory=dict)
    complete: bool = True

    def pids(self, family: str, entry: str) -> tuple[int, ...]:
        return self.users.get((family, entry), ())


def scan_processes(envs_dir: Path) -> ProcessScan:
    """Which processes on this host use a prefix below ``envs_dir`` (see the module doc)."""
    root = os.path.realpath(envs_dir) + "/"
    links = _outward_links(Path(root))
    found: dict[Key, set[int]] = {}
    complete = True
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            keys = _keys_of(pid, root, links)
        except PermissionError:
            complete = False
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        for key in keys:
            found.setdefault(key, set()).add(pid)
    return ProcessScan({k: tuple(sorted(v)) for k, v in found.items()}, complete)


def _entry_of(path: str, root: str) -> Key | None:
    if not path.startswith(root):
        return None
    parts = path[len(root):].removesuffix(" (deleted)").split("/", 2)
    return (parts[0], parts[1]) if len(parts) >= 2 and parts[1] else None


def _outward_links(root: Path) -> dict[str, list[Key]]:
    """Real path -> prefixes whose ``bin/`` has a symlink resolving to it outside the prefix."""
    links: dict[str, list[Key]] = {}
    for bindir in root.glob("*/*/bin"):
        key = (bindir.parent.parent.name, bindir.parent.name)
        prefix = str(bindir.parent) + "/"
        try:
            names = os.listdir(bindir)
        except OSError:
            continue
        for name in names:
            path = bindir / name
            if path.is_symlink():
                real = os.path.realpath(path)
                if not real.startswith(prefix):
                    links.setdefault(real, []).append(key)
    return links


def _keys_of(pid: int, root: str, links: dict[str, list[Key]]) -> set[Key]:
    keys = {key for path in _paths_of(pid) if (key := _entry_of(path, root)) is not None}
    environ = _environ(pid)
    if (key := _entry_of(os.path.realpath(environ.get("ENVMGR_PREFIX", "/")) + "/", root)) is not None:
        keys.add(key)
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except FileNotFoundError:
        return keys  # kernel threads have no exe
    for key in links.get(exe, ()):
        if _started_from(pid, root + "/".join(key) + "/", environ):
            keys.add(key)
    return keys


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        pairs = (item.partition(b"=") for item in fh.read().split(b"\0") if item)
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _started_from(pid: int, prefix: str, environ: dict[str, str]) -> bool:
    """Whether argv[0] of ``pid`` (resolved as its shell did, against cwd or PATH) is in ``prefix``."""
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv0 = fh.read().split(b"\0", 1)[0].decode(errors="replace")
    if not argv0:
        return False
    if "/" in argv0:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        return os.path.normpath(os.path.join(cwd, argv0)).startswith(prefix)
    for directory in environ.get("PATH", "").split(":"):
        if directory and os.path.exists(os.path.join(directory, argv0)):
            return os.path.normpath(os.path.join(directory, argv0)).startswith(prefix)
    return False


def _paths_of(pid: int) -> Iterable[str]:
    for link in ("exe", "cwd"):
        try:
            yield os.readlink(f"/proc/{pid}/{link}")
        except FileNotFoundError:
            pass  # kernel threads have no exe
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                yield parts[5].rstrip("\n")
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            yield os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue


@dataclass(frozen=True)
class PrefixUsers:
    """Processes on this host that use files inside one prefix."""

    pids: tuple[int, ...]
    complete: bool


def prefix_users(prefix: Path) -> PrefixUsers:
    """Processes on this host using ``prefix`` (exe, cwd, mapped or open files, ENVMGR_PREFIX).

    A second signal besides the lease: it also catches a user running
    ``<prefix>/bin/python`` directly. ``complete`` is False when some processes
    could not be inspected.
    """
    real = Path(os.path.realpath(prefix))  # envs/<family>/<build>: scan below envs/
    scan = scan_processes(real.parent.parent)
    return PrefixUsers(scan.pids(real.parent.name, real.name), scan.complete)


# -- lock holders ---------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    """A process on this host holding a lock on a file (from /proc/<pid>/fdinfo)."""

    pid: int
    user: str
    command: str
    locks: tuple[str, ...]  # e.g. "OFDLCK READ", "FLOCK WRITE", "POSIX READ"

    def describe(self) -> str:
        return f"pid {self.pid} (user {self.user}: {self.command}; {', '.join(self.locks)})"

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "user": self.user, "command": self.command, "locks": list(self.locks)}


@dataclass(frozen=True)
class LockHolders:
    """Who holds locks on one file, as far as this host can tell.

    ``holders``: processes whose open file carries a lock (the kernel, forked
    children sharing its descriptor, or anyone else holding a lock).
    ``open_pids``: processes with the file open at all. ``locked_here``:
    /proc/locks lists a lock on the file from this host. ``complete`` is False
    when some processes could not be inspected.
    """

    holders: tuple[LockHolder, ...]
    open_pids: tuple[int, ...]
    locked_here: bool
    complete: bool


def lock_holders(path: Path) -> LockHolders:
    """Processes on this host that hold a lock on ``path``.

    /proc/locks alone cannot name them: OFD locks are listed with pid -1 and a
    lock taken by flock(1) or a short-lived helper records a pid that exited
    long ago. So every open descriptor of the file is found in /proc/<pid>/fd
    and its ``lock:`` lines are read from /proc/<pid>/fdinfo.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return LockHolders((), (), False, True)
    key = (st.st_dev, st.st_ino)
    holders: list[LockHolder] = []
    open_pids: list[int] = []
    complete = True
    for name in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        pid = int(name)
        try:
            locks = _locks_on(pid, key)
        except PermissionError:
            complete = False
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue
        if locks is None:
            continue
        open_pids.append(pid)
        if locks:
            holders.append(LockHolder(pid, _user_of(pid), _command_of(pid), tuple(sorted(locks))))
    return LockHolders(tuple(holders), tuple(open_pids), _in_proc_locks(key), complete)


def _locks_on(pid: int, key: tuple[int, int]) -> set[str] | None:
    """Locks ``pid`` holds through its descriptors of the file ``key``; None if it has none open."""
    fd_dir = f"/proc/{pid}/fd"
    found: set[str] | None = None
    for fd in os.listdir(fd_dir):
        try:
            st = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) != key:
            continue
        found = found if found is not None else set()
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("lock:"):
                        parts = line.split()  # lock: 1: OFDLCK ADVISORY READ -1 fe:00:123 0 EOF
                        if len(parts) >= 5:
                            found.add(f"{parts[2]} {parts[4]}")
        except FileNotFoundError:
            continue
    return found


def _user_of(pid: int) -> str:
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return "?"
    text = " ".join(argv) or "?"
    return text if len(text) <= 120 else text[:117] + "..."


def _in_proc_locks(key: tuple[int, int]) -> bool:
    dev, ino = key
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            return any(want in line.split() for line in fh)
    except OSError:
        return False
