"""`envmgr gc`: free disk without ever pulling a build from under a running kernel.

Plan, then apply (pip-tools style). ``gc.inputs.gather_family`` reads a family's records,
stable releases, spec override, leases and /proc; ``retention.plan_family``
decides (pure); ``collect`` applies the plan. ``--dry-run`` stops after
planning, so it shows exactly what a real run would do and why.

A real run, under the global gc lock (one collector at a time):

1. finish what an interrupted gc left (tombstones for prefixes already in the
   trash; stale ``.deleting`` marks on prefixes never moved);
2. per family, holding its build lock (or proceeding beside a build in
   progress, which only adds a build; deferring when something else -- a
   rollback, a promotion -- holds it): sync the kernelspecs (a stable release
   past its support end loses its kernel), re-plan from fresh state, then for
   each deletion: take the lease exclusively and write the ``.deleting`` mark
   (``lease.mark_deleting``; a kernel holding the lease makes it fail), check
   /proc for processes using the prefix, rename the prefix into the trash,
   write the audit line and the tombstone;
3. prune package-cache entries no remaining build uses (only while no build
   runs: an install may be about to link them);
4. empty the trash, counting freed bytes hardlink-aware.

A SIGKILL at any instant leaves a state the next gc finishes (tests kill it at
every ``checkpoint``). gc never touches ``.staging-*`` (``build.recover`` owns
those) and never a build whose record says it is being built.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envmgr.kernels import lease
from envmgr.gc import pkgcache
from envmgr.catalog import records
from envmgr.gc import trash
from envmgr.audit import audit
from envmgr._internal._faults import checkpoint
from envmgr.config import Config
from envmgr.units import human_bytes
from envmgr.errors import EXIT_ENVIRONMENT, EXIT_OK, Busy, EnvmgrError, NotFound, UsageError
from envmgr.kernels.sync import sync_kernels
from envmgr.familylock import LockFile, describe_holder, family_lock, holder_info
from envmgr.fsutil import atomic_write_json
from envmgr.catalog.governing import SpecChoice, family_spec, spec_index
from envmgr.layout import FAILED_PREFIX, Layout
from envmgr.osfault import step_guard
from envmgr.host.procscan import ProcessScan, scan_processes
from envmgr.clock import iso, utcnow
from envmgr.results import Progress, no_progress
from envmgr.gc import deletionsize, uvcache
from envmgr.build import pycache
from .inputs import gather_family
from .retention import (
    DELETE,
    TARGET_FAILED,
    TARGET_PREFIX,
    Decision,
    FamilyPlan,
    Reason,
    ReasonCode,
    plan_family,
)
from envmgr.define.spec import Spec

# Steps a build holding its family lock reports (familylock.Holder.set_step). A
# build only ever adds a new build id, so gc may work beside it; any other
# holder (rollback, promote, retire, a build still in recovery: "starting")
# may move latest or a release onto an old build, so gc defers the family.
BUILD_STEPS = frozenset({"lock", "install", "pyc", "smoke", "record", "kernels"})


# -- gathering the planner's inputs ---------------------------------------------------------


# -- the result --------------------------------------------------------------------------------


@dataclass
class CacheReport:
    enabled: bool
    pruned: list[str] = field(default_factory=list)
    kept: int = 0
    skipped: str | None = None
    pyc: pycache.PycPrune = field(default_factory=pycache.PycPrune)  # .pyc entries no prefix links
    uv: uvcache.UvPrune = field(default_factory=uvcache.UvPrune)  # `uv cache prune` (pip packages)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "pruned": self.pruned, "pruned_count": len(self.pruned),
                "kept_count": self.kept, "skipped": self.skipped, "pyc": self.pyc.to_json(),
                "uv": self.uv.to_json()}


@dataclass
class GcResult:
    dry_run: bool
    now: str
    plans: list[FamilyPlan] = field(default_factory=list)
    bytes: dict[tuple[str, str], int] = field(default_factory=dict)  # freed by that build alone
    freed_bytes: int = 0  # everything removed (or, dry run: to remove) together, hardlink-aware
    cache: CacheReport = field(default_factory=lambda: CacheReport(False))
    kernels_removed: dict[str, list[str]] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    pending_trash: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_ENVIRONMENT if self.errors else EXIT_OK

    def decisions(self) -> list[Decision]:
        return [d for plan in self.plans for d in plan.decisions]

    def counts(self) -> dict[str, int]:
        out = {"builds": 0, "keep": 0, "delete": 0, "deleted": 0, "none": 0}
        for d in self.decisions():
            out["builds"] += 1
            out["deleted" if d.state == "deleted" and d.action == DELETE else d.action] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        families = []
        for plan in self.plans:
            doc = plan.to_json()
            for build in doc["builds"]:
                build["bytes"] = self.bytes.get((plan.family, build["build_id"]))
            doc["kernels_removed"] = self.kernels_removed.get(plan.family, [])
            families.append(doc)
        return {"dry_run": self.dry_run, "now": self.now,
                "summary": {**self.counts(), "freed_bytes": self.freed_bytes},
                "families": families, "cache": self.cache.to_json(), "recovered": self.recovered,
                "pending_trash": self.pending_trash, "errors": self.errors, "warnings": self.warnings}


# -- locks -----------------------------------------------------------------------------------


@contextlib.contextmanager
def gc_lock(layout: Layout) -> Iterator[None]:
    """One gc at a time, on any host sharing the root."""
    lock = LockFile(layout.gc_lock)
    holder = layout.gc_lock_holder
    with step_guard("take the gc lock", layout.gc_lock):
        layout.locks_dir.mkdir(parents=True, exist_ok=True)
        free = lock.try_acquire()
    if not free:
        try:
            who = json.loads(holder.read_text(encoding="utf-8"))
            text = f"pid {who.get('pid')} on {who.get('host')} since {who.get('since')}"
        except (OSError, ValueError):
            text = "another process"
        raise Busy(f"another envmgr gc is running ({text})",
                   hint="wait for it to finish; gc runs are cheap to repeat") from None
    try:
        with step_guard("take the gc lock", holder):
            atomic_write_json(holder, {"pid": os.getpid(), "host": socket.gethostname(),
                                       "since": iso(utcnow())})
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


@dataclass(frozen=True)
class Guard:
    locked: bool
    deferred: str | None = None
    note: str | None = None


def _unsafe_holder(layout: Layout, family: str, info: dict | None) -> str | None:
    """Why a family lock holder races with deleting old builds, or None if it does not."""
    if info is None or info.get("step") in BUILD_STEPS:
        return None
    return f"its build lock is held by {describe_holder(layout, family)}"


@contextlib.contextmanager
def family_guard(layout: Layout, family: str) -> Iterator[Guard]:
    """Hold the family's build lock if free; beside a running build proceed; else defer."""
    with contextlib.ExitStack() as stack:
        try:
            holder = stack.enter_context(family_lock(layout, family, wait=False))
        except Busy:
            info = holder_info(layout, family) or {"step": "unknown"}
            reason = _unsafe_holder(layout, family, info)
            note = None if reason else f"a build of {family} is in progress; gc works beside it"
            yield Guard(False, reason, note)
            return
        holder.set_step("gc")
        yield Guard(True)


