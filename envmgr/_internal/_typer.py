"""Plain coercion for plain options under typer >= 0.29, which would import pydantic for them.

typer 0.29 coerces every non-flag option value through a pydantic
``TypeAdapter``. The first option a command parses (``--root``, ``--config``,
a family name) therefore imports pydantic and builds a schema: about 0.2 s
of a 0.25 s ``envmgr status`` on an idle 2-core machine, for turning a
string into a ``str`` or a ``Path`` (benchmarks/scientific.py, docs/benchmarks.md).

``install()`` wraps typer's ``build_runtime_param`` so that the annotations
envmgr's commands use in their simplest form get the conversion click itself
would do: ``str``, ``Path`` (through typer's own path checks, given a
``Path`` so that they need no pydantic), ``int`` and ``float`` without
bounds, ``bool``, and ``list`` of those. Everything else (bounds, enums,
choices, custom parsers, files) goes to typer's own pydantic coercion
unchanged, so behaviour only differs in the wording of a bad number. Under typer < 0.29 (no ``typer._coercion``) this
does nothing. This is the one module that knows typer's coercion internals;
``tests/test_cli_startup.py`` checks both the effect (no pydantic for
``status``) and that bad values are still usage errors (exit 2).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})
_LEAVES: tuple[type, ...] = (str, Path, int, float, bool)


def _plain(annotation: Any, info: Any) -> type | None:
    """The leaf type when ``annotation`` (or ``list[leaf]``) needs nothing but a plain conversion."""
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return None
    leaf = annotation
    if get_origin(annotation) is list:
        args = get_args(annotation)
        leaf = args[0] if len(args) == 1 else None
    if leaf not in _LEAVES:
        return None
    if leaf in (int, float) and any(getattr(info, k, None) is not None for k in ("min", "max")):
        return None
    if leaf is Path and getattr(info, "path_type", None) is not None:
        return None
    return leaf


def _convert(leaf: type, value: Any, bad: Any, check_path: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if leaf is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise bad(f"{value!r} is not a valid boolean.")
    if leaf in (int, float):
        try:
            return leaf(value)
        except (TypeError, ValueError):
            raise bad(f"{value!r} is not a valid {'integer' if leaf is int else 'number'}.") from None
    if leaf is Path:
        return check_path(value if isinstance(value, Path) else Path(value))
    return leaf(value)


def install() -> bool:
    """Route plain annotations around pydantic; True if typer has the hook (>= 0.29)."""
    try:
        coercion = importlib.import_module("typer._coercion")
        core = importlib.import_module("typer.core")
    except ImportError:
        return False
    original = getattr(core, "build_runtime_param", None)
    base = getattr(coercion, "RuntimeParam", None)
    bad_parameter = getattr(importlib.import_module("typer._click.exceptions"), "BadParameter", None)
    coerce_path = getattr(importlib.import_module("typer._param_types"), "coerce_cli_path", None)
    if None in (original, base, bad_parameter, coerce_path) or getattr(original, "_envmgr", False):
        return original is not None and getattr(original, "_envmgr", False)

    @dataclass(frozen=True)
    class PlainRuntimeParam(base):  # type: ignore[misc,valid-type]
        leaf: type = str
        many: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            def bad(message: str) -> Exception:
                return bad_parameter(message, ctx=ctx, param=param)

            def check_path(path: Path) -> Any:  # exists=, dir_okay=, resolve_path=... as typer does
                return coerce_path(path, self.parameter_info, path_type=Path, param=param, ctx=ctx)

            if self.many:
                items = value if isinstance(value, (list, tuple)) else [value]
                return [_convert(self.leaf, item, bad, check_path) for item in items]
            return _convert(self.leaf, value, bad, check_path)

    def build_runtime_param(descriptor: Any) -> Any:
        info, annotation = descriptor.parameter_info, descriptor.annotation
        leaf = None if getattr(descriptor, "file_annotation", None) is not None else _plain(annotation, info)
        if leaf is None:
            return original(descriptor)
        return PlainRuntimeParam(parameter_info=info, annotation=annotation, leaf=leaf,
                                 many=get_origin(annotation) is list)

    build_runtime_param._envmgr = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param
    return True
