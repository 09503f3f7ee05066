"""Crash points for kill tests: SIGKILL this process at a named step.

``ENVMGR_FAULT_POINT=<step>`` makes ``checkpoint(step)`` kill the process, so a
test reaches every step of a build or gc exactly (tests/test_build.py,
tests/test_gc.py). Without the variable a checkpoint costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "ENVMGR_FAULT_POINT"


def checkpoint(step: str) -> None:
    """Crash here if a test asked for it: how kill tests reach every step exactly."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
