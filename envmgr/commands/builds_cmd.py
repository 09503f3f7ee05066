"""`envmgr builds FAMILY` and `envmgr diff A B`: inspect builds and what changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from .. import records
from ..advisory_check import diff_advisories
from ..config import Config
from ..errors import EXIT_OK, NotFound
from ..inventory import FamilyView, family_view, locate_build
from ..lockfile import PackageDiff, diff
from .build_cmd import render_diff

STATE_STYLE = {"latest": "bold green", "published": "", "failed": "red", "interrupted": "yellow",
               "deleted": "dim", "building": "cyan"}


@dataclass
class BuildsResult:
    view: FamilyView

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return self.view.to_json()

    def render(self) -> Iterable[Any]:
        table = Table(title=f"builds of {self.view.family}", header_style="bold")
        for column in ("build", "state", "packages", "started", "stable", "note"):
            table.add_column(column)
        for b in reversed(self.view.builds):
            note = b.record.error or ("rolled back" if b.record.rolled_back else "")
            if b.record.deleted:
                note = f"tombstone (deleted {b.record.deleted}); rebuild with --from-lock"
            table.add_row(b.build_id, Text(b.state, style=STATE_STYLE.get(b.state, "")),
                          str(b.record.package_count), b.record.started, ", ".join(b.releases),
                          (note or "").splitlines()[0] if note else "")
        yield table


def list_builds(config: Config, family: str) -> BuildsResult:
    if family not in config.layout.families():
        raise NotFound(f"no family '{family}' under {config.root}",
                       hint="`envmgr status` lists the families")
    return BuildsResult(family_view(config, family))


@dataclass
class DiffResult:
    a: str
    b: str
    diff: PackageDiff
    advisories: dict[str, Any] | None = None  # introduced/resolved (advisory_check.diff_advisories)

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"from": self.a, "to": self.b, **self.diff.to_json(), "advisories": self.advisories}

    def render(self) -> Iterable[Any]:
        yield Text(f"{self.a} -> {self.b}: {self.diff.summary()}", style="bold")
        if not self.diff.empty:
            yield render_diff(self.diff)
        for kind, style in (("introduced", "bold yellow"), ("resolved", "green")):
            for adv in (self.advisories or {}).get(kind, []):
                yield Text(f"advisory {adv['advisory']} [{adv['severity']}] {adv['package']} "
                           f"{adv['version']}: {kind}", style=style)


def diff_builds(config: Config, ref_a: str, ref_b: str) -> DiffResult:
    sets = []
    for ref in (ref_a, ref_b):
        family, build_id = locate_build(config, ref)
        pkg_set = records.package_set(config.layout, family, build_id)
        if pkg_set is None:
            raise NotFound(f"build {family}/{build_id} has no package list (it failed before locking)")
        sets.append((f"{family}/{build_id}", pkg_set))
    (a, set_a), (b, set_b) = sets
    found = diff_advisories(config, tuple(a.split("/", 1)), tuple(b.split("/", 1)))  # type: ignore[arg-type]
    return DiffResult(a, b, diff(set_a, set_b), found)
