"""`envmgr status`: the state of every family in one look, for people and monitoring.

Everything here only reads (apart from the disk-usage cache, see diskusage.py)
and is cheap: records are small JSON files, leases are probed with one
non-blocking flock each, and the expensive disk walk is cached. What is
"waiting for gc" and what holds it comes from the collector itself: gc's
``family_spec``/``gather_family`` read the inputs and ``retention.plan_family``
decides, exactly as ``envmgr gc --dry-run`` would (minus the /proc scan, which
``--processes`` adds), so status cannot disagree with gc.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envmgr.config import Config
from envmgr.host.diskusage import DiskUsage, disk_report
from envmgr.units import human_bytes
from envmgr.errors import EXIT_OK, EnvironmentProblem
from envmgr.familylock import holder_info
from envmgr.fsutil import read_json
from envmgr.layout import Layout
from envmgr.host.mounts import OK as LOCK_OK
from envmgr.host.mounts import LockSafety, Mount, lock_safety, mount_of, read_mounts
from envmgr.clock import iso, parse_iso, utcnow

if TYPE_CHECKING:  # the per-family readers load once there is a family (start-up: issue 14)
    from envmgr.catalog.governing import SpecChoice
    from envmgr.catalog.inventory import FamilyView
    from envmgr.gc.retention import FamilyInput, FamilyPlan
    from envmgr.host.procscan import ProcessScan
    from envmgr.ops.usage import BuildKernels

STALE_RUN = dt.timedelta(hours=48)  # no build run for this long: is the nightly running?
# Reasons that keep a build for good (not "waiting for gc"): latest, supported stable, pinned
# (gc.retention.ReasonCode values; a StrEnum member equals its string).
PERMANENT = frozenset({"latest", "stable", "pinned"})


@dataclass(frozen=True)
class StatusWarning:
    kind: str  # last-run-failed | stable-expiring | stable-expired | lease-locking-unsafe | ...
    message: str
    family: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "family": self.family, "message": self.message}


@dataclass
class FamilyStatus:
    family: str
    group: str
    display_name: str
    latest: dict[str, Any] | None
    last_run: dict[str, Any] | None
    last_build: dict[str, Any] | None
    stable: list[dict[str, Any]]
    gc_waiting: list[dict[str, Any]]
    building: dict[str, Any] | None
    disk_bytes: int | None = None
    spec_source: str = ""  # which spec speaks for the family (catalog.governing.family_spec)
    note: str = ""
    warnings: list[StatusWarning] = field(default_factory=list)
    kernels: list[BuildKernels] = field(default_factory=list)  # builds with kernels (envmgr.usage)
    description: str = ""  # the spec's description (docs/specs.md)

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "group": self.group, "display_name": self.display_name,
                "kernels": [k.to_json() for k in self.kernels],
                "latest": self.latest, "last_run": self.last_run, "last_build": self.last_build,
                "stable": self.stable, "gc_waiting": self.gc_waiting, "building": self.building,
                "disk_bytes": self.disk_bytes, "spec_source": self.spec_source, "note": self.note,
                "warnings": [w.to_json() for w in self.warnings], "description": self.description}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FamilyStatus:
        """An entry as ``to_json`` wrote it (the status cache, ops/statuscache.py)."""
        kernels = []
        if doc["kernels"]:  # usage's imports (gc's planner) only where kernels run: start-up, issue 14
            from envmgr.ops.usage import BuildKernels

            kernels = [BuildKernels(k["build_id"], k["kernels"], tuple(k["users"]), k["other_host"],
                                    k["lease_held"]) for k in doc["kernels"]]
        return cls(family=doc["family"], group=doc["group"], display_name=doc["display_name"],
                   latest=doc["latest"], last_run=doc["last_run"], last_build=doc["last_build"],
                   stable=doc["stable"], gc_waiting=doc["gc_waiting"], building=doc["building"],
                   disk_bytes=doc["disk_bytes"], spec_source=doc["spec_source"], note=doc["note"],
                   warnings=[StatusWarning(**w) for w in doc["warnings"]], kernels=kernels,
                   description=doc["description"])


# -- per-family pieces ---------------------------------------------------------------


def _age_seconds(when: str | None, now: dt.datetime) -> int | None:
    moment = parse_iso(when)
    return int((now - moment).total_seconds()) if moment else None


def _in_use(inp: FamilyInput, build_id: str) -> bool | None:
    """A kernel holds the build's lease (any host) or, if scanned, a process here uses it.

    None when the leases could not be probed (a user who may not open them).
    """
    usage = inp.usage.get(build_id)
    return None if usage is None else usage.in_use


def _latest(inp: FamilyInput, now: dt.datetime) -> dict[str, Any] | None:
    view = inp.view
    if view.latest is None:
        return None
    info = next((b for b in view.builds if b.latest), None)
    if info is None:  # pointer without record: report it rather than hide it
        return {"build_id": view.latest, "since": None, "age_seconds": None, "package_count": None,
                "in_use": _in_use(inp, view.latest)}
    since = info.record.latest_since or info.record.finished
    # age_seconds: since latest moved here; built_age_seconds: since the build was made
    # (the staff page's "Built" column; a rollback moves latest but builds nothing).
    return {"build_id": info.build_id, "since": since, "age_seconds": _age_seconds(since, now),
            "built": info.record.finished, "built_age_seconds": _age_seconds(info.record.finished, now),
            "package_count": info.record.package_count,
            "published": info.published, "in_use": _in_use(inp, info.build_id)}


def _stable(inp: FamilyInput, today: dt.date) -> list[dict[str, Any]]:
    published = {b.build_id for b in inp.view.builds if b.published}
    return [{"release": r.release, "build_id": r.build_id, "until": r.until.isoformat(),
             "days_left": r.days_left(today), "expired": r.expired(today),
             "expiring_soon": r.expiring_soon(today), "source": r.source,
             "published": r.build_id in published, "in_use": _in_use(inp, r.build_id)}
            for r in inp.view.releases]


def _gc_waiting(inp: FamilyInput, plan: FamilyPlan) -> list[dict[str, Any]]:
    """Builds on disk that are neither latest nor kept by a supported release or a pin, and why
    they stay. ``action`` "delete" means the next `envmgr gc` removes it; "keep" lists what
    holds it (a running kernel, the rollback window, the grace or inspection period).
    """
    from envmgr.gc.retention import Usage

    waiting = []
    for d in plan.decisions:
        if d.target is None or {r.code for r in d.reasons} & PERMANENT:
            continue
        usage = inp.usage.get(d.build_id, Usage())
        pids = sorted(set(usage.lease_pids) | set(usage.prefix_pids))
        waiting.append({"build_id": d.build_id, "state": d.state, "target": d.target,
                        "action": d.action, "why": d.why, "reasons": [r.to_json() for r in d.reasons],
                        "in_use": usage.in_use, "pids": pids,
                        "held_by": usage.describe() if usage.in_use else d.why})
    return waiting


def _gather(config: Config, family: str, choice: SpecChoice, scan: ProcessScan) -> tuple[FamilyInput, str]:
    """gc's inputs for the family; without lease access (not the service account) no usage."""
    from envmgr.catalog.inventory import family_view
    from envmgr.gc.inputs import failed_prefixes, gather_family
    from envmgr.gc.retention import FamilyInput, effective_policy

    try:
        return gather_family(config, family, choice, scan), ""
    except EnvironmentProblem as exc:
        view = family_view(config, family, choice.spec)
        policy = effective_policy(config.retention, choice.spec.retention if choice.spec else None)
        inp = FamilyInput(view, policy, {}, failed_prefixes(config.layout, family))
        return inp, f"leases not probed ({exc.message}); run status as the service account"


