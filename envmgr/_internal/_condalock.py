"""The one place that touches conda-lock's library (its models move between releases).

envmgr writes ``conda-lock.yml`` with conda-lock's own models and writer, so the
file is exactly what ``conda-lock render`` and ``conda-lock install`` expect,
and reads it back with conda-lock's parser. conda-lock is never run as a
command here: without a conda executable it tries to download micromamba and
hangs for about a minute before failing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from ..errors import UsageError
from ..lockfile import LockedPackage, PackageSet

PIP_SUBDIR = "pypi"  # the subdir envmgr gives pip entries (conda-lock's have none)


def _split_depend(depend: str) -> tuple[str, str]:
    name, _, constraint = depend.strip().partition(" ")
    return name, constraint.strip() or "*"


def _locked_dependency(platform: str, pkg: LockedPackage):  # noqa: ANN202 - conda-lock model
    from conda_lock.lockfile.v2prelim.models import HashModel, LockedDependency

    if pkg.manager == "pip":  # conda-lock's own pip entry: a wheel URL and its sha256
        return LockedDependency(
            name=pkg.name, version=pkg.version, manager="pip", platform=platform,
            dependencies=dict(_split_depend(d) for d in pkg.depends),
            url=pkg.url, hash=HashModel(sha256=pkg.sha256), categories={"main"})
    return LockedDependency(
        name=pkg.name, version=pkg.version, manager="conda", platform=platform,
        dependencies=dict(_split_depend(d) for d in pkg.depends),
        url=pkg.url, hash=HashModel(md5=pkg.md5 or None, sha256=pkg.sha256 or None),
        build=pkg.build, categories={"main"},
    )


def write_lockfile(path: Path, sets: Mapping[str, PackageSet], *, channels: list[str],
                   sources: list[str], content_hash: str, custom: Mapping[str, str]) -> None:
    """Write ``sets`` (one per platform) as conda-lock.yml at ``path`` (not atomic: callers stage)."""
    from conda_lock.lockfile import write_conda_lock_file
    from conda_lock.lockfile.v2prelim.models import Lockfile, LockMeta, TimeMeta
    from conda_lock.models.channel import Channel

    packages = [_locked_dependency(platform, pkg) for platform, s in sets.items() for pkg in s.packages]
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    meta = LockMeta(
        content_hash={platform: content_hash for platform in sets},
        channels=[Channel.from_string(url) for url in channels],
        platforms=sorted(sets),
        sources=sources,
        time_metadata=TimeMeta(created_at=now),
        custom_metadata=dict(custom),
    )
    write_conda_lock_file(Lockfile(package=packages, metadata=meta), path, metadata_choices=None)


def _subdir_from_url(url: str) -> str:
    return PurePosixPath(urlparse(url).path).parent.name


def _build_from_url(url: str) -> str:
    filename = PurePosixPath(urlparse(url).path).name
    stem = filename.removesuffix(".conda").removesuffix(".tar.bz2")
    return stem.rsplit("-", 1)[-1]


def read_lockfile(path: Path) -> tuple[dict[str, PackageSet], list[str], dict[str, str]]:
    """Parse conda-lock.yml → ({platform: PackageSet}, channel urls, custom metadata)."""
    from conda_lock.lockfile import parse_conda_lock_file

    try:
        lock = parse_conda_lock_file(path)
    except FileNotFoundError:
        raise UsageError(f"lock file not found: {path}") from None
    except Exception as exc:  # pydantic/yaml errors: report, do not trace back
        raise UsageError(f"{path} is not a valid conda-lock.yml: {exc}") from None
    by_platform: dict[str, list[LockedPackage]] = {}
    for dep in lock.package:
        if dep.manager == "pip":
            if not dep.hash.sha256:
                raise UsageError(f"{path}: pip package {dep.name} {dep.version} has no sha256; "
                                 "envmgr installs pip packages only with hashes")
            by_platform.setdefault(dep.platform, []).append(LockedPackage(
                name=dep.name, version=dep.version, build="", subdir=PIP_SUBDIR, url=dep.url,
                sha256=dep.hash.sha256, manager="pip",
                depends=tuple(f"{n} {c}".strip() if c != "*" else n for n, c in dep.dependencies.items())))
            continue
        by_platform.setdefault(dep.platform, []).append(LockedPackage(
            name=dep.name, version=dep.version, build=dep.build or _build_from_url(dep.url),
            subdir=_subdir_from_url(dep.url), url=dep.url, sha256=dep.hash.sha256 or "",
            md5=dep.hash.md5 or "",
            depends=tuple(f"{n} {c}".strip() if c != "*" else n for n, c in dep.dependencies.items()),
        ))
    sets = {platform: PackageSet.of(platform, pkgs) for platform, pkgs in by_platform.items()}
    channels = [c.url for c in lock.metadata.channels]
    return sets, channels, dict(lock.metadata.custom_metadata or {})

