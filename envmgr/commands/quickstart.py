"""`envmgr quickstart`: the whole lifecycle once, on embedded defaults, with no conda.

Builds the local demo channel, builds the example spec into the (per-user)
root, registers its kernel, and says what it did and what to try next.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text

from ..build import BuildOptions, BuildOutcome, build_spec
from ..config import Config
from ..errors import UsageError
from ..results import Progress, no_progress
from ..spec import load_spec

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

    def render(self) -> Iterable[Any]:
        o, cfg = self.outcome, self.config
        if o.status == "failed":
            yield Text(f"quickstart failed: {o.error}", style="bold red")
            if o.hint:
                yield Text(f"hint: {o.hint}", style="yellow")
            return
        latest = cfg.layout.latest_link(o.family)
        yield Text(f"✓ {o.family}: {o.message}", style="green")
        yield Text(f"  root:        {cfg.root}")
        yield Text(f"  prefix:      {o.prefix}  ({o.package_count} packages)")
        yield Text(f"  latest:      {latest} -> {o.build_id}")
        yield Text(f"  kernels:     {', '.join(o.kernels) or '(none)'} in {cfg.kernels_dir}")
        yield Text("Try:", style="bold")
        yield Text(f"  {o.prefix}/bin/python -c 'import ipykernel, sys; print(sys.prefix)'")
        yield Text("  jupyter kernelspec list          # shows " + ", ".join(o.kernels))
        yield Text(f"  envmgr builds {o.family}            # history, with package counts")
        yield Text(f"  envmgr build {SOURCE_EXAMPLE if SOURCE_EXAMPLE.exists() else 'SPEC'}  "
                   "# again: 'unchanged', nothing built")


def quickstart(config: Config, spec_path: Path | None = None,
               progress: Progress = no_progress) -> QuickstartResult:
    spec = load_spec(spec_path or example_spec_path())
    outcome = build_spec(config, spec, BuildOptions(command="envmgr quickstart"), progress)
    return QuickstartResult(config, outcome)


__all__ = ["QuickstartResult", "quickstart"]
