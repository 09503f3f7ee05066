"""Locked package sets: the contract between a spec and a build.

A build's identity is its locked package set. Two sets are equal when they
name the same package files (name, version, build, subdir, sha256); this is
what makes an unchanged nightly build nothing. The file format is conda-lock's
own ``conda-lock.yml`` (written through conda-lock's library, see
``_internal._condalock``) so that ``conda-lock render``/``install`` accept it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any



@dataclass(frozen=True, order=True)
class LockedPackage:
    name: str
    version: str
    build: str
    subdir: str
    url: str
    sha256: str
    md5: str = ""
    build_number: int = 0
    depends: tuple[str, ...] = field(default=(), compare=False)
    noarch: str | None = field(default=None, compare=False)
    size: int | None = field(default=None, compare=False)
    manager: str = "conda"  # or "pip": a conda-lock `manager: pip` entry (a wheel; subdir "pypi")

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Identity of the package file, independent of where it was downloaded from."""
        return (self.name, self.version, self.build, self.subdir, self.sha256)

    @property
    def label(self) -> str:
        if self.manager == "pip":
            return f"{self.name}=={self.version} (pip)"
        return f"{self.name}={self.version}={self.build}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["depends"] = list(self.depends)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LockedPackage:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["depends"] = tuple(known.get("depends") or ())
        return cls(**known)


@dataclass(frozen=True)
class PackageSet:
    """All packages of one platform of a lock, sorted by name."""

    platform: str
    packages: tuple[LockedPackage, ...]

    @classmethod
    def of(cls, platform: str, packages: Iterable[LockedPackage]) -> PackageSet:
        return cls(platform, tuple(sorted(packages, key=lambda p: p.name)))

    @property
    def digest(self) -> str:
        """Stable hash of the set; a build id carries its first six hex digits."""
        blob = json.dumps(sorted(p.key for p in self.packages)).encode()
        import hashlib  # OpenSSL loads only when a digest is computed (status reads records)

        return hashlib.sha256(blob).hexdigest()

    def same_as(self, other: PackageSet | None) -> bool:
        return other is not None and self.digest == other.digest

    def by_name(self) -> dict[str, LockedPackage]:
        return {p.name: p for p in self.packages}

    @property
    def conda_packages(self) -> tuple[LockedPackage, ...]:
        """What rattler installs (pip entries are installed after them, by uv)."""
        return tuple(p for p in self.packages if p.manager == "conda")

    @property
    def pip_packages(self) -> tuple[LockedPackage, ...]:
        return tuple(p for p in self.packages if p.manager == "pip")

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "digest": self.digest,
                "packages": [p.to_json() for p in self.packages]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackageSet:
        return cls.of(data["platform"], (LockedPackage.from_json(p) for p in data["packages"]))


@dataclass(frozen=True)
class Change:
    name: str
    kind: str  # added, removed, upgraded, downgraded, rebuilt
    old: str | None
    new: str | None
    manager: str = "conda"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def line(self) -> str:
        """``upgraded numpy 1.26.4 (h1) → 2.0.1 (h2)``; pip packages end in ``(pip)``."""
        versions = " → ".join(v for v in (self.old, self.new) if v)
        suffix = " (pip)" if self.manager == "pip" else ""
        return f"{self.kind} {self.name} {versions}{suffix}"


@dataclass(frozen=True)
class PackageDiff:
    changes: tuple[Change, ...]

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def empty(self) -> bool:
        return not self.changes

    def summary(self) -> str:
        counts = {k: len(self.of_kind(k)) for k in ("added", "removed", "upgraded", "downgraded", "rebuilt")}
        parts = [f"{n} {k}" for k, n in counts.items() if n]
        return ", ".join(parts) if parts else "no changes"

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "changes": [c.to_json() for c in self.changes]}


def _compare_versions(old: str, new: str) -> int:
    """-1, 0, 1 by conda's version ordering (rattler's ``Version``), not PEP 440's or text's:
    a build moving from ``9f`` to ``10`` is an upgrade. Unparsable versions compare as text.

    rattler is imported here, not through ``_internal._rattler``: this module sits in the
    same layer as ``_internal`` (pyproject's import contract) and ``Version`` is public API.
    """
    import rattler
    from rattler.exceptions import InvalidVersionError

    try:
        a, b = rattler.Version(old), rattler.Version(new)
    except InvalidVersionError:
        return (old > new) - (old < new)
    return (a > b) - (a < b)


def _pin(p: LockedPackage) -> str:
    return p.version if p.manager == "pip" or not p.build else f"{p.version} ({p.build})"


def diff(old: PackageSet | None, new: PackageSet) -> PackageDiff:
    """What changed from ``old`` to ``new``: the answer to "why did my notebook change?"."""
    before = old.by_name() if old else {}
    after = new.by_name()
    changes: list[Change] = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None and b is not None:
            changes.append(Change(name, "added", None, _pin(b), b.manager))
        elif b is None and a is not None:
            changes.append(Change(name, "removed", _pin(a), None, a.manager))
        elif a is not None and b is not None and a.key != b.key:
            order = _compare_versions(a.version, b.version)
            kind = "upgraded" if order < 0 else "downgraded" if order > 0 else "rebuilt"
            changes.append(Change(name, kind, _pin(a), _pin(b), b.manager))
    return PackageDiff(tuple(changes))
