"""How the CLI reports a failure: text on stderr, and with ``--json`` an envelope on stdout.

Every failure, whatever raised it (an ``EnvmgrError``, a usage error from
click/typer, an interruption or a bug), is reported the same way:

* for people, on stderr: ``error: <message>`` and ``hint: <hint>`` (a usage
  error shows click's usage line and "Try ... -h" instead);
* with ``--json``, additionally on stdout: ``{"envmgr": 1, "command", "ok": false,
  "error": {"error", "message", "hint", "exit_code"}}``, so monitoring that
  parses stdout always gets a document;
* the exit code is the documented one (envmgr/errors.py), with or without ``--json``.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # rich loads when text is printed: --json output needs none of it
    from rich.console import Console

from .._internal import _click, _json
from ..errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, EnvmgrError
from ..results import envelope

PROG_NAME = "envmgr"


def wants_json(args: Sequence[str]) -> bool:
    """``--json`` among the options (before a ``--``): known even when parsing fails."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def error_json(kind: str, message: str, hint: str | None, exit_code: int) -> dict[str, Any]:
    """The ``error`` member of a failure envelope (the same keys as ``EnvmgrError.to_json``)."""
    return {"error": kind, "message": message, "hint": hint, "exit_code": exit_code}


def write_json(stream: TextIO, document: dict[str, Any]) -> None:
    """Plain JSON on ``stream`` (stdout): no colour, no wrapping, one document, no rich needed.

    Indented for a terminal; one line for a pipe or file. Encoded by orjson
    (_internal/_json.py): a status of 5,000 builds is 2.4 MiB, 45 ms with json.
    """
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    binary = getattr(stream, "buffer", None)  # stdout: orjson's UTF-8 bytes as they are
    if binary is not None and (getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8":
        stream.flush()
        binary.write(_json.dump_bytes(document, indent=tty) + b"\n")
        binary.flush()
    else:  # another encoding, or a text-only stream: ASCII with escapes fits any of them
        stream.write(_json.dumps_ascii(document, indent=tty) + "\n")
        stream.flush()


def _emit_json(out: Console, command: str, error: dict[str, Any]) -> None:
    write_json(out.file, envelope(command, error=error))


def envmgr_error(err: Console, out: Console, command: str, exc: EnvmgrError, *, as_json: bool) -> int:
    """An error a user can act on: its message and (always) its hint."""
    if as_json:
        _emit_json(out, command, exc.to_json())
    else:
        err.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/yellow] {exc.hint}", highlight=False)
    return exc.exit_code


def usage_error(err: Console, out: Console, exc: BaseException, root: Any, *, as_json: bool) -> int:
    """A bad command line: click's own short message with the usage line, exit 2.

    ``root`` is the top-level click command: errors raised before any context
    exists (``envmgr --root`` without its value) get its usage line.
    """
    if getattr(exc, "ctx", None) is None and hasattr(exc, "ctx"):
        try:
            exc.ctx = root.context_class(root, info_name=PROG_NAME)  # type: ignore[attr-defined]
            exc.cmd = root  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - without a usage line the message still stands
            pass
    if isinstance(exc, _click.NO_ARGS_IS_HELP):
        # "envmgr" or "envmgr channel" alone: the help text is the answer, not an error.
        getattr(exc, "show")()
        return 0
    code = int(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:  # pragma: no cover - every click exception has show()
        err.print(f"error: {_click.message_of(exc)}", highlight=False, markup=False)
    if as_json:
        usage = _click.usage_text(exc)
        hint = f"{usage}; see `{_click.help_command(exc)}`" if usage else f"see `{PROG_NAME} -h`"
        _emit_json(out, _click.command_of(exc, PROG_NAME),
                   error_json(type(exc).__name__, _click.message_of(exc), hint, code))
    return code


def interrupted(err: Console, out: Console, command: str, *, as_json: bool) -> int:
    err.print("interrupted", highlight=False)
    if as_json:
        _emit_json(out, command, error_json("Interrupted", "interrupted", None, EXIT_INTERRUPTED))
    return EXIT_INTERRUPTED


def internal_error(err: Console, out: Console, command: str, exc: BaseException, *,
                   as_json: bool) -> int:
    """A bug: the traceback on stderr (never a silent success), exit 1."""
    err.print(f"[bold red]internal error[/bold red] (please report):\n{traceback.format_exc()}",
              highlight=False, markup=True)
    if as_json:
        _emit_json(out, command, error_json(
            "InternalError", f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in envmgr: please report it with the traceback printed on stderr",
            EXIT_FAILURE))
    return EXIT_FAILURE
