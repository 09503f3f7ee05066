"""Shared text rendering: the one style map for every status envmgr shows, and the package diff table.

Core modules return typed results with ``to_json``; only ``envmgr.cli`` turns
them into rich renderables, so the colours of a build status or a gc action are
defined once, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from envmgr.build.outcome import BuildStatus
from envmgr.gc.retention import Action

if TYPE_CHECKING:
    from envmgr.lockfile import PackageDiff

BUILD_STATUS_STYLE: dict[str, str] = {BuildStatus.BUILT: "green", BuildStatus.UNCHANGED: "dim",
                                      BuildStatus.HELD: "yellow", BuildStatus.FAILED: "bold red"}
BUILD_STATE_STYLE = {"latest": "bold green", "published": "", "failed": "red", "interrupted": "yellow",
                     "deleted": "dim", "building": "cyan"}
GC_ACTION_STYLE: dict[str, str] = {Action.KEEP: "green", Action.DELETE: "red", Action.NONE: "dim"}
CHANGE_STYLE = {"added": "green", "removed": "red", "upgraded": "cyan", "downgraded": "yellow",
                "rebuilt": "magenta"}
CHECK_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def styled(value: str, styles: dict[str, str]) -> Text:
    """``value`` in its style from one of the maps above (unknown values unstyled)."""
    return Text(str(value), style=styles.get(value, ""))


def render_diff(d: PackageDiff) -> Text:
    """One line per change: ``upgraded beam-tool 1.0 → 1.1 (pip)``."""
    text = Text()
    for index, c in enumerate(d.changes):
        text.append("\n" if index else "")
        text.append(f"  {c.kind}", style=CHANGE_STYLE.get(c.kind, ""))
        text.append(c.line[len(c.kind):])
    return text
