"""Write conda packages (``.tar.bz2``) and translate Python metadata for them.

Two concerns live here because both are "what a conda package is":

* the package model (``CondaPackage``/``PkgFile``) and a writer producing a
  ``.tar.bz2`` with ``info/index.json``, ``paths.json``, ``files``,
  ``link.json`` and ``about.json``;
* the PEP 503/440/508 -> conda translations (names, versions, specifiers,
  markers). whl2conda's output did not solve because it got exactly these
  wrong, so they are spelled out and unit-testable here.

Format: ``.conda`` (a zip of two zstd-compressed tars) when ``zstandard`` is
importable -- it is a dependency of conda-lock, hence of envmgr -- because
zstd is ~12x faster than bzip2 both to write (the channel's cold build is
dominated by compression) and to extract (every install). ``.tar.bz2``,
standard library only, is the fallback; rattler indexes and installs both.
The archives are deterministic (fixed mtimes, owners and order) so
rebuilding the same input gives byte-identical files, hence identical sha256s
in lock files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
"""The prefix placeholder conda tooling replaces with the install prefix."""

FIXED_MTIME = 1_700_000_000
"""mtime of every archive member and the index.json timestamp: reproducible
archives matter more than truthful dates (lock files pin sha256s)."""

BZ2_LEVEL = 1
"""bzip2 block size: level 1 is ~20% faster than 9 for ~15% larger files; the
channel is local, so build time wins."""

ZSTD_LEVEL = 3
"""zstd level 3 compresses about as well as bzip2 -9 at ~100 MB/s."""

CONDA_EXT = ".conda"
TAR_BZ2_EXT = ".tar.bz2"

_NAME_SEP = re.compile(r"[-_.]+")
_PATH_OK = re.compile(r"^[^/\0][^\0]*$")


# -- PEP 503 / 440 / 508 -> conda --------------------------------------------------
def normalize_name(name: str) -> str:
    """PEP 503 normalization, which is also a valid conda package name."""
    return _NAME_SEP.sub("-", name).lower()


def conda_version(version: str) -> tuple[str, str | None]:
    """Split a Python version into (conda version, local label or None).

    The local label (``+cpu``) is dropped from the conda version: rattler
    orders ``1.0+cpu`` *below* ``1.0``, so ``>=1.0`` would reject it, while
    PEP 440 ignores local labels for specifiers without one. Callers put the
    label into the build string so local variants stay distinguishable.
    """
    try:
        parsed = Version(version)
    except InvalidVersion:
        # Legacy, non-PEP 440 versions: keep what conda can parse.
        return re.sub(r"[^A-Za-z0-9_.!+]", "_", version), None
    local = parsed.local.replace(".", "_") if parsed.local else None
    return parsed.public, local


def _release_prefix(version: str, drop_last: int) -> str:
    """``1!2.3.4`` with the last ``drop_last`` release parts removed -> ``1!2.3``."""
    parsed = Version(version)
    parts = ".".join(str(p) for p in parsed.release[: len(parsed.release) - drop_last])
    return f"{parsed.epoch}!{parts}" if parsed.epoch else parts


def translate_specifier(spec: Specifier) -> list[str]:
    """One PEP 440 specifier as conda version constraints (ANDed).

    * ``~=1.4.2``  -> ``>=1.4.2`` and ``1.4.*`` (compatible release, exact)
    * ``==1.2.*``  -> ``1.2.*``;  ``!=1.2.*`` -> ``!=1.2.*``
    * ``===x``     -> ``==x`` (arbitrary equality is string equality)
    * local labels are stripped (see ``conda_version``), so ``==1.0+cpu``
      becomes ``==1.0``; the channel's conda versions carry no label either.
    """
    op, version = spec.operator, spec.version
    if op == "===":
        return [f"=={version}"]
    if version.endswith(".*"):
        base = version[:-2]
        return [f"{base}.*"] if op == "==" else [f"!={base}.*"]
    public, _ = conda_version(version)
    if op == "~=":
        return [f">={public}", f"{_release_prefix(public, 1)}.*"]
    return [f"{op}{public}"]


def translate_specifier_set(specifiers: SpecifierSet | str) -> str:
    """A PEP 440 specifier set as a conda version spec ('' for "any")."""
    if isinstance(specifiers, str):
        specifiers = SpecifierSet(specifiers)
    parts: list[str] = []
    for spec in sorted(specifiers, key=str):
        parts.extend(translate_specifier(spec))
    return ",".join(parts)


def requirement_to_depend(requirement: str, marker_env: Mapping[str, str]) -> str | None:
    """A ``Requires-Dist`` line as a conda dependency, or None if it does not apply.

    Markers are evaluated for ``marker_env`` with ``extra`` set to "", so
    requirements that only apply to an extra are dropped, as are those for
    other platforms or Pythons. Extras in the name are dropped (conda has no
    extras); URL requirements keep just their name.
    """
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate({**marker_env, "extra": ""}):
        return None
    name = normalize_name(req.name)
    version = translate_specifier_set(req.specifier)
    return f"{name} {version}" if version else name


def python_depend(requires_python: str | None) -> str:
    """``Requires-Python`` as a dependency on the ``python`` package."""
    if not requires_python:
        return "python"
    try:
        version = translate_specifier_set(requires_python)
    except InvalidSpecifier:
        return "python"
    return f"python {version}" if version else "python"


def parse_requirements(lines: Iterable[str], marker_env: Mapping[str, str]
                       ) -> tuple[list[str], list[str]]:
    """(conda depends, problems) for ``Requires-Dist`` lines, deduplicated."""
    depends: list[str] = []
    problems: list[str] = []
    for line in lines:
        try:
            dep = requirement_to_depend(line, marker_env)
        except (InvalidRequirement, InvalidSpecifier) as exc:
            problems.append(f"unparsable requirement {line!r}: {exc}")
            continue
        if dep is not None and dep not in depends:
            depends.append(dep)
    return depends, problems


# -- the package model ----------------------------------------------------------------
@dataclass(frozen=True)
class PkgFile:
    """One file (or symlink) in a package.

    ``source`` is the bytes themselves or a path (``str`` or ``Path``) read
    at write time, so a channel build never holds all files in memory.
    ``transform`` may rewrite the content (e.g. a script's shebang to the
    prefix placeholder); a text file that then contains ``PLACEHOLDER`` is
    declared in ``paths.json`` so the installer patches in the real prefix.
    """

    path: str
    source: str | os.PathLike[str] | bytes = b""
    mode: int = 0o644
    symlink: str | None = None
    transform: Callable[[bytes], bytes] | None = None

    def read(self) -> bytes:
        if isinstance(self.source, bytes):
            data = self.source
        else:
            with open(self.source, "rb") as fh:
                data = fh.read()
        return self.transform(data) if self.transform else data

    def size_hint(self) -> int:
        if isinstance(self.source, bytes):
            return len(self.source)
        try:
            return os.stat(self.source).st_size
        except OSError:
            return 0


def default_extension() -> str:
    """``.conda`` if zstandard can be imported, else ``.tar.bz2``."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return TAR_BZ2_EXT
    return CONDA_EXT


