"""Validation helpers for YAML files whose errors must point at file:line:column.

Shared by specs, the site configuration and the package policy, so that every
file a person edits reports mistakes the same way.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # ruamel is imported when a file is read: status on a root without YAML skips it
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .errors import EXIT_USAGE, EnvmgrError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located precisely."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.key}: {self.message}"

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column,
                "key": self.key, "message": self.message}


class FileProblems(EnvmgrError):
    """Every problem found in a person-edited YAML file, sorted by position (exit 2).

    Subclasses name what was checked and how to re-check it; all of them report
    ``file:line:column: key: message`` lines and list the problems in JSON.
    """

    exit_code = EXIT_USAGE
    title = "invalid file"
    recheck = ""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column))
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{self.title}:\n{lines}", hint=self.recheck or None)

    def to_json(self) -> dict:
        return {**super().to_json(), "problems": [p.to_json() for p in self.problems]}


# --------------------------------------------------------------------------
# A small checker that walks the YAML tree and records problems.
# --------------------------------------------------------------------------

class YamlChecker:
    """Collects problems for one file; every accessor returns a usable default."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, pos: tuple[int, int], key: str, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0] + 1, pos[1] + 1, key, message))

    @staticmethod
    def key_pos(mapping: CommentedMap, key: str) -> tuple[int, int]:
        """(line, column) from ruamel's positions; (0, 0) for a plain dict (yamlcache)."""
        try:
            line, col = mapping.lc.key(key)
            return line, col
        except (KeyError, AttributeError, TypeError):
            lc = getattr(mapping, "lc", None)
            return getattr(lc, "line", 0), getattr(lc, "col", 0)

    @staticmethod
    def value_pos(mapping: CommentedMap, key: str) -> tuple[int, int]:
        try:
            line, col = mapping.lc.value(key)
            return line, col
        except (KeyError, AttributeError, TypeError):
            return YamlChecker.key_pos(mapping, key)

    @staticmethod
    def item_pos(seq: CommentedSeq, index: int) -> tuple[int, int]:
        try:
            line, col = seq.lc.item(index)
            return line, col
        except (KeyError, AttributeError, TypeError, IndexError):
            lc = getattr(seq, "lc", None)
            return getattr(lc, "line", 0), getattr(lc, "col", 0)

    def check_keys(self, mapping: CommentedMap, allowed: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
                self.add(self.key_pos(mapping, key), f"{where}{key}", f"unknown key{hint}")

    def string(self, mapping: CommentedMap, key: str, where: str, *, required: bool = False,
               pattern: re.Pattern[str] | None = None, default: str = "") -> str:
        if key not in mapping or mapping[key] is None:
            if required:
                self.add((mapping.lc.line, mapping.lc.col), f"{where}{key}", "is required")
            return default
        value = mapping[key]
        if not isinstance(value, str) or not value.strip():
            self.add(self.value_pos(mapping, key), f"{where}{key}", "must be a non-empty string")
            return default
        if pattern is not None and not pattern.match(value):
            self.add(self.value_pos(mapping, key), f"{where}{key}",
                     f"'{value}' does not match {pattern.pattern}")
            return default
        return value

    def string_list(self, mapping: CommentedMap, key: str, where: str, *, required: bool = False,
                    check: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
        if key not in mapping or mapping[key] is None:
            if required:
                self.add((mapping.lc.line, mapping.lc.col), f"{where}{key}", "is required")
            return ()
        seq = mapping[key]
        if not isinstance(seq, list):
            self.add(self.value_pos(mapping, key), f"{where}{key}", "must be a list")
            return ()
        if required and not seq:
            self.add(self.value_pos(mapping, key), f"{where}{key}", "must not be empty")
        items: list[str] = []
        for index, item in enumerate(seq):
            pos = self.item_pos(seq, index)
            if not isinstance(item, str) or not item.strip():
                self.add(pos, f"{where}{key}[{index}]", "must be a non-empty string")
                continue
            problem = check(item) if check else None
            if problem:
                self.add(pos, f"{where}{key}[{index}]", problem)
                continue
            items.append(item.strip())
        return tuple(items)

    def mapping(self, mapping: CommentedMap, key: str, where: str) -> CommentedMap | None:
        if key not in mapping or mapping[key] is None:
            return None
        value = mapping[key]
        if not isinstance(value, dict):
            self.add(self.value_pos(mapping, key), f"{where}{key}", "must be a mapping")
            return None
        return value

    def non_negative_int(self, mapping: CommentedMap, key: str, where: str) -> int | None:
        if key not in mapping or mapping[key] is None:
            return None
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.add(self.value_pos(mapping, key), f"{where}{key}", "must be a whole number >= 0")
            return None
        return value


def read_yaml(path: Path, text: str, error: Callable[[list[Problem]], Exception]) -> Any:
    """Load round-trip YAML (which keeps positions); syntax errors become ``error``.

    A mapping comes back as ruamel's ``CommentedMap``, a ``dict`` subclass that knows
    the positions: callers test ``isinstance(doc, dict)``.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark else (0, 0)
        what = exc.problem or exc.context or "invalid YAML"
        raise error([Problem(str(path), line + 1, col + 1, "(yaml)", what)]) from None
    except YAMLError as exc:
        raise error([Problem(str(path), 1, 1, "(yaml)", str(exc))]) from None


