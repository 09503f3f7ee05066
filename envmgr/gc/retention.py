"""Retention policy and the pure gc planner: which build to keep, which to delete, and why.

Modelled on pip-tools: ``plan_family`` is a pure function of the family's view
(records, latest, stable releases), the effective policy, "now" and the lease /
process probes gathered beforehand. It does no I/O, so every rule is unit-tested
with synthetic inputs and ``envmgr gc --dry-run`` shows exactly what a real run
would do. ``envmgr.gc`` gathers the inputs and applies the plan.

Rules (docs/gc.md is the user-facing version):

* always kept: the latest build, every build of a stable release still in
  support, builds pinned by hand (``retention.pinned`` in the spec), a build
  whose publication is unfinished, a build in progress;
* kept for rollback: the ``keep_previous`` most recent good builds older than
  latest (builds staff rolled back *from* do not count);
* kept for a grace period: ``grace_days`` after the build stopped being latest
  (``latest_until``), because notebooks run for days;
* failed and interrupted builds: kept ``failed_days`` after they finished;
* whatever the policy says, a build that a kernel holds (lease) or a process on
  this host uses (exe, cwd, mapped or open file) is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envmgr.catalog import records
from envmgr.clock import iso, parse_iso
from envmgr.config import RetentionPolicy
from envmgr.catalog.inventory import BuildInfo, FamilyView
from envmgr.define.spec import Retention
from envmgr.results import StrEnum
from envmgr.catalog.stable import StableRelease



class Action(StrEnum):
    """What gc does with a build (the JSON ``action``)."""

    KEEP = "keep"
    DELETE = "delete"
    NONE = "none"  # a tombstone or a missing prefix: nothing to do


class ReasonCode(StrEnum):
    """Why a build is kept or deleted (the JSON ``reasons[].code``, stable for machines)."""

    LATEST = "latest"
    STABLE = "stable"
    PINNED = "pinned"
    ROLLBACK = "rollback"
    PUBLISHING = "publishing"
    GRACE = "grace"
    FAILED = "failed"
    TOMBSTONE = "tombstone"
    BUILDING = "building"
    MISSING = "missing"
    IN_USE = "in-use"
    COLLECTABLE = "collectable"
    EXPIRED = "expired"
    DEFERRED = "deferred"
    ERROR = "error"  # the deletion itself failed; the build stays


KEEP, DELETE, NONE = Action.KEEP, Action.DELETE, Action.NONE
TARGET_PREFIX, TARGET_FAILED = "prefix", "failed-prefix"  # what a deletion removes


@dataclass(frozen=True)
class RetentionRules:
    """The site policy with a family's spec override applied."""

    keep_previous: int
    grace_days: int
    failed_days: int
    pinned: frozenset[str] = frozenset()
    source: str = "site"

    def to_json(self) -> dict[str, Any]:
        return {"keep_previous": self.keep_previous, "grace_days": self.grace_days,
                "failed_days": self.failed_days, "pinned": sorted(self.pinned), "source": self.source}


def effective_policy(site: RetentionPolicy, override: Retention | None, source: str = "site") -> RetentionRules:
    """Spec values win where set (None means "site default")."""
    if override is None:
        return RetentionRules(site.keep_previous, site.grace_days, site.failed_days, source="site")

    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    return RetentionRules(pick(override.keep_previous, site.keep_previous),
                  pick(override.grace_days, site.grace_days),
                  pick(override.failed_days, site.failed_days),
                  frozenset(override.pinned), source=source)


@dataclass(frozen=True)
class Usage:
    """What the probes found for one build (gathered by envmgr.gc; never decided here).

    ``lease_held``: some kernel, on any host sharing the root, holds the lease.
    ``lease_pids``: processes on this host with the lease open (best effort).
    ``prefix_pids``: processes on this host running from, or with files open
    in, the prefix (the second signal; catches users bypassing the launcher).
    """

    lease_held: bool = False
    lease_pids: tuple[int, ...] = ()
    prefix_pids: tuple[int, ...] = ()
    host: str = ""
    note: str = ""
    holders: tuple[str, ...] = ()  # "pid N (user U: command; OFDLCK READ)" per local lock holder
    locked_here: bool = False  # /proc/locks shows a lock on the lease from this host

    @property
    def in_use(self) -> bool:
        return self.lease_held or bool(self.prefix_pids)

    def describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        parts = []
        if self.lease_held and self.holders:
            parts.append(f"lease held{where} by {'; '.join(self.holders)}")
        elif self.lease_held and self.lease_pids:
            n = len(self.lease_pids)
            noun = "1 kernel" if n == 1 else f"{n} kernel processes"
            parts.append(f"in use by {noun} (pid {', '.join(map(str, self.lease_pids))}{where})")
        elif self.lease_held and self.locked_here:
            parts.append(f"lease held by a process{where} that could not be inspected "
                         "(run as root to name it)")
        elif self.lease_held:
            parts.append("lease held by a process on another host (no holder on this host)")
        others = sorted(set(self.prefix_pids) - set(self.lease_pids))
        if others:
            noun = "process" if len(others) == 1 else "processes"
            parts.append(f"{'also ' if parts else ''}used by {noun} {', '.join(map(str, others))}{where} "
                         "(running from, or with files open in, the prefix)")
        text = "; ".join(parts)
        return f"{text}; {self.note}" if self.note else text

    def to_json(self) -> dict[str, Any]:
        return {"lease_held": self.lease_held, "lease_pids": list(self.lease_pids),
                "prefix_pids": list(self.prefix_pids), "host": self.host, "note": self.note,
                "holders": list(self.holders), "locked_here": self.locked_here}



