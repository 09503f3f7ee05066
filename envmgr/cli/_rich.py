"""rich's ``Text`` and ``Table`` for the renderers, imported when the first one is made.

Every topic module defines its renderers at import time, but only a run that
prints text needs rich: importing ``rich.text`` alone costs ~35 ms, a seventh
of ``envmgr status --json`` (docs/benchmarks.md, issue 14). The names below
behave as the classes for what the renderers do with them (call them, use
their class methods); type checkers see the real classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


class _Deferred:
    """Stands for ``module.name`` and imports it on first use."""

    def __init__(self, module: str, name: str) -> None:
        self._where = (module, name)
        self._target: Any = None

    def _resolve(self) -> Any:
        if self._target is None:
            module, name = self._where
            self._target = getattr(importlib.import_module(module), name)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # Text.assemble(...), Text.from_markup(...)
        return getattr(self._resolve(), attr)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self._resolve())


if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text
else:
    Table = _Deferred("rich.table", "Table")
    Text = _Deferred("rich.text", "Text")

__all__ = ["Table", "Text"]
