"""Environment specs: one YAML file per environment family.

A spec is reviewed by pull request, so every mistake must be reported with the
file, line, column and key that caused it, and all mistakes of a file at once
(a reviewer fixes them in one round). Unknown keys are errors: a misspelled
``dependancies`` must never silently build an environment without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ruamel.yaml.comments import CommentedMap

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


from envmgr.define.limits import read_limited, too_many_dependencies
from envmgr.errors import UsageError
from envmgr.units import parse_size
from envmgr.yamlcheck import FileProblems, Problem, YamlChecker, read_yaml
from envmgr.config import PycOverride, parse_pyc_section
from envmgr.layout import NOT_SPECS, SPEC_SUFFIXES  # the status cache lists spec files without this module

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
RELEASE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # lowercase: Jupyter lowercases kernel names
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_NAME_LEN = 40  # keeps prefix paths and kernel names short
KNOWN_PLATFORMS = ("linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64")


class SpecError(FileProblems, UsageError):
    """Every problem found in one or more spec files."""

    recheck = "Fix the keys named above; `envmgr spec check PATH` re-checks."

    @property
    def title(self) -> str:  # type: ignore[override]
        noun = "problem" if len(self.problems) == 1 else "problems"
        return f"{len(self.problems)} {noun} in spec files"


@dataclass(frozen=True)
class SmokeTest:
    imports: tuple[str, ...] = ()
    script: str = ""


@dataclass(frozen=True)
class StablePin:
    """A stable release declared in the spec: a release name pinned to a build."""

    release: str
    build: str
    until: dt.date | None = None


@dataclass(frozen=True)
class Retention:
    """Per-spec override of the site's retention policy; None = site default."""

    keep_previous: int | None = None
    grace_days: int | None = None
    failed_days: int | None = None
    pinned: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    name: str
    display_name: str
    group: str
    description: str
    channels: tuple[str, ...]
    dependencies: tuple[str, ...]
    platforms: tuple[str, ...] = ("linux-64",)
    pip: tuple[str, ...] = ()  # PEP 508 requirements, locked as conda-lock `manager: pip` entries
    kernel: str = "python"
    env: dict[str, str] = field(default_factory=dict)
    smoke_test: SmokeTest = SmokeTest()
    stable: tuple[StablePin, ...] = ()
    memory_limit: int | None = None  # bytes; applied by the kernel launcher
    retention: Retention = Retention()
    pyc: PycOverride | None = None  # the spec's `pyc:` keys, over the site's (envmgr.pycache)
    path: Path | None = None
    source_text: str = ""

    @property
    def content_hash(self) -> str:
        """Hash of what decides the environment's contents (not labels or kernel env).

        Dependencies are order- and whitespace-insensitive; channel order matters
        (it is a priority order).
        """
        canonical = {
            "channels": list(self.channels),
            "dependencies": sorted(" ".join(d.split()) for d in self.dependencies),
            "platforms": sorted(self.platforms),
        }
        if self.pip:  # only when present: specs without pip keep the hash they always had
            canonical["pip"] = sorted(" ".join(r.split()) for r in self.pip)
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_json(self) -> dict:
        return {
            "name": self.name, "display_name": self.display_name, "group": self.group,
            "description": self.description, "channels": list(self.channels),
            "dependencies": list(self.dependencies), "platforms": list(self.platforms),
            "pip": list(self.pip), "kernel": self.kernel, "env": dict(self.env),
            "smoke_test": {"imports": list(self.smoke_test.imports), "script": self.smoke_test.script},
            "stable": [{"release": s.release, "build": s.build,
                        "until": s.until.isoformat() if s.until else None} for s in self.stable],
            "memory_limit": self.memory_limit, "pyc": self.pyc.to_json() if self.pyc else None,
            "content_hash": self.content_hash,
            "path": str(self.path) if self.path else None,
        }


def _check_match_spec(text: str) -> str | None:
    """None if ``text`` is a valid conda match spec, else why not."""
    try:
        from envmgr._internal._rattler import parse_match_spec
    except ImportError:  # pragma: no cover - adapter always present in a real install
        return None
    try:
        parse_match_spec(text)
    except ValueError as exc:
        return f"'{text}' is not a conda match spec: {exc}"
    return None


