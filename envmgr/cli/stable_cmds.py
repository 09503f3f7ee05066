"""`envmgr promote`, `envmgr retire`, `envmgr stable list`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Table, Text

from ..errors import UsageError
from ._app import JSON_OPTION, app, state

if TYPE_CHECKING:
    from envmgr.release.promote import PromoteResult, RetireResult, StableListResult

stable_app = typer.Typer(help="Stable releases (kernels pinned to one build for years).",
                         no_args_is_help=True)
app.add_typer(stable_app, name="stable")


def _date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--until {text!r} is not a date (YYYY-MM-DD)") from None


@app.command("promote")
def promote_cmd(
    ctx: typer.Context,
    family: str = typer.Argument(...),
    release: str = typer.Option(..., "--release", help="Release name, e.g. 2026.1 (lowercase)."),
    build: str = typer.Option(None, "--build", help="Build id (default: the current latest)."),
    until: str = typer.Option(None, "--until", help="Support end YYYY-MM-DD (default: support_years)."),
    export_dir: Path = typer.Option(None, "--export-dir", help="Where to export the lock "
                                    "(default: <specs_dir>/locks)."),
    no_export: bool = typer.Option(False, "--no-export", help="Do not export the lock."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Pin a build as a stable release with its own kernel; export its lock to the specs repo."""
    obj = state(ctx, command="promote", as_json=as_json)
    from envmgr.release.promote import promote

    obj.emit(promote(obj.config(), family, release, build_id=build, until=_date(until),
                     export_dir=export_dir, export=not no_export, progress=obj.progress),
             render_promote, as_json=as_json)


@app.command("retire")
def retire_cmd(ctx: typer.Context, family: str = typer.Argument(...),
               release: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Remove a stable release's kernel; gc may then delete its build once unused."""
    obj = state(ctx, command="retire", as_json=as_json)
    from envmgr.release.promote import retire

    obj.emit(retire(obj.config(), family, release, obj.progress), render_retire, as_json=as_json)


@stable_app.command("list")
def stable_list(ctx: typer.Context, families: list[str] = typer.Argument(None),
                as_json: bool = JSON_OPTION) -> None:
    """Stable releases with support end dates; warns 90 days before the end."""
    obj = state(ctx, command="stable list", as_json=as_json)
    from envmgr.release.promote import list_stable

    obj.emit(list_stable(obj.config(), families or None), render_stable_list, as_json=as_json)


def render_promote(result: PromoteResult) -> Iterable[Any]:
    r = result.release
    yield Text(f"{r.family} {r.release} -> build {r.build_id}, supported until {r.until} "
               f"({r.days_left()} days)", style="green")
    yield Text(f"  kernel: {result.kernel}")
    for path in result.exported:
        yield Text(f"  exported {path} (commit it to the specs repository)")


def render_retire(result: RetireResult) -> Iterable[Any]:
    yield Text(f"retired {result.family} {result.release} (build {result.build_id}); its kernel is "
               "removed; gc may delete the build once no kernel runs on it", style="green")


def render_stable_list(result: StableListResult) -> Iterable[Any]:
    if not result.releases:
        yield Text("no stable releases")
        return
    table = Table(header_style="bold")
    for column in ("family", "release", "build", "supported until", "days left", "source"):
        table.add_column(column)
    for r in result.releases:
        style = "red" if r.expired() else "yellow" if r.expiring_soon() else ""
        days = Text(str(r.days_left()), style=style)
        table.add_row(r.family, r.release, r.build_id, str(r.until), days, r.source)
    yield table
    for r in result.releases:
        if r.expiring_soon():
            yield Text(f"warning: {r.family} {r.release} support ends {r.until} "
                       f"({r.days_left()} days)", style="yellow")
