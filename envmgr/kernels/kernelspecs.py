"""Kernelspecs for environment families: what should exist, and writing it safely.

Per family there is one ``<family>-latest`` kernel, which follows the family's
``latest`` pointer, and one ``<family>-<release>`` kernel per stable release,
pinned to one build. Both run ``launcher.sh`` (which takes the build's lease and
execs the interpreter), because Jupyter re-uses the argv read at a kernel's
first start on every restart: only a launcher can move a restarted "latest"
kernel onto a new build.

Consequences that shape this module:

* The launcher is installed content-addressed as
  ``<kernels_dir>/.envmgr/launcher-<sha>.sh`` and never modified or deleted: a
  kernel started a year ago restarts with the launcher path it started with.
* Kernelspec directories must never be seen half-written or missing by a
  server listing them, and temp directories must never look like kernelspecs
  (jupyter_client lists *any* subdirectory holding a kernel.json, even with an
  invalid name). So staging happens under ``.envmgr/staging/`` (no kernel.json
  at its top), new kernelspecs appear with one rename, and existing ones are
  updated file by file with ``os.replace``, kernel.json last. (A whole-directory
  ``renameat2(RENAME_EXCHANGE)`` would not work on NFS, where kernels dirs of
  multi-host hubs often live; per-file replacement works everywhere.)
* Which kernels belong to a family is decided by ``metadata.envmgr.family`` in
  kernel.json, never by name prefix: family ``a`` must not remove ``a-b-latest``.

Templates live in ``envmgr/kernelspecs/<template>/`` (package data, so they ship
in the wheel). A template's kernel.json argv uses ``{prefix}`` for the build
prefix; it is written as ``@PREFIX@`` for the launcher to fill in, because
jupyter_client would replace ``{prefix}`` with the server's own sys.prefix.
Other template files (logos) are copied into each kernelspec.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any


from envmgr.errors import ConfigError, EnvironmentProblem, UsageError
from envmgr.fsutil import fsync_dir
from envmgr.layout import BUILD_ID_RE, LATEST, Layout
from envmgr.kernels.lease import ensure_lease

PREFIX_TOKEN = "@PREFIX@"
TEMPLATE_PREFIX = "{prefix}"
STATE_DIR = ".envmgr"  # inside a kernels dir; hidden and without kernel.json
SHELL = "/bin/sh"
FILE_MODE = 0o644
DIR_MODE = 0o755
SEPARATOR = " · "
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9_-]+$")


@dataclass(frozen=True)
class StableKernel:
    """A promoted release pinned to one build until ``support_until``."""

    release: str
    build_id: str
    built: str
    support_until: str


@dataclass(frozen=True)
class KernelFamily:
    """What the kernels of one environment family need to know about it.

    ``stable`` accepts StableKernel objects or (release, build_id, built,
    support_until) tuples. ``mem_limit_mib`` becomes the launcher's address-space
    limit. ``latest_build`` None means no good build yet: no latest kernel.
    """

    family: str
    display_name: str
    group: str = ""
    template: str = "python"
    env: Mapping[str, str] = field(default_factory=dict)
    mem_limit_mib: int | None = None
    latest_build: str | None = None
    latest_built: str | None = None
    stable: Sequence[StableKernel] = ()
    resources: Mapping[str, bytes] = field(default_factory=dict)  # extra files in every kernelspec

    def __post_init__(self) -> None:
        releases = tuple(r if isinstance(r, StableKernel) else StableKernel(*r) for r in self.stable)
        object.__setattr__(self, "stable", releases)
        object.__setattr__(self, "env", dict(self.env))


@dataclass(frozen=True)
class KernelSpecPlan:
    """One kernelspec directory to write: its name, kernel.json and resource files."""

    name: str
    kernel_json: Mapping[str, Any]
    resources: Mapping[str, bytes]

    @property
    def display_name(self) -> str:
        return self.kernel_json["display_name"]

    @property
    def envmgr(self) -> Mapping[str, Any]:
        return self.kernel_json["metadata"]["envmgr"]

    def files(self) -> dict[str, bytes]:
        """Every file of the kernelspec directory, by name."""
        text = json.dumps(self.kernel_json, indent=1, sort_keys=True, ensure_ascii=True)
        return {**self.resources, "kernel.json": text.encode("ascii") + b"\n"}


@dataclass
class SyncResult:
    """What ``sync_family_kernels`` did, by kernel name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    launcher: Path | None = None


