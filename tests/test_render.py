"""The one style map (envmgr.cli.render) covers every status and gc action the core can return.

The maps are keyed by the enums' string values so that rendering need not import the
build pipeline or gc's planner at start-up; this keeps the two from drifting apart.
"""

from __future__ import annotations

from envmgr.build.outcome import BuildStatus
from envmgr.cli.render import BUILD_STATUS_STYLE, GC_ACTION_STYLE, styled
from envmgr.gc.retention import Action


def test_every_build_status_and_gc_action_has_a_style() -> None:
    assert set(BUILD_STATUS_STYLE) == {s.value for s in BuildStatus}
    assert set(GC_ACTION_STYLE) == {a.value for a in Action}
    assert styled(BuildStatus.FAILED, BUILD_STATUS_STYLE).style == "bold red"  # an enum member looks up
    assert str(styled(Action.KEEP, GC_ACTION_STYLE)) == "keep"
