"""Read installed Python distributions and wheels; turn them into conda packages.

* which distributions: the installed ones by name, and the closure of their
  runtime requirements for linux-64 + the channel's Python;
* ``PyDist``: one distribution's metadata, entry points and files, read
  from an installed ``RECORD`` (``from_installed``) or a wheel
  (``from_wheel``);
* ``to_conda``: the ``CondaPackage`` for it (``noarch: python`` when pure,
  linux-64 when compiled), with requirements, markers and specifiers
  translated by ``envmgr._internal._condapkg``.
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
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envmgr.channel._condapkg import (
    CondaPackage,
    PkgFile,
    conda_version,
    entry_point_script,
    normalize_name,
    parse_requirements,
    python_depend,
    shebang_rewriter,
)
from envmgr.channel._interp import PLATFORM, Interpreter
from envmgr.errors import UsageError

CONVERTER_VERSION = "2"
"""Bump whenever the produced packages change for the same input: it is part
of the cache key and of every converted package's build hash."""

_SKIP_DIST_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "RECORD.jws", "RECORD.p7s"}
_SCRIPT_GROUPS = ("console_scripts", "gui_scripts")


# -- which distributions ----------------------------------------------------------------
def dist_index(interp: Interpreter) -> dict[str, importlib.metadata.Distribution]:
    """Installed distributions by normalized name; the first on the path wins,
    as it would for ``import``."""
    index: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=list(interp.path)):
        name = dist.metadata["Name"]
        if name:
            index.setdefault(normalize_name(name), dist)
    return index


def closure(roots: Iterable[tuple[str, str | None]],
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
class PyDist:
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


def from_installed(dist: importlib.metadata.Distribution, interp: Interpreter
                    ) -> tuple[PyDist, list[str]]:
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
    digest = content_digest(record, json.dumps(interp.markers, sort_keys=True))
    env_prefixes = (str(prefix),) if prefix else ()
    return PyDist(name=name, version=dist.version, metadata=dist.metadata,
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


def content_digest(*parts: str) -> str:
    h = hashlib.sha256(CONVERTER_VERSION.encode())
    for part in parts:
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def from_wheel(path: Path, sha256: str, interp: Interpreter) -> tuple[PyDist, list[str]]:
    """Unpack a wheel's members into a ``PyDist`` (see ``_wheel_files``)."""
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
    return PyDist(name=name, version=metadata["Version"], metadata=metadata,
                   wheel_meta=wheel_meta, entry_points=eps, files=files, dist_info=dist_info,
                   digest=content_digest(sha256, json.dumps(interp.markers, sort_keys=True)),
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


# -- PyDist -> CondaPackage ---------------------------------------------------------------------
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


def _payload(pd: PyDist, interp: Interpreter) -> tuple[list[PkgFile], list[str]]:
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


def _launchers(pd: PyDist, interp: Interpreter
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


def _depends(pd: PyDist, interp: Interpreter) -> tuple[list[str], list[str]]:
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


def to_conda(pd: PyDist, interp: Interpreter) -> tuple[CondaPackage, list[str]]:
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


def wheel_name(path: Path) -> str:
    try:
        return normalize_name(parse_wheel_filename(path.name)[0])
    except InvalidWheelFilename as exc:
        raise UsageError(f"{path.name} is not a wheel file name: {exc}") from exc


def wheel_requirements(wheels: list[tuple[Path, str]], interp: Interpreter
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
        names += [(d.split(" ", 1)[0], wheel_name(path)) for d in depends]
    return names

