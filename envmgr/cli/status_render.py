"""Text rendering of `envmgr status` (the JSON form is StatusReport.to_json)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._rich import Table, Text

from envmgr.units import human_bytes

from .render import BUILD_STATUS_STYLE

if TYPE_CHECKING:
    from envmgr.ops.status import FamilyStatus, StatusReport

def human_age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 3600:
        return f"{max(seconds, 0) // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _latest_cell(f: FamilyStatus) -> Text:
    if f.latest is None:
        return Text("no good build", style="red")
    text = Text(f"{f.latest['build_id']}\n{human_age(f.latest['age_seconds'])} old, "
                f"{f.latest['package_count']} pkgs")
    if f.latest.get("in_use"):
        text.append(" · in use", style="cyan")
    return text


def _last_run_cell(f: FamilyStatus) -> Text:
    run = f.last_run
    if not run:
        return Text("never", style="dim")
    return Text.assemble((run.get("status", "?"), BUILD_STATUS_STYLE.get(run.get("status", ""), "")),
                         f"\n{run.get('when', '')}")


def _stable_cell(f: FamilyStatus) -> Text:
    text = Text()
    for rel in f.stable:
        style = "red" if rel["expired"] else "yellow" if rel["expiring_soon"] else ""
        text.append(f"{rel['release']} until {rel['until']} ({rel['days_left']} d)\n", style=style)
    return text if f.stable else Text("-", style="dim")


def _kernels_cell(f: FamilyStatus) -> Text:
    """Per build with a held lease: kernels and users here, and whether another host holds it."""
    if not f.kernels:
        return Text("-", style="dim")
    return Text("\n".join(f"{k.build_id}: {k.describe()}" for k in f.kernels), style="cyan")


def _gc_cell(f: FamilyStatus) -> Text:
    if not f.gc_waiting:
        return Text("-", style="dim")
    text = Text()
    for entry in f.gc_waiting:
        held = entry.get("held_by", "")
        text.append(f"{entry['build_id']}: {held}\n", style="cyan" if entry.get("in_use") else "")
    return text


def _building_cell(f: FamilyStatus) -> Text:
    b = f.building
    if not b:
        return Text("-", style="dim")
    return Text(f"{b.get('user')}@{b.get('host')} pid {b.get('pid')}\nstep {b.get('step')}, "
                f"{human_age(b.get('running_seconds'))}", style="bold cyan")


def _family_table(report: StatusReport) -> Table:
    table = Table(title=f"envmgr status · {report.root} · {report.generated}", header_style="bold",
                  show_lines=True)
    for column in ("group", "family", "latest", "last run", "stable", "kernels", "waiting for gc",
                   "building now", "disk"):
        table.add_column(column)
    for f in report.families:
        disk = human_bytes(f.disk_bytes) if f.disk_bytes is not None else "-"
        name = Text(f.family, style="bold")
        if f.description:
            name.append(f"\n{f.description}", style="dim")
        table.add_row(f.group, name, _latest_cell(f), _last_run_cell(f),
                      _stable_cell(f), _kernels_cell(f), _gc_cell(f), _building_cell(f), disk)
    return table


def _disk_line(report: StatusReport) -> Text:
    d = report.disk
    if d is None:
        return Text("disk: not measured", style="dim")
    how = f"cached, measured {d.measured_at}" if d.cached else f"measured in {d.measure_seconds} s"
    style = "bold red" if d.low else ""
    return Text(f"disk: {human_bytes(d.used_bytes)} used (package cache {human_bytes(d.pkgs_bytes)}), "
                f"{human_bytes(d.free_bytes)} free of {human_bytes(d.fs_total_bytes)} "
                f"(builds need {human_bytes(d.min_free_bytes)}) [{how}]", style=style)


def render_status(report: StatusReport) -> Iterable[Any]:
    if not report.families:
        yield Text(f"no families under {report.root} yet (`envmgr build --all` builds the specs)")
    else:
        yield _family_table(report)
    yield _disk_line(report)
    fs = report.mount
    if fs is not None:
        yield Text(f"filesystem: {fs.fstype} at {fs.mountpoint}; leases: {report.lock_safety.level}")
    if report.families:
        n, computed = len(report.families), len(report.families) - report.cached_families
        yield Text(f"families: {n} in {report.seconds:.2f} s, {report.cached_families} from the status "
                   f"cache, {computed} computed (--refresh recomputes all)", style="dim")
    if report.warnings:
        yield Text(f"{len(report.warnings)} warning(s):", style="bold yellow")
        for w in report.warnings:
            yield Text(f"  ! {w.message}", style="yellow")
    else:
        yield Text("no warnings", style="green")
