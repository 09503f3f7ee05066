"""Which topic module registers which command, so a run imports only the one it needs.

Every topic module (``build_cmds``, ``ops_cmds``, ...) registers its commands
on ``app`` when imported, and typer turns every registered command into a
click command on each run. For ``envmgr build`` (the nightly) or ``envmgr
status`` that was ~25 ms of imports and conversion for commands that do not
run (issue 14). ``load(argv)`` imports the topic that owns the command named on
the command line; help, completion, an unknown command or none at all load
every topic, so listings and "no such command" work as before.
``tests/test_cli_startup.py`` checks this map against what the modules register.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

TOPICS = ("build_cmds", "gc_cmds", "misc_cmds", "notebooks_cmds", "ops_cmds", "restore_cmds",
          "security_cmds", "serve_cmds", "spec_cmds", "stable_cmds")  # the order of `envmgr -h`

COMMAND_TOPIC = {
    "build": "build_cmds", "lock": "build_cmds", "builds": "build_cmds", "diff": "build_cmds",
    "rollback": "build_cmds", "gc": "gc_cmds", "channel": "misc_cmds", "config": "misc_cmds",
    "quickstart": "misc_cmds", "notebooks": "notebooks_cmds", "status": "ops_cmds",
    "doctor": "ops_cmds", "restore": "restore_cmds", "advisories": "security_cmds",
    "sbom": "security_cmds", "serve": "serve_cmds", "spec": "spec_cmds", "stable": "stable_cmds",
    "promote": "stable_cmds", "retire": "stable_cmds",
}

GLOBAL_WITH_VALUE = ("--root", "--config")  # envmgr's global options that take a value


def command_word(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (after the global options), if any."""
    args = iter(argv)
    for arg in args:
        if arg in GLOBAL_WITH_VALUE:
            next(args, None)
        elif arg.startswith("-"):
            continue
        else:
            return arg
    return None


def load_all() -> None:
    for topic in TOPICS:
        importlib.import_module(f"{__package__}.{topic}")


def load(argv: Sequence[str]) -> None:
    """Import the topic module owning the command in ``argv``; all of them when in doubt."""
    word = command_word(argv)
    topic = COMMAND_TOPIC.get(word or "")
    help_asked = any(a in ("-h", "--help") for a in argv) and word is None
    if topic is None or help_asked or any(k.startswith("_ENVMGR_COMPLETE") for k in os.environ):
        load_all()
        return
    importlib.import_module(f"{__package__}.{topic}")