# -- names and plans (pure) ----------------------------------------------------


# jupyter_client.kernelspec's rule (``_kernel_name_pat``, ``_kernel_name_description``), copied
# because importing jupyter_client costs ~0.17 s of every build run, an unchanged nightly's
# largest share (issue 14); tests/test_kernels.py checks both still agree with jupyter_client.
KERNEL_NAME_RE = re.compile(r"^[a-z0-9._\-]+$", re.IGNORECASE)
KERNEL_NAME_RULE = ("Kernel names can only contain ASCII letters and numbers and these separators:"
                    " - . _ (hyphen, period, and underscore).")


def kernel_name(family: str, suffix: str) -> str:
    """``<family>-<suffix>``, checked against Jupyter's kernel name rules.

    The one place names are validated. Lowercase is required on top of
    jupyter_client's rules because Jupyter lowercases names when it lists them.
    """
    name = f"{family}-{suffix}"
    if not KERNEL_NAME_RE.match(name) or name != name.lower():
        raise UsageError(
            f"kernel name {name!r} (family {family!r}, {suffix!r}) is invalid",
            hint=f"{KERNEL_NAME_RULE} envmgr also requires lowercase, "
                 "because Jupyter lowercases kernel names.")
    return name


def launcher_source() -> bytes:
    """The packaged launcher script."""
    return resources.files("envmgr.kernels").joinpath("launcher.sh").read_bytes()


def launcher_path(kernels_dir: Path) -> Path:
    """Where this version of the launcher lives in ``kernels_dir`` (content-addressed)."""
    digest = hashlib.sha256(launcher_source()).hexdigest()[:12]
    return Path(kernels_dir) / STATE_DIR / f"launcher-{digest}.sh"


def desired_kernels(layout: Layout, fam: KernelFamily, *, launcher: Path) -> list[KernelSpecPlan]:
    """The kernelspecs ``fam`` should have: latest (if built) and one per stable release.

    Pure apart from reading the packaged template. ``launcher`` is the installed
    launcher path (``launcher_path(kernels_dir)``). Raises UsageError for bad
    names, build ids, env vars, memory limits or templates.
    """
    _check_family(layout, fam)
    template, files = _load_template(fam.template)
    plans = []
    if fam.latest_build is not None:
        plans.append(_plan(layout, fam, template, files, launcher, None))
    for rel in fam.stable:
        plans.append(_plan(layout, fam, template, files, launcher, (rel, rel.release)))
    seen: set[str] = set()
    for plan in plans:
        if plan.name in seen:
            raise UsageError(f"family {fam.family!r} would have two kernels named {plan.name!r}",
                             hint="release names must be unique and not 'latest'")
        seen.add(plan.name)
    return plans