NO_USAGE = Usage()  # a build nobody uses (decide() asks for every build)

@dataclass(frozen=True)
class Reason:
    """One reason for a decision; ``code`` is stable for machines, ``text`` for people."""

    code: ReasonCode
    text: str
    until: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "text": self.text}
        if self.until is not None:
            out["until"] = self.until
        out.update(self.data)
        return out


@dataclass(frozen=True)
class Decision:
    family: str
    build_id: str
    state: str
    action: Action
    reasons: tuple[Reason, ...]
    target: str | None = None  # what a delete removes: prefix | failed-prefix | None (record only)

    @property
    def why(self) -> str:
        return "; ".join(r.text for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "state": self.state, "action": self.action,
                "target": self.target, "why": self.why, "reasons": [r.to_json() for r in self.reasons]}


@dataclass(frozen=True)
class FamilyInput:
    """Everything the planner needs about one family."""

    view: FamilyView
    policy: RetentionRules
    usage: Mapping[str, Usage] = field(default_factory=dict)
    failed_on_disk: frozenset[str] = frozenset()  # build ids with an .failed-<id> prefix
    deferred: str | None = None  # deletions of this family must wait (e.g. a rollback holds its lock)


@dataclass(frozen=True)
class FamilyPlan:
    family: str
    latest: str | None
    policy: RetentionRules
    decisions: tuple[Decision, ...]
    deferred: str | None = None

    def deletions(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == DELETE]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "latest": self.latest, "policy": self.policy.to_json(),
                "deferred": self.deferred, "builds": [d.to_json() for d in self.decisions]}


# -- the planner ------------------------------------------------------------------------


def _day(moment: dt.datetime) -> str:
    return moment.date().isoformat()


def _plus_days(text: str | None, days: int) -> dt.datetime | None:
    moment = parse_iso(text)
    return moment + dt.timedelta(days=days) if moment else None


def rollback_window(view: FamilyView, keep: int) -> dict[str, int]:
    """Build id -> position (1 = most recent) of the good builds kept for rollback."""
    if view.latest is None or keep <= 0:
        return {}
    older = [b.build_id for b in view.good_published()
             if b.build_id < view.latest and not b.record.rolled_back]
    return {build_id: n for n, build_id in enumerate(reversed(older[-keep:]), 1)}


def retired_at(view: FamilyView, info: BuildInfo) -> str | None:
    """When ``info`` stopped being latest.

    ``latest_until`` normally; if a crash lost it, when the next build took
    over (``records.superseded_at``: fixed, not the current latest, which
    changes); if the build never was latest, when it finished.
    """
    rec = info.record
    if rec.latest_until:
        return rec.latest_until
    if (taken_over := records.superseded_at(rec, [b.record for b in view.builds])) is not None:
        return taken_over
    return rec.finished or rec.started


def _release_reasons(info: BuildInfo, releases: Iterable[StableRelease],
                     today: dt.date) -> tuple[list[Reason], list[str]]:
    keep, ended = [], []
    for r in releases:
        if r.build_id != info.build_id:
            continue
        if r.expired(today):
            ended.append(f"stable {r.release} support ended {r.until.isoformat()}")
        else:
            keep.append(Reason(ReasonCode.STABLE, f"stable release {r.release} until {r.until.isoformat()}",
                               until=r.until.isoformat(), data={"release": r.release}))
    return keep, ended


