"""Crash points for kill tests: SIGKILL this process at a named step.

``ENVMGR_FAULT_POINT=<step>`` makes ``checkpoint(step)`` kill the process, so a
test reaches every step of a build or gc exactly (tests/test_build.py,
tests/test_gc.py). Without the variable a checkpoint costs one dict lookup.
"""

from __future__ import annotations

import errno
import os
import signal

FAULT_ENV = "ENVMGR_FAULT_POINT"
FILL_ENV = "ENVMGR_FAULT_FILL"  # "<step>:<ballast file>": fill that filesystem at the step


def checkpoint(step: str) -> None:
    """Crash here, or fill the disk here, if a test asked for it: how fault tests reach every step."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    fill_step, _, ballast = os.environ.get(FILL_ENV, "").partition(":")
    if fill_step == step and ballast:
        _fill_filesystem(ballast)


def _fill_filesystem(ballast: str) -> None:
    """Write ``ballast`` until its filesystem is full (a disk that really fills up)."""
    chunk = b"\0" * (1 << 20)
    with open(ballast, "ab", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(chunk[:size])
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
