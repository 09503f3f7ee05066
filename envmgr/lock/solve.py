"""Turn a spec into a lock: solve with rattler, describe the result as package sets.

The lock is the contract of a build: it names every package file with its
hashes, records the channels and the command that made it, and is written in
conda-lock's format so that other tools (``conda-lock render``/``install``) and
other sites can use it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envmgr import __version__
from envmgr._internal import _condalock, _rattler
from envmgr.config import DEMO_CHANNEL, Config
from envmgr.errors import BuildFailed, EnvironmentProblem, UsageError
from envmgr.lockfile import LockedPackage, PackageSet
from envmgr.credentials import activate as activate_credentials
from envmgr.define.personal import check_channels, check_lock_channels, check_lock_pip_sources
from envmgr.results import Progress, no_progress
from envmgr.define.spec import Spec
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the pip locker (packaging, uv) loads only for specs with pip: entries
    from .pip import PipNote

HOST_PLATFORM = "linux-64"


@dataclass
class Lock:
    """A solved (or read) lock: package sets per platform plus install records."""

    spec: Spec
    channels: list[str]  # resolved URLs, in priority order
    sets: dict[str, PackageSet]
    records: dict[str, list[Any]] = field(default_factory=dict)  # platform -> rattler records
    source: str = "solve"  # or the path of the lock file it was read from
    pip_notes: list[PipNote] = field(default_factory=list)  # pip requirements conda satisfies

    @property
    def host_set(self) -> PackageSet:
        return self.sets[HOST_PLATFORM]

    def to_json(self) -> dict[str, Any]:
        return {"family": self.spec.name, "channels": self.channels, "source": self.source,
                "platforms": {p: s.to_json() for p, s in self.sets.items()},
                "pip_satisfied_by_conda": [n.to_json() for n in self.pip_notes]}


def locked_package(record_dict: dict[str, Any]) -> LockedPackage:
    return LockedPackage(
        name=record_dict["name"], version=record_dict["version"], build=record_dict["build"],
        subdir=record_dict["subdir"], url=record_dict["url"], sha256=record_dict.get("sha256") or "",
        md5=record_dict.get("md5") or "", build_number=record_dict.get("build_number") or 0,
        depends=tuple(record_dict.get("depends") or ()), noarch=record_dict.get("noarch"),
        size=record_dict.get("size"))


def resolve_channels(config: Config, spec: Spec, progress: Progress = no_progress) -> list[str]:
    """The spec's channels through the site mapping; builds the demo channel if it is used."""
    check_channels(config, spec)  # personal specs: only the channels the site maps
    activate_credentials(config.credentials_file)  # rattler reads them for http(s) channels
    urls = [config.resolve_channel(name) for name in spec.channels]
    if DEMO_CHANNEL in spec.channels and DEMO_CHANNEL not in config.channels:
        ensure_demo_channel(config, progress)
    return urls


def ensure_demo_channel(config: Config, progress: Progress = no_progress) -> Path:
    from envmgr.channel.build import build_channel

    progress(f"preparing the local demo channel in {config.layout.demo_channel}")
    result = build_channel(config.layout.demo_channel)
    return Path(result.path)


def solve_spec(config: Config, spec: Spec, progress: Progress = no_progress) -> Lock:
    """Lock with the embedded rattler solver, or with the site's real conda-lock."""
    if config.solver == "conda-lock":
        return solve_with_conda_lock(config, spec, progress)
    channels = resolve_channels(config, spec, progress)
    sets: dict[str, PackageSet] = {}
    records: dict[str, list[Any]] = {}
    notes: list[PipNote] = []
    for platform in spec.platforms:
        progress(f"solving {spec.name} for {platform} ({len(spec.dependencies)} requested packages)")
        solved = _rattler.solve(list(spec.dependencies), channels, platform=platform)
        records[platform] = solved
        conda = PackageSet.of(platform, (locked_package(_rattler.record_to_dict(r)) for r in solved))
        pip, more = _lock_pip(config, spec, conda, progress)  # spec.pip (envmgr.lock.pip)
        sets[platform] = PackageSet.of(platform, [*conda.packages, *pip])
        for note in more:
            progress(note.line)
        notes += more
    lock = Lock(spec=spec, channels=channels, sets=sets, records=records, pip_notes=notes)
    _enforce_policy(config, lock.spec, lock.sets)  # the locked set, dependencies included (docs/policy.md)
    return lock