def _building(layout: Layout, family: str, now: dt.datetime) -> dict[str, Any] | None:
    """Who builds the family now (familylock.holder_info), if anyone."""
    try:
        info = holder_info(layout, family)
    except OSError:  # a user who may not open the lock file: trust the holder file, say so
        info = read_json(layout.build_lock_holder(family))
        if info:
            info = {**info, "unverified": True}
    if not info:
        return None
    return {**info, "running_seconds": _age_seconds(info.get("since"), now)}


def _last_run(layout: Layout, family: str) -> dict[str, Any] | None:
    try:
        return read_json(layout.last_run(family))
    except (OSError, ValueError):
        return None


def _last_build(view: FamilyView) -> dict[str, Any] | None:
    if not view.builds:
        return None
    r = view.builds[-1].record
    return {"build_id": r.build_id, "status": r.status, "started": r.started, "finished": r.finished,
            "step": r.step, "error": r.error, "host": r.host, "user": r.user}


# -- warnings --------------------------------------------------------------------------


def _gist(text: str | None) -> str:
    """One line of an error: its first line, plus its last when the first only introduces it."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    return f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _warn(out: list[StatusWarning], kind: str, message: str, family: str | None = None) -> None:
    out.append(StatusWarning(kind, message, family))


def family_warnings(fs: FamilyStatus, now: dt.datetime) -> list[StatusWarning]:
    from envmgr.catalog import records

    out: list[StatusWarning] = []
    f = fs.family
    run = fs.last_run or {}
    if run.get("status") == "failed":
        reason = _gist(run.get("error")) or run.get("message") or "see the build log"
        _warn(out, "last-run-failed", f"{f}: the last build run failed at {run.get('when')}: {reason}", f)
    age = _age_seconds(run.get("when"), now) if run else None
    if age is not None and age > STALE_RUN.total_seconds() and fs.building is None:
        _warn(out, "no-recent-run", f"{f}: no build run for {age // 86400} days "
              "(is the nightly running?)", f)
    for rel in fs.stable:
        where = f"{f} {rel['release']} (build {rel['build_id']})"
        if rel["expired"]:
            _warn(out, "stable-expired", f"{where}: support ended {rel['until']}; its kernel is gone "
                  "and gc may collect the build", f)
        elif rel["expiring_soon"]:
            _warn(out, "stable-expiring", f"{where}: support ends {rel['until']} "
                  f"({rel['days_left']} days left)", f)
        if not rel["published"]:
            _warn(out, "stable-missing", f"{where}: the build's prefix does not exist", f)
    last = fs.last_build or {}
    if last.get("status") == records.BUILDING and fs.building is None:
        _warn(out, "interrupted", f"{f}: build {last['build_id']} stopped during step "
              f"{last.get('step')}; the next build of the family cleans up", f)
    return out


def global_warnings(safety: LockSafety, disk: DiskUsage | None) -> list[StatusWarning]:
    out: list[StatusWarning] = []
    if safety.level != LOCK_OK:
        _warn(out, "lease-locking-unsafe",
              f"{safety.detail}. Fix: {safety.fix}" if safety.fix else safety.detail)
    if disk is not None and disk.low:
        _warn(out, "low-disk", f"only {human_bytes(disk.free_bytes)} free on the root's filesystem; "
              f"builds need {human_bytes(disk.min_free_bytes)} (run `envmgr gc`)")
    return out


# -- the report ------------------------------------------------------------------------


@dataclass
class StatusReport:
    root: Path
    host: str
    generated: str
    families: list[FamilyStatus]
    disk: DiskUsage | None
    mount: Mount | None
    lock_safety: LockSafety
    warnings: list[StatusWarning]
    processes_scanned: bool = False
    cached_families: int = 0  # entries the status cache served (ops/statuscache.py)
    seconds: float = 0.0

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for f in self.families:
            groups.setdefault(f.group, []).append(f.family)
        return {"root": str(self.root), "host": self.host, "generated": self.generated,
                "groups": groups, "families": [f.to_json() for f in self.families],
                "disk": self.disk.to_json() if self.disk else None,
                "filesystem": {**(self.mount.to_json() if self.mount else {}),
                               "lock_safety": self.lock_safety.to_json()},
                "warnings": [w.to_json() for w in self.warnings],
                "processes_scanned": self.processes_scanned, "cached_families": self.cached_families,
                "seconds": self.seconds}


@dataclass
class _Entry:
    """A family's status without its live part: what the status cache keeps."""

    status: FamilyStatus  # building None, warnings empty: both are made on every call
    notices: list[StatusWarning]  # warnings that need no clock: advisories, an unreadable spec
    until: dt.datetime | None = None  # the first moment a gc decision changes by time alone


