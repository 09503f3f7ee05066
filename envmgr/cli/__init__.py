"""Command-line interface. Each topic module registers its commands on ``app`` when imported.

``run`` imports the topic of the command it runs (``_topics``); ``load_all()`` registers
every command (help, completion and an unknown command do that themselves).
"""

from __future__ import annotations

from typing import NoReturn

from .._internal._exit import hard_exit
from ._app import app, run
from ._topics import load_all

__all__ = ["app", "load_all", "main", "run"]


def main() -> NoReturn:
    """Console-script entry point; ends with a flushing os._exit (see _internal._exit)."""
    hard_exit(run())
