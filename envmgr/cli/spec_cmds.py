"""`envmgr spec ...`: validate spec files."""

from __future__ import annotations

from pathlib import Path

import typer

from ..commands.spec_check import check_specs
from ._app import JSON_OPTION, app, state

spec_app = typer.Typer(help="Validate environment specs.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")


@spec_app.command("check")
def spec_check(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Spec files or directories of specs."),
    policy: Path = typer.Option(None, "--policy", help="Also solve each spec and check its locked "
                                "packages against this package policy (exit 3 if refused)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Validate specs; exit 2 and name file:line:column:key for every problem."""
    obj = state(ctx, command="spec check", as_json=as_json)
    if policy is not None:
        from ..commands.policy_check import check_specs_against_policy

        obj.emit(check_specs_against_policy(obj.config(), paths, policy, obj.progress), as_json=as_json)
        return
    obj.emit(check_specs(paths, obj.config().kernel_env_allow), as_json=as_json)
