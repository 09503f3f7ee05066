"""`envmgr build`, `lock`, `builds`, `diff`, `rollback`."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Table, Text


from ..errors import UsageError
from envmgr.config import Config
from ._app import JSON_OPTION, app, state
from .render import BUILD_STATE_STYLE, BUILD_STATUS_STYLE, render_diff
from .security_cmds import render_build_advisories, render_diff_advisories

if TYPE_CHECKING:
    from envmgr.build.batch import BuildReport, LockResult
    from envmgr.catalog.builds import BuildsResult, DiffResult
    from envmgr.release.rollback import RollbackResult


OFFLINE_OPTION = typer.Option(False, "--offline", help="pip requirements: use only the wheel "
                              "folders of pip.find_links, never the index.")


def offline_config(config: Config, offline: bool) -> Config:
    """--offline: the site's pip settings with ``offline: true`` for this run."""
    return replace(config, pip=replace(config.pip, offline=True)) if offline else config


@app.command("build")
def build(
    ctx: typer.Context,
    specs: list[str] = typer.Argument(None, help="Spec files or family names (from specs_dir)."),
    all_specs: bool = typer.Option(False, "--all", help="Build every spec in specs_dir."),
    now: bool = typer.Option(False, "--now", help="Build immediately (the CLI always does; "
                             "the flag reads as in the staff runbook)."),
    force: bool = typer.Option(False, "--force", help="Build even if the lock is unchanged."),
    from_lock: Path = typer.Option(None, "--from-lock", help="Install exactly this conda-lock.yml "
                                   "(no solving); the spec may be omitted if spec.yaml sits beside it."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail (exit 4) instead of waiting when "
                                 "the family is being built."),
    offline: bool = OFFLINE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Lock, build, smoke-test and publish; move latest. Unchanged locks build nothing."""
    # The pipeline (py-rattler, conda-lock, jupyter_client) is imported by the commands that
    # run it only: `--help`, status, builds and gc start without it (tests/test_cli_startup.py).
    from envmgr.build.batch import build_families, find_specs, spec_beside_lock
    from envmgr.build.outcome import BuildOptions
    from envmgr.define.spec import load_spec
    from envmgr.lock.solve import command_line

    obj = state(ctx, command="build", as_json=as_json)
    config = offline_config(obj.config(), offline)
    names = list(specs or [])
    if from_lock is not None and not names and not all_specs:
        beside = spec_beside_lock(from_lock)
        if beside is None:
            raise UsageError(f"--from-lock {from_lock}: name the spec too (no spec.yaml beside it)")
        chosen = [load_spec(beside)]
    else:
        chosen = find_specs(config, names, all_specs=all_specs)
    if from_lock is not None and len(chosen) != 1:
        raise UsageError("--from-lock builds exactly one spec")
    options = BuildOptions(force=force, from_lock=from_lock, wait=not no_wait,
                           command=command_line(sys.argv[1:]))
    obj.emit(build_families(config, chosen, options, obj.progress), render_build_report, as_json=as_json)


@app.command("lock")
def lock(
    ctx: typer.Context,
    spec: Path = typer.Argument(..., help="The spec to lock."),
    output: Path = typer.Option(None, "-o", "--output", help="Where to write conda-lock.yml "
                                "(default: <family>.conda-lock.yml beside the spec)."),
    offline: bool = OFFLINE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Solve a spec and write its conda-lock.yml (conda-lock's format)."""
    from envmgr.build.batch import lock_spec_to_file
    from envmgr.lock.solve import command_line

    obj = state(ctx, command="lock", as_json=as_json)
    obj.emit(lock_spec_to_file(offline_config(obj.config(), offline), spec, output,
                               command=command_line(sys.argv[1:]), progress=obj.progress),
             render_lock, as_json=as_json)


@app.command("builds")
def builds(ctx: typer.Context, family: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """List a family's builds, newest first, with tombstones of deleted ones."""
    from envmgr.catalog.builds import list_builds

    obj = state(ctx, command="builds", as_json=as_json)
    obj.emit(list_builds(obj.config(), family), render_builds, as_json=as_json)


@app.command("diff")
def diff(ctx: typer.Context, build_a: str = typer.Argument(..., help="family/build-id or build id"),
         build_b: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Packages added, removed, upgraded or downgraded between two builds."""
    from envmgr.catalog.builds import diff_builds

    obj = state(ctx, command="diff", as_json=as_json)
    obj.emit(diff_builds(obj.config(), build_a, build_b), render_diff_result, as_json=as_json)


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    family: str = typer.Argument(...),
    to: str = typer.Option(None, "--to", help="Build id to make latest (default: the previous good one)."),
    no_wait: bool = typer.Option(False, "--no-wait"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-point a family's latest to an earlier good build, atomically."""
    from envmgr.release.rollback import rollback

    obj = state(ctx, command="rollback", as_json=as_json)
    obj.emit(rollback(obj.config(), family, to, wait=not no_wait, progress=obj.progress),
             render_rollback, as_json=as_json)


def render_build_report(result: BuildReport) -> Iterable[Any]:
    for o in result.outcomes:
        yield Text.assemble((f"{o.family}: ", "bold"), (str(o.status), BUILD_STATUS_STYLE.get(o.status, "")),
                            f"  {o.message}")
        if o.error:
            yield Text(f"  {o.error}", style="red")
        if o.hint:
            yield Text(f"  hint: {o.hint}", style="yellow")
        if o.diff is not None and not o.diff.empty and o.previous is not None:
            yield render_diff(o.diff)
        yield from render_build_advisories(o.advisories)
        if o.log:
            yield Text(f"  log: {o.log}", style="dim")
        for warning in o.warnings:
            yield Text(f"  warning: {warning}", style="yellow")


def render_lock(result: LockResult) -> Iterable[Any]:
    for platform, pkg_set in result.lock.sets.items():
        pip = len(pkg_set.pip_packages)
        more = f" ({pip} from pip)" if pip else ""
        yield Text(f"{result.lock.spec.name} [{platform}]: {len(pkg_set.packages)} packages{more}")
    for note in result.lock.pip_notes:
        yield Text(f"  {note.line}", style="dim")
    yield Text(f"wrote {result.output}", style="green")


def render_builds(result: BuildsResult) -> Iterable[Any]:
    table = Table(title=f"builds of {result.view.family}", header_style="bold")
    for column in ("build", "state", "packages", "started", "stable", "note"):
        table.add_column(column)
    for b in reversed(result.view.builds):
        note = b.record.error or ("rolled back" if b.record.rolled_back else "")
        if b.record.deleted:
            note = f"tombstone (deleted {b.record.deleted}); `envmgr restore` brings it back"
        if b.record.history:
            lives = ", ".join(f"{e['event']} {e['when']}" for e in b.record.history)
            note = f"{note}; {lives}" if note else lives
        table.add_row(b.build_id, Text(b.state, style=BUILD_STATE_STYLE.get(b.state, "")),
                      str(b.record.package_count), b.record.started, ", ".join(b.releases),
                      (note or "").splitlines()[0] if note else "")
    yield table


def render_diff_result(result: DiffResult) -> Iterable[Any]:
    yield Text(f"{result.a} -> {result.b}: {result.diff.summary()}", style="bold")
    if not result.diff.empty:
        yield render_diff(result.diff)
    yield from render_diff_advisories(result.advisories)


def render_rollback(result: RollbackResult) -> Iterable[Any]:
    yield Text(f"{result.family}: latest {result.previous} -> {result.current}", style="green")
    if result.rolled_back:
        yield Text(f"  marked rolled back: {', '.join(result.rolled_back)} "
                   "(a nightly with the same packages will not republish them)", style="dim")
    if result.diff is not None:
        yield render_diff(result.diff)
