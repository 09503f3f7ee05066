"""The audit log: one JSON line per action that changed what users get.

Who did what, when, from where: builds published, rollbacks, promotions,
retirements, deletions. Lines are appended with a single ``write`` on an
``O_APPEND`` descriptor, so concurrent writers on one host never interleave
within a line.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from typing import Any

from .layout import Layout
from envmgr.clock import iso, utcnow


def audit(layout: Layout, action: str, **fields: Any) -> None:
    entry = {"time": iso(utcnow()), "action": action, "user": fields.pop("user", None) or getpass.getuser(),
             "host": socket.gethostname(), "pid": os.getpid(), **fields}
    line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_audit(layout: Layout, limit: int | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` entries (all if None), oldest first."""
    try:
        lines = layout.audit_log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    chosen = lines[-limit:] if limit else lines
    return [json.loads(line) for line in chosen if line.strip()]