def _compute(config: Config, family: str, choice: SpecChoice, now: dt.datetime, today: dt.date,
             scan: ProcessScan) -> _Entry:
    from envmgr.gc.retention import next_change, plan_family
    from envmgr.ops.advisories import status_advisories, warning_text
    from envmgr.ops.usage import family_kernels

    layout = config.layout
    inp, note = _gather(config, family, choice, scan)
    spec = choice.spec
    plan = plan_family(inp, now)
    fs = FamilyStatus(
        family=family, group=spec.group if spec else "Other",
        display_name=spec.display_name if spec else family,
        latest=_latest(inp, now), last_run=_last_run(layout, family),
        last_build=_last_build(inp.view), stable=_stable(inp, today),
        gc_waiting=_gc_waiting(inp, plan), building=None,
        spec_source=choice.source, note=note, kernels=family_kernels(inp.usage),
        description=spec.description if spec else "")
    notices: list[StatusWarning] = []
    for adv in status_advisories(layout, family, fs.latest, fs.stable):  # the last stored check
        _warn(notices, "advisory", warning_text(family, adv), family)
    if choice.error:
        _warn(notices, "spec-unreadable", f"{family}: its spec {choice.source} cannot be read "
              f"({choice.error}); gc defers the family", family)
    return _Entry(fs, notices, next_change(plan, now))


