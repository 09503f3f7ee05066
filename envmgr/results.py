"""Typed command results and the one place that renders them.

Every command returns a ``Result``; ``envmgr.cli`` renders it either as text
for people or as a versioned JSON envelope for machines::

    {"envmgr": 1, "command": "builds", "ok": true, "result": {...}}

Core code never prints: it returns results (and reports progress through a
callback), so the server and tests call the same functions as the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from rich.console import Console, RenderableType

JSON_VERSION = 1

Progress = Callable[[str], None]


def no_progress(_message: str) -> None:
    """Progress sink for callers that do not show progress."""


class Result(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    def render(self) -> Iterable[RenderableType]: ...

    @property
    def exit_code(self) -> int: ...


def envelope(command: str, *, result: dict[str, Any] | None = None,
             error: dict[str, Any] | None = None, ok: bool = True) -> dict[str, Any]:
    """The versioned JSON document: ``ok`` is false when the exit code is not 0."""
    doc: dict[str, Any] = {"envmgr": JSON_VERSION, "command": command, "ok": ok and error is None}
    if result is not None:
        doc["result"] = result
    if error is not None:
        doc["error"] = error
    return doc


def emit(console: Console, command: str, result: Result, *, as_json: bool) -> None:
    if as_json:
        write_json(console, envelope(command, result=result.to_json(), ok=result.exit_code == 0))
        return
    for renderable in result.render():
        console.print(renderable)


def write_json(console: Console, document: dict[str, Any]) -> None:
    """Plain JSON on the console's stream: no colour, no wrapping, one document."""
    console.file.write(json.dumps(document, indent=2, default=str) + "\n")
    console.file.flush()
