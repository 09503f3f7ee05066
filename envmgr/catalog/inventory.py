"""What exists for a family: builds, their state, latest, stable releases, tombstones.

A read-only view assembled from the layout and the records, shared by
``builds``, ``status``, ``gc``, the kernels sync and the web service so that
they all agree on what a build's state is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from envmgr.catalog import records
from envmgr.catalog import stable
from envmgr.config import Config
from envmgr.errors import NotFound
from envmgr.layout import BUILD_ID_RE, Layout
from .records import BuildRecord
from envmgr.define.spec import Spec


@dataclass(frozen=True)
class BuildInfo:
    record: BuildRecord
    published: bool
    latest: bool
    releases: tuple[str, ...]  # stable releases pinned to this build

    @property
    def build_id(self) -> str:
        return self.record.build_id

    @property
    def state(self) -> str:
        if self.record.deleted:
            return "deleted"
        if self.latest:
            return "latest"
        if self.record.status != records.OK:
            return self.record.status
        return "published" if self.published else "missing"

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "state": self.state, "latest": self.latest,
                "published": self.published, "releases": list(self.releases),
                "tombstone": bool(self.record.deleted), **{
                    k: v for k, v in self.record.to_json().items() if k not in ("build_id",)}}


@dataclass(frozen=True)
class FamilyView:
    family: str
    latest: str | None
    builds: tuple[BuildInfo, ...]
    releases: tuple[stable.StableRelease, ...]

    def build(self, build_id: str) -> BuildInfo:
        for info in self.builds:
            if info.build_id == build_id:
                return info
        raise NotFound(f"family '{self.family}' has no build {build_id}",
                       hint=f"`envmgr builds {self.family}` lists its builds")

    def good_published(self) -> list[BuildInfo]:
        return [b for b in self.builds if b.published and b.record.status == records.OK
                and not b.record.deleted]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "latest": self.latest,
                "builds": [b.to_json() for b in self.builds],
                "stable": [r.to_json() for r in self.releases]}


def family_view(config: Config, family: str, spec: Spec | None = None,
                dirs: frozenset[str] | None = None) -> FamilyView:
    """The family's builds as records and the disk say; ``dirs``: ``published_dirs``, if read."""
    layout = config.layout
    recs = records.all_records(layout, family)
    built = {r.build_id: r.started for r in recs}
    releases = stable.all_releases(layout, family, spec, config.support_years, built)
    pinned: dict[str, list[str]] = {}
    for r in releases:
        pinned.setdefault(r.build_id, []).append(r.release)
    latest = layout.latest_build(family)
    published = published_dirs(layout, family) if dirs is None else dirs
    infos = tuple(BuildInfo(record=r, published=r.build_id in published,
                            latest=r.build_id == latest, releases=tuple(pinned.get(r.build_id, ())))
                  for r in recs)
    return FamilyView(family, latest, infos, tuple(releases))


def published_dirs(layout: Layout, family: str) -> frozenset[str]:
    """Names of the directories in the family's envs folder (one listing, not a stat per build)."""
    try:
        with os.scandir(layout.family_dir(family)) as entries:
            return frozenset(e.name for e in entries if e.is_dir())  # follows symlinks, as is_dir() did
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def known_families(layout: Layout) -> list[str]:
    return layout.families()


def locate_build(config: Config, ref: str) -> tuple[str, str]:
    """'family/build-id' or a bare build id -> (family, build id)."""
    if "/" in ref:
        family, _, build_id = ref.partition("/")
        if records.load(config.layout, family, build_id) is None:
            raise NotFound(f"no build {build_id} in family '{family}'")
        return family, build_id
    if not BUILD_ID_RE.match(ref):
        raise NotFound(f"'{ref}' is not a build id (expected e.g. 20261122T021340Z-ab12cd "
                       "or family/build-id)", hint="`envmgr builds FAMILY` lists a family's build ids")
    matches = [f for f in config.layout.families() if records.load(config.layout, f, ref)]
    if not matches:
        raise NotFound(f"no family has a build {ref}",
                       hint="`envmgr builds FAMILY` lists a family's build ids")
    if len(matches) > 1:
        raise NotFound(f"build {ref} exists in several families ({', '.join(matches)}); "
                       "write family/build-id")
    return matches[0], ref
