"""Validate spec files and report every problem at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from ..errors import EXIT_OK, EXIT_USAGE
from envmgr.define.spec import Problem, Spec, SpecError, load_specs


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


def check_specs(paths: list[Path]) -> SpecCheckResult:
    try:
        return SpecCheckResult(specs=load_specs(paths), problems=[])
    except SpecError as exc:
        return SpecCheckResult(specs=[], problems=exc.problems)
