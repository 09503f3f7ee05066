"""`envmgr status` and `envmgr doctor`: operations at a glance, and a setup check."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Table, Text

from ..errors import ConfigError, UsageError
from ._app import JSON_OPTION, app, state
from .render import CHECK_STYLE
from .status_render import render_status

if TYPE_CHECKING:
    from envmgr.ops.doctor import DoctorReport

MOUNTS_OPTION = typer.Option(None, "--mounts-file", hidden=True,
                             help="Read this file instead of /proc/self/mounts (tests, diagnosis).")


def _read_optional(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


@app.command("status")
def status(
    ctx: typer.Context,
    refresh: bool = typer.Option(False, "--refresh", help="Measure disk usage now instead of using "
                                 "the cached measurement (it is re-measured when builds change)."),
    no_disk: bool = typer.Option(False, "--no-disk", help="Skip disk usage entirely."),
    processes: bool = typer.Option(False, "--processes", help="Also scan /proc for processes using "
                                   "old builds without a lease, as gc does (slower)."),
    mounts_file: Path = MOUNTS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Every family at a glance: latest, last run, stable releases, gc, builds now, disk, warnings."""
    from envmgr.ops.status import collect_status

    obj = state(ctx, command="status", as_json=as_json)
    report = collect_status(obj.config(), disk=not no_disk, refresh_disk=refresh, processes=processes,
                            mounts_text=_read_optional(mounts_file, "mounts file"))
    obj.emit(report, render_status, as_json=as_json)


@app.command("doctor")
def doctor(
    ctx: typer.Context,
    no_kernels: bool = typer.Option(False, "--no-kernels", help="Do not start each family's latest "
                                    "kernel (the slowest check)."),
    mounts_file: Path = MOUNTS_OPTION,
    exports_file: Path = typer.Option(None, "--exports-file", hidden=True,
                                      help="Read this file instead of /var/lib/nfs/etab."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check config, permissions, Jupyter path, locking, filesystem, space and kernels; exit 1 on failure."""
    from envmgr.ops.doctor import config_failed, run_doctor

    obj = state(ctx, command="doctor", as_json=as_json)
    try:
        config = obj.config()
    except ConfigError as exc:
        obj.emit(config_failed(exc), render_doctor, as_json=as_json)
        return
    obj.emit(run_doctor(config, kernels=not no_kernels,
                        mounts_text=_read_optional(mounts_file, "mounts file"),
                        exports_text=_read_optional(exports_file, "exports file"),
                        progress=obj.progress), render_doctor, as_json=as_json)


def render_doctor(result: DoctorReport) -> Iterable[Any]:
    table = Table(title="envmgr doctor", header_style="bold", show_lines=True)
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column)
    for c in result.checks:
        table.add_row(c.name, Text(c.status, style=CHECK_STYLE[c.status]), c.detail, c.fix)
    yield table
    n = result.counts()
    worst = "fail" if n["fail"] else "warn" if n["warn"] else "ok"
    yield Text(f"{n['ok']} ok, {n['warn']} warning(s), {n['fail']} failed", style=CHECK_STYLE[worst])
