"""Build the local ``file://`` conda channel envmgr solves against.

No conda channel is reachable from the hubs envmgr targets, so the channel is
made locally from what is at hand:

* a venv-style ``python`` package pointing at the host interpreter (plus
  ``python_abi``), so prefixes get a Python without copying one;
* Python distributions installed in the running environment (by default
  ``ipykernel``, ``pip`` and everything they need at runtime), repacked from
  their ``RECORD``; and/or wheel files;
* tiny generated demo packages (``envmgr-demo-a``/``-b``) whose versions tests
  and demos bump to simulate "upstream released a new version".

The channel is content-keyed: a key over (envmgr version, converter version,
host Python, distribution names+versions, wheel hashes, demo set) is stored in
the channel; a build whose key matches returns at once. Otherwise the channel
is built in a sibling directory under a lock and published by atomically
replacing the ``dest`` symlink, so readers never see a half-built channel and
a killed build leaves the previous one intact. ``dest`` is therefore a
relative symlink to ``.<name>.v-<id>`` next to it; use it as a directory, do
not ``rmtree`` it.
"""

from __future__ import annotations

import configparser
import csv
import email.parser
import email.policy
import hashlib
import importlib.metadata
import json
import os
import posixpath
import re
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import filelock
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envmgr import __version__
from envmgr._internal import _rattler
from envmgr._internal._condapkg import (
    CondaPackage,
    PkgFile,
    conda_version,
    default_extension,
    entry_point_script,
    normalize_name,
    parse_requirements,
    python_depend,
    shebang_rewriter,
    write_package,
)
from envmgr.errors import Busy, EnvironmentProblem, UsageError

CONVERTER_VERSION = "2"
"""Bump whenever the produced packages change for the same input: it is part
of the cache key and of every converted package's build hash."""

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
PLATFORM = "linux-64"
MARKER_FILE = ".envmgr-channel.json"
LOCK_TIMEOUT_S = 900

Progress = Callable[[str], None]

_SKIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "RECORD.jws", "RECORD.p7s"}
_SCRIPT_GROUPS = ("console_scripts", "gui_scripts")


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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


# -- the interpreter ------------------------------------------------------------------
# Runs in the target interpreter (in-process or via ``python -c``), so it may
# use only the standard library. It defines ``info``.
_PROBE = r'''
import json, os, platform, sys

def _base_executable():
    short = "python%d.%d" % sys.version_info[:2]
    for cand in (getattr(sys, "_base_executable", None),
                 os.path.join(sys.base_prefix, "bin", short), sys.executable):
        if cand and os.path.isfile(cand):
            return os.path.realpath(cand)
    return os.path.realpath(sys.executable)

_iv = sys.implementation.version
_impl = "%d.%d.%d" % (_iv.major, _iv.minor, _iv.micro)
if _iv.releaselevel != "final":
    _impl += _iv.releaselevel[0] + str(_iv.serial)
info = {
    "executable": sys.executable,
    "base_executable": _base_executable(),
    "version": platform.python_version(),
    "version_info": list(sys.version_info[:2]),
    "implementation": sys.implementation.name,
    "path": [p for p in sys.path if p],
    "markers": {
        "implementation_name": sys.implementation.name,
        "implementation_version": _impl,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": "%d.%d" % sys.version_info[:2],
        "sys_platform": sys.platform,
    },
}
'''


@dataclass(frozen=True)
class Interpreter:
    """The Python the channel is built for (its packages, markers and ABI)."""

    executable: str
    base_executable: str
    version: str
    version_info: tuple[int, int]
    path: tuple[str, ...]
    markers: dict[str, str]

    @property
    def short(self) -> str:
        return f"{self.version_info[0]}.{self.version_info[1]}"

    @property
    def abi(self) -> str:
        return f"cp{self.version_info[0]}{self.version_info[1]}"

    @property
    def site_packages(self) -> str:
        return f"lib/python{self.short}/site-packages"


