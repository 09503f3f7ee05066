"""Lock a spec's ``pip:`` requirements next to its solved conda packages.

The rule that decides what pip installs (docs/specs.md, "pip packages"):
**a Python distribution whose PEP 503-normalised name equals the name of a
locked conda package is provided by conda and never installed by pip** —
whether the spec's ``pip:`` list names it or a pip package depends on it.
The conda version must satisfy every pip requirement on it, or locking fails.

To make the resolver honour that, every locked conda package is offered to uv
as a dependency-free stand-in wheel of exactly its locked version, in a
private index that takes priority over the site's (uv's default
``first-index`` strategy then never looks for those names elsewhere), plus an
``==`` constraint. Stand-ins that the resolution uses are reported as
``PipNote`` ("satisfied by conda") and not locked; everything else becomes a
conda-lock ``manager: pip`` entry (wheel URL + sha256). Only wheels are
locked (``--no-build``): building an sdist would run its code on the build host.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envmgr._internal import _uv
from envmgr._internal._condalock import PIP_SUBDIR
from envmgr.config import Config
from envmgr.credentials import Credentials, load_credentials, netrc_for, redact
from envmgr.errors import BuildFailed, EnvironmentProblem
from envmgr.lockfile import LockedPackage, PackageSet
from envmgr.results import Progress, no_progress
from envmgr.define.spec import Spec

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# uv's messages for an index that refused or could not be reached (exit 5, not 3).
_UNREACHABLE = ("401 Unauthorized", "403 Forbidden", "Connection refused", "error sending request",
                "dns error", "Failed to fetch", "failed to lookup address", "client error (Connect)")


@dataclass(frozen=True)
class PipNote:
    """A pip requirement or dependency that a locked conda package satisfies."""

    platform: str
    requirement: str  # the spec's requirement, or the dependency's name
    conda: str  # "ipykernel 6.29.5"

    @property
    def line(self) -> str:
        return (f"pip: {self.requirement} is satisfied by conda {self.conda} "
                f"[{self.platform}] (same normalised name: pip does not install it)")

    def to_json(self) -> dict[str, str]:
        return {"platform": self.platform, "requirement": self.requirement, "conda": self.conda,
                "rule": "same-normalised-name"}


def conda_provided(conda_set: PackageSet) -> dict[str, tuple[str, str]]:
    """normalised name -> (conda name, version) for every conda package with a PEP 440 version."""
    provided: dict[str, tuple[str, str]] = {}
    for pkg in conda_set.conda_packages:
        norm = canonicalize_name(pkg.name)
        try:
            Version(pkg.version)
        except InvalidVersion:
            continue  # cannot stand in for a pip version; pip may then install its own copy
        if NAME_RE.match(norm):
            provided.setdefault(norm, (pkg.name, pkg.version))
    return provided


def _stub_wheel(folder: Path, name: str, version: str) -> None:
    """A dependency-free wheel named ``name`` ``version``: a placeholder, never installed."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: envmgr\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t.encode())}" for p, t in files.items()]
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    filename = f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target / filename, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    (target / "index.html").write_text(f'<a href="{html.escape(filename)}">{html.escape(filename)}</a>\n')


def _write_stub_index(folder: Path, provided: dict[str, tuple[str, str]]) -> None:
    folder.mkdir(parents=True)
    for norm, (_name, version) in sorted(provided.items()):
        _stub_wheel(folder, norm, version)
    (folder / "index.html").write_text("".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(provided)))


def _check_direct(spec: Spec, platform: str, provided: dict[str, tuple[str, str]]
                  ) -> tuple[list[str], list[PipNote]]:
    """Split the spec's requirements into those for uv and those conda satisfies (checked)."""
    to_resolve, notes, conflicts = [], [], []
    for text in spec.pip:
        req = Requirement(text)
        norm = canonicalize_name(req.name)
        if norm not in provided:
            to_resolve.append(text)
            continue
        name, version = provided[norm]
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            conflicts.append(f"{text} (conda locked {name} {version})")
        notes.append(PipNote(platform, text, f"{name} {version}"))
    if conflicts:
        raise BuildFailed(f"pip requirements of {spec.name} conflict with its conda packages "
                          f"[{platform}]: {'; '.join(conflicts)}",
                          hint="a package conda installs is never installed again by pip (same "
                               "normalised name): change the conda dependency or the pip requirement")
    return to_resolve, notes


def _python_version(spec: Spec, conda_set: PackageSet) -> str:
    python = conda_set.by_name().get("python")
    if python is None:
        raise BuildFailed(f"{spec.name} has pip requirements but no python among its conda packages",
                          hint="add python to dependencies")
    return python.version


