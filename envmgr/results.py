"""Typed command results, the JSON envelope, and the string enums results carry.

Every command returns a ``Result``; ``envmgr.cli`` renders it either as text
for people (the renderers live in ``envmgr/cli/``, the only place rich is
imported) or as a versioned JSON envelope for machines::

    {"envmgr": 1, "command": "builds", "ok": true, "result": {...}}

Core code never prints: it returns results (and reports progress through a
callback), so the server and tests call the same functions as the CLI.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

JSON_VERSION = 1

Progress = Callable[[str], None]


def no_progress(_message: str) -> None:
    """Progress sink for callers that do not show progress."""


class StrEnum(str, enum.Enum):
    """A closed set of status words: compares, formats and serialises as its plain string value.

    (enum.StrEnum is Python 3.11+; envmgr supports 3.10.)
    """

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Result(Protocol):
    def to_json(self) -> dict[str, Any]: ...

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
