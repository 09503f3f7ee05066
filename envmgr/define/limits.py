"""Limits on person-edited input: a spec or policy is reviewed by people, not generated.

A 22 MB spec was accepted and built (issue 13): parsing, hashing and solving
something that large costs minutes and memory for no legitimate use. Files
over ``MAX_FILE_BYTES`` and specs with more than ``MAX_DEPENDENCIES``
dependencies are refused with exit 2 before anything else happens.
"""

from __future__ import annotations

from pathlib import Path

from envmgr.errors import UsageError

MAX_FILE_BYTES = 1024 * 1024  # 1 MiB
MAX_DEPENDENCIES = 500


def read_limited(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; UsageError if it is larger than ``MAX_FILE_BYTES``.

    Reads at most one byte past the limit, so a file that grows while being
    read is refused too. FileNotFoundError, PermissionError and
    UnicodeDecodeError pass through for the caller's own messages.
    """
    with open(path, "rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{what} {path} is larger than 1 MiB; refusing to read it",
                         hint=f"a {what} is written by people and reviewed; split it or remove "
                              "generated content")
    return data.decode("utf-8")


def too_many_dependencies(count: int) -> str | None:
    """Why ``count`` dependencies are refused, or None."""
    if count > MAX_DEPENDENCIES:
        return (f"has {count} entries; at most {MAX_DEPENDENCIES} are allowed (list what you "
                "import; the solver adds their dependencies)")
    return None
