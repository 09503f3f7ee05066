"""Sizes as people write them in specs and the site config ('16G', '512MiB'), and as envmgr prints them."""

from __future__ import annotations

import re

SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """'16G', '512MiB', '1.5GB' or a number of bytes -> bytes (binary units)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = SIZE_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"'{text}' is not a size such as 16G or 512MiB")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()[:1]
    factor = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[unit]
    return int(number * factor)


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KiB' (binary units, as df -h and du -h print them); None -> '-'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
