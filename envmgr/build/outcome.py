"""What a build run was asked to do and what it did: options, status and outcome.

Its own module so that the pipeline, notifications, quickstart and the CLI
share the types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envmgr.errors import EXIT_OK
from envmgr.lockfile import PackageDiff
from envmgr.results import StrEnum


class BuildStatus(StrEnum):
    """How one family's build run ended (the JSON value is the plain string)."""

    BUILT = "built"
    UNCHANGED = "unchanged"
    HELD = "held"
    FAILED = "failed"


@dataclass(frozen=True)
class BuildOptions:
    force: bool = False
    from_lock: Path | None = None
    wait: bool = True
    command: str = ""


@dataclass
class BuildOutcome:
    family: str
    status: BuildStatus
    build_id: str | None = None
    prefix: Path | None = None
    previous: str | None = None
    diff: PackageDiff | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_exit_code: int = EXIT_OK
    log: Path | None = None
    package_count: int = 0
    message: str = ""
    kernels: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. the notification failed

    @property
    def exit_code(self) -> int:
        return self.error_exit_code if self.status == BuildStatus.FAILED else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "status": self.status, "build_id": self.build_id,
                "prefix": str(self.prefix) if self.prefix else None, "previous": self.previous,
                "diff": self.diff.to_json() if self.diff else None, "timings": self.timings,
                "error": self.error, "log": str(self.log) if self.log else None,
                "package_count": self.package_count, "message": self.message,
                "kernels": self.kernels, "warnings": self.warnings}