# -- applying ---------------------------------------------------------------------------------


def _kept(d: Decision, reason: Reason) -> Decision:
    return replace(d, action="keep", reasons=(reason, *d.reasons))


BATCH = 200  # builds marked at once (one open lease fd each)


@dataclass
class Batch:
    """Deletions of one family being carried out together (one /proc scan for all of them)."""

    layout: Layout
    now: dt.datetime
    result: GcResult
    progress: Progress
    final: dict[str, Decision] = field(default_factory=dict)

    def keep(self, d: Decision, code: ReasonCode, text: str) -> None:
        self.final[d.build_id] = _kept(d, Reason(code, text))

    def mark(self, stack: contextlib.ExitStack, d: Decision) -> bool:
        """Take the lease exclusively and write the ``.deleting`` mark; False if that failed."""
        try:
            stack.enter_context(lease.mark_deleting(self.layout, d.family, d.build_id))
        except Busy as exc:
            self.keep(d, ReasonCode.IN_USE, exc.message)
        except UsageError as exc:  # it became latest meanwhile
            self.keep(d, ReasonCode.LATEST, exc.message)
        except EnvmgrError as exc:
            self.result.errors.append(f"{d.family}/{d.build_id}: {exc.message}")
            self.keep(d, ReasonCode.ERROR, f"deletion failed: {exc.message}")
        else:
            return True
        return False

    def trash(self, d: Decision, users: tuple[int, ...]) -> None:
        """Rename the build into the trash unless a process uses it; then audit and tombstone."""
        source = _target_path(self.layout, d)
        if users:
            self.keep(d, ReasonCode.IN_USE, f"used by pid {', '.join(map(str, users))} on {socket.gethostname()} "
                                   "(found in /proc)")
            return
        moved = None
        if source is not None:
            try:
                moved = trash.build_slot(self.layout, d.family, d.build_id)
                os.rename(source, moved)
            except OSError as exc:
                self.result.errors.append(f"{d.family}/{d.build_id}: could not move {source} to the "
                                          f"trash: {exc}")
                self.keep(d, ReasonCode.ERROR, f"deletion failed: {exc.strerror or exc}")
                return
        checkpoint("gc-trashed")
        try:
            audit(self.layout, "gc.delete", family=d.family, build_id=d.build_id, target=d.target,
                  why=d.why, trash=str(moved) if moved else None)
            records.update(self.layout, d.family, d.build_id, deleted=iso(self.now))
        except OSError as exc:  # it is in the trash: the next gc writes the tombstone
            self.result.errors.append(f"{d.family}/{d.build_id}: tombstone not written: {exc}")
        checkpoint("gc-tombstoned")
        self.progress(f"deleted {d.family}/{d.build_id}: {d.why}")
        self.final[d.build_id] = replace(d, state="deleted")

    def run(self, deletions: list[Decision]) -> None:
        """Mark all, scan /proc once while every mark is held, then move each to the trash.

        Holding a build's lease exclusively, no launcher can start on it, so the
        scan sees every process that could still be using it (on this host).
        A build kept after all has its mark removed: it stays usable.
        """
        with contextlib.ExitStack() as stack:
            marked = [d for d in deletions if d.target != TARGET_PREFIX or self.mark(stack, d)]
            if not marked:
                return
            checkpoint("gc-marked")
            scan = scan_processes(self.layout.envs_dir)
            for d in marked:
                entry = d.build_id if d.target == TARGET_PREFIX else f"{FAILED_PREFIX}{d.build_id}"
                self.trash(d, scan.pids(d.family, entry))
                if d.target == TARGET_PREFIX and self.final[d.build_id].action != DELETE:
                    lease.deleting_marker(self.layout, d.family, d.build_id).unlink(missing_ok=True)


