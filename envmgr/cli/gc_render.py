"""Text rendering of `envmgr gc` results (the JSON form is GcResult.to_json)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._rich import Table, Text

from envmgr.gc.retention import Action, ReasonCode
from envmgr.units import human_bytes

from .render import GC_ACTION_STYLE

if TYPE_CHECKING:
    from envmgr.gc.collect import GcResult

def _summary(result: GcResult) -> Text:
    c = result.counts()
    if result.dry_run:
        head = (f"gc (dry run): {c['builds']} builds: {c['delete']} to delete, {c['keep']} kept, "
                f"{c['none']} tombstones/missing; would free {human_bytes(result.freed_bytes)}")
    else:
        head = (f"gc: {c['builds']} builds: {c['deleted']} deleted, {c['keep']} kept, "
                f"{c['none']} tombstones/missing; freed {human_bytes(result.freed_bytes)}")
    return Text(head + " (hardlink-aware)", style="bold")


def _family_table(result: GcResult, index: int) -> Table:
    plan = result.plans[index]
    p = plan.policy
    title = (f"{plan.family}: keep {p.keep_previous} previous, grace {p.grace_days} d, "
             f"failed {p.failed_days} d ({p.source})")
    table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in ("build", "action", "frees", "why"):
        table.add_column(column)
    for d in reversed(plan.decisions):
        if d.action == Action.NONE and d.reasons[0].code == ReasonCode.TOMBSTONE:
            continue
        action = "deleted" if d.state == "deleted" else d.action
        freed = result.bytes.get((plan.family, d.build_id))
        table.add_row(d.build_id, Text(str(action), style=GC_ACTION_STYLE.get(d.action, "")),
                      human_bytes(freed) if freed is not None else "", d.why)
    return table


def render_gc(result: GcResult) -> Iterable[Any]:
    yield _summary(result)
    for n, plan in enumerate(result.plans):
        yield _family_table(result, n)
        if plan.deferred:
            yield Text(f"  deletions deferred: {plan.deferred}", style="yellow")
        if removed := result.kernels_removed.get(plan.family):
            yield Text(f"  kernels removed: {', '.join(removed)}")
        tombstones = sum(1 for d in plan.decisions if d.reasons and d.reasons[0].code == ReasonCode.TOMBSTONE)
        if tombstones:
            yield Text(f"  {tombstones} tombstones (`envmgr builds {plan.family}` lists them)", style="dim")
    cache = result.cache
    if cache.skipped:
        yield Text(f"package cache: not pruned: {cache.skipped}", style="yellow")
    elif cache.enabled:
        verb = "would prune" if result.dry_run else "pruned"
        yield Text(f"package cache: {verb} {len(cache.pruned)} unused packages, {cache.kept} kept")
        if cache.pyc.entries or cache.pyc.markers:
            yield Text(f".pyc cache: {verb} {cache.pyc.entries} entries no prefix links "
                       f"({human_bytes(cache.pyc.bytes)})")
        if result.dry_run and cache.uv.bytes:
            yield Text(f"uv cache: {human_bytes(cache.uv.bytes)}; `uv cache prune` runs after collection")
        elif cache.uv.ran and not cache.uv.error:
            yield Text(f"uv cache: pruned {human_bytes(cache.uv.bytes)} uv no longer reaches")
    for line in result.recovered:
        yield Text(f"recovered: {line}", style="yellow")
    if result.pending_trash:
        yield Text(f"trash: {len(result.pending_trash)} entries left by an interrupted gc "
                   "(the next run removes them)", style="yellow")
    for line in result.warnings:
        yield Text(f"warning: {line}", style="yellow")
    for line in result.errors:
        yield Text(f"error: {line}", style="bold red")
