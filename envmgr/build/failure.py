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

from envmgr.catalog import records
from envmgr.clock import iso, utcnow
from envmgr.errors import BuildFailed, EnvironmentProblem, EnvmgrError
from envmgr.layout import FAILED_PREFIX, Layout
from envmgr.osfault import errno_in_text, problem, refused

RESERVE_NAME = ".reserve"
RESERVE_BYTES = 256 * 1024  # room for marking the record failed on a disk that filled up
_FULL = (errno.ENOSPC, errno.EDQUOT)


def reserve_space(record_dir: Path) -> None:
    """Set aside a little space in the record dir, released to write the failure on a full disk.

    Removing a staged prefix frees space only if the failing step had written
    something; a disk that filled up from outside (another user, a log) stays
    full, and then the record could not say ``failed``.
    """
    fd = os.open(record_dir / RESERVE_NAME, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.write(fd, b"\0" * RESERVE_BYTES)
    finally:
        os.close(fd)


def release_space(record_dir: Path) -> None:
    try:
        (record_dir / RESERVE_NAME).unlink(missing_ok=True)
    except OSError:
        pass


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
    release_space(layout.record_dir(family, build_id))
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
