"""`envmgr spec ...`: validate spec files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Text

from ._app import JSON_OPTION, app, state

if TYPE_CHECKING:
    from envmgr.define.check import SpecCheckResult
    from envmgr.lock.policy_check import PolicyCheckResult

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
        from envmgr.lock.policy_check import check_specs_against_policy

        obj.emit(check_specs_against_policy(obj.config(), paths, policy, obj.progress), render_policy_check,
                 as_json=as_json)
        return
    from envmgr.define.check import check_specs  # validates match specs with py-rattler

    obj.emit(check_specs(paths, obj.config().kernel_env_allow), render_spec_check, as_json=as_json)


def render_spec_check(result: SpecCheckResult) -> Iterable[Any]:
    for problem in result.problems:
        yield Text(str(problem), style="red")
    for spec in result.specs:
        yield Text(f"ok  {spec.path}  ({spec.name}, {len(spec.dependencies)} dependencies)")
    if result.problems:
        yield Text(f"{len(result.problems)} problem(s) found", style="bold red")


def render_policy_check(result: PolicyCheckResult) -> Iterable[Any]:
    for problem in result.problems:
        yield Text(str(problem), style="red")
    for fam in result.families:
        if fam.error is not None:
            yield Text(f"error  {fam.family}: {fam.error.message}", style="red")
            if fam.error.hint:
                yield Text(f"  hint: {fam.error.hint}", style="yellow")
        elif fam.violations:
            yield Text(f"refused  {fam.family}: {len(fam.violations)} of {fam.packages} locked "
                       f"packages are not allowed by {result.policy_path}", style="bold red")
            for v in fam.violations:
                yield Text(f"  {v.line()}", style="red")
        else:
            yield Text(f"ok  {fam.family}  ({fam.packages} locked packages allowed)")
    if result.problems:
        yield Text(f"{len(result.problems)} problem(s) found", style="bold red")
