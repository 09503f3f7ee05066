"""Where everything lives under an envmgr root.

One class owns every path so that the build, the kernels, the collector and the
status report cannot disagree about the layout (docs/design.md describes it).

    ROOT/
      envs/<family>/<build-id>/          a published conda prefix, never modified
      envs/<family>/latest -> <build-id> relative symlink, swapped with os.replace
      envs/<family>/.staging-<build-id>/ a build in progress (stale ones are cleared)
      records/<family>/<build-id>/       build record; outlives the prefix (tombstone)
      stable/<family>.json               promoted stable releases of a family
      leases/<family>/<build-id>.lease   kernels hold a shared flock on this file
      locks/<family>.lock                per-family build lock (+ .holder.json)
      trash/                             prefixes being deleted by gc
      channels/demo/                     the local demo channel (built on demand)
      pkgs/                              package cache shared by all builds
      logs/                              audit log and per-build logs' index
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

STAGING_PREFIX = ".staging-"
FAILED_PREFIX = ".failed-"  # a failed build kept for diagnosis: envs/<family>/.failed-<id>
LATEST = "latest"
# Spec files in a specs directory (define.spec.spec_files; the status cache lists them without it)
SPEC_SUFFIXES = (".yaml", ".yml")
NOT_SPECS = ("policy.yaml", "policy.yml")  # the package policy beside the specs (envmgr.policy)

# A build id is a UTC timestamp plus a short hash of the lock: it sorts by time,
# is unique, and stays short because conda prefixes have a path-length budget.
BUILD_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}(-\d+)?$")


@dataclass(frozen=True)
class Layout:
    """Paths under one envmgr root. Pure: creates nothing by itself.

    Paths are computed once per root and family (cached: a status of 5,000 builds asked
    for ~60,000 of them, and pathlib's joins were a third of its time, issue 14).
    """

    root: Path

    # -- families and builds -------------------------------------------------
    @cached_property
    def envs_dir(self) -> Path:
        return self.root / "envs"

    @lru_cache(maxsize=16384)  # status and gc ask for each build's paths: pathlib joins add up
    def family_dir(self, family: str) -> Path:
        return self.envs_dir / family

    def prefix(self, family: str, build_id: str) -> Path:
        return self.family_dir(family).joinpath(build_id)

    def latest_link(self, family: str) -> Path:
        return self.family_dir(family) / LATEST

    def staging(self, family: str, build_id: str) -> Path:
        return self.family_dir(family) / f"{STAGING_PREFIX}{build_id}"

    # -- records ---------------------------------------------------------------
    @cached_property
    def records_dir(self) -> Path:
        return self.root / "records"

    @lru_cache(maxsize=16384)  # status and gc ask for each build's paths: pathlib joins add up
    def family_records(self, family: str) -> Path:
        return self.records_dir / family

    def record_dir(self, family: str, build_id: str) -> Path:
        return self.family_records(family).joinpath(build_id)

    def record_file(self, family: str, build_id: str) -> Path:
        """The build record (records.BuildRecord) of one build."""
        return self.family_records(family).joinpath(build_id, "build.json")

    def recorded_spec(self, family: str, build_id: str) -> Path:
        """The spec exactly as the build was made from it."""
        return self.record_dir(family, build_id) / "spec.yaml"

    def recorded_lock(self, family: str, build_id: str) -> Path:
        return self.record_dir(family, build_id) / "conda-lock.yml"

    def recorded_packages(self, family: str, build_id: str) -> Path:
        return self.record_dir(family, build_id) / "packages.json"

    def build_log(self, family: str, build_id: str) -> Path:
        return self.record_dir(family, build_id) / "build.log"

    def sbom(self, family: str, build_id: str) -> Path:
        """The build's CycloneDX SBOM in its record (docs/security.md)."""
        return self.record_dir(family, build_id) / "sbom.cdx.json"

    @property
    def advisories_check(self) -> Path:
        """The last `envmgr advisories check` (status, doctor and the staff page read it)."""
        return self.root / "advisories" / "last-check.json"

    def last_run(self, family: str) -> Path:
        """How the family's last build run ended (written at the end of every run)."""
        return self.family_records(family) / "last-run.json"

    @cached_property
    def stable_dir(self) -> Path:
        return self.root / "stable"

    def stable_file(self, family: str) -> Path:
        return self.stable_dir / f"{family}.json"

    # -- leases and locks ----------------------------------------------------
    @cached_property
    def leases_root(self) -> Path:
        return self.root / "leases"

    @lru_cache(maxsize=16384)  # status and gc ask for each build's paths: pathlib joins add up
    def lease_dir(self, family: str) -> Path:
        return self.leases_root / family

    def lease_file(self, family: str, build_id: str) -> Path:
        return self.lease_dir(family).joinpath(f"{build_id}.lease")

    @cached_property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    def build_lock(self, family: str) -> Path:
        return self.locks_dir / f"{family}.lock"

    def build_lock_holder(self, family: str) -> Path:
        return self.locks_dir / f"{family}.holder.json"

    @property
    def gc_lock(self) -> Path:
        return self.locks_dir / "gc.lock"

    @property
    def gc_lock_holder(self) -> Path:
        return self.locks_dir / "gc.holder.json"

    @property
    def hub_cookie_secret(self) -> Path:
        """The staff service's cookie secret (default of `envmgr serve --cookie-secret-file`)."""
        return self.locks_dir / "hubservice-cookie-secret"

    # -- shared areas ----------------------------------------------------------
    @cached_property
    def trash_dir(self) -> Path:
        return self.root / "trash"

    @cached_property
    def channels_dir(self) -> Path:
        return self.root / "channels"

    @property
    def demo_channel(self) -> Path:
        return self.channels_dir / "demo"

    @cached_property
    def pkgs_dir(self) -> Path:
        return self.root / "pkgs"

    @cached_property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def audit_log(self) -> Path:
        return self.logs_dir / "audit.log"

    def jobs_dir(self, family: str) -> Path:
        """The staff service's detached build jobs of one family."""
        return self.logs_dir / "jobs" / family

    # -- enumeration -----------------------------------------------------------
    def families(self) -> list[str]:
        """Families that have an envs/ or records/ directory, sorted."""
        names: set[str] = set()
        for parent in (self.envs_dir, self.records_dir):
            try:
                with os.scandir(parent) as entries:  # d_type: no stat per family (status, issue 14)
                    names.update(e.name for e in entries if e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                continue
        return sorted(names)

    def published_builds(self, family: str) -> list[str]:
        """Build ids with a published prefix, oldest first."""
        fam = self.family_dir(family)
        if not fam.is_dir():
            return []
        return sorted(p.name for p in fam.iterdir() if BUILD_ID_RE.match(p.name) and p.is_dir())

    def latest_build(self, family: str) -> str | None:
        """The build id the family's latest pointer names, or None."""
        link = self.latest_link(family)
        try:
            target = link.readlink()
        except (FileNotFoundError, OSError):
            return None
        return target.name if BUILD_ID_RE.match(target.name) else None
