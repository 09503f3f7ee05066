"""Command-line interface. Each module registers one topic's commands on ``app``."""

from __future__ import annotations

from typing import NoReturn

from .._internal._exit import hard_exit
from . import build_cmds, misc_cmds, spec_cmds  # noqa: F401  (register commands)
from ._app import app, run

__all__ = ["app", "main", "run"]


def main() -> NoReturn:
    """Console-script entry point; ends with a flushing os._exit (see _internal._exit)."""
    hard_exit(run())