def _plan(layout: Layout, fam: KernelFamily, template: Mapping[str, Any], files: Mapping[str, bytes],
          launcher: Path, stable: tuple[StableKernel, str] | None) -> KernelSpecPlan:
    if stable is None:
        name = kernel_name(fam.family, LATEST)
        target = layout.latest_link(fam.family)
        label = LATEST
        info = {"channel": "latest", "release": None, "build_id": fam.latest_build,
                "built": fam.latest_built, "support_until": None}
    else:
        rel, label = stable
        name = kernel_name(fam.family, rel.release)
        target = layout.prefix(fam.family, rel.build_id)
        info = {"channel": "stable", "release": rel.release, "build_id": rel.build_id,
                "built": rel.built, "support_until": rel.support_until}
    envmgr = {"v": 1, "family": fam.family, "group": fam.group, "display_name": fam.display_name, **info}
    spec: dict[str, Any] = {
        "argv": _launcher_argv(layout, fam, launcher, target, template["argv"]),
        "display_name": f"{fam.display_name}{SEPARATOR}{label}",
        "language": template["language"],
        "metadata": {**template.get("metadata", {}), **conda_env_keys(layout, target, template),
                     "envmgr": envmgr},
    }
    if "interrupt_mode" in template:
        spec["interrupt_mode"] = template["interrupt_mode"]
    if fam.env:
        spec["env"] = dict(sorted(fam.env.items()))
    return KernelSpecPlan(name, spec, {**files, **fam.resources})


def conda_env_keys(layout: Layout, target: Path, template: Mapping[str, Any]) -> dict[str, str]:
    """The top-level metadata nb_conda_kernels writes, which JupyterLab launcher tools read.

    ``conda_env_path`` is what the kernel runs in (the ``latest`` link for the
    latest kernel, the pinned prefix for a stable one); ``conda_env_name`` is
    that path below the envs directory (``csx/latest``, ``csx/<build-id>``), as
    nb_conda_kernels names environments below ``envs/``; ``conda_language`` is
    the language's display name ("Python", "R").
    """
    language = str(template.get("language", ""))
    shown = {"python": "Python", "r": "R", "julia": "Julia"}.get(language.lower(), language.capitalize())
    return {"conda_env_path": str(target),
            "conda_env_name": Path(target).relative_to(layout.envs_dir).as_posix(),
            "conda_language": shown}


def _launcher_argv(layout: Layout, fam: KernelFamily, launcher: Path, target: Path,
                   template_argv: Sequence[str]) -> list[str]:
    """argv of a kernelspec: the launcher, its options, then the template's argv."""
    argv = [SHELL, str(launcher), "--lease-dir", str(layout.lease_dir(fam.family))]
    if fam.mem_limit_mib is not None:
        argv += ["--mem-kib", str(fam.mem_limit_mib * 1024)]
    argv += ["--", str(target)]
    return argv + [arg.replace(TEMPLATE_PREFIX, PREFIX_TOKEN) for arg in template_argv]


def _check_family(layout: Layout, fam: KernelFamily) -> None:
    """Reject input that would produce a broken or unsafe kernelspec."""
    if not Path(layout.root).is_absolute():
        raise UsageError(f"the envmgr root must be an absolute path, not {str(layout.root)!r}")
    kernel_name(fam.family, LATEST)
    builds = ([fam.latest_build] if fam.latest_build is not None else []) + [r.build_id for r in fam.stable]
    for build_id in builds:
        if not BUILD_ID_RE.match(build_id):
            raise UsageError(f"{build_id!r} is not a build id (family {fam.family!r})")
    for rel in fam.stable:
        if rel.release.lower() == LATEST:
            raise UsageError(f"family {fam.family!r}: a stable release cannot be called 'latest'")
    for key, value in fam.env.items():
        if not _ENV_NAME_RE.match(key) or not isinstance(value, str):
            raise UsageError(f"family {fam.family!r}: bad environment variable {key!r}={value!r}",
                             hint="names are letters, digits and _; values are strings")
    mib = fam.mem_limit_mib
    if mib is not None and (isinstance(mib, bool) or not isinstance(mib, int) or mib <= 0):
        raise UsageError(f"family {fam.family!r}: memory limit must be a positive number of MiB, not {mib!r}")


