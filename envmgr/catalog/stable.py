"""Stable releases: a release name pinned to one build, supported for years.

The root's ``stable/<family>.json`` is the record of what staff promoted
(``envmgr promote``/``retire``). A spec may also declare ``stable:`` pins
(reviewed by pull request); both count. Each promoted build's lock is exported
to the specs repository so the release can be rebuilt elsewhere.
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import asdict, dataclass
from typing import Any

from envmgr.fsutil import atomic_write_json, read_json
from envmgr.layout import Layout
from envmgr.clock import iso, utcnow
from envmgr.define.spec import Spec

EXPIRY_WARNING_DAYS = 90


@dataclass(frozen=True)
class StableRelease:
    family: str
    release: str
    build_id: str
    until: dt.date
    promoted_by: str = ""
    promoted_at: str = ""
    source: str = "promote"  # promote | spec

    def days_left(self, today: dt.date | None = None) -> int:
        return (self.until - (today or dt.date.today())).days

    def expired(self, today: dt.date | None = None) -> bool:
        return self.days_left(today) < 0

    def expiring_soon(self, today: dt.date | None = None) -> bool:
        return 0 <= self.days_left(today) <= EXPIRY_WARNING_DAYS

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["until"] = self.until.isoformat()
        data["days_left"] = self.days_left()
        return data


def add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _from_json(family: str, data: dict[str, Any]) -> StableRelease:
    return StableRelease(family=family, release=data["release"], build_id=data["build_id"],
                         until=dt.date.fromisoformat(data["until"]),
                         promoted_by=data.get("promoted_by", ""),
                         promoted_at=data.get("promoted_at", ""), source="promote")


def promoted(layout: Layout, family: str) -> list[StableRelease]:
    data = read_json(layout.stable_file(family)) or {}
    return [_from_json(family, entry) for entry in data.get("releases", [])]


def _save(layout: Layout, family: str, releases: list[StableRelease]) -> None:
    entries = []
    for r in sorted(releases, key=lambda r: r.release):
        entry = r.to_json()
        entry.pop("days_left")
        entry.pop("source")
        entry.pop("family")
        entries.append(entry)
    atomic_write_json(layout.stable_file(family), {"family": family, "releases": entries})


def from_spec(spec: Spec, support_years: int, built: dict[str, str]) -> list[StableRelease]:
    """Spec pins; a pin without ``until`` is supported ``support_years`` from its build date."""
    releases = []
    for pin in spec.stable:
        start = dt.date.fromisoformat(built[pin.build][:10]) if pin.build in built else dt.date.today()
        until = pin.until or add_years(start, support_years)
        releases.append(StableRelease(spec.name, pin.release, pin.build, until, source="spec"))
    return releases


def all_releases(layout: Layout, family: str, spec: Spec | None, support_years: int,
                 built: dict[str, str]) -> list[StableRelease]:
    """Promoted and spec-declared releases; a promotion overrides a spec pin of the same name."""
    merged = {r.release: r for r in (from_spec(spec, support_years, built) if spec else [])}
    merged.update({r.release: r for r in promoted(layout, family)})
    return sorted(merged.values(), key=lambda r: r.release)


def record_promotion(layout: Layout, family: str, release: str, build_id: str,
                     until: dt.date) -> StableRelease:
    new = StableRelease(family, release, build_id, until, promoted_by=getpass.getuser(),
                        promoted_at=iso(utcnow()) or "")
    others = [r for r in promoted(layout, family) if r.release != release]
    _save(layout, family, [*others, new])
    return new


def record_retirement(layout: Layout, family: str, release: str) -> StableRelease | None:
    current = promoted(layout, family)
    gone = next((r for r in current if r.release == release), None)
    if gone is not None:
        _save(layout, family, [r for r in current if r.release != release])
    return gone
