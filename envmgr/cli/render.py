"""Shared text rendering: the one style map for every status envmgr shows, and the package diff table.

Core modules return typed results with ``to_json``; only ``envmgr.cli`` turns
them into rich renderables, so the colours of a build status or a gc action are
defined once, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._rich import Text

if TYPE_CHECKING:
    from envmgr.lockfile import PackageDiff

# Keyed by the enums' string values (``BuildStatus``, ``gc.retention.Action``, which are
# StrEnums and look up alike), so that rendering imports neither the build pipeline's
# outcome nor gc's planner at start-up; tests/test_render.py checks every member has a style.
BUILD_STATUS_STYLE: dict[str, str] = {"built": "green", "unchanged": "dim", "held": "yellow",
                                      "failed": "bold red"}
BUILD_STATE_STYLE = {"latest": "bold green", "published": "", "failed": "red", "interrupted": "yellow",
                     "deleted": "dim", "building": "cyan"}
GC_ACTION_STYLE: dict[str, str] = {"keep": "green", "delete": "red", "none": "dim"}
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
