"""Build the local ``file://`` conda channel envmgr solves against.

No conda channel is reachable from the hubs envmgr targets, so the channel is
made locally from what is at hand:

* a venv-style ``python`` package pointing at the host interpreter (plus
  ``python_abi``), so prefixes get a Python without copying one;
* Python distributions installed in the running environment (by default
  ``ipykernel``, ``pip`` and everything they need at runtime), repacked from
  their ``RECORD``; and/or wheel files;
* tiny generated demo packages (``envmgr-demo-a``/``-b``) whose versions tests
  and demos bump to simulate "upstream released a new version";
* where the host has R (Debian ``r-base-core``, ``r-cran-irkernel``): ``r-base``
  and ``r-irkernel`` wrapping it (``_internal._rhost``), for R kernels.

The channel is content-keyed: a key over (envmgr version, converter version,
host Python, distribution names+versions, wheel hashes, demo set) is stored in
the channel; a build whose key matches returns at once. Otherwise the channel
is built in a sibling directory under a lock and published by atomically
replacing the ``dest`` symlink, so readers never see a half-built channel and
a killed build leaves the previous one intact. ``dest`` is therefore a
relative symlink to ``.<name>.v-<id>`` next to it; use it as a directory, do
not ``rmtree`` it.

This module plans, caches and assembles the channel; the pieces live in
``envmgr._internal``: ``_interp`` (probing the target Python), ``_pydists``
(reading distributions and wheels, converting them to conda packages),
``_condapkg`` (writing package archives) and ``_publish`` (the lock and the
publish-by-rename of ``dest``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock

from envmgr import __version__
from envmgr._internal import _rattler
from envmgr.channel._condapkg import (
    CondaPackage,
    PkgFile,
    conda_version,
    default_extension,
    normalize_name,
    write_package,
)
from envmgr.channel._interp import PLATFORM, Interpreter, interpreter_info
from envmgr.channel._publish import LOCK_TIMEOUT_S as LOCK_TIMEOUT_S
from envmgr.channel._rhost import HostR, probe_host_r, r_packages
from envmgr.channel._publish import check_dest, clean_leftovers, current_target, lock, publish
from envmgr.channel._pydists import (
    CONVERTER_VERSION,
    closure,
    content_digest,
    dist_index,
    file_sha256,
    from_installed,
    from_wheel,
    to_conda,
    wheel_name,
    wheel_requirements,
)
from envmgr.errors import Busy, EnvironmentProblem, UsageError

DEFAULT_DISTRIBUTIONS: tuple[str, ...] = ("ipykernel", "pip")

DemoSpec = tuple[str, str, tuple[str, ...]]
DEMO_PACKAGES: tuple[DemoSpec, ...] = (
    ("envmgr-demo-a", "1.0", ()),
    ("envmgr-demo-a", "1.1", ()),
    ("envmgr-demo-a", "2.0", ()),
    ("envmgr-demo-b", "1.0", ("envmgr-demo-a >=1.0",)),
    ("envmgr-demo-b", "1.1", ("envmgr-demo-a >=1.0",)),
)

SUBDIRS: tuple[str, ...] = ("noarch", "linux-64")
MARKER_FILE = ".envmgr-channel.json"

Progress = Callable[[str], None]


# -- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelPackage:
    """One package file in the channel."""

    name: str
    version: str
    build: str
    subdir: str
    filename: str


@dataclass(frozen=True)
class ChannelResult:
    """What ``build_channel`` produced (or found already built)."""

    path: Path
    url: str
    packages: list[ChannelPackage]
    cached: bool
    seconds: float
    key: str = ""
    warnings: list[str] = field(default_factory=list)

    exit_code = 0  # a Result: `envmgr channel build` either succeeds or raises

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


# -- python, python_abi, demo packages ---------------------------------------------------------
def python_packages(interp: Interpreter) -> list[CondaPackage]:
    """A venv-style ``python`` package for ``interp`` plus its ``python_abi``.

    The prefix gets ``bin/pythonX.Y`` as a symlink to the host interpreter and
    a ``pyvenv.cfg``; Python then treats the prefix as a venv: ``sys.prefix``
    is the prefix, its own site-packages is used and the host's is not
    (``include-system-site-packages = false``). The build string carries the
    version and a hash of the host path, so a moved host gives a new package.
    """
    host = interp.base_executable
    short = interp.short
    major, minor = interp.version_info
    version, _ = conda_version(interp.version)
    digest = content_digest(host, interp.version)
    pyvenv = (f"home = {os.path.dirname(host)}\n"
              f"include-system-site-packages = false\n"
              f"version = {interp.version}\n"
              f"executable = {host}\n").encode()
    readme = (b"This directory exists so that third-party packages can be installed here.\n"
              b"(Managed by envmgr: the packages come from its conda channel.)\n")
    python = CondaPackage(
        name="python", version=version,
        build=f"host_cp{major}{minor}_{version.replace('.', '_')}_h{digest[:8]}",
        subdir=PLATFORM, depends=[f"python_abi {short}.* *_{interp.abi}"],
        files=[PkgFile(f"bin/python{short}", symlink=host),
               PkgFile(f"bin/python{major}", symlink=f"python{short}"),
               PkgFile("bin/python", symlink=f"python{short}"),
               PkgFile("pyvenv.cfg", pyvenv),
               PkgFile(f"lib/python{short}/site-packages/README.txt", readme)],
        license="Python-2.0", summary=f"venv-style link to the host CPython {interp.version} ({host})")
    abi = CondaPackage(name="python_abi", version=short, build=f"0_{interp.abi}", subdir=PLATFORM,
                       summary=f"Marks the CPython {short} ABI ({interp.abi})", license="BSD-3-Clause")
    return [python, abi]


def _pep508(depend: str) -> str:
    """A simple conda dependency ("name >=1.0") as Requires-Dist text."""
    name, _, spec = depend.partition(" ")
    return f"{name}{spec}" if re.fullmatch(r"[<>=!~][^ |]*", spec or "") else name


def demo_package(name: str, version: str, depends: Iterable[str] = ()) -> CondaPackage:
    """A tiny generated pure-Python package exposing ``__version__``.

    ``depends`` are conda match specs (``"envmgr-demo-a >=1.0"``). The build
    hash covers name, version and depends, so writing the same demo twice
    yields the same file.
    """
    name = normalize_name(name)
    depends = list(depends)
    conda_ver, _ = conda_version(version)
    module = name.replace("-", "_")
    dist_info = f"{module}-{conda_ver}.dist-info"
    init = (f'"""{name}: a demo package generated by envmgr (not from PyPI)."""\n\n'
            f'__version__ = "{conda_ver}"\n').encode()
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {conda_ver}\n",
                        "Summary: envmgr demo package\n",
                        *(f"Requires-Dist: {_pep508(d)}\n" for d in depends)]).encode()
    record = "".join(f"{p},,\n" for p in (f"{module}/__init__.py", f"{dist_info}/METADATA",
                                         f"{dist_info}/INSTALLER", f"{dist_info}/RECORD"))
    digest = content_digest(name, conda_ver, *depends)
    return CondaPackage(
        name=name, version=conda_ver, build=f"pyh{digest[:8]}_0", subdir="noarch",
        noarch="python", depends=["python", *depends], license="BSD-3-Clause",
        summary="envmgr demo package",
        files=[PkgFile(f"site-packages/{module}/__init__.py", init),
               PkgFile(f"site-packages/{dist_info}/METADATA", metadata),
               PkgFile(f"site-packages/{dist_info}/INSTALLER", b"conda\n"),
               PkgFile(f"site-packages/{dist_info}/RECORD", record.encode())])


# -- the plan and its key ----------------------------------------------------------------------------
@dataclass
class _Plan:
    """Everything a build depends on, gathered cheaply (no file contents)."""

    interp: Interpreter
    dists: list[importlib.metadata.Distribution]
    wheels: list[tuple[Path, str]]
    demos: tuple[DemoSpec, ...]
    warnings: list[str]
    host_r: HostR | None = None  # r-base / r-irkernel wrapping the host's R (_internal._rhost)

    def key(self) -> str:
        payload = {
            "envmgr": __version__, "converter": CONVERTER_VERSION, "format": default_extension(),
            "python": [self.interp.base_executable, self.interp.version],
            "dists": sorted([normalize_name(d.metadata["Name"]), d.version] for d in self.dists),
            "wheels": sorted(sha for _, sha in self.wheels),
            "demos": [list(d[:2]) + list(d[2]) for d in self.demos],
        }
        if self.host_r is not None:  # only then: channels of hosts without R keep their key
            payload["r"] = [self.host_r.r_bin, self.host_r.version, self.host_r.irkernel_version]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _make_plan(interp: Interpreter, distributions: Iterable[str], wheels: Iterable[Path],
               demo: bool) -> _Plan:
    wheel_list = []
    for w in wheels:
        path = Path(w).absolute()
        if not path.is_file():
            raise UsageError(f"wheel {path} does not exist")
        wheel_list.append((path, file_sha256(path)))
    index = dist_index(interp)
    demos = DEMO_PACKAGES if demo else ()
    provided = {wheel_name(p) for p, _ in wheel_list} | {normalize_name(d[0]) for d in demos}
    roots = [(name, None) for name in distributions] + wheel_requirements(wheel_list, interp)
    names, warnings = closure(roots, index, interp, provided)
    return _Plan(interp=interp, dists=[index[n] for n in names], wheels=wheel_list,
                 demos=demos, warnings=warnings, host_r=probe_host_r() if demo else None)


# -- the cache ------------------------------------------------------------------------------------------
def _package_files(channel: Path) -> list[list[Any]]:
    """[subdir, filename, size] of every package archive in the channel, sorted."""
    found = []
    for subdir in SUBDIRS:
        d = channel / subdir
        if d.is_dir():
            for entry in os.scandir(d):
                if entry.name.endswith((".tar.bz2", ".conda")) and not entry.name.startswith("."):
                    found.append([subdir, entry.name, entry.stat().st_size])
    return sorted(found)


def _read_marker(channel: Path) -> dict[str, Any] | None:
    try:
        return json.loads((channel / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _cached_result(dest: Path, key: str, started: float) -> ChannelResult | None:
    """The existing channel at ``dest`` if it was built for ``key`` and its
    package files are exactly the ones recorded (so a channel that had demo
    packages added is rebuilt rather than served as the pristine one)."""
    marker = _read_marker(dest)
    if not marker or marker.get("key") != key:
        return None
    if any(not (dest / s / "repodata.json").is_file() for s in SUBDIRS):
        return None
    if marker.get("files") != _package_files(dest):
        return None
    return ChannelResult(path=dest, url=dest.as_uri(),
                         packages=[ChannelPackage(**p) for p in marker.get("packages", [])],
                         cached=True, seconds=time.monotonic() - started, key=key,
                         warnings=list(marker.get("warnings", [])))


# -- building --------------------------------------------------------------------------------------
def _recipes(plan: _Plan, say: Progress) -> tuple[list[CondaPackage], list[str]]:
    """All packages to put in the channel, largest first (they take longest)."""
    warnings: list[str] = []
    recipes = python_packages(plan.interp)
    say(f"reading {len(plan.dists)} distributions and {len(plan.wheels)} wheels")
    sources = [from_installed(d, plan.interp) for d in plan.dists]
    sources += [from_wheel(p, sha, plan.interp) for p, sha in plan.wheels]
    for pd, warns in sources:
        pkg, more = to_conda(pd, plan.interp)
        recipes.append(pkg)
        warnings += warns + more
    recipes += [demo_package(*spec) for spec in plan.demos]
    recipes += r_packages(plan.host_r) if plan.host_r is not None else []
    unique = {(p.subdir, p.filename): p for p in reversed(recipes)}
    return sorted(unique.values(), key=lambda p: -p.size_hint()), warnings


def _materialize(pkg: CondaPackage, staged: Path, previous: Path | None) -> bool:
    """Write ``pkg`` into ``staged``, or hard-link it from the previous channel.

    File names embed a hash of everything that shapes the content, so an
    archive with the same name in the previous channel is the same package.
    Returns True if it was reused.
    """
    if previous is not None:
        old = previous / pkg.subdir / pkg.filename
        if old.is_file():
            new = staged / pkg.subdir / pkg.filename
            new.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(old, new)
            except OSError:
                shutil.copy2(old, new)
            return True
    write_package(pkg, staged)
    return False


def _write_channel(plan: _Plan, staged: Path, previous: Path | None, say: Progress
                   ) -> tuple[list[ChannelPackage], list[str]]:
    recipes, warnings = _recipes(plan, say)
    for subdir in SUBDIRS:
        (staged / subdir).mkdir(parents=True, exist_ok=True)
    say(f"writing {len(recipes)} packages")
    workers = max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="envmgr-pkg") as pool:
        reused = sum(pool.map(lambda p: _materialize(p, staged, previous), recipes))
    if reused:
        say(f"reused {reused} unchanged packages from the previous channel")
    packages = sorted((ChannelPackage(p.name, p.version, p.build, p.subdir, p.filename)
                       for p in recipes), key=lambda c: (c.name, c.version, c.build))
    return packages, warnings


def _write_marker(staged: Path, key: str, packages: list[ChannelPackage], warnings: list[str]
                  ) -> None:
    marker = {"key": key, "envmgr": __version__, "converter": CONVERTER_VERSION,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "packages": [asdict(p) for p in packages], "files": _package_files(staged),
              "warnings": warnings}
    (staged / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def build_channel(dest: Path, *, distributions: Iterable[str] = DEFAULT_DISTRIBUTIONS,
                  wheels: Iterable[Path] = (), demo_packages: bool = True,
                  python_exe: str = sys.executable, progress: Progress | None = None
                  ) -> ChannelResult:
    """Build (or reuse) the local conda channel at ``dest``.

    ``distributions`` are names of distributions installed for
    ``python_exe``; they and their runtime requirements are repacked.
    ``wheels`` are converted too (their requirements come from the
    environment). Returns at once if ``dest`` already holds a channel with
    the same content key; otherwise builds next to ``dest`` under a lock and
    publishes atomically (see the module docstring).

    Raises ``UsageError`` for bad input (unknown distribution, foreign wheel,
    ``dest`` not a channel), ``Busy`` if another build holds the lock too long
    and ``EnvironmentProblem`` if the disk refuses.
    """
    started = time.monotonic()
    say = progress or (lambda _msg: None)
    dest = Path(dest).absolute()
    check_dest(dest)
    plan = _make_plan(interpreter_info(python_exe), distributions, wheels, demo_packages)
    key = plan.key()
    hit = _cached_result(dest, key, started)
    if hit is not None:
        return hit
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with lock(dest):
            hit = _cached_result(dest, key, started)
            if hit is not None:
                return hit
            return _build_locked(plan, key, dest, started, say)
    except filelock.Timeout as exc:
        raise Busy(f"another process is building the channel at {dest}") from exc
    except OSError as exc:
        raise EnvironmentProblem(f"cannot build the channel at {dest}: {exc}") from exc


def _build_locked(plan: _Plan, key: str, dest: Path, started: float, say: Progress
                  ) -> ChannelResult:
    clean_leftovers(dest)
    staged = dest.parent / f".{dest.name}.v-{key[:12]}{secrets.token_hex(4)}"
    staged.mkdir()
    try:
        packages, warnings = _write_channel(plan, staged, current_target(dest), say)
        say("indexing")
        _rattler.index_channel(staged, SUBDIRS)
        warnings = plan.warnings + warnings
        _write_marker(staged, key, packages, warnings)
        publish(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    clean_leftovers(dest)
    return ChannelResult(path=dest, url=dest.as_uri(), packages=packages, cached=False,
                         seconds=time.monotonic() - started, key=key, warnings=warnings)


# -- after the build ----------------------------------------------------------------------------------
def reindex_channel(channel_dir: Path) -> None:
    """Re-write the repodata of a channel after packages were added to it."""
    _rattler.index_channel(Path(channel_dir), SUBDIRS)


def add_demo_package(channel_dir: Path, name: str, version: str, depends: Sequence[str] = (),
                     *, reindex: bool = True) -> Path:
    """Add a generated demo package to an existing channel ("upstream released").

    Re-indexes by default; pass ``reindex=False`` to add several and call
    ``reindex_channel`` once. A channel changed this way no longer matches
    its cache key's file list, so the next ``build_channel`` on it rebuilds
    the pristine content. Returns the package file.
    """
    channel_dir = Path(channel_dir)
    if not (channel_dir / "noarch").is_dir():
        raise UsageError(f"{channel_dir} is not a channel (no noarch/ directory)")
    path = write_package(demo_package(name, version, depends), channel_dir)
    if reindex:
        reindex_channel(channel_dir)
    return path


def build_channel_command(dest: Path, *, wheels: Sequence[Path] = (), dists: Sequence[str] = (),
                          demo: bool = True, progress: Progress | None = None) -> ChannelResult:
    """What ``envmgr channel build DIR [--wheel W ...] [--dist NAME ...] [--no-demo]`` runs.

    ``--dist`` adds to the default content (ipykernel, pip) rather than
    replacing it: a channel without a kernel is of no use to envmgr.
    """
    distributions = list(dict.fromkeys([*DEFAULT_DISTRIBUTIONS, *dists]))
    return build_channel(Path(dest), distributions=distributions, wheels=[Path(w) for w in wheels],
                         demo_packages=demo, progress=progress)
