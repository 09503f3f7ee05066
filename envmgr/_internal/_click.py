"""The click exception classes that typer raises, whichever click that is.

typer < 0.29 runs on the ``click`` distribution; typer >= 0.29 vendors it as
``typer._click`` and raises *those* classes, which ``except click.ClickException``
does not catch (every usage error then looked like an internal error). The CLI
catches the tuples below, so it works under both. This is the one module that
knows where typer keeps click; pyproject's bounds on typer and click are the
versions these names were tested with.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


def _exception_modules() -> list[ModuleType]:
    """``typer._click.exceptions`` (typer >= 0.29) and/or ``click.exceptions``.

    Under a typer that vendors click, the ``click`` distribution is only
    consulted if something already imported it (importing it costs ~12 ms of
    every command's start-up, for classes typer never raises).
    """
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        if name == "click.exceptions" and modules and "click" not in sys.modules:
            continue
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            continue
    return modules


def _classes(attr: str) -> tuple[type[BaseException], ...]:
    found = [getattr(m, attr) for m in _MODULES if isinstance(getattr(m, attr, None), type)]
    return tuple(dict.fromkeys(found))


_MODULES = _exception_modules()

CLICK_EXCEPTIONS: tuple[type[BaseException], ...] = _classes("ClickException")
"""Every error click/typer shows itself (usage errors, file errors)."""

USAGE_ERRORS: tuple[type[BaseException], ...] = _classes("UsageError")
"""The command line was wrong: unknown command or option, missing or bad value."""

NO_ARGS_IS_HELP: tuple[type[BaseException], ...] = _classes("NoArgsIsHelpError")
"""click >= 8.2 (and typer's copy) signal "no arguments: show help" with a UsageError."""


def _exits() -> tuple[type[BaseException], ...]:
    import typer

    return tuple(dict.fromkeys((typer.Exit, *_classes("Exit"))))


def _aborts() -> tuple[type[BaseException], ...]:
    import typer

    return tuple(dict.fromkeys((typer.Abort, *_classes("Abort"))))


EXITS = _exits()
ABORTS = _aborts()


def usage_text(exc: BaseException) -> str:
    """The usage line of the command the error is about ("" if unknown)."""
    ctx: Any = getattr(exc, "ctx", None)
    if ctx is None:
        return ""
    try:
        return str(ctx.get_usage()).strip()
    except Exception:  # noqa: BLE001 - a usage line is a courtesy, never a second error
        return ""


def help_command(exc: BaseException) -> str:
    """``<command path> -h``, the way to get help for the command the error is about."""
    ctx: Any = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "") or "envmgr"
    return f"{path} -h"


def command_of(exc: BaseException, prog_name: str) -> str:
    """The sub-command the error is about (``"builds"``, ``"channel build"``), "" for the root."""
    ctx: Any = getattr(exc, "ctx", None)
    path = str(getattr(ctx, "command_path", "") or "")
    return path[len(prog_name):].strip() if path.startswith(prog_name) else path.strip()


def message_of(exc: BaseException) -> str:
    """The error's one-line message, as click would print it after ``Error:``."""
    format_message = getattr(exc, "format_message", None)
    return str(format_message() if callable(format_message) else exc)
