"""Site configuration: one YAML file plus a root directory.

Precedence, highest first: command-line flags (``--root``, ``--config``),
environment variables (``ENVMGR_ROOT``, ``ENVMGR_CONFIG``), the file's values,
built-in defaults. With nothing configured at all, a per-user root under
``$XDG_DATA_HOME/envmgr`` and the user's own Jupyter kernels directory make
envmgr usable for trying it out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from ruamel.yaml.comments import CommentedMap

from .errors import ConfigError
from .layout import Layout
from .spec import parse_size
from .yamlcheck import Problem, YamlChecker, read_yaml

SITE_CONFIG = Path("/etc/envmgr/config.yaml")
DEMO_CHANNEL = "demo"  # built-in channel name: the local demo channel under the root
DEFAULT_CHANNEL_BASE = "https://conda.anaconda.org/"


class ConfigFileError(ConfigError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid configuration:\n{lines}",
                         hint="Fix the keys named above; `envmgr doctor` re-checks.")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many old builds to keep and for how long (gc reads this)."""

    keep_previous: int = 2
    grace_days: int = 7
    failed_days: int = 14


@dataclass(frozen=True)
class Config:
    root: Path
    kernels_dir: Path
    pkgs_dir: Path
    specs_dir: Path
    channels: dict[str, str] = field(default_factory=dict)
    min_free_bytes: int = 2 * 1024**3
    support_years: int = 3
    retention: RetentionPolicy = RetentionPolicy()
    compile_pyc: bool = True
    notify_command: tuple[str, ...] = ()
    solver: str = "rattler"
    conda_lock_command: tuple[str, ...] = ()
    source: Path | None = None  # the file this came from, if any
    root_source: str = "default"  # flag, environment, file or default

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    def resolve_channel(self, name: str) -> str:
        """Map a spec's channel name to the URL envmgr solves against.

        The site mapping wins (an air-gapped hub maps ``conda-forge`` to its
        vetted mirror); ``demo`` is the local demo channel under the root;
        URLs and absolute paths pass through.
        """
        if name in self.channels:
            return _as_url(self.channels[name], self.source)
        if name == DEMO_CHANNEL:
            return Path(os.path.abspath(self.layout.demo_channel)).as_uri()
        if "://" in name:
            return name
        if name.startswith("/"):
            return Path(name).as_uri()
        return DEFAULT_CHANNEL_BASE + name

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "root_source": self.root_source,
            "kernels_dir": str(self.kernels_dir), "pkgs_dir": str(self.pkgs_dir),
            "specs_dir": str(self.specs_dir), "channels": dict(self.channels),
            "min_free_bytes": self.min_free_bytes, "support_years": self.support_years,
            "retention": vars(self.retention), "compile_pyc": self.compile_pyc,
            "notify_command": list(self.notify_command), "solver": self.solver,
            "source": str(self.source) if self.source else None,
        }


def _as_url(value: str, source: Path | None) -> str:
    if "://" in value:
        return value
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    return Path(os.path.abspath(path)).as_uri()  # not resolve(): channels may be symlinks


def default_root(environ: dict[str, str]) -> Path:
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "envmgr"


CONFIG_KEYS = ("root", "kernels_dir", "pkgs_dir", "specs_dir", "channels", "min_free_space",
               "support_years", "retention", "compile_pyc", "notify_command", "solver",
               "conda_lock_command")


def _path(c: YamlChecker, doc: CommentedMap, key: str, base: Path) -> Path | None:
    value = c.string(doc, key, "")
    if not value:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _command(c: YamlChecker, doc: CommentedMap, key: str) -> tuple[str, ...]:
    """A command is a list of arguments, never a shell string."""
    if doc.get(key) is None:
        return ()
    return c.string_list(doc, key, "")


