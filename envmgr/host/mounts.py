"""Which filesystem holds the root, and whether kernel leases work across hosts on it.

gc deletes a build only when it can take the build's lease exclusively; that
is safe across hosts only if ``flock`` on the root's filesystem is coherent
between hosts. Some mount options silently make locks host-local (NFS
``local_lock=flock|all`` or ``nolock``, Lustre ``localflock``, CIFS ``nobrl``):
then a kernel on host A does not stop gc on host B. This module reads the
mounts table (``/proc/self/mounts``; the text is injectable so tests and
``doctor --mounts-file`` can feed any line) and says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROC_MOUNTS = Path("/proc/self/mounts")
NFS_EXPORTS = Path("/var/lib/nfs/etab")
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs")
OK, WARN, FAIL = "ok", "warn", "fail"
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    source: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]

    def option(self, name: str) -> str | None:
        """``"value"`` for ``name=value``, ``""`` for a bare flag, None if absent (last one wins)."""
        found = None
        for opt in self.options:
            key, eq, value = opt.partition("=")
            if key == name:
                found = value if eq else ""
        return found

    @property
    def network(self) -> bool:
        return self.fstype in NETWORK_FS or self.fstype.startswith("fuse.")

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "mountpoint": self.mountpoint, "fstype": self.fstype,
                "options": list(self.options)}


@dataclass(frozen=True)
class LockSafety:
    """Whether gc's lease check sees kernels on other hosts, for one mount."""

    level: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "detail": self.detail, "fix": self.fix}


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mounts.append(Mount(_unescape(parts[0]), _unescape(parts[1]), parts[2],
                            tuple(parts[3].split(","))))
    return mounts


def read_mounts(text: str | None = None) -> list[Mount]:
    """The mounts table: ``text`` if given (tests, --mounts-file), else /proc/self/mounts."""
    if text is None:
        try:
            text = PROC_MOUNTS.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
    return parse_mounts(text)


def _inside(path: str, mountpoint: str) -> bool:
    return mountpoint == "/" or path == mountpoint or path.startswith(mountpoint.rstrip("/") + "/")


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount holding ``path``: longest mount point; of equal ones the last (it is on top)."""
    real = os.path.realpath(path)  # resolves the existing part; a missing tail is kept as is
    best: Mount | None = None
    for m in mounts:
        if _inside(real, m.mountpoint) and (best is None or len(m.mountpoint) >= len(best.mountpoint)):
            best = m
    return best


REMOUNT = "remount the envmgr root without it on every host (kernel hosts and the build host)"


def lock_safety(mount: Mount | None) -> LockSafety:
    """Judge one mount's options; ``warn`` means gc cannot see kernels on other hosts."""
    if mount is None:
        return LockSafety(WARN, "the filesystem of the root is not in the mounts table",
                          "check that /proc is mounted")
    where = f"{mount.fstype} at {mount.mountpoint} ({mount.source})"
    if mount.fstype in ("nfs", "nfs4"):
        return _nfs(mount, where)
    if mount.fstype == "lustre":
        if mount.option("localflock") is not None:
            return LockSafety(WARN, f"UNSAFE across hosts: {where} is mounted with localflock, so "
                              "leases are node-local and gc on one node cannot see kernels on others",
                              f"mount with -o flock instead of localflock; {REMOUNT}")
        if mount.option("flock") is None:
            return LockSafety(WARN, f"{where}: flock is not enabled (no 'flock' option); kernels "
                              "may fail to take leases", "mount Lustre clients with -o flock")
        return LockSafety(OK, f"{where} with coherent flock")
    if mount.fstype in ("cifs", "smb3") and mount.option("nobrl") is not None:
        return LockSafety(WARN, f"UNSAFE across hosts: {where} is mounted with nobrl (locks stay "
                          "on the client)", f"drop nobrl; {REMOUNT}")
    if mount.network:
        return LockSafety(OK, f"{where}: network filesystem; check cross-host locking once with "
                          "the two-host test in docs/admin-guide.md")
    return LockSafety(OK, f"local filesystem {where}: leases are coherent on this host")


def _nfs(mount: Mount, where: str) -> LockSafety:
    local = mount.option("local_lock")
    if local in ("flock", "all"):
        return LockSafety(WARN, f"UNSAFE across hosts: {where} is mounted with local_lock={local}, "
                          "so kernel leases (flock) are host-local: gc on one host cannot see "
                          "kernels running on another and may delete their environment",
                          f"use local_lock=none (the default); {REMOUNT}")
    if mount.option("nolock") is not None:
        return LockSafety(WARN, f"UNSAFE across hosts: {where} is mounted with nolock, so all locks "
                          "are host-local", f"drop nolock (run rpc.statd/lockd for NFSv3); {REMOUNT}")
    return LockSafety(OK, f"{where}: flock is emulated with POSIX locks held on the server "
                      "(coherent across hosts; forked children do not keep a kernel's lease)")


def exported_over_nfs(path: Path, exports_text: str | None = None) -> str | None:
    """The NFS export (from /var/lib/nfs/etab) that contains ``path`` on this server, if any.

    On Linux, ``flock`` on the server's local path and the POSIX locks NFS
    clients hold are independent, so gc run on the NFS server's local path
    cannot see kernels on the clients.
    """
    if exports_text is None:
        try:
            exports_text = NFS_EXPORTS.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    real = os.path.realpath(path)
    for line in exports_text.splitlines():
        export = _unescape(line.split("\t", 1)[0].split(" ", 1)[0]) if line.strip() else ""
        if export.startswith("/") and _inside(real, export):
            return export
    return None