def interpreter_info(python_exe: str = sys.executable) -> Interpreter:
    """Describe ``python_exe``; in-process when it is the running interpreter.

    Markers are forced to linux-64 values: the channel is for linux-64, even
    if someone builds it on an odd machine.
    """
    if os.path.abspath(python_exe) == os.path.abspath(sys.executable):
        namespace: dict[str, Any] = {}
        exec(compile(_PROBE, "<envmgr-probe>", "exec"), namespace)
        info = namespace["info"]
    else:
        info = _probe_subprocess(python_exe)
    if info["implementation"] != "cpython":
        raise UsageError(f"{python_exe} is {info['implementation']}; only CPython is supported")
    markers = {**info["markers"], "os_name": "posix", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64"}
    return Interpreter(executable=info["executable"], base_executable=info["base_executable"],
                       version=info["version"], version_info=tuple(info["version_info"]),
                       path=tuple(info["path"]), markers=markers)


def _probe_subprocess(python_exe: str) -> dict[str, Any]:
    if not os.path.isfile(python_exe):
        raise UsageError(f"python interpreter {python_exe} does not exist")
    try:
        out = subprocess.run([python_exe, "-I", "-c", _PROBE + "\nprint(json.dumps(info))"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"cannot run {python_exe}: {exc}") from exc
    return json.loads(out)


# -- which distributions ----------------------------------------------------------------
def _dist_index(interp: Interpreter) -> dict[str, importlib.metadata.Distribution]:
    """Installed distributions by normalized name; the first on the path wins,
    as it would for ``import``."""
    index: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=list(interp.path)):
        name = dist.metadata["Name"]
        if name:
            index.setdefault(normalize_name(name), dist)
    return index


def _closure(roots: Iterable[tuple[str, str | None]],
             index: dict[str, importlib.metadata.Distribution],
             interp: Interpreter, provided: set[str]) -> tuple[list[str], list[str]]:
    """Names of ``roots`` and all their runtime requirements, plus warnings.

    ``roots`` are (name, required-by) pairs; required-by is None for what the
    caller asked for by name. Requirements whose markers are false for
    linux-64 + this Python, or that belong to extras, are not followed;
    ``provided`` names (wheels, demo packages) are not looked up. A missing
    requirement is a warning (the channel will not solve for its dependents);
    a missing name the caller asked for is an error.
    """
    order: list[str] = []
    warnings: list[str] = []
    queue = [(normalize_name(r), parent) for r, parent in roots]
    seen: set[str] = set()
    while queue:
        name, parent = queue.pop(0)
        if name in seen or name in provided:
            continue
        seen.add(name)
        dist = index.get(name)
        if dist is None:
            if parent is None:
                raise UsageError(f"distribution {name!r} is not installed for {interp.executable}",
                                 hint="install it there, or pass a wheel")
            warnings.append(f"{parent} requires {name}, which is not installed; "
                            f"{parent} will not be installable from this channel")
            continue
        order.append(name)
        depends, problems = parse_requirements(dist.requires or [], interp.markers)
        warnings.extend(f"{name}: {p}" for p in problems)
        queue.extend((d.split(" ", 1)[0], name) for d in depends)
    return sorted(order), warnings


# -- a Python distribution, from either source ---------------------------------------------
@dataclass
class _PyDist:
    """A Python distribution ready to become a conda package.

    ``files`` are (kind, relpath, source, mode) with kind ``site`` (relative
    to site-packages), ``script`` (a bin/ file that is not an entry point) or
    ``data`` (relative to the prefix).
    """

    name: str
    version: str
    metadata: Any
    wheel_meta: str
    entry_points: list[tuple[str, str, str]]
    files: list[tuple[str, str, str | bytes, int]]
    dist_info: str
    digest: str
    env_prefixes: tuple[str, ...] = ()
    build_number: int = 0

    @cached_property
    def is_pure(self) -> bool:
        """Pure (noarch) unless the WHEEL says platlib or anything is compiled."""
        if re.search(r"(?im)^Root-Is-Purelib:\s*false\s*$", self.wheel_meta):
            return False
        return not any(_is_compiled(rel) for kind, rel, _, _ in self.files if kind == "site")


def _is_compiled(rel: str) -> bool:
    top = rel.split("/", 1)[0]
    return rel.endswith((".so", ".pyd", ".dylib")) or ".so." in rel or top.endswith(".libs")


def _script_names(entry_points: Iterable[tuple[str, str, str]]) -> set[str]:
    return {name for group, name, _ in entry_points if group in _SCRIPT_GROUPS}


def _record_paths(record: str) -> list[str]:
    """The path column of a RECORD file (CSV: paths may be quoted)."""
    return [row[0] for row in csv.reader(record.splitlines()) if row]


def _dist_info_name(dist: importlib.metadata.Distribution, paths: list[str]) -> str:
    for path in paths:
        top, _, rest = path.partition("/")
        if top.endswith(".dist-info") and rest == "METADATA":
            return top
    return Path(str(getattr(dist, "_path", "unknown.dist-info"))).name


def _env_prefix_of(site: Path) -> Path | None:
    """The prefix holding ``site`` if it is ``<prefix>/lib/pythonX.Y/site-packages``
    (or a distro's ``lib64/…`` / ``…/dist-packages`` variant)."""
    if site.name in ("site-packages", "dist-packages") and site.parent.name.startswith("python") \
            and site.parent.parent.name in ("lib", "lib64"):
        return site.parent.parent.parent
    return None


def _from_installed(dist: importlib.metadata.Distribution, interp: Interpreter
                    ) -> tuple[_PyDist, list[str]]:
    """Repack an installed distribution from its RECORD.

    ``.pyc``/``__pycache__`` are skipped (the target Python compiles its
    own), and so are pip's bookkeeping files (RECORD, INSTALLER, REQUESTED,
    direct_url.json: regenerated or meaningless in a conda prefix). Entries
    outside site-packages keep their place relative to the environment's
    prefix (``bin/``, ``share/``...); launchers of entry points are dropped
    because the installer regenerates them for the new prefix.
    """
    name = normalize_name(dist.metadata["Name"])
    record = dist.read_text("RECORD")
    if record is None:
        raise UsageError(f"cannot repack {name} {dist.version}: it has no RECORD "
                         f"(installed by something other than pip?)",
                         hint=f"reinstall it with `pip install --force-reinstall {name}`")
    _refuse_editable(dist, name)
    site = Path(dist.locate_file(""))
    prefix = _env_prefix_of(site)
    eps = [(ep.group, ep.name, ep.value) for ep in dist.entry_points]
    scripts = _script_names(eps)
    paths = _record_paths(record)
    dist_info = _dist_info_name(dist, paths)
    files: list[tuple[str, str, str | bytes, int]] = []
    warnings: list[str] = []
    for entry in paths:
        item = _classify_record_entry(entry, str(site), str(prefix) if prefix else None,
                                      dist_info, scripts)
        if item is None:
            continue
        if isinstance(item, str):
            warnings.append(f"{name}: {item}")
            continue
        kind, rel, source = item
        try:
            mode = os.stat(source).st_mode & 0o777
        except OSError:
            warnings.append(f"{name}: {entry} is listed in RECORD but missing; skipped")
            continue
        files.append((kind, rel, source, mode))
    digest = _digest(record, json.dumps(interp.markers, sort_keys=True))
    env_prefixes = (str(prefix),) if prefix else ()
    return _PyDist(name=name, version=dist.version, metadata=dist.metadata,
                   wheel_meta=dist.read_text("WHEEL") or "", entry_points=eps, files=files,
                   dist_info=dist_info, digest=digest, env_prefixes=env_prefixes), warnings


def _refuse_editable(dist: importlib.metadata.Distribution, name: str) -> None:
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except json.JSONDecodeError:
        return
    if direct.get("dir_info", {}).get("editable"):
        raise UsageError(f"{name} is an editable install; it cannot be repacked",
                         hint="build a wheel of it and pass it with --wheel")


def _classify_record_entry(entry: str, site: str, prefix: str | None, dist_info: str,
                           scripts: set[str]) -> tuple[str, str, str] | str | None:
    """Where one RECORD entry goes: (kind, relpath, source path), None to
    skip silently, or a string explaining why it is skipped.

    Plain strings and ``os.path`` on purpose: this runs for every file of
    every distribution, and pathlib made it the slowest step of a build.
    """
    rel = posixpath.normpath(entry)
    parts = rel.split("/")
    if rel.endswith((".pyc", ".pyo")) or "__pycache__" in parts:
        return None
    if not rel.startswith("../") and not os.path.isabs(rel):
        if parts[0] == dist_info and len(parts) == 2 and parts[1] in _SKIP_DIST_INFO:
            return None
        return "site", rel, os.path.join(site, rel)
    absolute = os.path.normpath(os.path.join(site, rel))
    if prefix is None or not absolute.startswith(prefix.rstrip("/") + "/"):
        return f"{entry} is outside the environment; skipped"
    prel = absolute[len(prefix.rstrip("/")) + 1:]
    if prel.startswith("bin/") and prel.count("/") == 1:
        script = prel[4:]
        return None if script in scripts else ("script", script, absolute)
    if prel.startswith("lib/python"):
        return f"{entry} is in another lib/python* directory; skipped"
    return "data", prel, absolute


def _digest(*parts: str) -> str:
    h = hashlib.sha256(CONVERTER_VERSION.encode())
    for part in parts:
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _from_wheel(path: Path, sha256: str, interp: Interpreter) -> tuple[_PyDist, list[str]]:
    """Unpack a wheel's members into a ``_PyDist`` (see ``_wheel_files``)."""
    _check_wheel_tags(path, interp)
    try:
        with zipfile.ZipFile(path) as zf:
            dist_info = _wheel_dist_info(zf, path)
            metadata = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
                zf.read(f"{dist_info}/METADATA"))
            wheel_meta = zf.read(f"{dist_info}/WHEEL").decode()
            eps = _parse_entry_points(_read_optional(zf, f"{dist_info}/entry_points.txt"))
            files, warnings = _wheel_files(zf, dist_info)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise UsageError(f"{path} is not a valid wheel: {exc}") from exc
    name = normalize_name(metadata["Name"])
    return _PyDist(name=name, version=metadata["Version"], metadata=metadata,
                   wheel_meta=wheel_meta, entry_points=eps, files=files, dist_info=dist_info,
                   digest=_digest(sha256, json.dumps(interp.markers, sort_keys=True)),
                   build_number=1), [f"{name}: {w}" for w in warnings]


