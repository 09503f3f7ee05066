"""`envmgr build` and `envmgr lock`: choose specs, build each family, lock a spec to a file."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr.build.outcome import BuildOptions, BuildOutcome
from envmgr.build.pipeline import build_spec
from ..config import Config
from ..errors import EXIT_OK, UsageError
from envmgr.lock.solve import Lock, solve_spec, write_lock
from ..results import Progress, no_progress
from envmgr.define.spec import Spec, load_spec, load_specs

def find_specs(config: Config, names_or_paths: list[str], *, all_specs: bool) -> list[Spec]:
    """Specs named by path, or by family name in the configured specs directory."""
    if all_specs:
        if names_or_paths:
            raise UsageError("give spec names/paths or --all, not both")
        if not config.specs_dir.is_dir():
            raise UsageError(f"specs directory {config.specs_dir} does not exist",
                             hint="set specs_dir in the config, or run from the specs repository")
        return load_specs([config.specs_dir])
    if not names_or_paths:
        raise UsageError("name at least one spec (a path or a family name), or use --all")
    paths = [resolve_spec_path(config, item) for item in names_or_paths]
    return load_specs(paths)


def resolve_spec_path(config: Config, item: str) -> Path:
    path = Path(item)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in item:
        return path
    for suffix in (".yaml", ".yml"):
        candidate = config.specs_dir / f"{item}{suffix}"
        if candidate.is_file():
            return candidate
    if config.specs_dir.is_dir():
        for spec in load_specs([config.specs_dir]):
            if spec.name == item:
                return spec.path or candidate
    raise UsageError(f"no spec for family '{item}' in {config.specs_dir}",
                     hint="pass the spec file's path, or set specs_dir in the config")


def spec_beside_lock(lock_path: Path) -> Path | None:
    """``X.conda-lock.yml`` -> ``X.spec.yaml``; ``conda-lock.yml`` -> ``spec.yaml``."""
    name = lock_path.name
    stem = name.removesuffix(".conda-lock.yml") if name != "conda-lock.yml" else ""
    candidate = lock_path.with_name(f"{stem}.spec.yaml" if stem else "spec.yaml")
    return candidate if candidate.is_file() else None


@dataclass
class BuildReport:
    outcomes: list[BuildOutcome]

    @property
    def exit_code(self) -> int:
        return max((o.exit_code for o in self.outcomes), default=EXIT_OK)

    def to_json(self) -> dict[str, Any]:
        return {"builds": [o.to_json() for o in self.outcomes]}


def build_families(config: Config, specs: list[Spec], options: BuildOptions,
                   progress: Progress = no_progress) -> BuildReport:
    """Build each spec in turn; one failing family does not stop the others."""
    return BuildReport([build_spec(config, spec, options, progress) for spec in specs])


@dataclass
class LockResult:
    lock: Lock
    output: Path

    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), **self.lock.to_json()}


def lock_spec_to_file(config: Config, spec_path: Path, output: Path | None, *, command: str,
                      progress: Progress = no_progress) -> LockResult:
    spec = load_spec(spec_path)
    lock = solve_spec(config, spec, progress)
    target = output or spec_path.with_name(f"{spec.name}.conda-lock.yml")
    write_lock_atomically(lock, target, command=command)
    return LockResult(lock, target)


def write_lock_atomically(lock: Lock, target: Path, *, command: str) -> None:
    """Write under the final file name in a private temp dir, then rename into place.

    (conda-lock's writer puts the file's own name into its help comments, so
    the temporary file must already carry the final name.)
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".lock-", dir=target.parent))
    try:
        write_lock(lock, tmpdir / target.name, command=command)
        os.replace(tmpdir / target.name, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
