"""The one adapter around orjson: JSON for the big documents (status at scale, its cache).

``envmgr status --json`` on a site of 5,000 builds writes 2.4 MiB and reads a
3 MiB status cache (ops/statuscache.py): with the standard library that is
~45 ms to encode and ~50 ms to decode, more than all of status's own work on
a cached site (issue 14); orjson (Rust, on PyPI with wheels for every platform
envmgr supports) does both in under a third of that. Its output is JSON with
the same meaning: compact separators for one line, two-space indentation
otherwise. Anything orjson refuses (an integer beyond 64 bits, a key that is
neither a string nor a number) and a machine without orjson fall back to the
standard library, with the same result.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the fallback is for odd platforms
    orjson = None  # type: ignore[assignment]


def dump_bytes(document: Any, *, indent: bool = False) -> bytes:
    """``document`` as UTF-8 JSON (``default=str`` for anything else, as json.dumps(default=str))."""
    if orjson is not None:
        # datetimes and dataclasses go through default=str too, as json.dumps would send them
        option = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                  | (orjson.OPT_INDENT_2 if indent else 0))
        try:
            return orjson.dumps(document, default=str, option=option)
        except (TypeError, orjson.JSONEncodeError):
            pass
    return json.dumps(document, indent=2 if indent else None, default=str).encode()


def dumps(document: Any, *, indent: bool = False) -> str:
    """``document`` as JSON text (see ``dump_bytes``)."""
    return dump_bytes(document, indent=indent).decode()


def dumps_ascii(document: Any, *, indent: bool = False) -> str:
    """JSON text with every non-ASCII character escaped: for a stream that is not UTF-8."""
    return json.dumps(document, indent=2 if indent else None, default=str)


def loads(text: bytes | str) -> Any:
    """Parsed JSON; ``ValueError`` for text that is not JSON (orjson's error is one)."""
    if orjson is not None:
        return orjson.loads(text)
    return json.loads(text)
