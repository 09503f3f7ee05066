"""`envmgr notebooks check` and `envmgr notebooks migrate`."""

from __future__ import annotations

from pathlib import Path

import typer

from ..notebooks import check, migrate
from ._app import JSON_OPTION, app, state

notebooks_app = typer.Typer(help="Notebooks and the kernels they name (before and after a retirement).",
                            no_args_is_help=True)
app.add_typer(notebooks_app, name="notebooks")

PATHS = typer.Argument(..., help="Notebooks or directories (searched recursively, "
                       "skipping .ipynb_checkpoints).")


@notebooks_app.command("check")
def check_cmd(ctx: typer.Context, paths: list[Path] = PATHS, as_json: bool = JSON_OPTION) -> None:
    """Each notebook's kernel and its state, and the build it last ran on."""
    obj = state(ctx, command="notebooks check", as_json=as_json)
    obj.emit(check(obj.config(), paths), as_json=as_json)


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
    obj = state(ctx, command="notebooks migrate", as_json=as_json)
    obj.emit(migrate(obj.config(), paths, to=to, dry_run=dry_run), as_json=as_json)
