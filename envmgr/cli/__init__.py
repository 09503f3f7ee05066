"""Command-line interface. Each module registers one topic's commands on ``app``."""

from __future__ import annotations

from typing import NoReturn

from .._internal._exit import hard_exit
# Each topic module registers its commands on ``app`` when imported (one line each).
from . import build_cmds  # noqa: F401
from . import gc_cmds  # noqa: F401
from . import misc_cmds  # noqa: F401
from . import notebooks_cmds  # noqa: F401
from . import ops_cmds  # noqa: F401
from . import restore_cmds  # noqa: F401
from . import security_cmds  # noqa: F401
from . import serve_cmds  # noqa: F401
from . import spec_cmds  # noqa: F401
from . import stable_cmds  # noqa: F401
from ._app import app, run

__all__ = ["app", "main", "run"]


def main() -> NoReturn:
    """Console-script entry point; ends with a flushing os._exit (see _internal._exit)."""
    hard_exit(run())
