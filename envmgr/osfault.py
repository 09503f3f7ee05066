"""When the machine says no: one message, naming the path, the step and a fix; exit 5.

Permission denied, a read-only filesystem, a full disk, an exhausted quota or
a path that is too long are not bugs and not build failures: the machine
refused. Every layer that touches the root turns such an ``OSError`` into an
``EnvironmentProblem`` here, so the wording, the hint and the exit code
(``EXIT_ENVIRONMENT``) are the same for ``build``, ``gc``, ``rollback`` and
the rest. Subprocesses (compileall) and rattler report the same failures as
text; ``errno_in_text`` recognises them there.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from envmgr.errors import EnvironmentProblem

_OWNER = ("run envmgr as the service account that owns the envmgr root, or fix the owner/"
          "permissions of the directory named above")
HINTS: dict[int, str] = {
    errno.EACCES: _OWNER,
    errno.EPERM: _OWNER,
    errno.EROFS: "the filesystem is mounted read-only here; run envmgr on the host that writes the "
                 "root, or remount it read-write",
    errno.ENOSPC: "the filesystem is full: free space (`envmgr gc`, or remove other files), then "
                  "run the command again",
    errno.EDQUOT: "the disk quota is exhausted: free space (`envmgr gc`) or ask for a larger quota, "
                  "then run the command again",
    errno.ENAMETOOLONG: "a path is too long for this filesystem: choose a shorter root or family name",
}
REFUSALS = frozenset(HINTS)  # errno values that mean "the machine refused"
_PY_ERRNO = re.compile(r"\[Errno (\d+)\] [^:'\n]*(?:: '([^'\n]*)')?")
_RUST_ERRNO = re.compile(r"\(os error (\d+)\)")


def refused(exc: OSError) -> bool:
    """True if ``exc`` is the machine refusing (and not a bug or a missing file)."""
    return exc.errno in REFUSALS


def problem(exc: OSError, step: str, path: Path | str | None = None) -> EnvironmentProblem:
    """The one message for a refusal: step, path, reason, and a hint."""
    where = exc.filename or path
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = f"{os.strerror(exc.errno)} ({code})" if exc.errno else str(exc)
    return EnvironmentProblem(f"step {step}: {where or 'the envmgr root'}: {reason}",
                              hint=HINTS.get(exc.errno or 0, _OWNER))


@contextmanager
def step_guard(step: str, path: Path | str | None = None) -> Iterator[None]:
    """Turn a refusal raised inside the block into ``problem(exc, step, path)``."""
    try:
        yield
    except OSError as exc:
        if not refused(exc):
            raise
        raise problem(exc, step, path) from exc


def errno_in_text(text: str) -> OSError | None:
    """The first refusal a subprocess or rattler reported in ``text``, as an OSError (or None).

    Python prints ``[Errno 28] No space left on device: '/path'``; Rust
    libraries such as rattler print ``... (os error 28)``.
    """
    for match in _PY_ERRNO.finditer(text):
        code = int(match.group(1))
        if code in REFUSALS:
            return OSError(code, os.strerror(code), match.group(2))
    for match in _RUST_ERRNO.finditer(text):
        code = int(match.group(1))
        if code in REFUSALS:
            return OSError(code, os.strerror(code))
    return None