def _check_wheel_tags(path: Path, interp: Interpreter) -> None:
    """Refuse wheels this interpreter could not install (wrong CPython/ABI/platform)."""
    try:
        _, _, _, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise UsageError(f"{path.name} is not a wheel file name: {exc}") from exc
    major, minor = interp.version_info
    for tag in tags:
        platform_ok = tag.platform == "any" or (
            "linux" in tag.platform and tag.platform.endswith("x86_64"))
        if tag.abi == "abi3":
            m = re.fullmatch(r"cp(\d)(\d+)", tag.interpreter)
            interp_ok = bool(m) and int(m.group(1)) == major and int(m.group(2)) <= minor
        else:
            interp_ok = tag.interpreter in {f"py{major}", f"py{major}{minor}", interp.abi,
                                            f"cp{major}"}
            interp_ok = interp_ok and tag.abi in {"none", interp.abi}
        if platform_ok and interp_ok:
            return
    raise UsageError(f"wheel {path.name} does not fit CPython {interp.short} on linux-64")


def _wheel_dist_info(zf: zipfile.ZipFile, path: Path) -> str:
    tops = {n.split("/", 1)[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA")}
    if len(tops) != 1:
        raise UsageError(f"{path.name}: expected exactly one .dist-info directory, found {len(tops)}")
    return tops.pop()


def _read_optional(zf: zipfile.ZipFile, name: str) -> str:
    try:
        return zf.read(name).decode()
    except KeyError:
        return ""


def _parse_entry_points(text: str) -> list[tuple[str, str, str]]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return [(group, name, value) for group in parser.sections()
            for name, value in parser.items(group)]


def _wheel_files(zf: zipfile.ZipFile, dist_info: str
                 ) -> tuple[list[tuple[str, str, str | bytes, int]], list[str]]:
    """Map wheel members per the wheel spec: root and ``.data/{purelib,platlib}``
    to site-packages, ``.data/scripts`` to bin, ``.data/data`` to the prefix."""
    data_dir = dist_info[: -len(".dist-info")] + ".data/"
    files: list[tuple[str, str, str | bytes, int]] = []
    warnings: list[str] = []
    for info in zf.infolist():
        member = info.filename
        if info.is_dir() or member.endswith((".pyc", ".pyo")) or "/__pycache__/" in f"/{member}":
            continue
        mode = (info.external_attr >> 16) & 0o777 or 0o644
        if member.startswith(data_dir):
            category, _, rel = member[len(data_dir):].partition("/")
            kind = {"purelib": "site", "platlib": "site", "scripts": "script", "data": "data"}.get(category)
            if kind is None or not rel:
                warnings.append(f"{member}: wheel data category {category!r} not supported; skipped")
                continue
        elif member.startswith(f"{dist_info}/") and member.split("/", 1)[1] in _SKIP_DIST_INFO:
            continue
        else:
            kind, rel = "site", member
        files.append((kind, posixpath.normpath(rel), zf.read(info), mode))
    return files, warnings


# -- _PyDist -> CondaPackage ---------------------------------------------------------------------
def _short_license(metadata: Any) -> str:
    """A license string fit for index.json: the SPDX expression, or a short
    ``License`` field (some projects paste the whole license text there)."""
    for key in ("License-Expression", "License"):
        value = (metadata.get(key) or "").strip()
        if value and "\n" not in value and len(value) <= 100:
            return value
    return ""


def _home(metadata: Any) -> str | None:
    if metadata.get("Home-page"):
        return metadata["Home-page"]
    for url in metadata.get_all("Project-URL") or []:
        return url.split(",", 1)[-1].strip()
    return None


def _build_string(prefix: str, digest: str, local: str | None) -> str:
    local_part = f"_{local[:20]}" if local else ""
    return f"{prefix}h{digest[:8]}{local_part}_0"


def _entry_point_parts(value: str) -> tuple[str, str] | None:
    """``module:attr [extras]`` -> (module, attr), None for module-only values."""
    value = re.sub(r"\[.*\]\s*$", "", value).strip()
    module, _, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    return (module, attr) if module and attr else None


def _payload(pd: _PyDist, interp: Interpreter) -> tuple[list[PkgFile], list[str]]:
    """The distribution's files at their place in the package, plus the
    RECORD paths (relative to site-packages) that describe them."""
    pure = pd.is_pure
    site_root = "site-packages" if pure else interp.site_packages
    script_root = "python-scripts" if pure else "bin"  # noarch: the installer maps to bin/
    rewrite = shebang_rewriter(pd.env_prefixes)
    files: list[PkgFile] = []
    record: list[str] = []
    for kind, rel, source, mode in pd.files:
        if kind == "site":
            files.append(PkgFile(f"{site_root}/{rel}", source, mode))
            record.append(rel)
        elif kind == "script":
            files.append(PkgFile(f"{script_root}/{rel}", source, mode | 0o755, transform=rewrite))
            record.append(f"../../../bin/{rel}")
        else:
            files.append(PkgFile(rel, source, mode))
            record.append(f"../../../{rel}")
    return files, record


def _launchers(pd: _PyDist, interp: Interpreter
               ) -> tuple[list[str], list[PkgFile], list[str], list[str]]:
    """Console/GUI scripts: ``link.json`` entries for noarch packages (the
    installer writes launchers for the final prefix), launcher files with a
    placeholder shebang otherwise. Returns (link entries, files, RECORD
    paths, warnings)."""
    entries: list[str] = []
    files: list[PkgFile] = []
    record: list[str] = []
    warnings: list[str] = []
    for group, name, value in pd.entry_points:
        if group not in _SCRIPT_GROUPS:
            continue
        parts = _entry_point_parts(value)
        if parts is None:
            warnings.append(f"{pd.name}: entry point {name} = {value} names no function; skipped")
            continue
        record.append(f"../../../bin/{name}")
        if pd.is_pure:
            entries.append(f"{name} = {parts[0]}:{parts[1]}")
        else:
            script = entry_point_script(*parts, python=f"python{interp.short}")
            files.append(PkgFile(f"bin/{name}", script, 0o755))
    return entries, files, record, warnings


def _depends(pd: _PyDist, interp: Interpreter) -> tuple[list[str], list[str]]:
    """Conda dependencies: Python (any 3.x allowed by Requires-Python for
    noarch, exactly this ABI for compiled packages) plus Requires-Dist."""
    depends, problems = parse_requirements(pd.metadata.get_all("Requires-Dist") or [],
                                           interp.markers)
    depends = [d for d in depends if d.split(" ", 1)[0] != pd.name]
    major, minor = interp.version_info
    if pd.is_pure:
        python = [python_depend(pd.metadata.get("Requires-Python"))]
    else:
        python = [f"python >={major}.{minor},<{major}.{minor + 1}",
                  f"python_abi {interp.short}.* *_{interp.abi}"]
    return python + depends, [f"{pd.name}: {p}" for p in problems]


def _to_conda(pd: _PyDist, interp: Interpreter) -> tuple[CondaPackage, list[str]]:
    """The conda package for a Python distribution.

    Pure distributions become ``noarch: python`` (files under
    ``site-packages/``); compiled ones become linux-64 packages with files
    under ``lib/pythonX.Y/site-packages``. pip's RECORD is replaced by one
    describing the packaged files, INSTALLER says ``conda``.
    """
    files, record = _payload(pd, interp)
    entries, launchers, launcher_record, warnings = _launchers(pd, interp)
    depends, problems = _depends(pd, interp)
    site_root = "site-packages" if pd.is_pure else interp.site_packages
    record += launcher_record + [f"{pd.dist_info}/INSTALLER", f"{pd.dist_info}/RECORD"]
    files += launchers + [
        PkgFile(f"{site_root}/{pd.dist_info}/INSTALLER", b"conda\n"),
        PkgFile(f"{site_root}/{pd.dist_info}/RECORD",
                "".join(f"{r},,\n" for r in sorted(set(record))).encode())]
    version, local = conda_version(pd.version)
    major, minor = interp.version_info
    build = _build_string("py" if pd.is_pure else f"py{major}{minor}", pd.digest, local)
    return CondaPackage(
        name=pd.name, version=version, build=build, subdir="noarch" if pd.is_pure else PLATFORM,
        depends=depends, files=files, noarch="python" if pd.is_pure else None,
        entry_points=entries, build_number=pd.build_number,
        license=_short_license(pd.metadata), summary=pd.metadata.get("Summary") or "",
        home=_home(pd.metadata)), warnings + problems


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
    digest = _digest(host, interp.version)
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
    digest = _digest(name, conda_ver, *depends)
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

    def key(self) -> str:
        payload = {
            "envmgr": __version__, "converter": CONVERTER_VERSION, "format": default_extension(),
            "python": [self.interp.base_executable, self.interp.version],
            "dists": sorted([normalize_name(d.metadata["Name"]), d.version] for d in self.dists),
            "wheels": sorted(sha for _, sha in self.wheels),
            "demos": [list(d[:2]) + list(d[2]) for d in self.demos],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _make_plan(interp: Interpreter, distributions: Iterable[str], wheels: Iterable[Path],
               demo: bool) -> _Plan:
    wheel_list = []
    for w in wheels:
        path = Path(w).absolute()
        if not path.is_file():
            raise UsageError(f"wheel {path} does not exist")
        wheel_list.append((path, _file_sha256(path)))
    index = _dist_index(interp)
    demos = DEMO_PACKAGES if demo else ()
    provided = {_wheel_name(p) for p, _ in wheel_list} | {normalize_name(d[0]) for d in demos}
    roots = [(name, None) for name in distributions] + _wheel_requirements(wheel_list, interp)
    names, warnings = _closure(roots, index, interp, provided)
    return _Plan(interp=interp, dists=[index[n] for n in names], wheels=wheel_list,
                 demos=demos, warnings=warnings)


def _wheel_name(path: Path) -> str:
    try:
        return normalize_name(parse_wheel_filename(path.name)[0])
    except InvalidWheelFilename as exc:
        raise UsageError(f"{path.name} is not a wheel file name: {exc}") from exc


def _wheel_requirements(wheels: list[tuple[Path, str]], interp: Interpreter
                        ) -> list[tuple[str, str | None]]:
    """(requirement, wheel name) for what the wheels need from elsewhere."""
    names: list[tuple[str, str | None]] = []
    for path, _ in wheels:
        try:
            with zipfile.ZipFile(path) as zf:
                meta = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
                    zf.read(f"{_wheel_dist_info(zf, path)}/METADATA"))
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise UsageError(f"{path} is not a valid wheel: {exc}") from exc
        depends, _ = parse_requirements(meta.get_all("Requires-Dist") or [], interp.markers)
        names += [(d.split(" ", 1)[0], _wheel_name(path)) for d in depends]
    return names


# -- cache, lock, publish ---------------------------------------------------------------------------
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


def _version_dir_re(dest: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(dest.name)}\.(v|old|link)-[0-9a-f]+$")


def _check_dest(dest: Path) -> None:
    """Refuse to publish over something that is not a channel we made."""
    if dest.is_symlink():
        if _version_dir_re(dest).match(os.readlink(dest)) is None:
            raise UsageError(f"{dest} is a symlink not made by envmgr; refusing to replace it")
        return
    if not dest.exists():
        return
    if not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory")
    if any(dest.iterdir()) and not (dest / "noarch").is_dir():
        raise UsageError(f"{dest} exists and is not a conda channel; refusing to replace it",
                         hint="choose an empty or new directory")


def _current_target(dest: Path) -> Path | None:
    if dest.is_dir():
        return dest.resolve()
    return None


def _clean_leftovers(dest: Path) -> None:
    """Remove version dirs of killed or superseded builds (caller holds the lock)."""
    pattern = _version_dir_re(dest)
    keep = os.readlink(dest) if dest.is_symlink() else None
    for entry in dest.parent.iterdir():
        if entry.name == keep or not pattern.match(entry.name):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _publish(staged: Path, dest: Path) -> None:
    """Point ``dest`` at ``staged`` with one atomic rename of a symlink.

    A pre-existing real directory (a channel from before envmgr used
    symlinks) is first renamed aside; it is deleted by the next cleanup.
    """
    token = secrets.token_hex(4)
    link = dest.parent / f".{dest.name}.link-{token}"
    os.symlink(staged.name, link)
    try:
        if dest.exists() and not dest.is_symlink():
            os.rename(dest, dest.parent / f".{dest.name}.old-{token}")
        os.replace(link, dest)
    except OSError:
        link.unlink(missing_ok=True)
        raise


def _lock(dest: Path) -> filelock.FileLock:
    return filelock.FileLock(str(dest.parent / f".{dest.name}.lock"), timeout=LOCK_TIMEOUT_S)


# -- building --------------------------------------------------------------------------------------
def _recipes(plan: _Plan, say: Progress) -> tuple[list[CondaPackage], list[str]]:
    """All packages to put in the channel, largest first (they take longest)."""
    warnings: list[str] = []
    recipes = python_packages(plan.interp)
    say(f"reading {len(plan.dists)} distributions and {len(plan.wheels)} wheels")
    sources = [_from_installed(d, plan.interp) for d in plan.dists]
    sources += [_from_wheel(p, sha, plan.interp) for p, sha in plan.wheels]
    for pd, warns in sources:
        pkg, more = _to_conda(pd, plan.interp)
        recipes.append(pkg)
        warnings += warns + more
    recipes += [demo_package(*spec) for spec in plan.demos]
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
    _check_dest(dest)
    plan = _make_plan(interpreter_info(python_exe), distributions, wheels, demo_packages)
    key = plan.key()
    hit = _cached_result(dest, key, started)
    if hit is not None:
        return hit
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _lock(dest):
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
    _clean_leftovers(dest)
    staged = dest.parent / f".{dest.name}.v-{key[:12]}{secrets.token_hex(4)}"
    staged.mkdir()
    try:
        packages, warnings = _write_channel(plan, staged, _current_target(dest), say)
        say("indexing")
        _rattler.index_channel(staged, SUBDIRS)
        warnings = plan.warnings + warnings
        _write_marker(staged, key, packages, warnings)
        _publish(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _clean_leftovers(dest)
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