@dataclass
class CondaPackage:
    """Everything needed to write one conda package."""

    name: str
    version: str
    build: str
    subdir: str
    depends: list[str] = field(default_factory=list)
    files: list[PkgFile] = field(default_factory=list)
    noarch: str | None = None
    entry_points: list[str] = field(default_factory=list)
    constrains: list[str] = field(default_factory=list)
    build_number: int = 0
    license: str = ""
    summary: str = ""
    home: str | None = None
    ext: str = field(default_factory=default_extension)

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def filename(self) -> str:
        return f"{self.stem}{self.ext}"

    def size_hint(self) -> int:
        """Roughly how much there is to compress; used to schedule big ones first."""
        return sum(f.size_hint() for f in self.files)


def _index_json(pkg: CondaPackage) -> dict:
    index: dict = {
        "name": pkg.name, "version": pkg.version, "build": pkg.build,
        "build_number": pkg.build_number, "depends": list(pkg.depends),
        "license": pkg.license, "subdir": pkg.subdir, "timestamp": FIXED_MTIME * 1000,
    }
    if pkg.constrains:
        index["constrains"] = list(pkg.constrains)
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    if pkg.subdir != "noarch":
        platform, _, arch = pkg.subdir.partition("-")
        index["platform"] = platform
        index["arch"] = {"64": "x86_64", "aarch64": "aarch64", "ppc64le": "ppc64le"}.get(arch, arch)
    return index


