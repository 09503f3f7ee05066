"""The build's advisory gate: what a new lock would introduce, and whether the site refuses it.

Runs before anything is installed (``pipeline._build_locked``). With the site setting
``advisories: block`` a lock that introduces an affected package (one the previous
latest did not have in that version) is refused; so is any lock when the database
cannot be read (fail closed). With ``warn`` both are reported only (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envmgr.catalog import records
from envmgr.catalog.advisories import (
    MANAGER_CONDA,
    AdvisoryDBError,
    Match,
    build_packages,
    cached_db,
    match_packages,
)
from envmgr.config import Config
from envmgr.errors import EXIT_BUILD_FAILED, EXIT_OK, EnvmgrError, UsageError
from envmgr.results import Progress, no_progress

BLOCK = "block"


@dataclass
class Gate:
    """What a new lock would bring in that the previous latest did not have."""

    introduced: list[Match] = field(default_factory=list)
    refused: bool = False
    error: str | None = None
    exit_code: int = EXIT_OK
    warning: str | None = None

    @property
    def found(self) -> list[dict[str, Any]]:
        return [{**m.to_json(), "introduced": True} for m in self.introduced]


def lock_packages(lock: Any) -> list[tuple[str, str, str]]:
    """(manager, name, version) of a Lock's host platform: conda packages and `manager: pip` ones."""
    return [(p.manager or MANAGER_CONDA, p.name, p.version) for p in lock.host_set.packages]


def gate(config: Config, lock: Any, previous: str | None, progress: Progress = no_progress) -> Gate:
    """Check a new lock against the site's advisories (nothing to do without ``advisories_dir``)."""
    if config.advisories_dir is None:
        return Gate()
    block = config.advisories_mode == BLOCK
    try:
        db = cached_db(Path(config.advisories_dir))
    except (AdvisoryDBError, UsageError) as exc:
        message = f"advisories not checked: {exc.message}"
        progress(f"warning: {message}")
        if block:
            return Gate(refused=True, error=message, exit_code=exc.exit_code)
        return Gate(warning=message)
    before: set[tuple[str, str, str]] = set()
    record = records.load(config.layout, lock.spec.name, previous) if previous else None
    if record is not None:
        try:
            before = {(m.advisory.id, m.package, m.version)
                      for m in match_packages(db, build_packages(config.layout, record))}
        except EnvmgrError:
            before = set()
    introduced = [m for m in match_packages(db, lock_packages(lock))
                  if (m.advisory.id, m.package, m.version) not in before]
    for m in introduced:
        fixed = f"fixed in {m.fixed}" if m.fixed else "no fixed version"
        progress(f"advisory {m.advisory.id} [{m.severity}] affects {m.package} {m.version} "
                 f"({fixed}): introduced by this build")
    if introduced and block:
        names = ", ".join(f"{m.package} {m.version} ({m.advisory.id})" for m in introduced)
        return Gate(introduced, refused=True, exit_code=EXIT_BUILD_FAILED,
                    error=f"refused by the site's advisories policy (block): this build would "
                          f"introduce {names}")
    return Gate(introduced)
