"""Move a family's latest pointer back (or forward) to another good build.

Builds between the target and the old latest are marked ``rolled_back`` so
that the next nightly, solving the same packages again, does not silently
republish what staff just rolled away from (it reports "held" instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


from envmgr.catalog import records
from envmgr.audit import audit
from envmgr.build.pipeline import move_latest
from envmgr.config import Config
from envmgr.errors import EXIT_OK, NotFound, UsageError
from envmgr.kernels.sync import sync_kernels
from envmgr.familylock import family_lock
from envmgr.catalog.inventory import FamilyView, family_view
from envmgr.lockfile import PackageDiff, diff
from envmgr.results import Progress, no_progress


@dataclass
class RollbackResult:
    family: str
    previous: str | None
    current: str
    rolled_back: list[str]
    diff: PackageDiff | None

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "previous": self.previous, "latest": self.current,
                "marked_rolled_back": self.rolled_back,
                "diff": self.diff.to_json() if self.diff else None}


def choose_target(view: FamilyView, to: str | None) -> str:
    good = [b.build_id for b in view.good_published()]
    if to is not None:
        info = view.build(to)
        if info.build_id not in good:
            raise UsageError(f"build {to} of {view.family} cannot be latest: it is {info.state}",
                             hint="only published, successful builds can be rolled back to")
        return to
    older = [b for b in good if view.latest is None or b < view.latest]
    candidates = [b for b in older if not view.build(b).record.rolled_back] or older
    if not candidates:
        raise NotFound(f"family '{view.family}' has no earlier good build to roll back to",
                       hint=f"`envmgr builds {view.family}` lists its builds")
    return candidates[-1]


def rollback(config: Config, family: str, to: str | None = None, *, wait: bool = True,
             progress: Progress = no_progress) -> RollbackResult:
    layout = config.layout
    if family not in layout.families():
        raise NotFound(f"no family '{family}' under {layout.root}")
    with family_lock(layout, family, wait=wait, progress=progress):
        view = family_view(config, family)
        target = choose_target(view, to)
        previous = view.latest
        marked = [b.build_id for b in view.good_published()
                  if previous and target < b.build_id <= previous]
        for build_id in marked:
            records.update(layout, family, build_id, rolled_back=True)
        records.update(layout, family, target, rolled_back=False)
        move_latest(layout, family, target, previous)
        sync_kernels(config, family)
    audit(layout, "rollback", family=family, build_id=target, previous=previous, marked=marked)
    before = records.package_set(layout, family, previous) if previous else None
    after = records.package_set(layout, family, target)
    change = diff(before, after) if after is not None else None
    return RollbackResult(family, previous, target, marked, change)