def delete_builds(layout: Layout, deletions: list[Decision], now: dt.datetime, result: GcResult,
                  progress: Progress) -> dict[str, Decision]:
    """Delete what the plan allows; returns each build's final decision (kept if it turned out busy)."""
    batch = Batch(layout, now, result, progress)
    for start in range(0, len(deletions), BATCH):
        batch.run(deletions[start:start + BATCH])
    return batch.final


def _sync(config: Config, family: str, spec: Spec | None, result: GcResult) -> str | None:
    """Kernelspecs first (an expired release loses its kernel); a failure defers deletions."""
    try:
        synced = sync_kernels(config, family, spec)
    except (EnvmgrError, OSError) as exc:
        message = exc.message if isinstance(exc, EnvmgrError) else str(exc)
        result.warnings.append(f"{family}: kernelspecs not updated ({message}); deletions deferred")
        return f"kernelspecs could not be updated: {message}"
    if synced is not None and synced.removed:
        result.kernels_removed[family] = sorted(synced.removed)
    return None


def collect_family(config: Config, family: str, now: dt.datetime, index: dict[str, SpecChoice],
                   scan: ProcessScan, result: GcResult, progress: Progress) -> FamilyPlan:
    """Re-plan ``family`` from fresh state under its lock, then delete what the plan allows."""
    with family_guard(config.layout, family) as guard:
        choice = family_spec(config, family, index)
        deferred = guard.deferred or (f"its spec cannot be read ({choice.error})" if choice.error else None)
        if guard.note:
            progress(guard.note)
        if guard.locked and not deferred:
            deferred = _sync(config, family, choice.spec, result)
        plan = plan_family(gather_family(config, family, choice, scan, deferred), now)
        done = delete_builds(config.layout, plan.deletions(), now, result, progress)
    return replace(plan, decisions=tuple(done.get(d.build_id, d) for d in plan.decisions))


