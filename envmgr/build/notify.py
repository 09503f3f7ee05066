"""Tell someone what a build run did: the site's ``notify_command``, JSON on stdin.

The command is an argv list from the config (never a shell string), run after
every build run (built, unchanged, held, failed) once the family's build lock
is released. It receives one JSON document on stdin (``payload``) and, for
simple scripts, ``ENVMGR_FAMILY`` / ``ENVMGR_STATUS`` / ``ENVMGR_BUILD_ID`` in
its environment. A notification can never fail a build: every problem (not
found, non-zero exit, timeout) becomes a warning string.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from envmgr.clock import iso, utcnow
from envmgr.results import Progress, no_progress

if TYPE_CHECKING:
    from envmgr.build.outcome import BuildOutcome
    from envmgr.config import Config

NOTIFY_TIMEOUT = 60
PAYLOAD_VERSION = 1


def payload(config: Config, outcome: BuildOutcome) -> dict[str, Any]:
    """What the notify command reads on stdin (documented in docs/admin-guide.md)."""
    diff = outcome.diff
    return {
        "envmgr": PAYLOAD_VERSION, "event": "build",
        "family": outcome.family, "status": outcome.status, "build_id": outcome.build_id,
        "previous": outcome.previous,
        "diff": {"summary": diff.summary(),
                 "counts": {k: len(diff.of_kind(k))
                            for k in ("added", "removed", "upgraded", "downgraded", "rebuilt")},
                 "changes": [c.to_json() for c in diff.changes]} if diff is not None else None,
        "error": outcome.error, "message": outcome.message,
        "log": str(outcome.log) if outcome.log else None,
        "host": socket.gethostname(), "time": iso(utcnow()), "root": str(config.root),
    }


def run_notify(argv: Sequence[str], document: dict[str, Any], *,
               timeout: float = NOTIFY_TIMEOUT) -> str | None:
    """Run ``argv`` with ``document`` on stdin; None on success, else a warning to report."""
    env = {**os.environ, "ENVMGR_EVENT": str(document.get("event", "")),
           "ENVMGR_FAMILY": str(document.get("family") or ""),
           "ENVMGR_STATUS": str(document.get("status") or ""),
           "ENVMGR_BUILD_ID": str(document.get("build_id") or "")}
    what = f"notify_command {argv[0]}"
    try:
        proc = subprocess.run(list(argv), input=json.dumps(document, indent=2) + "\n", text=True,
                              capture_output=True, timeout=timeout, env=env)
    except FileNotFoundError:
        return f"{what} not found; fix notify_command in the config"
    except PermissionError:
        return f"{what} is not executable; fix notify_command in the config"
    except subprocess.TimeoutExpired:
        return f"{what} did not finish in {timeout:.0f} s and was killed"
    except OSError as exc:
        return f"{what} could not run: {exc.strerror or exc}"
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return f"{what} exited {proc.returncode}" + (f": {tail}" if tail else "")
    return None


def notify_build(config: Config, outcome: BuildOutcome, progress: Progress = no_progress) -> str | None:
    """Notify about one build run; returns (and reports) a warning instead of raising."""
    if not config.notify_command:
        return None
    try:
        warning = run_notify(config.notify_command, payload(config, outcome))
    except Exception as exc:  # noqa: BLE001 - a notification must never fail a build
        warning = f"notification failed: {type(exc).__name__}: {exc}"
    if warning:
        progress(f"warning: {warning}")
    return warning