def _file_values(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except PermissionError:
        raise ConfigError(f"cannot read configuration file {path}: permission denied",
                          hint="Ask the hub admin to make it world-readable (mode 0644).") from None
    doc = read_yaml(path, text, ConfigFileError)
    if doc is None:
        return {}
    c = YamlChecker(str(path))
    if not isinstance(doc, CommentedMap):
        raise ConfigFileError([Problem(str(path), 1, 1, "(document)", "must be a YAML mapping")])
    c.check_keys(doc, CONFIG_KEYS, "")
    base = path.parent
    values: dict[str, Any] = {}
    for key in ("root", "kernels_dir", "pkgs_dir", "specs_dir"):
        if (p := _path(c, doc, key, base)) is not None:
            values[key] = p
    channels = c.mapping(doc, "channels", "")
    if channels is not None:
        values["channels"] = {}
        for name in channels:
            target = channels[name]
            if not isinstance(target, str) or not target.strip():
                c.add(c.value_pos(channels, name), f"channels.{name}", "must be a URL or a path")
            else:
                values["channels"][str(name)] = target.strip()
    if doc.get("min_free_space") is not None:
        try:
            values["min_free_bytes"] = parse_size(doc["min_free_space"])
        except ValueError as exc:
            c.add(c.value_pos(doc, "min_free_space"), "min_free_space", str(exc))
    if (years := c.non_negative_int(doc, "support_years", "")) is not None:
        values["support_years"] = years
    retention = c.mapping(doc, "retention", "")
    if retention is not None:
        c.check_keys(retention, ("keep_previous", "grace_days", "failed_days"), "retention.")
        overrides = {k: v for k in ("keep_previous", "grace_days", "failed_days")
                     if (v := c.non_negative_int(retention, k, "retention.")) is not None}
        values["retention"] = RetentionPolicy(**overrides)
    if "compile_pyc" in doc:
        if not isinstance(doc["compile_pyc"], bool):
            c.add(c.value_pos(doc, "compile_pyc"), "compile_pyc", "must be true or false")
        else:
            values["compile_pyc"] = doc["compile_pyc"]
    values["notify_command"] = _command(c, doc, "notify_command")
    values["conda_lock_command"] = _command(c, doc, "conda_lock_command")
    solver = c.string(doc, "solver", "", default="rattler")
    if solver not in ("rattler", "conda-lock"):
        c.add(c.value_pos(doc, "solver"), "solver", "must be 'rattler' or 'conda-lock'")
    values["solver"] = solver
    if c.problems:
        raise ConfigFileError(c.problems)
    return values


def config_file(flag: Path | None, environ: dict[str, str]) -> Path | None:
    """Which configuration file applies: --config, then ENVMGR_CONFIG, then the site file."""
    if flag is not None:
        return flag
    if environ.get("ENVMGR_CONFIG"):
        return Path(environ["ENVMGR_CONFIG"])
    return SITE_CONFIG if SITE_CONFIG.is_file() else None


def load_config(*, config_path: Path | None = None, root: Path | None = None,
                environ: dict[str, str] | None = None) -> Config:
    """Build the effective configuration. ``environ`` defaults to os.environ."""
    env = dict(os.environ) if environ is None else environ
    source = config_file(config_path, env)
    values = _file_values(source) if source is not None else {}
    root_source = "default"
    if root is not None:
        chosen_root, root_source = root, "flag"
    elif env.get("ENVMGR_ROOT"):
        chosen_root, root_source = Path(env["ENVMGR_ROOT"]), "environment"
    elif "root" in values:
        chosen_root, root_source = values["root"], "file"
    else:
        chosen_root = default_root(env)
    chosen_root = Path(os.path.abspath(os.path.expanduser(chosen_root)))
    if root_source == "default" and "kernels_dir" not in values:
        kernels_dir = Path(jupyter_data_dir()) / "kernels"  # visible to Jupyter right away
    else:
        kernels_dir = values.get("kernels_dir", chosen_root / "share" / "jupyter" / "kernels")
    return Config(
        root=chosen_root,
        kernels_dir=Path(kernels_dir),
        pkgs_dir=values.get("pkgs_dir", chosen_root / "pkgs"),
        specs_dir=values.get("specs_dir", Path.cwd() / "specs"),
        channels=values.get("channels", {}),
        min_free_bytes=values.get("min_free_bytes", Config.min_free_bytes),
        support_years=values.get("support_years", Config.support_years),
        retention=values.get("retention", RetentionPolicy()),
        compile_pyc=values.get("compile_pyc", True),
        notify_command=values.get("notify_command", ()),
        solver=values.get("solver", "rattler"),
        conda_lock_command=values.get("conda_lock_command", ()),
        source=source,
        root_source=root_source,
    )