def finish_interrupted(layout: Layout, pkgs_dir: Path, now: dt.datetime) -> list[str]:
    """Complete what a killed gc left: tombstones for trashed prefixes, stale marks and leases."""
    actions = []
    in_trash = set()
    for entry in trash.pending(layout, pkgs_dir):
        if entry.family is None or entry.build_id is None:
            continue
        in_trash.add((entry.family, entry.build_id))
        rec = records.load(layout, entry.family, entry.build_id)
        if rec is not None and not rec.deleted:
            audit(layout, "gc.delete", family=entry.family, build_id=entry.build_id, recovered=True,
                  trash=str(entry.path))
            records.update(layout, entry.family, entry.build_id, deleted=iso(now))
            actions.append(f"finished deleting {entry.family}/{entry.build_id} (a gc was interrupted)")
    return actions + _tidy_leases(layout, in_trash)


def _tidy_leases(layout: Layout, in_trash: set[tuple[str, str]]) -> list[str]:
    """Clear marks on prefixes never moved (they are planned again); drop leases of tombstones."""
    actions = []
    leases_root = layout.leases_root
    for marker in sorted(leases_root.glob(f"*/*{lease.DELETING_SUFFIX}")) if leases_root.is_dir() else []:
        family, build_id = marker.parent.name, marker.name[: -len(lease.DELETING_SUFFIX)]
        if layout.prefix(family, build_id).is_dir():
            marker.unlink(missing_ok=True)
            actions.append(f"cleared the deletion mark of {family}/{build_id} (a gc was interrupted "
                           "before moving it; it is planned again)")
    for lease_file in sorted(leases_root.glob("*/*.lease")) if leases_root.is_dir() else []:
        family, build_id = lease_file.parent.name, lease_file.name.removesuffix(".lease")
        if (family, build_id) in in_trash or layout.prefix(family, build_id).exists():
            continue
        rec = records.load(layout, family, build_id)
        if rec is not None and rec.deleted:  # emptying the trash was interrupted after the rmtree
            lease.deleting_marker(layout, family, build_id).unlink(missing_ok=True)
            lease_file.unlink(missing_ok=True)
    return actions


def gone_builds(plans: list[FamilyPlan]) -> set[tuple[str, str]]:
    """Builds the plans saw as tombstones or (planned to be) deleted: their packages are not needed."""
    return {(d.family, d.build_id) for p in plans for d in p.decisions
            if d.action == DELETE or d.state == "deleted"}


def prune_cache(config: Config, result: GcResult) -> CacheReport:
    """Move unused package-cache entries to the cache's trash (emptied with the rest)."""
    layout, pkgs_dir = config.layout, Path(config.pkgs_dir)
    report = CacheReport(True)
    with pkgcache.no_build_running(layout) as busy:
        if busy:
            report.skipped = busy
            return report
        keep = pkgcache.needed(layout, layout.families(), gone=gone_builds(result.plans))
        victims = pkgcache.unused(pkgs_dir, keep)
        for n, entry in enumerate(victims):
            try:
                os.rename(entry.path, trash.package_slot(pkgs_dir, entry.name))
                entry.lock_file().unlink(missing_ok=True)
            except OSError as exc:
                result.errors.append(f"package cache: could not remove {entry.path}: {exc}")
                continue
            report.pruned.append(entry.name)
            if n == 0:
                checkpoint("gc-cache")
        report.kept = len(pkgcache.entries(pkgs_dir))
    if report.pruned:
        audit(layout, "gc.prune-cache", pkgs_dir=str(pkgs_dir), entries=report.pruned)
    return report


