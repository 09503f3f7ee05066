"""`envmgr quickstart`: the whole lifecycle once, on embedded defaults, with no conda.

Builds the local demo channel, builds the example spec into the (per-user)
root, registers its kernel, and says what it did and what to try next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


from envmgr.build.outcome import BuildOptions, BuildOutcome
from envmgr.build.pipeline import build_spec
from ..config import Config
from ..errors import UsageError
from ..results import Progress, no_progress
from envmgr.define.spec import load_spec

PACKAGED_EXAMPLE = Path(__file__).resolve().parent.parent / "_data" / "example.yaml"
SOURCE_EXAMPLE = Path(__file__).resolve().parent.parent.parent / "specs" / "example.yaml"


def example_spec_path() -> Path:
    """The example spec: shipped in the wheel, or the repository's (editable installs)."""
    for candidate in (PACKAGED_EXAMPLE, SOURCE_EXAMPLE):
        if candidate.is_file():
            return candidate
    raise UsageError("the example spec is missing from this installation",
                     hint="pass one: envmgr quickstart --spec specs/example.yaml")


@dataclass
class QuickstartResult:
    config: Config
    outcome: BuildOutcome

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    def to_json(self) -> dict[str, Any]:
        return {"root": str(self.config.root), "kernels_dir": str(self.config.kernels_dir),
                "build": self.outcome.to_json()}


def quickstart(config: Config, spec_path: Path | None = None,
               progress: Progress = no_progress) -> QuickstartResult:
    spec = load_spec(spec_path or example_spec_path())
    outcome = build_spec(config, spec, BuildOptions(command="envmgr quickstart"), progress)
    return QuickstartResult(config, outcome)


__all__ = ["QuickstartResult", "quickstart"]
