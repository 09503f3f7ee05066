"""`envmgr notebooks check` and `migrate`: notebooks across kernel retirements.

``check`` says, per notebook, which kernel it names and what became of it
(latest, stable until D, expiring, expired, retired, unknown), and which build
it last ran on (``metadata.envmgr.build``, written by the JupyterLab extension
on save) and whether that build still exists or is a tombstone.

``migrate`` moves notebooks off a retired, expired or expiring kernel onto its
successor (``retired.json`` next to the kernels, or the family's next stable
release, else latest) or onto ``--to``. It rewrites only ``metadata.kernelspec``
(name, display_name, language) and records the old name in
``metadata.envmgr.migrated_from``. Everything is planned first; a notebook that
cannot be read or has nowhere to go aborts the whole run before any file is
written. Each file is replaced atomically (temporary file in the same folder,
then ``os.replace``) with its mode and owner kept, and only if nobody changed it
since it was read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envmgr.catalog import records
from envmgr.catalog.stable import EXPIRY_WARNING_DAYS
from envmgr.config import Config
from envmgr.errors import EXIT_FAILURE, EXIT_OK, EnvironmentProblem, UsageError
from envmgr.fsutil import fsync_dir
from envmgr.kernels import retired
from envmgr.kernels.kernelspecs import installed_kernels

CHECKPOINTS = ".ipynb_checkpoints"
BLOCK_VERSION = 1
MOVABLE = ("retired", "expired", "expiring")  # states `migrate` moves without --to
STATES = ("latest", "stable", "expiring", "expired", "retired", "unknown", "none")


@dataclass(frozen=True)
class KernelState:
    """What became of the kernel a notebook names."""

    name: str | None
    state: str  # latest | stable | expiring | expired | retired | unknown | none
    family: str | None = None
    release: str | None = None
    until: str | None = None
    successor: str | None = None
    successor_display_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "family": self.family, "release": self.release,
                "until": self.until, "successor": self.successor,
                "successor_display_name": self.successor_display_name}

    def describe(self) -> str:
        if self.state == "stable":
            return f"stable until {self.until}"
        if self.state in ("expiring", "expired"):
            return f"{self.state} {self.until}"
        return self.state


@dataclass
class NotebookReport:
    path: Path
    kernel: KernelState
    last_family: str | None = None
    last_build: str | None = None
    build_state: str | None = None  # exists | tombstone | missing (no record) | None (not recorded)
    migrated_from: str | None = None
    action: str | None = None  # migrate only: migrated | would-migrate | unchanged
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "kernel": self.kernel.to_json(),
                "last_run": {"family": self.last_family, "build": self.last_build,
                             "build_state": self.build_state},
                "migrated_from": self.migrated_from, "action": self.action, "target": self.target}


@dataclass
class NotebooksResult:
    command: str  # check | migrate
    notebooks: list[NotebookReport] = field(default_factory=list)
    dry_run: bool = False
    fail_on: tuple[str, ...] = ()  # check --fail-on: kernel states that make the check fail (exit 1)

    @property
    def failing(self) -> list[NotebookReport]:
        return [nb for nb in self.notebooks if nb.kernel.state in self.fail_on]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if self.failing else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for nb in self.notebooks:
            key = nb.action if self.command == "migrate" else nb.kernel.state
            states[key or "none"] = states.get(key or "none", 0) + 1
        return {"dry_run": self.dry_run, "notebooks": [n.to_json() for n in self.notebooks],
                "summary": states, "fail_on": list(self.fail_on),
                "failing": [str(nb.path) for nb in self.failing]}


# -- finding and reading notebooks ------------------------------------------------------------


def find_notebooks(paths: Sequence[Path]) -> list[Path]:
    """Files given, and every *.ipynb under directories given (not in .ipynb_checkpoints)."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb")
                            if CHECKPOINTS not in p.relative_to(path).parts and p.is_file())
        else:
            found.append(path)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class _Loaded:
    path: Path
    nb: Any  # nbformat.NotebookNode
    stat: os.stat_result


