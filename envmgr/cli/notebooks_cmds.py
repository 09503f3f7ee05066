"""`envmgr notebooks check` and `envmgr notebooks migrate`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Table, Text

if TYPE_CHECKING:  # nbformat and the kernelspec code load when a notebooks command runs
    from envmgr.release.notebooks import NotebooksResult

from ._app import JSON_OPTION, app, state

notebooks_app = typer.Typer(help="Notebooks and the kernels they name (before and after a retirement).",
                            no_args_is_help=True)
app.add_typer(notebooks_app, name="notebooks")

PATHS = typer.Argument(..., help="Notebooks or directories (searched recursively, "
                       "skipping .ipynb_checkpoints).")
STATE_STYLE = {"retired": "red", "expired": "red", "expiring": "yellow"}


@notebooks_app.command("check")
def check_cmd(ctx: typer.Context, paths: list[Path] = PATHS,
              fail_on: str = typer.Option(None, "--fail-on", metavar="STATES",
                                          help="Exit 1 if a notebook's kernel is in one of these states, "
                                               "e.g. retired,expired,unknown (a gate for CI or a "
                                               "retirement)."),
              as_json: bool = JSON_OPTION) -> None:
    """Each notebook's kernel and its state, and the build it last ran on."""
    from envmgr.release.notebooks import check, parse_fail_on

    obj = state(ctx, command="notebooks check", as_json=as_json)
    obj.emit(check(obj.config(), paths, fail_on=parse_fail_on(fail_on)), render_notebooks, as_json=as_json)


@notebooks_app.command("migrate")
def migrate_cmd(
    ctx: typer.Context,
    paths: list[Path] = PATHS,
    to: str = typer.Option(None, "--to", help="Kernel to move every notebook to "
                           "(default: the successor of a retired, expired or expiring kernel)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Move notebooks to the successor kernel (or --to); keeps the old name in metadata.envmgr."""
    from envmgr.release.notebooks import migrate

    obj = state(ctx, command="notebooks migrate", as_json=as_json)
    obj.emit(migrate(obj.config(), paths, to=to, dry_run=dry_run), render_notebooks, as_json=as_json)


def render_notebooks(result: NotebooksResult) -> Iterable[Any]:
    if not result.notebooks:
        yield Text("no notebooks found")
        return
    migrating = result.command == "migrate"
    table = Table(header_style="bold")
    columns = ["notebook", "kernel", "state", "last build"] + (["action", "to"] if migrating
                                                              else ["successor"])
    for column in columns:
        table.add_column(column, overflow="fold")
    for nb in result.notebooks:
        last = f"{nb.last_build} ({nb.build_state})" if nb.last_build else "-"
        row: list[Any] = [str(nb.path), nb.kernel.name or "-",
                          Text(nb.kernel.describe(), style=STATE_STYLE.get(nb.kernel.state, "")), last]
        row += [nb.action or "", nb.target or ""] if migrating else [nb.kernel.successor or ""]
        table.add_row(*row)
    yield table
    if migrating and result.dry_run:
        yield Text("dry run: nothing was written", style="yellow")
    if result.failing:
        yield Text(f"{len(result.failing)} notebook(s) with a kernel that is "
                   f"{' or '.join(result.fail_on)} (--fail-on): `envmgr notebooks migrate` moves "
                   "retired, expired and expiring ones to their successor", style="bold red")