def lock_pip(config: Config, spec: Spec, conda_set: PackageSet, progress: Progress = no_progress
             ) -> tuple[list[LockedPackage], list[PipNote]]:
    """The pip packages of ``spec`` for ``conda_set``'s platform, and what conda satisfies."""
    if not spec.pip:
        return [], []
    platform = conda_set.platform
    if platform not in _uv.PLATFORMS:
        raise BuildFailed(f"{spec.name}: pip packages cannot be locked for {platform}",
                          hint=f"pip packages lock for: {', '.join(_uv.PLATFORMS)}")
    python = _python_version(spec, conda_set)
    provided = conda_provided(conda_set)
    to_resolve, notes = _check_direct(spec, platform, provided)
    if not to_resolve:
        return [], notes
    creds = load_credentials(config.credentials_file)
    index = _index_description(config)
    progress(f"locking {len(to_resolve)} pip requirements of {spec.name} for {platform} from {index}")
    with tempfile.TemporaryDirectory(prefix="envmgr-piplock-") as tmp:
        wheels, used = _resolve(config, to_resolve, python, platform, provided, Path(tmp), creds)
    notes += [PipNote(platform, name, " ".join(provided[canonicalize_name(name)]))
              for name, _v in used if canonicalize_name(name) in provided]
    packages = [LockedPackage(name=canonicalize_name(w.name), version=w.version, build="",
                              subdir=PIP_SUBDIR, url=redact(w.url, None), sha256=w.sha256,
                              size=w.size or _size(w.url, creds), manager="pip") for w in wheels]
    return packages, notes


def _index_description(config: Config) -> str:
    links = ", ".join(str(p) for p in config.pip.find_links)
    if config.pip.offline:
        return f"the wheel folders {links} (offline)" if links else "no wheel folders (offline)"
    return config.pip.index_url + (f" and {links}" if links else "")


def _resolve(config: Config, requirements: list[str], python: str, platform: str,
             provided: dict[str, tuple[str, str]], tmp: Path, creds: Credentials | None
             ) -> tuple[list[_uv.ResolvedWheel], list[tuple[str, str]]]:
    stubs, empty = tmp / "conda-provided", tmp / "empty-index"
    _write_stub_index(stubs, provided)
    empty.mkdir()
    (empty / "index.html").write_text("")
    (tmp / "requirements.in").write_text("".join(f"{r}\n" for r in requirements))
    (tmp / "constraints.txt").write_text("".join(f"{n}=={v}\n" for n, (_c, v) in sorted(provided.items())))
    for folder in config.pip.find_links:
        if not folder.is_dir():
            raise EnvironmentProblem(f"pip wheel folder {folder} (pip.find_links) does not exist")
    index_url = empty.as_uri() if config.pip.offline else config.pip.index_url
    args = _uv.compile_args(tmp / "requirements.in", tmp / "pylock.toml", python_version=python,
                            platform=platform, index_url=index_url, priority_index=stubs.as_uri(),
                            find_links=config.pip.find_links, constraints=tmp / "constraints.txt",
                            cache_dir=config.pkgs_dir / "uv-cache")
    with netrc_for(creds, [config.pip.index_url]) as env:
        result = _uv.run(args, env=env, cwd=tmp)
    if result.returncode != 0:
        _raise_for(config, requirements, platform, redact(result.stderr.strip(), creds))
    return _uv.read_pylock(tmp / "pylock.toml", stubs.as_uri())


def _raise_for(config: Config, requirements: list[str], platform: str, stderr: str) -> None:
    tail = "\n  ".join(stderr.splitlines()[-12:])
    if any(marker in stderr for marker in _UNREACHABLE):
        raise EnvironmentProblem(f"the pip index {_index_description(config)} refused or could not be "
                                 f"reached while locking {', '.join(requirements)} [{platform}]:\n  {tail}",
                                 hint="check pip.index_url and the index's entry in credentials_file")
    raise BuildFailed(f"cannot lock the pip requirements {', '.join(requirements)} [{platform}] "
                      f"from {_index_description(config)}:\n  {tail}",
                      hint="check the requirement names and versions the index holds")


def _size(url: str, creds: Credentials | None) -> int | None:
    """The wheel's size for the quota check (a HEAD request; None if the index will not say)."""
    import urllib.request

    from envmgr._internal._rattler import channel_path
    from envmgr.credentials import basic_authorization

    if url.startswith("file://"):
        path = channel_path(url)
        try:
            return path.stat().st_size if path else None
        except OSError:
            return None
    request = urllib.request.Request(url, method="HEAD")
    if (header := basic_authorization(creds, url)) is not None:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http(s) only
            length = response.headers.get("Content-Length")
    except (OSError, ValueError):
        return None
    return int(length) if length and length.isdigit() else None
