"""Which kernels run on which build: counts and users on this host, leases held elsewhere.

Built on what gc already probes (``retention.Usage``: the lease's flock and the
processes on this host that have the lease open), so ``status``, the staff
page and the metrics cannot disagree with gc. A kernel is a lease holder whose
parent does not hold the lease too (children inheriting the launcher's fd 9
are not counted again). A lease that is held while no process here has it open
is held on another host sharing the root. Users are the owners of the kernel
processes (names from the password database, else the uid).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from envmgr.gc.retention import Usage


@dataclass(frozen=True)
class BuildKernels:
    build_id: str
    kernels: int  # on this host
    users: tuple[str, ...]  # owners of those kernels, sorted
    other_host: bool | None  # another host holds the lease; None: cannot tell (some pids unreadable)
    lease_held: bool

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "kernels": self.kernels, "users": list(self.users),
                "other_host": self.other_host, "lease_held": self.lease_held}

    def describe(self) -> str:
        parts = []
        if self.kernels:
            noun = "kernel" if self.kernels == 1 else "kernels"
            parts.append(f"{self.kernels} {noun} here ({', '.join(self.users)})")
        if self.other_host:
            parts.append("lease held on another host")
        return "; ".join(parts) or "no kernels"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _owner(pid: int) -> str | None:
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def build_kernels(build_id: str, usage: Usage) -> BuildKernels:
    pids = set(usage.lease_pids)
    kernels = [p for p in pids if _ppid(p) not in pids]
    users = sorted({u for p in kernels if (u := _owner(p))})
    unsure = "could not be inspected" in usage.note
    other = None if unsure and not kernels else (usage.lease_held and not pids)
    return BuildKernels(build_id, len(kernels), tuple(users), other, usage.lease_held)


def family_kernels(usage: Mapping[str, Usage]) -> list[BuildKernels]:
    """Builds with a held lease, oldest first (build ids sort by time)."""
    return [build_kernels(b, u) for b, u in sorted(usage.items()) if u.lease_held]
