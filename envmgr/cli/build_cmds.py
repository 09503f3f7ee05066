"""`envmgr build`, `lock`, `builds`, `diff`, `rollback`."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import typer

from ..build import BuildOptions
from ..commands.build_cmd import build_families, find_specs, lock_spec_to_file, spec_beside_lock
from ..commands.builds_cmd import diff_builds, list_builds
from ..errors import UsageError
from ..config import Config
from ..locking import command_line
from ..rollback import rollback
from ..spec import load_spec
from ._app import JSON_OPTION, app, state


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
    obj.emit(build_families(config, chosen, options, obj.progress), as_json=as_json)


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
    obj = state(ctx, command="lock", as_json=as_json)
    obj.emit(lock_spec_to_file(offline_config(obj.config(), offline), spec, output, command=command_line(sys.argv[1:]),
                               progress=obj.progress), as_json=as_json)


@app.command("builds")
def builds(ctx: typer.Context, family: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """List a family's builds, newest first, with tombstones of deleted ones."""
    obj = state(ctx, command="builds", as_json=as_json)
    obj.emit(list_builds(obj.config(), family), as_json=as_json)


@app.command("diff")
def diff(ctx: typer.Context, build_a: str = typer.Argument(..., help="family/build-id or build id"),
         build_b: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Packages added, removed, upgraded or downgraded between two builds."""
    obj = state(ctx, command="diff", as_json=as_json)
    obj.emit(diff_builds(obj.config(), build_a, build_b), as_json=as_json)


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    family: str = typer.Argument(...),
    to: str = typer.Option(None, "--to", help="Build id to make latest (default: the previous good one)."),
    no_wait: bool = typer.Option(False, "--no-wait"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-point a family's latest to an earlier good build, atomically."""
    obj = state(ctx, command="rollback", as_json=as_json)
    obj.emit(rollback(obj.config(), family, to, wait=not no_wait, progress=obj.progress),
             as_json=as_json)