def _check_channel(text: str) -> str | None:
    if any(ch.isspace() for ch in text):
        return f"'{text}' contains white space"
    if "://" in text and "@" in text.split("://", 1)[1].split("/", 1)[0]:
        return (f"'{text.split('://', 1)[0]}://…@…' carries credentials in the URL; they would be "
                "written into locks and records: put them in the site's credentials_file")
    return None


def _check_pip_requirement(text: str) -> str | None:
    """None if ``text`` is a PEP 508 requirement (what pip and uv accept), else why not."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        return f"'{text}' is not a PEP 508 requirement: {exc}"
    if req.url and "@" in req.url.split("://", 1)[-1].split("/", 1)[0]:
        return f"'{req.name} @ …' carries credentials in the URL: put them in the site's credentials_file"
    return None


def _check_platform(text: str) -> str | None:
    return None if text in KNOWN_PLATFORMS else f"'{text}' is not one of {', '.join(KNOWN_PLATFORMS)}"


def _check_import(text: str) -> str | None:
    return None if DOTTED_RE.match(text) else f"'{text}' is not a dotted module name"


TOP_KEYS = ("name", "display_name", "group", "description", "channels", "dependencies",
            "pip", "platforms", "kernel", "env", "smoke_test", "stable", "limits", "retention", "pyc")


def _parse_env(c: YamlChecker, doc: CommentedMap) -> dict[str, str]:
    env_map = c.mapping(doc, "env", "")
    env: dict[str, str] = {}
    for key in env_map or {}:
        pos = c.key_pos(env_map, key)
        value = env_map[key]
        if not isinstance(key, str) or not ENV_VAR_RE.match(key):
            c.add(pos, f"env.{key}", "is not a valid environment variable name")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            c.add(c.value_pos(env_map, key), f"env.{key}", "must be a string")
        else:
            env[key] = str(value)
    return env


def _parse_smoke_test(c: YamlChecker, doc: CommentedMap) -> SmokeTest:
    smoke = c.mapping(doc, "smoke_test", "")
    if smoke is None:
        return SmokeTest()
    c.check_keys(smoke, ("imports", "script"), "smoke_test.")
    imports = c.string_list(smoke, "imports", "smoke_test.", check=_check_import)
    script = c.string(smoke, "script", "smoke_test.")
    return SmokeTest(imports=imports, script=script)


def _parse_date(c: YamlChecker, entry: CommentedMap, key: str, where: str) -> dt.date | None:
    if key not in entry or entry[key] is None:
        return None
    value = entry[key]
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        c.add(c.value_pos(entry, key), f"{where}{key}", f"'{value}' is not a date (YYYY-MM-DD)")
        return None


def _parse_stable(c: YamlChecker, doc: CommentedMap) -> tuple[StablePin, ...]:
    from envmgr.layout import BUILD_ID_RE

    seq = doc.get("stable")
    if seq is None:
        return ()
    if not isinstance(seq, list):
        c.add(c.value_pos(doc, "stable"), "stable", "must be a list of {release, build, until}")
        return ()
    pins: list[StablePin] = []
    for index, entry in enumerate(seq):
        where = f"stable[{index}]."
        if not isinstance(entry, dict):
            c.add(c.item_pos(seq, index), f"stable[{index}]", "must be a mapping")
            continue
        c.check_keys(entry, ("release", "build", "until"), where)
        release = c.string(entry, "release", where, required=True, pattern=RELEASE_RE)
        build = c.string(entry, "build", where, required=True, pattern=BUILD_ID_RE)
        until = _parse_date(c, entry, "until", where)
        if release and build:
            pins.append(StablePin(release=release, build=build, until=until))
    return tuple(pins)


def _parse_limits(c: YamlChecker, doc: CommentedMap) -> int | None:
    limits = c.mapping(doc, "limits", "")
    if limits is None:
        return None
    c.check_keys(limits, ("memory",), "limits.")
    if limits.get("memory") is None:
        return None
    try:
        return parse_size(limits["memory"])
    except ValueError as exc:
        c.add(c.value_pos(limits, "memory"), "limits.memory", str(exc))
        return None


def _parse_retention(c: YamlChecker, doc: CommentedMap) -> Retention:
    ret = c.mapping(doc, "retention", "")
    if ret is None:
        return Retention()
    c.check_keys(ret, ("keep_previous", "grace_days", "failed_days", "pinned"), "retention.")
    from envmgr.layout import BUILD_ID_RE

    pinned = c.string_list(ret, "pinned", "retention.",
                           check=lambda b: None if BUILD_ID_RE.match(b) else f"'{b}' is not a build id")
    return Retention(keep_previous=c.non_negative_int(ret, "keep_previous", "retention."),
                     grace_days=c.non_negative_int(ret, "grace_days", "retention."),
                     failed_days=c.non_negative_int(ret, "failed_days", "retention."),
                     pinned=pinned)


def _parse_pyc(c: YamlChecker, doc: CommentedMap) -> PycOverride | None:
    if doc.get("pyc") is None:
        return None
    mode, exclude = parse_pyc_section(c, doc)
    return PycOverride(compile=mode, exclude=exclude)


def parse_spec_text(text: str, path: Path) -> Spec:
    """Parse and validate one spec; raise SpecError listing every problem."""
    doc = read_yaml(path, text, SpecError)
    c = YamlChecker(str(path))
    if not isinstance(doc, dict):
        raise SpecError([Problem(str(path), 1, 1, "(document)", "a spec must be a YAML mapping")])
    c.check_keys(doc, TOP_KEYS, "")
    name = c.string(doc, "name", "", required=True, pattern=NAME_RE)
    if name and len(name) > MAX_NAME_LEN:
        c.add(c.value_pos(doc, "name"), "name", f"is longer than {MAX_NAME_LEN} characters")
    spec = Spec(
        name=name,
        display_name=c.string(doc, "display_name", "", default=name),
        group=c.string(doc, "group", "", default="Other"),
        description=c.string(doc, "description", ""),
        channels=c.string_list(doc, "channels", "", required=True, check=_check_channel),
        dependencies=c.string_list(doc, "dependencies", "", required=True, check=_check_match_spec),
        platforms=c.string_list(doc, "platforms", "", check=_check_platform) or ("linux-64",),
        pip=c.string_list(doc, "pip", "", check=_check_pip_requirement),
        kernel=c.string(doc, "kernel", "", default="python", pattern=NAME_RE),
        env=_parse_env(c, doc),
        smoke_test=_parse_smoke_test(c, doc),
        stable=_parse_stable(c, doc),
        memory_limit=_parse_limits(c, doc),
        retention=_parse_retention(c, doc),
        pyc=_parse_pyc(c, doc),
        path=path,
        source_text=text,
    )
    if (too_many := too_many_dependencies(len(spec.dependencies))) is not None:
        c.add(c.key_pos(doc, "dependencies"), "dependencies", too_many)
    if c.problems:
        raise SpecError(c.problems)
    return spec


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at ``path``."""
    try:
        text = read_limited(path, "spec file")
    except FileNotFoundError:
        raise UsageError(f"spec file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(str(path), 1, 1, "(file)", f"not UTF-8 text: {exc.reason}")]) from None
    return parse_spec_text(text, path)


def spec_files(paths: list[Path]) -> list[Path]:
    """Expand directories to the spec files directly inside them (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file()
                                and p.name not in NOT_SPECS))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"no such spec file or directory: {path}")
    return files


def load_specs(paths: list[Path], load: Callable[[Path], Spec] | None = None) -> list[Spec]:
    """Load every spec; report the problems of all files together; no two may share a name.

    ``load`` replaces ``load_spec`` (``speccache.SpecCache.load`` parses each version once).
    """
    problems: list[Problem] = []
    specs: list[Spec] = []
    for file in spec_files(paths):
        try:
            specs.append((load or load_spec)(file))
        except SpecError as exc:
            problems.extend(exc.problems)
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            problems.append(Problem(str(spec.path), 1, 1, "name",
                                    f"family '{spec.name}' is also defined in {seen[spec.name]}"))
        seen.setdefault(spec.name, spec.path or Path("?"))
    if problems:
        raise SpecError(problems)
    return specs
