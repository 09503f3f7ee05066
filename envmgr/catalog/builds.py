"""`envmgr builds FAMILY` and `envmgr diff A B`: inspect builds and what changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envmgr.catalog import records
from ..config import Config
from ..errors import EXIT_OK, NotFound
from envmgr.catalog.inventory import FamilyView, family_view, locate_build
from ..lockfile import PackageDiff, diff

@dataclass
class BuildsResult:
    view: FamilyView

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return self.view.to_json()


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

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"from": self.a, "to": self.b, **self.diff.to_json()}


def diff_builds(config: Config, ref_a: str, ref_b: str) -> DiffResult:
    sets = []
    for ref in (ref_a, ref_b):
        family, build_id = locate_build(config, ref)
        pkg_set = records.package_set(config.layout, family, build_id)
        if pkg_set is None:
            raise NotFound(f"build {family}/{build_id} has no package list (it failed before locking)")
        sets.append((f"{family}/{build_id}", pkg_set))
    (a, set_a), (b, set_b) = sets
    return DiffResult(a, b, diff(set_a, set_b))
