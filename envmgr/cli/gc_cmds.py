"""`envmgr gc`: delete old builds the retention policy no longer needs and nobody uses."""

from __future__ import annotations

import typer

from ._app import JSON_OPTION, app, state


@app.command("gc")
def gc_cmd(
    ctx: typer.Context,
    families: list[str] = typer.Argument(None, help="Families to collect (default: all)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show every decision and why; change nothing."),
    prune_cache: bool = typer.Option(None, "--prune-cache/--no-prune-cache",
                                     help="Also drop package-cache entries no remaining build uses "
                                          "(default: only when pkgs_dir is inside the root)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete builds nobody needs: never latest, a supported stable, a pinned one, or one in use."""
    from envmgr.gc.collect import collect  # imported by the command that runs it (start-up)

    from .gc_render import render_gc

    obj = state(ctx, command="gc", as_json=as_json)
    result = collect(obj.config(), list(families or []), dry_run_only=dry_run, prune=prune_cache,
                     progress=obj.progress)
    obj.emit(result, render_gc, as_json=as_json)
