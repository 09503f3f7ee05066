"""Which processes on this host use which build: one scan of /proc.

gc asks this once per run for every build, so the /proc scan is done once for
all prefixes and answers for each. The lease probe is the signal that counts
on every host; the scan is a second, this-host-only signal that also catches
processes started without the launcher.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path



@dataclass(frozen=True)
class ProcessScan:
    """Pids per (family, entry) below ``envs/``; entry is a build id or ``.failed-<id>``."""

    users: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    complete: bool = True

    def pids(self, family: str, entry: str) -> tuple[int, ...]:
        return self.users.get((family, entry), ())


def scan_processes(envs_dir: Path) -> ProcessScan:
    """Which processes on this host have an exe, cwd, mapping or open file below ``envs_dir``."""
    root = os.path.realpath(envs_dir) + "/"
    found: dict[tuple[str, str], set[int]] = {}
    complete = True
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            paths = list(_paths_of(pid))
        except PermissionError:
            complete = False
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited while we looked
        for path in paths:
            key = _entry_of(path, root)
            if key is not None:
                found.setdefault(key, set()).add(pid)
    return ProcessScan({k: tuple(sorted(v)) for k, v in found.items()}, complete)


def _entry_of(path: str, root: str) -> tuple[str, str] | None:
    if not path.startswith(root):
        return None
    parts = path[len(root):].removesuffix(" (deleted)").split("/", 2)
    return (parts[0], parts[1]) if len(parts) >= 2 and parts[1] else None


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
    """Processes whose exe, cwd, mapped or open files are inside ``prefix`` (this host only).

    A second signal besides the lease: it also catches a user running
    ``<prefix>/bin/python`` directly. ``complete`` is False when some processes
    could not be inspected.
    """
    real = Path(os.path.realpath(prefix))  # envs/<family>/<build>: scan below envs/
    scan = scan_processes(real.parent.parent)
    return PrefixUsers(scan.pids(real.parent.name, real.name), scan.complete)
