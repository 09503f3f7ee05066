"""`envmgr sbom`: a build's bill of materials; and the advisories check's notification."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import NotFound, UsageError
from ..records import BuildRecord, iso, utcnow
from ..results import Progress, no_progress
from ..sbom import FORMATS, ensure_sbom, info_from_cyclonedx, resolve_build, spdx_json

if TYPE_CHECKING:
    from ..advisory_check import AdvisoryReport


@dataclass(frozen=True)
class SbomResult:
    record: BuildRecord
    fmt: str
    text: str
    generated: bool  # made from the record now (a build from before SBOMs)


def build_sbom(config: Config, family: str, ref: str | None, fmt: str = "cyclonedx-json",
               progress: Progress = no_progress) -> SbomResult:
    """The SBOM of one build of ``family`` (id, stable release name, or latest)."""
    from ..inventory import family_view

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    layout = config.layout
    if family not in layout.families():
        raise NotFound(f"no family '{family}' under {config.root}",
                       hint="`envmgr status` lists the families")
    record = resolve_build(layout, family, ref, family_view(config, family).releases)
    if record.deleted:
        progress(f"build {record.build_id} is a tombstone (its prefix was deleted {record.deleted})")
    text, generated = ensure_sbom(layout, record)
    if generated:
        progress(f"build {record.build_id} had no SBOM; made it from its recorded lock")
    if fmt == "spdx-json":
        text = spdx_json(info_from_cyclonedx(json.loads(text)))
    return SbomResult(record, fmt, text, generated)


def notify_findings(config: Config, report: AdvisoryReport) -> str | None:
    """Send the check's findings to ``notify_command`` (event "advisories"); a warning or None.

    Sent only when some build is affected: a clean nightly is not news.
    """
    from ..notify import run_notify

    if not config.notify_command or not report.findings:
        return None
    document = {"envmgr": 1, "event": "advisories", "family": None, "status": "affected",
                "build_id": None, "findings": [f.to_json() for f in report.findings],
                "database": report.db.summary(), "host": socket.gethostname(),
                "time": iso(utcnow()), "root": str(config.root)}
    json.dumps(document)  # fail here, not in the child, if something is not JSON
    try:
        return run_notify(config.notify_command, document)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the check
        return f"notification failed: {type(exc).__name__}: {exc}"