def empty_trash(layout: Layout, pkgs_dir: Path, result: GcResult, progress: Progress) -> None:
    """Remove everything in the trash; freed bytes count inodes whose every link went."""
    removed_tables = []
    for entry in trash.pending(layout, pkgs_dir):
        table = trash.inode_table(entry.path)
        try:
            trash.remove_tree(entry.path, after_first=lambda: checkpoint("gc-rmtree"))
        except OSError as exc:
            result.errors.append(f"could not empty {entry.path}: {exc} (the next gc retries)")
            continue
        removed_tables.append(table)
        if entry.family is not None and entry.build_id is not None:
            result.bytes[(entry.family, entry.build_id)] = trash.freed_bytes([table])
            if not layout.prefix(entry.family, entry.build_id).exists():
                lease.deleting_marker(layout, entry.family, entry.build_id).unlink(missing_ok=True)
                layout.lease_file(entry.family, entry.build_id).unlink(missing_ok=True)
    for directory in (layout.trash_dir, pkgs_dir / trash.PKGS_TRASH):
        for sub in (directory.iterdir() if directory.is_dir() else []):
            with contextlib.suppress(OSError):
                sub.rmdir()  # empty family folders only
    result.freed_bytes = trash.freed_bytes(removed_tables)
    progress(f"freed {human_bytes(result.freed_bytes)} (hardlink-aware)")


# -- dry run ----------------------------------------------------------------------------------


def _dry_deferral(layout: Layout, family: str) -> str | None:
    return _unsafe_holder(layout, family, holder_info(layout, family))


def dry_run_cache(config: Config, plans: list[FamilyPlan]) -> tuple[CacheReport, list]:
    layout = config.layout
    report = CacheReport(True)
    for family in layout.families():
        if holder_info(layout, family) is not None:
            report.skipped = f"a build of {family} holds its lock ({describe_holder(layout, family)})"
            return report, []
    victims = pkgcache.unused(Path(config.pkgs_dir), pkgcache.needed(layout, layout.families(),
                                                                     gone=gone_builds(plans)))
    report.pruned = [v.name for v in victims]
    report.kept = len(pkgcache.entries(Path(config.pkgs_dir))) - len(victims)
    return report, [trash.inode_table(v.path) for v in victims]


def _target_path(layout: Layout, d: Decision) -> Path | None:
    if d.target == TARGET_PREFIX:
        return layout.prefix(d.family, d.build_id)
    if d.target == TARGET_FAILED:
        return layout.family_dir(d.family) / f"{FAILED_PREFIX}{d.build_id}"
    return None


def dry_run(config: Config, families: list[str], now: dt.datetime, prune: bool) -> GcResult:
    """The plan a real run would start from, with what it would free. Changes nothing."""
    layout = config.layout
    result = GcResult(dry_run=True, now=iso(now) or "")
    index, scan = spec_index(config), scan_processes(layout.envs_dir)
    for family in families:
        choice = family_spec(config, family, index)
        deferred = _dry_deferral(layout, family) or (
            f"its spec cannot be read ({choice.error})" if choice.error else None)
        result.plans.append(plan_family(gather_family(config, family, choice, scan, deferred), now))
    cache_tables: list[trash.Inodes] = []
    if prune:
        result.cache, cache_tables = dry_run_cache(config, result.plans)
    # A pruned package entry shares inodes with the builds deleted with it: size those exactly.
    tables, known = _size_deletions(layout, result, exact=bool(result.cache.pruned))
    tables += cache_tables
    pending = trash.pending(layout, Path(config.pkgs_dir))
    result.pending_trash = [str(e.path) for e in pending]
    tables += [trash.inode_table(e.path) for e in pending]
    result.freed_bytes = trash.freed_bytes(tables) + known
    if prune and not result.cache.skipped:
        result.cache.pyc = pycache.prune(Path(config.pkgs_dir), apply=False, leaving=_links_in(tables))
        result.cache.uv = uvcache.measure(Path(config.pkgs_dir))  # held now; uv decides what goes
        result.cache.pyc.exact = not known
        result.freed_bytes += result.cache.pyc.bytes
    return result


