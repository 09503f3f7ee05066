"""`envmgr restore FAMILY BUILD`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Text

from ._app import JSON_OPTION, app, state

if TYPE_CHECKING:
    from envmgr.gc.restore import RestoreResult


@app.command("restore")
def restore_cmd(ctx: typer.Context, family: str = typer.Argument(...),
                build: str = typer.Argument(..., help="The deleted build's id (`envmgr builds FAMILY`)."),
                as_json: bool = JSON_OPTION) -> None:
    """Re-create a deleted build from its tombstone: same lock, prefix and id, no solving."""
    from envmgr.gc.restore import restore  # reinstalls: the pipeline, only when run (start-up)

    obj = state(ctx, command="restore", as_json=as_json)
    obj.emit(restore(obj.config(), family, build, obj.progress), render_restore, as_json=as_json)


def render_restore(result: RestoreResult) -> Iterable[Any]:
    yield Text(f"restored {result.family}/{result.build_id} at {result.prefix}", style="green")
    for release in result.releases:
        yield Text(f"  stable release {release} has its kernel again")
    for release in result.not_restored:
        yield Text(f"  release {release}: support ended; `envmgr promote {result.family} --release "
                   f"{release} --build {result.build_id} --until DATE` gives it a kernel again",
                   style="yellow")