def _load_template(name: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A template's kernel.json and its other files (logos)."""
    base = resources.files("envmgr.kernels").joinpath("templates")
    if not _TEMPLATE_NAME_RE.match(name) or not base.joinpath(name, "kernel.json").is_file():
        known = sorted(t.name for t in base.iterdir() if t.joinpath("kernel.json").is_file())
        raise UsageError(f"unknown kernel template {name!r}", hint=f"known templates: {', '.join(known)}")
    folder = base.joinpath(name)
    spec = json.loads(folder.joinpath("kernel.json").read_text(encoding="utf-8"))
    files = {f.name: f.read_bytes() for f in folder.iterdir()
             if f.is_file() and f.name != "kernel.json" and not f.name.startswith(".")}
    return spec, files


# -- reading what is installed ---------------------------------------------------


def installed_kernels(kernels_dir: Path, family: str | None = None) -> dict[str, dict[str, Any]]:
    """envmgr-managed kernelspecs in ``kernels_dir``: name -> ``metadata.envmgr``.

    With ``family``, only that family's (by metadata, not by name).
    """
    found = {}
    if not Path(kernels_dir).is_dir():
        return found
    for entry in sorted(Path(kernels_dir).iterdir()):
        if entry.name.startswith("."):
            continue
        meta = _envmgr_metadata(entry)
        if meta is not None and (family is None or meta.get("family") == family):
            found[entry.name] = meta
    return found


def _envmgr_metadata(kernel_dir: Path) -> dict[str, Any] | None:
    """``metadata.envmgr`` of a kernelspec dir, or None if it is not envmgr's."""
    if kernel_dir.is_symlink() or not kernel_dir.is_dir():
        return None
    try:
        spec = json.loads((kernel_dir / "kernel.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    meta = spec.get("metadata", {}) if isinstance(spec, dict) else {}
    envmgr = meta.get("envmgr") if isinstance(meta, dict) else None
    return envmgr if isinstance(envmgr, dict) else None


# -- writing -----------------------------------------------------------------------


def sync_family_kernels(kernels_dir: Path, layout: Layout, fam: KernelFamily) -> SyncResult:
    """Make ``kernels_dir`` hold exactly ``fam``'s desired kernelspecs.

    Writes or updates each one atomically, removes the family's kernelspecs that
    are no longer desired (retired releases), leaves everything else alone and
    refuses (ConfigError, before writing anything) to overwrite a kernelspec that
    envmgr does not manage for this family. Safe to re-run; cleans leftovers of
    an interrupted run. Also makes sure every referenced build has its lease
    file: kernels of ordinary users cannot create it, and without it they refuse
    to start.
    """
    kernels_dir = Path(kernels_dir)
    launcher = launcher_path(kernels_dir)
    plans = desired_kernels(layout, fam, launcher=launcher)
    result = SyncResult(launcher=launcher)
    with _sync_lock(kernels_dir) as staging:
        _check_ownership(kernels_dir, fam.family, plans)
        for build_id in {p.envmgr["build_id"] for p in plans}:
            ensure_lease(layout, fam.family, build_id)
        _install_launcher(launcher)
        for plan in plans:
            outcome = _write_kernel(kernels_dir / plan.name, plan.files(), staging)
            getattr(result, outcome).append(plan.name)
        wanted = {p.name for p in plans}
        for name in installed_kernels(kernels_dir, fam.family):
            if name not in wanted:
                _remove_dir(kernels_dir / name, staging)
                result.removed.append(name)
    return result


def remove_family_kernels(kernels_dir: Path, family: str) -> list[str]:
    """Remove every kernelspec of ``family`` (by metadata); returns their names.

    The launcher stays: kernels still running on this family restart with it
    (and are then refused cleanly if their build is gone).
    """
    kernels_dir = Path(kernels_dir)
    if not kernels_dir.is_dir():
        return []
    removed = []
    with _sync_lock(kernels_dir) as staging:
        for name in installed_kernels(kernels_dir, family):
            _remove_dir(kernels_dir / name, staging)
            removed.append(name)
    return removed


@contextmanager
def _sync_lock(kernels_dir: Path) -> Iterator[Path]:
    """Serialise writers of one kernels dir and clear crash leftovers; yields the staging dir.

    Holding the lock, nothing else is staging, so everything left in the
    staging dir is debris from an interrupted run.
    """
    state = kernels_dir / STATE_DIR
    staging = state / "staging"
    try:
        for d in (kernels_dir, state, staging):
            d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(state, DIR_MODE)  # kernels of every user read the launcher in here
        fd = os.open(state / "sync.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise _problem(f"cannot prepare kernels dir {kernels_dir}", exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for leftover in staging.iterdir():
            _rmtree(leftover)
        yield staging
    finally:
        os.close(fd)


def _check_ownership(kernels_dir: Path, family: str, plans: Sequence[KernelSpecPlan]) -> None:
    for plan in plans:
        path = kernels_dir / plan.name
        if not os.path.lexists(path):
            continue
        meta = _envmgr_metadata(path)
        if meta is None or meta.get("family") != family:
            owner = ("is not managed by envmgr" if meta is None
                     else f"belongs to family {meta.get('family')!r}")
            raise ConfigError(f"kernelspec {path} {owner}; refusing to overwrite it",
                              hint="remove or rename it, or rename the family")


def _install_launcher(launcher: Path) -> None:
    """Install the launcher once; its path is content-addressed, so never rewrite a good one."""
    data = launcher_source()
    try:
        if launcher.is_file() and launcher.read_bytes() == data:
            return
        tmp = launcher.with_name(f".{launcher.name}.tmp-{secrets.token_hex(4)}")
        _write_file(tmp, data, 0o755)
        os.replace(tmp, launcher)
    except OSError as exc:
        raise _problem(f"cannot install the kernel launcher at {launcher}", exc) from exc


def _write_kernel(target: Path, files: Mapping[str, bytes], staging: Path) -> str:
    """Write one kernelspec dir atomically; returns created, updated or unchanged."""
    try:
        if not target.exists():
            stage = _stage(staging, target.name, files)
            os.rename(stage, target)  # appears complete, in one step
            fsync_dir(target.parent)
            return "created"
        os.chmod(target, DIR_MODE)
        changed = {name: data for name, data in files.items() if not _same_file(target / name, data)}
        extras = [p for p in target.iterdir() if p.name not in files]
        if not changed and not extras:
            return "unchanged"
        stage = _stage(staging, target.name, changed)
        for name in sorted(changed, key=lambda n: n == "kernel.json"):  # kernel.json last
            os.replace(stage / name, target / name)
        for extra in extras:
            _rmtree(extra)
        fsync_dir(target)
        stage.rmdir()
        return "updated"
    except OSError as exc:
        raise _problem(f"cannot write kernelspec {target}", exc) from exc


def _stage(staging: Path, name: str, files: Mapping[str, bytes]) -> Path:
    """A fresh directory under staging/ holding ``files``, with final permissions."""
    stage = staging / f"{name}-{secrets.token_hex(4)}"
    stage.mkdir(mode=DIR_MODE)
    os.chmod(stage, DIR_MODE)
    for fname, data in files.items():
        _write_file(stage / fname, data, FILE_MODE)
    return stage


def _same_file(path: Path, data: bytes) -> bool:
    try:
        st = path.lstat()
        return (stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == FILE_MODE
                and st.st_size == len(data) and path.read_bytes() == data)
    except FileNotFoundError:
        return False


def _remove_dir(path: Path, staging: Path) -> None:
    """Make a kernelspec disappear in one step (rename away), then delete it."""
    gone = staging / f"removed-{path.name}-{secrets.token_hex(4)}"
    try:
        os.rename(path, gone)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _problem(f"cannot remove kernelspec {path}", exc) from exc
    _rmtree(gone)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # not subject to the umask: world-readable, not world-writable
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _problem(what: str, exc: OSError) -> EnvironmentProblem:
    return EnvironmentProblem(f"{what}: {exc.strerror or exc}",
                              hint="check that the kernels dir is writable by the envmgr admin")