def _size_deletions(layout: Layout, result: GcResult, *, exact: bool) -> tuple[list[trash.Inodes], int]:
    """Per-build figures (from the record when measured before); (tables walked now, bytes known).

    Walked tables make the total hardlink-aware across deletions; a figure read
    from the record counts what that build frees alone (its own inodes).
    """
    tables: list[trash.Inodes] = []
    known = 0
    for d in (d for p in result.plans for d in p.deletions()):
        if (path := _target_path(layout, d)) is None:
            continue
        size = None if exact else deletionsize.recorded(layout, d.family, d.build_id, d.target)
        if size is None:
            size, table = deletionsize.measure(layout, d.family, d.build_id, d.target, path)
            tables.append(table)
        else:
            known += size
        result.bytes[(d.family, d.build_id)] = size
    return tables, known


def _links_in(tables: list[trash.Inodes]) -> dict[tuple[int, int], int]:
    """Links per inode the dry run's deletions would remove."""
    links: dict[tuple[int, int], int] = {}
    for table in tables:
        for key, row in table.items():
            links[key] = links.get(key, 0) + row[2]
    return links


# -- entry point ---------------------------------------------------------------------------------


def check_families(layout: Layout, names: list[str] | None) -> list[str]:
    known = layout.families()
    if not names:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NotFound(f"no famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
                       f"under {layout.root}", hint="`envmgr status` lists the families")
    return list(dict.fromkeys(names))


def default_prune(config: Config) -> bool:
    """Prune by default only a cache that belongs to this root (the default ``ROOT/pkgs``)."""
    pkgs = os.path.abspath(config.pkgs_dir)
    return pkgs == os.path.abspath(config.root) or pkgs.startswith(os.path.abspath(config.root) + os.sep)


def collect(config: Config, families: list[str] | None = None, *, dry_run_only: bool = False,
            prune: bool | None = None, now: dt.datetime | None = None,
            progress: Progress = no_progress) -> GcResult:
    """Plan (and unless ``dry_run_only``, apply) garbage collection for ``families`` (default all)."""
    layout = config.layout
    names = check_families(layout, families)
    now = now or utcnow()
    prune = default_prune(config) if prune is None else prune
    if dry_run_only:
        return dry_run(config, names, now, prune)
    result = GcResult(dry_run=False, now=iso(now) or "")
    if not layout.root.is_dir():
        return result  # nothing built yet: nothing to collect (and no root created)
    with gc_lock(layout):
        result.recovered = finish_interrupted(layout, Path(config.pkgs_dir), now)
        for action in result.recovered:
            progress(action)
        index, scan = spec_index(config), scan_processes(layout.envs_dir)
        for family in names:
            result.plans.append(collect_family(config, family, now, index, scan, result, progress))
        result.cache = prune_cache(config, result) if prune else CacheReport(False)
        empty_trash(layout, Path(config.pkgs_dir), result, progress)
        if prune and not result.cache.skipped:
            prune_after_trash(config, result)
    return result


def prune_after_trash(config: Config, result: GcResult) -> None:
    """The caches pruned once the trash is empty (its links are gone), under one check that no
    build (and so no uv) runs: .pyc entries no prefix links, then ``uv cache prune`` (gc/uvcache.py)."""
    with pkgcache.no_build_running(config.layout) as busy:
        if busy:
            result.cache.skipped = busy
            return
        result.cache.pyc = pycache.prune(Path(config.pkgs_dir), apply=True)
        result.cache.uv = uvcache.prune(Path(config.pkgs_dir))
    if result.cache.uv.error:
        result.errors.append(f"uv cache: {result.cache.uv.error}")
    result.freed_bytes += result.cache.pyc.bytes + result.cache.uv.bytes