def _cached(entry: dict[str, Any], now: dt.datetime) -> _Entry:
    fs = FamilyStatus.from_json(entry["status"])
    latest = fs.latest
    if latest is not None:  # ages move with the clock; what they count from does not
        latest["age_seconds"] = _age_seconds(latest.get("since"), now)
        if "built_age_seconds" in latest:
            latest["built_age_seconds"] = _age_seconds(latest.get("built"), now)
    return _Entry(fs, [StatusWarning(**w) for w in entry["notices"]])


def _usable(stored: dict[str, Any] | None, now: dt.datetime) -> _Entry | None:
    """A stored entry as an ``_Entry``; None (computed afresh) for one that is not well-formed."""
    if stored is None:
        return None
    try:
        return _cached(stored, now)
    except (KeyError, TypeError, ValueError, AttributeError):  # edited or damaged: never trusted
        return None


def _finish(config: Config, entry: _Entry, now: dt.datetime) -> FamilyStatus:
    """Add the live part: who builds the family now, and the warnings at ``now``."""
    fs = entry.status
    fs.building = _building(config.layout, fs.family, now)
    fs.warnings = family_warnings(fs, now) + entry.notices
    return fs


def _family_statuses(config: Config, families: list[str], now: dt.datetime, today: dt.date,
                     processes: bool, refresh: bool) -> tuple[list[FamilyStatus], int]:
    """Every family's status, and how many came from the status cache (ops/statuscache.py).

    The key is read before the entry is computed: a change in between makes the
    stored key older than the entry, which costs a miss next time, never a stale hit.
    ``processes`` (the /proc scan changes every entry) bypasses the cache.
    """
    from envmgr.host.procscan import ProcessScan, scan_processes
    from envmgr.ops.statuscache import StatusCache

    scan = scan_processes(config.layout.envs_dir) if processes else ProcessScan()
    cache = StatusCache(config, today, enabled=not processes)
    use = cache.enabled
    out, hits = [], 0
    for family in families:
        key = cache.key(family) if use else None
        stored = cache.get(family, key, now) if key is not None and not refresh else None
        entry = _usable(stored, now)
        if entry is not None:
            hits += 1
        else:
            entry = _compute(config, family, cache.governing.choice(family), now, today, scan)
            if key is not None:
                cache.put(family, key, entry.status.to_json(), [w.to_json() for w in entry.notices],
                          entry.until)
        out.append(_finish(config, entry, now))
    if use:
        cache.save(families)
    return out, hits


def collect_status(config: Config, *, disk: bool = True, refresh_disk: bool = False,
                   processes: bool = False, mounts_text: str | None = None,
                   today: dt.date | None = None, now: dt.datetime | None = None) -> StatusReport:
    """Everything `envmgr status` shows.

    ``processes`` adds gc's /proc scan (processes using a prefix without a
    lease; costs a walk of every process's maps). ``mounts_text`` replaces
    /proc/self/mounts (tests, diagnosis). ``refresh_disk`` (``--refresh``)
    also recomputes every family instead of taking it from the status cache.
    """
    start = time.monotonic()
    now = now or utcnow()
    today = today or dt.date.today()
    families = config.layout.families()
    statuses, cached = (_family_statuses(config, families, now, today, processes, refresh_disk)
                        if families else ([], 0))
    statuses.sort(key=lambda f: (f.group.lower(), f.family))
    usage = disk_report(config, families, refresh=refresh_disk) if disk and config.root.is_dir() else None
    if usage is not None:
        for f in statuses:
            f.disk_bytes = usage.families.get(f.family)
    mount = mount_of(config.root, read_mounts(mounts_text))
    safety = lock_safety(mount)
    warnings = [w for f in statuses for w in f.warnings] + global_warnings(safety, usage)
    return StatusReport(root=config.root, host=socket.gethostname(), generated=iso(now) or "",
                        families=statuses, disk=usage, mount=mount, lock_safety=safety,
                        warnings=warnings, processes_scanned=processes, cached_families=cached,
                        seconds=round(time.monotonic() - start, 3))
