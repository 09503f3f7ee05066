"""`envmgr restore FAMILY BUILD`."""

from __future__ import annotations

import typer

from ..restore import restore
from ._app import JSON_OPTION, app, state


@app.command("restore")
def restore_cmd(ctx: typer.Context, family: str = typer.Argument(...),
                build: str = typer.Argument(..., help="The deleted build's id (`envmgr builds FAMILY`)."),
                as_json: bool = JSON_OPTION) -> None:
    """Re-create a deleted build from its tombstone: same lock, prefix and id, no solving."""
    obj = state(ctx, command="restore", as_json=as_json)
    obj.emit(restore(obj.config(), family, build, obj.progress), as_json=as_json)