def _read(path: Path) -> _Loaded:
    import nbformat

    try:
        st = path.stat()
        with path.open(encoding="utf-8") as handle:
            nb = nbformat.read(handle, as_version=nbformat.NO_CONVERT)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a notebook ({exc})") from None
    if nb.get("nbformat") != 4:
        raise ValueError(f"{path}: nbformat {nb.get('nbformat')} (only version 4 notebooks are handled; "
                         "open and save it in Jupyter first)")
    return _Loaded(path, nb, st)


def _read_all(paths: Sequence[Path]) -> list[_Loaded]:
    loaded, problems = [], []
    for path in find_notebooks(paths):
        try:
            loaded.append(_read(path))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise UsageError("some notebooks cannot be read; nothing was changed:\n  " + "\n  ".join(problems))
    return loaded


# -- what became of a kernel ------------------------------------------------------------------


@dataclass(frozen=True)
class KernelIndex:
    """Installed envmgr kernels and retired releases, read once per run."""

    installed: dict[str, dict[str, Any]]
    retired: dict[str, retired.Retirement]
    today: dt.date
    notice_days: int = EXPIRY_WARNING_DAYS

    @classmethod
    def load(cls, config: Config, today: dt.date | None = None) -> KernelIndex:
        kernels_dir = Path(config.kernels_dir)
        return cls(installed_kernels(kernels_dir), retired.load(kernels_dir), today or dt.date.today())

    def state_of(self, name: str | None) -> KernelState:
        if not name:
            return KernelState(None, "none")
        if name in self.retired:
            r = self.retired[name]
            return KernelState(name, "retired" if r.reason == "retired" else "expired", r.family,
                               r.release, r.until, r.successor, r.successor_display_name)
        meta = self.installed.get(name)
        if meta is None:
            return KernelState(name, "unknown")
        family, release, until = meta.get("family"), meta.get("release"), meta.get("support_until")
        if meta.get("channel") != "stable" or not release:
            return KernelState(name, "latest", family)
        state = "stable"
        if until:
            days = (dt.date.fromisoformat(until) - self.today).days
            state = "expired" if days < 0 else "expiring" if days <= self.notice_days else "stable"
        successor = self._successor(family, release) if state != "stable" else None
        return KernelState(name, state, family, release, until, successor.name if successor else None,
                           successor.display_name if successor else None)

    def _successor(self, family: str | None, release: str) -> retired.LiveKernel | None:
        live = []
        for name, meta in self.installed.items():
            if meta.get("family") != family:
                continue
            display = f"{meta.get('display_name', family)} · {meta.get('release') or 'latest'}"
            rel = meta.get("release") if meta.get("channel") == "stable" else None
            live.append(retired.LiveKernel(name, display, rel, meta.get("support_until")))
        return retired.successor_of(release, live, self.today, self.notice_days)


def _report(config: Config, index: KernelIndex, item: _Loaded) -> NotebookReport:
    meta = item.nb.get("metadata", {})
    name = (meta.get("kernelspec") or {}).get("name")
    block = meta.get("envmgr") if isinstance(meta.get("envmgr"), dict) else {}
    report = NotebookReport(item.path, index.state_of(name), block.get("family"), block.get("build"),
                            migrated_from=block.get("migrated_from"))
    if report.last_family and report.last_build:
        report.build_state = _build_state(config, report.last_family, report.last_build)
    return report


def _build_state(config: Config, family: str, build_id: str) -> str:
    record = records.load(config.layout, family, build_id)
    if record is None:
        return "missing"
    if record.deleted or not config.layout.prefix(family, build_id).is_dir():
        return "tombstone"
    return "exists"


# -- the commands -----------------------------------------------------------------------------


def parse_fail_on(text: str | None) -> tuple[str, ...]:
    """``retired,expired`` -> the states; every name must be one ``check`` reports (exit 2)."""
    states = tuple(dict.fromkeys(s.strip() for s in (text or "").split(",") if s.strip()))
    if bad := [s for s in states if s not in STATES]:
        raise UsageError(f"--fail-on: unknown kernel state {', '.join(map(repr, bad))}",
                         hint=f"states: {', '.join(STATES)} (comma-separated)")
    return states


