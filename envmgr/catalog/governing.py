"""Which spec governs a family: one answer for gc, status, `stable list` and the staff page.

A family's retention rules and declared stable releases come from exactly one
spec, and every reader asks this module which one. When the site configuration
names a specs directory (``specs_dir``), a spec file there is staff's current
intent and wins; otherwise the spec the latest build was built from (its
recorded ``spec.yaml``) governs. A specs directory nobody configured is never
read, so the answer does not depend on the working directory. The choice
carries its ``source`` so status and ``gc --dry-run`` can say where each rule
came from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from envmgr.catalog.inventory import family_view
from envmgr.catalog.stable import EXPIRY_WARNING_DAYS, StableRelease
from envmgr.config import Config
from envmgr.define.spec import Spec, load_spec, spec_files
from envmgr.errors import EnvmgrError


def recorded_spec(config: Config, family: str, build_id: str | None) -> Spec | None:
    """The spec as it was built (records/<family>/<build>/spec.yaml)."""
    if build_id is None:
        return None
    path = config.layout.recorded_spec(family, build_id)
    return load_spec(path) if path.is_file() else None


@dataclass(frozen=True)
class SpecChoice:
    spec: Spec | None
    source: str  # the spec file, "recorded <path>", or "none"
    error: str | None = None


def spec_index(config: Config) -> dict[str, SpecChoice]:
    """Every spec file in the configured specs directory by family name; unreadable ones by file stem.

    Empty when the configuration names no ``specs_dir``: then every family is
    governed by its recorded spec, the same from every working directory.
    """
    index: dict[str, SpecChoice] = {}
    specs_dir = config.governing_specs_dir
    if specs_dir is None or not specs_dir.is_dir():
        return index
    for path in spec_files([specs_dir]):
        try:
            spec = load_spec(path)
        except EnvmgrError as exc:
            index.setdefault(path.stem, SpecChoice(None, str(path), exc.message.splitlines()[-1].strip()))
            continue
        index[spec.name] = SpecChoice(spec, str(path))
    return index


def family_spec(config: Config, family: str, index: dict[str, SpecChoice] | None = None) -> SpecChoice:
    """The configured specs directory's spec (staff's current intent), else the latest's recorded spec.

    A spec file named after the family that cannot be read is reported as an
    error: its ``retention.pinned`` might protect a build, so gc must not guess.
    """
    index = spec_index(config) if index is None else index
    choice = index.get(family)
    if choice is not None:
        return choice
    latest = config.layout.latest_build(family)
    try:
        spec = recorded_spec(config, family, latest)
    except EnvmgrError as exc:
        return SpecChoice(None, "recorded", f"the recorded spec of {latest} cannot be read: {exc.message}")
    if spec is None:
        return SpecChoice(None, "none")
    return SpecChoice(spec, f"recorded {config.layout.recorded_spec(family, latest or '')}")


@dataclass(frozen=True)
class ExpiringRelease:
    release: StableRelease
    days_left: int

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    def to_json(self) -> dict[str, Any]:
        return {**self.release.to_json(), "days_left": self.days_left, "expired": self.expired}


def expiring_releases(config: Config, families: Iterable[str] | None = None, *,
                      today: dt.date | None = None,
                      within_days: int = EXPIRY_WARNING_DAYS) -> list[ExpiringRelease]:
    """Stable releases whose support ends within ``within_days`` (or has ended), soonest first.

    Releases come from the same place gc reads them (promotions plus the
    family's spec), so a warning and the later deletion agree.
    """
    day = today or dt.date.today()
    index = spec_index(config)
    found = []
    for family in families if families is not None else config.layout.families():
        spec = family_spec(config, family, index).spec
        for release in family_view(config, family, spec).releases:
            left = release.days_left(day)
            if left <= within_days:
                found.append(ExpiringRelease(release, left))
    return sorted(found, key=lambda e: (e.days_left, e.release.family, e.release.release))
