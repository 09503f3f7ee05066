"""Promote a build to a stable release, retire a release, list releases.

A stable release is a kernel pinned to one build for years (``support_years``
in the site config, 3 by default). Promoting also exports the build's lock and
spec into the specs repository (``specs/locks/<family>/<release>.*``) so the
release can be rebuilt anywhere with ``envmgr build --from-lock``: the specs
repository, not the build host, is the source of truth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from envmgr.catalog import stable
from envmgr.audit import audit
from envmgr.config import Config
from envmgr.errors import EXIT_OK, NotFound, UsageError
from envmgr.catalog.governing import family_spec, recorded_spec, spec_index
from envmgr.kernels.sync import sync_kernels
from envmgr.familylock import family_lock
from envmgr.fsutil import atomic_write_text
from envmgr.catalog.inventory import family_view
from envmgr.kernels.kernelspecs import kernel_name
from envmgr.results import Progress, no_progress
from envmgr.define.spec import RELEASE_RE


@dataclass
class PromoteResult:
    release: stable.StableRelease
    exported: list[Path]
    kernel: str

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {**self.release.to_json(), "kernel": self.kernel,
                "exported": [str(p) for p in self.exported]}


def lock_export_dir(config: Config, family: str, override: Path | None) -> Path:
    return (override or config.specs_dir / "locks") / family


def export_lock(config: Config, family: str, build_id: str, release: str,
                export_dir: Path | None) -> list[Path]:
    """Copy the build's conda-lock.yml and spec.yaml beside each other in the specs repo."""
    layout = config.layout
    target = lock_export_dir(config, family, export_dir)
    written = []
    for source, name in ((layout.recorded_lock(family, build_id), f"{release}.conda-lock.yml"),
                         (layout.recorded_spec(family, build_id), f"{release}.spec.yaml")):
        if not source.is_file():
            raise NotFound(f"build {family}/{build_id} has no {source.name} to export")
        atomic_write_text(target / name, source.read_text(encoding="utf-8"))
        written.append(target / name)
    return written


def _check_release_name(config: Config, family: str, release: str) -> str:
    if not RELEASE_RE.match(release) or release == "latest":
        raise UsageError(f"'{release}' is not a release name (letters, digits, '.', '_', '-'; "
                         "not 'latest')")
    return kernel_name(family, release)  # validates the kernel name in one place


def promote(config: Config, family: str, release: str, *, build_id: str | None = None,
            until: dt.date | None = None, export_dir: Path | None = None, export: bool = True,
            progress: Progress = no_progress) -> PromoteResult:
    layout = config.layout
    if family not in layout.families():
        raise NotFound(f"no family '{family}' under {layout.root}")
    kernel = _check_release_name(config, family, release)
    with family_lock(layout, family, progress=progress):
        view = family_view(config, family)
        chosen = build_id or view.latest
        if chosen is None:
            raise NotFound(f"family '{family}' has no latest build to promote")
        info = view.build(chosen)
        if info not in view.good_published():
            raise UsageError(f"build {chosen} cannot be promoted: it is {info.state}")
        end = until or stable.add_years(dt.date.today(), config.support_years)
        if end <= dt.date.today():
            raise UsageError(f"--until {end} is not in the future")
        exported = export_lock(config, family, chosen, release, export_dir) if export else []
        new = stable.record_promotion(layout, family, release, chosen, end)
        sync_kernels(config, family, recorded_spec(config, family, view.latest))
    audit(layout, "promote", family=family, release=release, build_id=chosen, until=end.isoformat())
    return PromoteResult(new, exported, kernel)


@dataclass
class RetireResult:
    family: str
    release: str
    build_id: str
    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "release": self.release, "build_id": self.build_id}


def retire(config: Config, family: str, release: str, progress: Progress = no_progress) -> RetireResult:
    layout = config.layout
    with family_lock(layout, family, progress=progress):
        gone = stable.record_retirement(layout, family, release)
        if gone is None:
            spec = recorded_spec(config, family, layout.latest_build(family))
            if spec and any(pin.release == release for pin in spec.stable):
                raise UsageError(f"release {release} of {family} is declared in the spec's `stable:` list",
                                 hint=f"remove it from {spec.name}'s spec by pull request and build")
            raise NotFound(f"family '{family}' has no promoted release '{release}'",
                           hint="`envmgr stable list` shows the releases")
        sync_kernels(config, family)
    audit(layout, "retire", family=family, release=release, build_id=gone.build_id)
    return RetireResult(family, release, gone.build_id)


@dataclass
class StableListResult:
    releases: list[stable.StableRelease] = field(default_factory=list)
    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"releases": [r.to_json() | {"expiring_soon": r.expiring_soon(), "expired": r.expired()}
                             for r in self.releases]}


def list_stable(config: Config, families: list[str] | None = None) -> StableListResult:
    """Promoted releases plus those the governing spec declares (the same spec gc reads)."""
    found: list[stable.StableRelease] = []
    index = spec_index(config)
    for family in families or config.layout.families():
        spec = family_spec(config, family, index).spec
        found.extend(family_view(config, family, spec).releases)
    return StableListResult(found)
