"""What a failed build leaves behind: a record that says why, and nothing half-done.

Called by the build pipeline for every failure after the record exists. The
record ends ``failed`` with the step that failed; the staged (or just
renamed, not yet pointed-at) prefix is kept as ``.failed-<id>`` for
inspection -- or removed when the disk or quota is full, because keeping it
would keep the machine full and the record itself could not be written;
``latest`` is never touched. Every write here is allowed to fail: the failure
must still be reported, never turned into a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import records
from .errors import BuildFailed, EnvironmentProblem, EnvmgrError
from .layout import Layout
from .osfault import errno_in_text, problem, refused
from .records import iso, utcnow

FAILED_PREFIX = ".failed-"
_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Failure:
    error: EnvmgrError
    step: str | None
    kept: Path | None  # the .failed-<id> directory, if kept
    removed: bool  # the staged prefix was removed to free space
    note: str = ""  # what could not be recorded


def as_error(exc: BaseException, step: str | None, path: Path | None = None) -> EnvmgrError:
    """The user-facing error for ``exc``: refusals are exit 5 naming the step (and ``path``
    when the error itself names no file)."""
    if isinstance(exc, EnvmgrError):
        return exc
    if isinstance(exc, OSError) and refused(exc):
        return problem(exc, step or "build", path)
    if isinstance(exc, OSError):
        return EnvironmentProblem(f"step {step or 'build'}: {exc}",
                                  hint="check the path named above, then build again")
    return BuildFailed(f"step {step or 'build'}: unexpected error: {type(exc).__name__}: {exc}")


def _full(exc: BaseException) -> bool:
    cause = exc.__cause__ if isinstance(exc, EnvmgrError) else exc
    if isinstance(exc, EnvironmentProblem) and ("(ENOSPC)" in exc.message or "(EDQUOT)" in exc.message):
        return True
    return isinstance(cause, OSError) and cause.errno in _FULL


def record_failure(layout: Layout, family: str, build_id: str, exc: BaseException,
                   leftovers: list[Path], log: Callable[[str], None]) -> Failure:
    """Clear or keep the leftovers, mark the record failed; never raises for OS errors."""
    rec = records.load(layout, family, build_id)
    step = rec.step if rec else None
    error = as_error(exc, step, layout.family_dir(family))
    kept, removed = None, False
    for leftover in (p for p in leftovers if p.is_dir() and not p.is_symlink()):
        if _full(exc):
            shutil.rmtree(leftover, ignore_errors=True)
            removed = not leftover.exists()
            continue
        target = leftover.with_name(f"{FAILED_PREFIX}{build_id}")
        try:
            os.rename(leftover, target)
            kept = target
        except OSError:
            shutil.rmtree(leftover, ignore_errors=True)
            removed = not leftover.exists()
    note = ""
    try:
        records.update(layout, family, build_id, status=records.FAILED, finished=iso(utcnow()),
                       error=error.message, step=step, failed_prefix=str(kept) if kept else None)
    except OSError as write_exc:
        note = f"the build record could not be marked failed ({write_exc.strerror}); the next build marks it"
    try:
        log(f"FAILED: {error.message}")
    except OSError:
        pass
    return Failure(error, step, kept, removed, note)


def compile_refusal(output: str, step: str) -> EnvironmentProblem | None:
    """A refusal compileall reported (it exits 1 and goes on when a .pyc cannot be written)."""
    exc = errno_in_text(output)
    return problem(exc, step) if exc is not None else None
