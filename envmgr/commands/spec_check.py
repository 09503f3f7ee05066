"""Validate spec files and report every problem at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

from ..errors import EXIT_OK, EXIT_USAGE
from ..kernelenv import env_problems
from ..spec import Problem, Spec, SpecError, load_specs


@dataclass(frozen=True)
class SpecCheckResult:
    specs: list[Spec]
    problems: list[Problem]

    @property
    def exit_code(self) -> int:
        return EXIT_USAGE if self.problems else EXIT_OK

    def to_json(self) -> dict:
        return {"valid": not self.problems,
                "specs": [{"name": s.name, "path": str(s.path), "content_hash": s.content_hash}
                          for s in self.specs],
                "problems": [p.to_json() for p in self.problems]}

    def render(self) -> Iterable[Text]:
        for problem in self.problems:
            yield Text(str(problem), style="red")
        for spec in self.specs:
            yield Text(f"ok  {spec.path}  ({spec.name}, {len(spec.dependencies)} dependencies)")
        if self.problems:
            yield Text(f"{len(self.problems)} problem(s) found", style="bold red")


def check_specs(paths: list[Path], env_allowed: tuple[str, ...] = ()) -> SpecCheckResult:
    """Validate the files, then refuse kernel env settings the site does not allow (kernelenv)."""
    try:
        specs = load_specs(paths)
    except SpecError as exc:
        return SpecCheckResult(specs=[], problems=exc.problems)
    problems = [p for spec in specs for p in env_problems(spec, env_allowed)]
    return SpecCheckResult(specs=[] if problems else specs, problems=problems)