def _good_build_reasons(inp: FamilyInput, info: BuildInfo, window: Mapping[str, int],
                        now: dt.datetime) -> tuple[list[Reason], list[str]]:
    """Keep reasons for a published, successful build, and notes on why others ended."""
    view, policy, rec = inp.view, inp.policy, info.record
    keep, ended = _release_reasons(info, view.releases, now.date())
    if info.build_id == view.latest:
        keep.insert(0, Reason(ReasonCode.LATEST, "latest"))
    if info.build_id in policy.pinned:
        keep.append(Reason(ReasonCode.PINNED, "pinned by hand (retention.pinned in the spec)"))
    if info.build_id in window:
        keep.append(Reason(ReasonCode.ROLLBACK, f"rollback window ({window[info.build_id]} of "
                                       f"{policy.keep_previous} previous good builds)"))
    elif policy.keep_previous and rec.rolled_back:
        ended.append("rolled back from, so outside the rollback window")
    elif view.latest is not None and info.build_id < view.latest:
        ended.append(f"older than the {policy.keep_previous} previous good builds kept for rollback")
    if info.build_id == view.latest:
        return keep, ended
    unfinished = rec.latest_since is None and not rec.rolled_back and (
        view.latest is None or info.build_id > view.latest)
    if unfinished:
        keep.append(Reason(ReasonCode.PUBLISHING, "publication unfinished (the next build of the family "
                                         "completes it)"))
        return keep, ended
    since = retired_at(view, info)
    grace_end = _plus_days(since, policy.grace_days)
    if grace_end is not None and now < grace_end:
        keep.append(Reason(ReasonCode.GRACE, f"grace until {_day(grace_end)} (retired {since})",
                           until=iso(grace_end)))
    elif grace_end is not None:
        ended.append(f"retired {since}, grace ended {_day(grace_end)}")
    return keep, ended


def _failed_reasons(inp: FamilyInput, info: BuildInfo, now: dt.datetime) -> tuple[list[Reason], list[str]]:
    rec = info.record
    end = _plus_days(rec.finished or rec.started, inp.policy.failed_days)
    if end is not None and now < end:
        return [Reason(ReasonCode.FAILED, f"{rec.status}: kept for inspection until {_day(end)}",
                       until=iso(end))], []
    return [], [f"{rec.status} {rec.finished or rec.started}, inspection period ended"
                + (f" {_day(end)}" if end else "")]


def _target(inp: FamilyInput, info: BuildInfo) -> str | None:
    if info.published:
        return TARGET_PREFIX
    if info.build_id in inp.failed_on_disk:
        return TARGET_FAILED
    return None


def decide(inp: FamilyInput, info: BuildInfo, window: Mapping[str, int], now: dt.datetime) -> Decision:
    """The decision for one build (pure)."""
    family, rec = inp.view.family, info.record

    def made(action: str, reasons: list[Reason], target: str | None = None) -> Decision:
        return Decision(family, info.build_id, info.state, action, tuple(reasons), target)

    if rec.deleted:
        return made(NONE, [Reason(ReasonCode.TOMBSTONE, f"deleted {rec.deleted}; the record stays as a tombstone")])
    if rec.status == records.BUILDING:
        return made(KEEP, [Reason(ReasonCode.BUILDING, "build in progress")])
    if rec.status == records.OK and not info.published:
        return made(NONE, [Reason(ReasonCode.MISSING, "its prefix is missing (not removed by gc); nothing to "
                                             "delete")])
    if rec.status == records.OK:
        keep, ended = _good_build_reasons(inp, info, window, now)
    else:
        keep, ended = _failed_reasons(inp, info, now)
    target = _target(inp, info)
    usage = inp.usage.get(info.build_id) or NO_USAGE
    why_not = "; ".join(ended) or "no rule keeps it"
    if usage.in_use and target is not None:
        collectable = not keep
        keep.append(Reason(ReasonCode.IN_USE, usage.describe(), data={"usage": usage.to_json()}))
        if collectable:  # say what happens once it is free
            keep.append(Reason(ReasonCode.COLLECTABLE, f"otherwise collectable: {why_not}"))
    if keep:
        return made(KEEP, keep, target)
    expired = Reason(ReasonCode.EXPIRED, f"expired: {why_not}")
    if inp.deferred:
        return made(KEEP, [Reason(ReasonCode.DEFERRED, f"collectable, but deferred: {inp.deferred}"), expired],
                    target)
    return made(DELETE, [expired], target)


def plan_family(inp: FamilyInput, now: dt.datetime) -> FamilyPlan:
    """Decide every build of one family. Pure: same inputs, same plan."""
    window = rollback_window(inp.view, inp.policy.keep_previous)
    decisions = tuple(decide(inp, info, window, now) for info in inp.view.builds)
    return FamilyPlan(inp.view.family, inp.view.latest, inp.policy, decisions, inp.deferred)


def next_change(plan: FamilyPlan, now: dt.datetime) -> dt.datetime | None:
    """The first moment after ``now`` at which a decision of ``plan`` changes by time alone.

    Time enters a decision only through a grace or an inspection period that
    ends (a reason whose ``until`` has a time of day) and through a stable
    release's end (an ``until`` date). The dates are left out: callers that
    keep a plan (ops/statuscache.py) keep it for one day at most.
    """
    ends = [parse_iso(r.until) for d in plan.decisions for r in d.reasons if r.until and "T" in r.until]
    later = [e for e in ends if e is not None and e > now]
    return min(later) if later else None


# -- stable releases near their end (for `stable list` and `status`) ---------------------