def _link_json(pkg: CondaPackage) -> dict | None:
    if pkg.noarch != "python":
        return None
    return {"noarch": {"type": "python", "entry_points": list(pkg.entry_points)},
            "package_metadata_version": 1}


def _about_json(pkg: CondaPackage) -> dict:
    about = {"summary": pkg.summary, "license": pkg.license}
    if pkg.home:
        about["home"] = pkg.home
    return about


def _check_path(path: str) -> None:
    norm = posixpath.normpath(path)
    if not _PATH_OK.match(path) or norm != path or norm.startswith("../") or norm == "..":
        raise ValueError(f"unsafe path in package: {path!r}")


def _paths_entry(f: PkgFile, data: bytes | None) -> dict:
    if f.symlink is not None:
        return {"_path": f.path, "path_type": "softlink"}
    assert data is not None
    entry = {"_path": f.path, "path_type": "hardlink",
             "sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data)}
    if PLACEHOLDER.encode() in data and b"\0" not in data:
        entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
    return entry


def _tarinfo(name: str, *, size: int = 0, mode: int = 0o644, symlink: str | None = None
             ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if symlink is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = symlink
        info.mode = 0o777
    else:
        info.size = size
        info.mode = mode
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    tar.addfile(_tarinfo(name, size=len(data), mode=mode), io.BytesIO(data))


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _info_members(pkg: CondaPackage, files: list[PkgFile], contents: list[bytes | None]
                  ) -> list[tuple[str, bytes]]:
    """The ``info/`` files: index, paths, files list, about and (noarch) link."""
    paths = [_paths_entry(f, data) for f, data in zip(files, contents, strict=True)]
    members = [("info/index.json", _json_bytes(_index_json(pkg))),
               ("info/paths.json", _json_bytes({"paths": paths, "paths_version": 1})),
               ("info/files", "".join(f"{f.path}\n" for f in files).encode()),
               ("info/about.json", _json_bytes(_about_json(pkg)))]
    link = _link_json(pkg)
    if link is not None:
        members.append(("info/link.json", _json_bytes(link)))
    return members


def _add_payload(tar: tarfile.TarFile, files: list[PkgFile], contents: list[bytes | None]) -> None:
    for f, data in zip(files, contents, strict=True):
        if f.symlink is not None:
            tar.addfile(_tarinfo(f.path, symlink=f.symlink))
        else:
            assert data is not None
            _add_bytes(tar, f.path, data, f.mode)


def _write_tar_bz2(out: Path, info: list[tuple[str, bytes]], files: list[PkgFile],
                   contents: list[bytes | None]) -> None:
    with tarfile.open(out, "w:bz2", compresslevel=BZ2_LEVEL, format=tarfile.PAX_FORMAT) as tar:
        for name, data in info:
            _add_bytes(tar, name, data)
        _add_payload(tar, files, contents)


def _zstd_tar(fill: Callable[[tarfile.TarFile], None]) -> bytes:
    import zstandard

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fill(tar)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(buf.getvalue())


def _zip_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=time.gmtime(FIXED_MTIME)[:6])
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _write_conda(out: Path, stem: str, info: list[tuple[str, bytes]], files: list[PkgFile],
                 contents: list[bytes | None]) -> None:
    """The v2 ``.conda`` layout: an uncompressed zip holding ``metadata.json``,
    ``info-<stem>.tar.zst`` and ``pkg-<stem>.tar.zst``."""
    def fill_info(tar: tarfile.TarFile) -> None:
        for name, data in info:
            _add_bytes(tar, name, data)

    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        _zip_member(zf, "metadata.json", b'{"conda_pkg_format_version": 2}')
        _zip_member(zf, f"info-{stem}.tar.zst", _zstd_tar(fill_info))
        _zip_member(zf, f"pkg-{stem}.tar.zst",
                    _zstd_tar(lambda tar: _add_payload(tar, files, contents)))


def write_package(pkg: CondaPackage, channel_dir: Path) -> Path:
    """Write ``pkg`` into ``channel_dir/<subdir>/`` and return the archive path.

    The archive is written under a temporary name and renamed, so a reader
    (or the indexer) never sees a half-written package.
    """
    files = sorted(pkg.files, key=lambda f: f.path)
    seen: set[str] = set()
    contents: list[bytes | None] = []
    for f in files:
        _check_path(f.path)
        if f.path in seen:
            raise ValueError(f"{pkg.filename}: duplicate path {f.path}")
        seen.add(f.path)
        contents.append(None if f.symlink is not None else f.read())
    info = _info_members(pkg, files, contents)
    out_dir = Path(channel_dir) / pkg.subdir
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / pkg.filename
    tmp = out_dir / f".{pkg.filename}.part"
    if pkg.ext == CONDA_EXT:
        _write_conda(tmp, pkg.stem, info, files, contents)
    elif pkg.ext == TAR_BZ2_EXT:
        _write_tar_bz2(tmp, info, files, contents)
    else:
        raise ValueError(f"unknown package format {pkg.ext!r}")
    os.replace(tmp, target)
    return target


# -- scripts ------------------------------------------------------------------------------
_SH_EXEC = re.compile(rb"^#!/bin/sh\n'''exec' .*\n' '''\n", re.MULTILINE)


def shebang_rewriter(old_prefixes: Iterable[str] = (), python: str = "python"
                     ) -> Callable[[bytes], bytes]:
    """A transform pointing a script's Python shebang at the prefix placeholder.

    Handles ``#!python`` (wheels' ``.data/scripts``), ``#!/some/env/bin/python``
    and pip's ``#!/bin/sh`` + ``'''exec'`` trick for long paths; other text
    occurrences of ``old_prefixes`` (the source environment) are replaced too,
    so nothing in the script points back at the environment it came from.
    Binary files are returned unchanged.
    """
    shebang = f"#!{PLACEHOLDER}/bin/{python}\n".encode()
    olds = [p.encode() for p in old_prefixes if p and p != "/"]

    def rewrite(data: bytes) -> bytes:
        if b"\0" in data[:8192]:
            return data
        match = _SH_EXEC.match(data)
        if match:
            data = shebang + data[match.end():]
        elif data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
            data = shebang + (data.split(b"\n", 1)[1] if b"\n" in data else b"")
        for old in olds:
            data = data.replace(old, PLACEHOLDER.encode())
        return data

    return rewrite


def entry_point_script(module: str, attr: str, python: str) -> bytes:
    """A console-script launcher like pip's, with a placeholder shebang.

    Used for non-noarch packages, where the installer does not generate
    launchers from ``link.json``.
    """
    head, _, _ = attr.partition(".")
    return (f"#!{PLACEHOLDER}/bin/{python}\n"
            "# -*- coding: utf-8 -*-\n"
            "import re\nimport sys\n"
            f"from {module} import {head}\n"
            "if __name__ == '__main__':\n"
            "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
            f"    sys.exit({attr}())\n").encode()
