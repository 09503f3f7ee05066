"""Retired stable releases and their successors, kept next to the kernels.

A retired (or expired) release loses its kernelspec, so a notebook that names
it would only get Jupyter's bare "No such kernel". This module keeps
``<kernels_dir>/.envmgr/retired.json``::

    {"v": 1, "retired": [{"kernel": "example-2025.9", "family": "example",
      "release": "2025.9", "build_id": "...", "until": "2028-09-01",
      "retired": "2026-11-30", "reason": "retired" | "expired",
      "successor": "example-2026.1", "successor_display_name": "Example · 2026.1"}]}

``envmgr notebooks`` reads it, and every kernelspec of the family carries a
copy of the family's entries as the resource ``envmgr-retired.json``, because
jupyter_server serves a kernelspec's files at ``/kernelspecs/<name>/<file>``:
the JupyterLab extension reads it there, without a server extension.

Entries are added by ``envmgr retire`` (``note``) and, for releases whose
support ended, by every kernel sync (``refresh``, which gc and builds run);
the sync also re-computes successors (a successor can retire in turn) and
drops an entry whose kernel exists again (a restored or re-promoted release).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from envmgr.catalog.stable import EXPIRY_WARNING_DAYS
from envmgr.fsutil import atomic_write_json, read_json

VERSION = 1
STATE_DIR = ".envmgr"  # the kernels dir's hidden state folder (also holds the launcher)
FILE_NAME = "retired.json"
RESOURCE_NAME = "envmgr-retired.json"  # the per-family copy inside each kernelspec dir


@dataclass(frozen=True)
class Retirement:
    """One kernel that no longer exists, and where its notebooks should go."""

    kernel: str
    family: str
    release: str
    build_id: str
    until: str | None
    retired: str
    reason: str = "retired"  # retired | expired
    successor: str | None = None
    successor_display_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Retirement:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class LiveKernel:
    """A kernel a retired release's notebooks can move to."""

    name: str
    display_name: str
    release: str | None  # None: the family's latest kernel
    until: str | None = None


def file_path(kernels_dir: Path) -> Path:
    return Path(kernels_dir) / STATE_DIR / FILE_NAME


def load(kernels_dir: Path) -> dict[str, Retirement]:
    """Kernel name -> retirement; empty when the file is missing or unreadable."""
    try:
        data = read_json(file_path(kernels_dir)) or {}
    except (OSError, ValueError):
        return {}
    found = {}
    for entry in data.get("retired", []) if isinstance(data, dict) else []:
        try:
            rec = Retirement.from_json(entry)
        except TypeError:
            continue
        found[rec.kernel] = rec
    return found


def release_key(release: str) -> tuple:
    """Order releases the way people read them: 2025.10 after 2025.9."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", release) if part)


def successor_of(release: str, live: Sequence[LiveKernel], today: dt.date | None = None,
                 notice_days: int = EXPIRY_WARNING_DAYS) -> LiveKernel | None:
    """The family's next stable release after ``release`` that is not ending itself, else latest.

    "Ending" is within ``notice_days`` of its support end: moving notebooks
    there would only announce the next move (the JupyterLab extension picks the
    same way, labextension/src/support.ts).
    """
    day = today or dt.date.today()

    def lasting(k: LiveKernel) -> bool:
        return not k.until or (dt.date.fromisoformat(k.until) - day).days > notice_days

    newer = sorted((k for k in live if k.release is not None and lasting(k)
                    and release_key(k.release) > release_key(release)),
                   key=lambda k: release_key(k.release or ""))
    if newer:
        return newer[0]
    return next((k for k in live if k.release is None), None)


def note(kernels_dir: Path, retirement: Retirement) -> None:
    """Record a release just retired (its successor is filled in by ``refresh``)."""
    with _locked(kernels_dir):
        current = load(kernels_dir)
        current[retirement.kernel] = retirement
        _save(kernels_dir, current.values())


def refresh(kernels_dir: Path, family: str, live: Sequence[LiveKernel],
            expired: Sequence[Retirement] = ()) -> list[Retirement]:
    """Bring the family's entries up to date; returns them (for the kernelspec copy).

    ``live`` are the kernels the family is about to have; ``expired`` releases
    whose support ended (added unless already there).
    """
    live_names = {k.name for k in live}
    with _locked(kernels_dir):
        current = load(kernels_dir)
        for rec in expired:
            current.setdefault(rec.kernel, rec)
        mine = []
        for name, rec in sorted(current.items()):
            if rec.family != family:
                continue
            if name in live_names:
                del current[name]
                continue
            nxt = successor_of(rec.release, live)
            current[name] = rec = replace(rec, successor=nxt.name if nxt else None,
                                          successor_display_name=nxt.display_name if nxt else None)
            mine.append(rec)
        _save(kernels_dir, current.values())
    return mine


def resource_bytes(entries: Sequence[Retirement]) -> bytes:
    """The per-family copy served with each kernelspec of the family."""
    doc = {"v": VERSION, "retired": [e.to_json() for e in sorted(entries, key=lambda e: e.kernel)]}
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True).encode("ascii") + b"\n"


def today() -> str:
    return dt.date.today().isoformat()


def _save(kernels_dir: Path, entries: Any) -> None:
    """Write only on change: every build run syncs kernels, readers need no churn."""
    doc = {"v": VERSION, "retired": [e.to_json() for e in sorted(entries, key=lambda e: e.kernel)]}
    try:
        if read_json(file_path(kernels_dir)) == doc:
            return
    except (OSError, ValueError):
        pass
    atomic_write_json(file_path(kernels_dir), doc)


@contextmanager
def _locked(kernels_dir: Path) -> Iterator[None]:
    """One writer at a time (families are synced by different processes)."""
    state = Path(kernels_dir) / STATE_DIR
    state.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(state / "retired.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