def check(config: Config, paths: Sequence[Path], today: dt.date | None = None,
          fail_on: Sequence[str] = ()) -> NotebooksResult:
    """Each notebook's kernel and its state; ``fail_on`` states make the result exit 1 (CI gates)."""
    index = KernelIndex.load(config, today)
    return NotebooksResult("check", [_report(config, index, item) for item in _read_all(paths)],
                           fail_on=tuple(fail_on))


@dataclass(frozen=True)
class TargetKernel:
    name: str
    display_name: str
    language: str


def target_kernel(config: Config, name: str) -> TargetKernel:
    """A kernelspec to migrate to: envmgr's kernels dir first, then every Jupyter kernel path."""
    spec_file = Path(config.kernels_dir) / name / "kernel.json"
    try:
        data = json.loads(spec_file.read_text(encoding="utf-8"))
        return TargetKernel(name, data["display_name"], data.get("language", ""))
    except (OSError, ValueError, KeyError):
        pass
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise UsageError(f"--to {name}: no such kernel in {config.kernels_dir} or on the Jupyter path",
                         hint="`jupyter kernelspec list` shows the kernels") from None
    return TargetKernel(name, spec.display_name, spec.language)


def migrate(config: Config, paths: Sequence[Path], *, to: str | None = None, dry_run: bool = False,
            today: dt.date | None = None) -> NotebooksResult:
    index = KernelIndex.load(config, today)
    forced = target_kernel(config, to) if to else None
    loaded = _read_all(paths)
    plans: list[tuple[_Loaded, NotebookReport, TargetKernel | None]] = []
    stuck = []
    for item in loaded:
        report = _report(config, index, item)
        target = forced
        if target is None and report.kernel.state in MOVABLE:
            if report.kernel.successor is None:
                stuck.append(f"{item.path}: kernel {report.kernel.name} is {report.kernel.state} "
                             "and its family has no kernel left")
                continue
            target = target_kernel(config, report.kernel.successor)
        if target is not None and target.name == report.kernel.name:
            target = None
        plans.append((item, report, target))
    if stuck:
        raise UsageError("nowhere to migrate some notebooks; nothing was changed:\n  " + "\n  ".join(stuck),
                         hint="name a kernel with --to")
    result = NotebooksResult("migrate", dry_run=dry_run)
    for item, report, target in plans:
        if target is None:
            report.action = "unchanged"
        else:
            text = migrated_text(item.nb, target)
            if not dry_run:
                replace_file(item.path, text, item.stat)
            report.action, report.target = ("would-migrate" if dry_run else "migrated"), target.name
        result.notebooks.append(report)
    return result


def migrated_text(nb: Any, target: TargetKernel) -> str:
    """The notebook on ``target``: only kernelspec's three keys and envmgr.migrated_from change."""
    import nbformat

    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a copy; the plan stays as read
    meta = nb.setdefault("metadata", {})
    old = dict(meta.get("kernelspec") or {})
    meta["kernelspec"] = {**old, "name": target.name, "display_name": target.display_name,
                          "language": target.language or old.get("language", "")}
    block = meta.get("envmgr") if isinstance(meta.get("envmgr"), dict) else {}
    meta["envmgr"] = {**block, "v": block.get("v", BLOCK_VERSION), "migrated_from": old.get("name")}
    nbformat.validate(nb)
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def replace_file(path: Path, text: str, read_stat: os.stat_result) -> None:
    """Replace ``path`` atomically, keeping its mode and owner; refuse if it changed since read."""
    now = path.stat()
    if (now.st_ino, now.st_size, now.st_mtime_ns) != (read_stat.st_ino, read_stat.st_size,
                                                       read_stat.st_mtime_ns):
        raise UsageError(f"{path} changed while it was being migrated; it was left as it is",
                         hint="run the command again")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".envmgr-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), stat.S_IMODE(now.st_mode))
            if (now.st_uid, now.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(handle.fileno(), now.st_uid, now.st_gid)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EnvironmentProblem(f"cannot rewrite {path} keeping its mode and owner: "
                                 f"{exc.strerror or exc}",
                                 hint="run as the notebook's owner (or root)") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