def _lock_pip(config: Config, spec: Spec, conda: PackageSet, progress: Progress
              ) -> tuple[list[LockedPackage], list[PipNote]]:
    if not spec.pip:
        return [], []
    from .pip import lock_pip

    return lock_pip(config, spec, conda, progress)


def _enforce_policy(config: Config, spec: Spec, sets: dict[str, PackageSet]) -> None:
    """``define.policy.enforce_policy``, loaded only on a site that enforces a policy file."""
    if config.policy_enforced is None:
        return
    from envmgr.define.policy import enforce_policy

    enforce_policy(config, spec, sets)


CONDA_LOCK_TIMEOUT = 3600


def solve_with_conda_lock(config: Config, spec: Spec, progress: Progress = no_progress) -> Lock:
    """Run the site's ``conda-lock lock`` (solver: conda-lock) and read its lock file back.

    Only for sites that have conda, mamba or micromamba: the configured command
    must name the executable with ``--conda`` (checked when the config is
    loaded), because conda-lock without one tries to download micromamba and
    hangs for about a minute on a machine without internet. The spec's channels
    go through the site mapping, as with rattler; installation stays rattler's.
    """
    channels = resolve_channels(config, spec, progress)
    command = list(config.conda_lock_command)
    if shutil.which(command[0]) is None:
        raise EnvironmentProblem(f"conda-lock command not found: {command[0]}",
                                 hint="install conda-lock, or fix conda_lock_command in the site config")
    with tempfile.TemporaryDirectory(prefix="envmgr-conda-lock-") as tmp:
        env_file, lock_file = Path(tmp) / "environment.yml", Path(tmp) / "conda-lock.yml"
        env_file.write_text(json.dumps({"name": spec.name, "channels": channels,
                                        "dependencies": [*spec.dependencies,
                                                         *([{"pip": list(spec.pip)}] if spec.pip else [])],
                                        "platforms": list(spec.platforms)}))  # JSON is YAML
        argv = [*command, "lock", "--file", str(env_file), "--lockfile", str(lock_file)]
        for platform in spec.platforms:
            argv += ["--platform", platform]
        progress(f"locking {spec.name} with {shlex.join(command)}")
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=CONDA_LOCK_TIMEOUT, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"conda-lock did not finish in {CONDA_LOCK_TIMEOUT} s") from None
        if proc.returncode != 0 or not lock_file.is_file():
            tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise BuildFailed(f"conda-lock failed (exit {proc.returncode}):\n  {tail}")
        return read_lock(config, spec, lock_file, progress)


def read_lock(config: Config, spec: Spec, path: Path, progress: Progress = no_progress) -> Lock:
    """A lock file as the build's input: exact packages, no solving."""
    sets, channels, _custom = _condalock.read_lockfile(path)
    if HOST_PLATFORM not in sets:
        raise UsageError(f"{path} has no packages for {HOST_PLATFORM} (it has: {', '.join(sets)})")
    if DEMO_CHANNEL in spec.channels:
        resolve_channels(config, spec, progress)
    activate_credentials(config.credentials_file)
    check_lock_channels(config, channels, str(path))
    check_lock_pip_sources(config, sets[HOST_PLATFORM].pip_packages, str(path))
    progress(f"reading {len(sets[HOST_PLATFORM].packages)} locked packages from {path}")
    _enforce_policy(config, spec, sets)
    records = {HOST_PLATFORM: _rattler.records_for_lock(list(sets[HOST_PLATFORM].conda_packages),
                                                        channels, HOST_PLATFORM)}
    return Lock(spec=spec, channels=channels, sets=sets, records=records, source=str(path))


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(["envmgr", *argv])


def write_lock(lock: Lock, path: Path, *, command: str) -> None:
    """Write conda-lock.yml; the file records the command and envmgr version that made it."""
    spec = lock.spec
    _condalock.write_lockfile(
        path, lock.sets, channels=lock.channels,
        sources=[str(spec.path) if spec.path else f"{spec.name}.yaml"],
        content_hash=spec.content_hash,
        custom={"envmgr_version": __version__, "envmgr_command": command,
                "envmgr_family": spec.name, "envmgr_spec_hash": spec.content_hash})
