"""Site configuration: one YAML file plus a root directory.

Precedence, highest first: command-line flags (``--root``, ``--config``),
environment variables (``ENVMGR_ROOT``, ``ENVMGR_CONFIG``), the file's values,
built-in defaults. With nothing configured at all, a per-user root under
``$XDG_DATA_HOME/envmgr`` and the user's own Jupyter kernels directory make
envmgr usable for trying it out.

The site file at the fixed path ``/etc/envmgr/config.yaml`` is always read
when it exists; a file named by ``--config``/``ENVMGR_CONFIG`` is merged over
it and may not set the site's ``policy``, ``channels`` or ``user_quota``.
``--user`` selects personal environments: the per-user root and the user's own
Jupyter kernels directory, under the site's policy (docs/policy.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ruamel.yaml.comments import CommentedMap

from .errors import ConfigError, UsageError
from .layout import Layout
from envmgr.units import parse_size
from . import yamlcache
from .yamlcheck import FileProblems, Problem, YamlChecker, read_yaml

SITE_CONFIG = Path("/etc/envmgr/config.yaml")
COMPILE_MODES = ("all", "noarch", "none")  # the pyc policy's compile values (build.pycache)
DEMO_CHANNEL = "demo"  # built-in channel name: the local demo channel under the root
DEFAULT_CHANNEL_BASE = "https://conda.anaconda.org/"
DEFAULT_PIP_INDEX = "https://pypi.org/simple"


class ConfigFileError(FileProblems, ConfigError):
    title = "invalid configuration"
    recheck = "Fix the keys named above; `envmgr doctor` re-checks."


# -- the pyc policy: the site's `pyc:` section, a spec's keys over it (docs/design.md, Bytecode)

@dataclass(frozen=True)
class PycPolicy:
    """Which installed ``.py`` files get bytecode at build time."""

    compile: str = "all"  # all | noarch (conda's behaviour) | none
    exclude: tuple[str, ...] = ()  # fnmatch globs on the path inside the prefix, e.g. */tests/*

    def to_json(self) -> dict[str, Any]:
        return {"compile": self.compile, "exclude": list(self.exclude)}


@dataclass(frozen=True)
class PycOverride:
    """A spec's ``pyc:`` section: each key set replaces the site's value."""

    compile: str | None = None
    exclude: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"compile": self.compile, "exclude": None if self.exclude is None else list(self.exclude)}


def effective_policy(site: PycPolicy, spec: PycOverride | None) -> PycPolicy:
    if spec is None:
        return site
    return PycPolicy(compile=spec.compile if spec.compile is not None else site.compile,
                     exclude=spec.exclude if spec.exclude is not None else site.exclude)


def parse_pyc_section(c: YamlChecker, doc: CommentedMap, where: str = ""
                      ) -> tuple[str | None, tuple[str, ...] | None]:
    """``pyc: {compile: all|noarch|none, exclude: [glob, ...]}``; (None, None) for unset keys.

    Shared by the site configuration and specs (a spec's keys replace the site's).
    """
    section = c.mapping(doc, "pyc", where)
    if section is None:
        return None, None
    c.check_keys(section, ("compile", "exclude"), f"{where}pyc.")
    mode = None
    if "compile" in section:
        mode = c.string(section, "compile", f"{where}pyc.") or None
        if mode is not None and mode not in COMPILE_MODES:
            c.add(c.value_pos(section, "compile"), f"{where}pyc.compile",
                  f"must be one of {', '.join(COMPILE_MODES)} (got {section['compile']!r})")
            mode = None
    exclude = None
    if "exclude" in section:
        exclude = c.string_list(section, "exclude", f"{where}pyc.",
                                check=lambda g: None if g.strip() else "an empty glob excludes nothing")
    return mode, exclude


@dataclass(frozen=True)
class RetentionPolicy:
    """How many old builds to keep and for how long (gc reads this)."""

    keep_previous: int = 2
    grace_days: int = 7
    failed_days: int = 14


@dataclass(frozen=True)
class PipIndex:
    """Where ``pip:`` requirements are resolved (docs/specs.md, "pip packages").

    ``index_url`` is a PEP 503 simple index without credentials (they come from
    the credentials file, by host); ``find_links`` are local wheel folders;
    ``offline`` uses only those folders and never contacts an index.
    """

    index_url: str = DEFAULT_PIP_INDEX
    find_links: tuple[Path, ...] = ()
    offline: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"index_url": self.index_url, "find_links": [str(p) for p in self.find_links],
                "offline": self.offline}


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
    pyc: PycPolicy = PycPolicy()  # the `pyc:` section (`compile_pyc: false` is compile: none)
    notify_command: tuple[str, ...] = ()
    solver: str = "rattler"
    conda_lock_command: tuple[str, ...] = ()
    source: Path | None = None  # the file this came from, if any
    root_source: str = "default"  # flag, environment, file, default or user
    # Personal environments and the package policy (docs/policy.md):
    site_source: Path | None = None  # the site file at the fixed path, when it exists
    user: bool = False  # --user: the per-user root and the user's own Jupyter kernels dir
    personal: bool = False  # --user, or a root other than the site file's root
    policy_file: Path | None = None
    policy_applies_to: str = "all"  # all | personal
    user_quota: int | None = None  # bytes a personal root may use
    kernel_env_allow: tuple[str, ...] = ()  # protected names a spec's env: may set (kernelenv.py)
    pip: PipIndex = PipIndex()
    credentials_file: Path | None = None  # rattler's auth-file JSON; mode 0600 (envmgr.credentials)
    specs_dir_configured: bool = False  # specs_dir came from a config file, not the cwd default
    # Vulnerability advisories (docs/security.md): an OSV directory, and what a build does
    # that would introduce an affected package: warn (report) or block (refuse, exit 3).
    advisories_dir: Path | None = None
    advisories_mode: str = "warn"

    @cached_property  # one Layout per config: its own path caches then last (status, issue 14)
    def layout(self) -> Layout:
        return Layout(self.root)

    @property
    def compile_pyc(self) -> bool:
        """The older switch: False when the site compiles nothing."""
        return self.pyc.compile != "none"

    @property
    def governing_specs_dir(self) -> Path | None:
        """The specs directory whose specs govern retention and releases: only one the config named.

        ``specs_dir`` defaults to ``./specs`` so ``envmgr build --all`` works from a
        checkout; gc and status must not depend on the working directory, so an
        unconfigured default is never read for policy (catalog.governing).
        """
        return self.specs_dir if self.specs_dir_configured else None

    @property
    def policy_enforced(self) -> Path | None:
        """The policy file that applies to builds with this configuration, if any."""
        if self.policy_file is not None and (self.policy_applies_to == "all" or self.personal):
            return self.policy_file
        return None

    @property
    def allowed_channels(self) -> tuple[str, ...] | None:
        """Channel names a personal spec may use: the mapped ones (None: no restriction)."""
        return tuple(self.channels) if self.personal and self.channels else None

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
            "pyc": self.pyc.to_json(),
            "notify_command": list(self.notify_command), "solver": self.solver,
            "source": str(self.source) if self.source else None,
            "site_source": str(self.site_source) if self.site_source else None,
            "user": self.user, "personal": self.personal,
            "policy": {"file": str(self.policy_file), "applies_to": self.policy_applies_to,
                       "enforced": self.policy_enforced is not None} if self.policy_file else None,
            "user_quota": self.user_quota, "kernel_env_allow": list(self.kernel_env_allow),
            "advisories_dir": str(self.advisories_dir) if self.advisories_dir else None,
            "advisories": self.advisories_mode, "pip": self.pip.to_json(),
            "credentials_file": str(self.credentials_file) if self.credentials_file else None,
        }


@dataclass
class ConfigResult:
    """`envmgr config show`: the effective configuration as a command result."""

    config: Config
    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return self.config.to_json()


def _as_url(value: str, source: Path | None) -> str:
    if "://" in value:
        return value
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    return Path(os.path.abspath(path)).as_uri()  # not resolve(): channels may be symlinks


def jupyter_data_dir() -> str:
    """The user's Jupyter data directory (jupyter_core imported only when it is needed: start-up)."""
    from jupyter_core.paths import jupyter_data_dir as data_dir

    return data_dir()


def default_root(environ: dict[str, str]) -> Path:
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "envmgr"


CONFIG_KEYS = ("root", "kernels_dir", "pkgs_dir", "specs_dir", "channels", "min_free_space",
               "support_years", "retention", "compile_pyc", "pyc", "notify_command", "solver",
               "conda_lock_command", "policy", "user_quota", "kernel_env_allow", "advisories_dir",
               "advisories", "pip", "credentials_file")
# Keys a site file at the fixed path sets for everyone: no other file can replace them.
LOCKED_KEYS = ("policy", "channels", "user_quota", "kernel_env_allow", "advisories", "advisories_dir",
               "pip", "credentials_file")
POLICY_SCOPES = ("all", "personal")
ADVISORY_MODES = ("warn", "block")


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


def _relative_to(value: str, base: Path) -> str:
    """A channel target relative to its file's directory (files are merged, see load_config)."""
    if "://" in value:
        return value
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else base / path)


def _policy_values(c: YamlChecker, doc: CommentedMap, base: Path, values: dict[str, Any]) -> None:
    """``policy: {file, applies_to}`` and ``user_quota`` (docs/policy.md)."""
    policy = c.mapping(doc, "policy", "")
    if policy is not None:
        c.check_keys(policy, ("file", "applies_to"), "policy.")
        if (file := _path(c, policy, "file", base)) is None and "file" not in policy:
            c.add(c.key_pos(doc, "policy"), "policy.file", "is required")
        scope = c.string(policy, "applies_to", "policy.", default="all")
        if scope not in POLICY_SCOPES:
            c.add(c.value_pos(policy, "applies_to"), "policy.applies_to", "must be 'all' or 'personal'")
        values["policy"] = (Path(os.path.abspath(file)) if file else None, scope)
    if doc.get("user_quota") is not None:
        try:
            values["user_quota"] = parse_size(doc["user_quota"])
        except ValueError as exc:
            c.add(c.value_pos(doc, "user_quota"), "user_quota", str(exc))


def _pyc_values(c: YamlChecker, doc: CommentedMap, values: dict[str, Any]) -> None:
    """The ``pyc:`` section, and ``compile_pyc: true|false`` (kept as an alias of pyc.compile)."""
    alias = None
    if "compile_pyc" in doc:
        if not isinstance(doc["compile_pyc"], bool):
            c.add(c.value_pos(doc, "compile_pyc"), "compile_pyc", "must be true or false")
        else:
            alias = "all" if doc["compile_pyc"] else "none"
    mode, exclude = parse_pyc_section(c, doc)
    if alias is not None and mode is not None and alias != mode:
        c.add(c.key_pos(doc, "compile_pyc"), "compile_pyc",
              f"contradicts pyc.compile: {mode}; remove compile_pyc (pyc.compile replaces it)")
    mode = mode or alias
    if mode is not None or exclude is not None:
        values["pyc"] = (mode, exclude)


def _merge_pyc(values: dict[str, Any], site_values: dict[str, Any]) -> PycPolicy:
    """The chosen file's pyc keys over the site file's, over the defaults."""
    policy = PycPolicy()
    for layer in (site_values, values):
        mode, exclude = layer.get("pyc", (None, None))
        policy = PycPolicy(compile=mode or policy.compile,
                           exclude=policy.exclude if exclude is None else tuple(exclude))
    return policy


def _has_userinfo(url: str) -> bool:
    return "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]


def _pip_values(c: YamlChecker, doc: CommentedMap, base: Path, values: dict[str, Any]) -> None:
    """``pip: {index_url, find_links, offline}`` and ``credentials_file``."""
    if (creds := _path(c, doc, "credentials_file", base)) is not None:
        values["credentials_file"] = Path(os.path.abspath(creds))
    pip = c.mapping(doc, "pip", "")
    if pip is None:
        return
    c.check_keys(pip, ("index_url", "find_links", "offline"), "pip.")
    index_url = c.string(pip, "index_url", "pip.", default=DEFAULT_PIP_INDEX)
    if index_url and not index_url.startswith(("http://", "https://", "file://")):
        c.add(c.value_pos(pip, "index_url"), "pip.index_url", "must be an http(s):// or file:// URL")
    elif _has_userinfo(index_url):
        c.add(c.value_pos(pip, "index_url"), "pip.index_url", "carries credentials in the URL "
              "(they would reach locks and logs); put them in credentials_file")
    links = tuple(Path(p) if Path(p).is_absolute() else base / p
                  for p in (os.path.expanduser(x) for x in c.string_list(pip, "find_links", "pip.")))
    offline = pip.get("offline", False)
    if not isinstance(offline, bool):
        c.add(c.value_pos(pip, "offline"), "pip.offline", "must be true or false")
        offline = False
    values["pip"] = PipIndex(index_url=index_url.rstrip("/"), find_links=links, offline=offline)


def _refuse_locked(c: YamlChecker, doc: CommentedMap, locked: tuple[str, ...], site: Path) -> None:
    for key in locked:
        if key in doc:
            c.add(c.key_pos(doc, key), key, f"is set by the site configuration {site} and cannot be "
                  "overridden; remove it here (ask the hub admins to change the site file)")


def _file_values(path: Path, *, locked: tuple[str, ...] = (), site: Path | None = None,
                 use_cache: bool = True) -> dict[str, Any]:
    """The file's settings, validated; the parse comes from ``yamlcache`` when the file is unchanged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except PermissionError:
        raise ConfigError(f"cannot read configuration file {path}: permission denied",
                          hint="Ask the hub admin to make it world-readable (mode 0644).") from None
    hit, doc = yamlcache.cached_doc(path) if use_cache else (False, None)
    if not hit:
        doc = read_yaml(path, text, ConfigFileError)
    if doc is None:
        return {}
    c = YamlChecker(str(path))
    if not isinstance(doc, dict):
        raise ConfigFileError([Problem(str(path), 1, 1, "(document)", "must be a YAML mapping")])
    c.check_keys(doc, CONFIG_KEYS, "")
    base = path.parent
    values: dict[str, Any] = {}
    for key in ("root", "kernels_dir", "pkgs_dir", "specs_dir", "advisories_dir"):
        if (p := _path(c, doc, key, base)) is not None:
            values[key] = p
    channels = c.mapping(doc, "channels", "")
    if channels is not None:
        values["channels"] = {}
        for name in channels:
            target = channels[name]
            if not isinstance(target, str) or not target.strip():
                c.add(c.value_pos(channels, name), f"channels.{name}", "must be a URL or a path")
            elif _has_userinfo(target):
                c.add(c.value_pos(channels, name), f"channels.{name}", "carries credentials in the "
                      "URL (they would reach locks and logs); put them in credentials_file")
            else:
                values["channels"][str(name)] = _relative_to(target.strip(), base)
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
    _pyc_values(c, doc, values)
    for key in ("notify_command", "conda_lock_command"):
        if key in doc:  # only keys the file sets: a second file is merged over the site file
            values[key] = _command(c, doc, key)
    solver = c.string(doc, "solver", "", default="rattler")
    if solver not in ("rattler", "conda-lock"):
        c.add(c.value_pos(doc, "solver"), "solver", "must be 'rattler' or 'conda-lock'")
    if "solver" in doc:
        values["solver"] = solver
    if solver == "conda-lock" and "--conda" not in values.get("conda_lock_command", ()):
        c.add(c.key_pos(doc, "solver"), "conda_lock_command",
              "solver: conda-lock needs conda_lock_command naming the executable, e.g. "
              "[conda-lock, --conda, /opt/conda/bin/mamba] (without it conda-lock tries to "
              "download micromamba and hangs)")
    if doc.get("kernel_env_allow") is not None:
        values["kernel_env_allow"] = c.string_list(doc, "kernel_env_allow", "")
    _policy_values(c, doc, base, values)
    if "advisories" in doc:
        mode = c.string(doc, "advisories", "", default="warn")
        if mode not in ADVISORY_MODES:
            c.add(c.value_pos(doc, "advisories"), "advisories", "must be 'warn' or 'block'")
        values["advisories"] = mode
    _pip_values(c, doc, base, values)
    if site is not None:
        _refuse_locked(c, doc, locked, site)
    if c.problems:
        if hit:  # report the problems with the real file:line positions
            return _file_values(path, locked=locked, site=site, use_cache=False)
        raise ConfigFileError(c.problems)
    if not hit:
        yamlcache.store_doc(path, doc)
    return values


def config_file(flag: Path | None, environ: dict[str, str], site: Path | None = None) -> Path | None:
    """Which configuration file applies: --config, then ENVMGR_CONFIG, then the site file."""
    if flag is not None:
        return flag
    if environ.get("ENVMGR_CONFIG"):
        return Path(environ["ENVMGR_CONFIG"])
    site = SITE_CONFIG if site is None else site
    return site if site.is_file() else None


def _layered_values(site: Path | None, chosen: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(effective values, the site file's values): the chosen file merged over the site file.

    The site file at the fixed path is read whatever the flags and environment
    say; a second file (--config, ENVMGR_CONFIG) may not set the LOCKED_KEYS
    the site file sets, so nobody escapes the site's policy, channel mapping
    or quota by pointing envmgr at a file of their own.
    """
    if site is None:
        values = _file_values(chosen) if chosen is not None else {}
        return values, {}
    site_values = _file_values(site)
    if chosen is None or os.path.abspath(chosen) == os.path.abspath(site):
        return dict(site_values), site_values
    locked = tuple(k for k in LOCKED_KEYS if k in site_values)
    return {**site_values, **_file_values(chosen, locked=locked, site=site)}, site_values


def _user_paths(root: Path | None, env: dict[str, str]) -> tuple[Path, Path, Path]:
    """--user: (root, kernels_dir, pkgs_dir), always the user's own, whatever the files say.

    The package cache is per user too: users cannot write the shared one, and a
    cache shared writable between users would let one user replace another's
    packages.
    """
    if root is not None:
        raise UsageError("--root cannot be combined with --user",
                         hint=f"personal environments always live in {default_root(env)} "
                              "(set XDG_DATA_HOME to move them)")
    user_root = Path(os.path.abspath(default_root(env)))
    return user_root, Path(jupyter_data_dir()) / "kernels", user_root / "pkgs"


def _chosen_root(values: dict[str, Any], root: Path | None, env: dict[str, str]) -> tuple[Path, str]:
    if root is not None:
        chosen_root, root_source = root, "flag"
    elif env.get("ENVMGR_ROOT"):
        chosen_root, root_source = Path(env["ENVMGR_ROOT"]), "environment"
    elif "root" in values:
        chosen_root, root_source = values["root"], "file"
    else:
        chosen_root, root_source = default_root(env), "default"
    return Path(os.path.abspath(os.path.expanduser(chosen_root))), root_source


def load_config(*, config_path: Path | None = None, root: Path | None = None,
                environ: dict[str, str] | None = None, user: bool = False,
                site_config: Path | None = None) -> Config:
    """Build the effective configuration. ``environ`` defaults to os.environ.

    ``user`` is the CLI's ``--user`` (personal environments). ``site_config``
    replaces the fixed site path ``SITE_CONFIG`` (an installer's or a test's
    choice; deliberately not reachable from flags or the environment).
    """
    env = dict(os.environ) if environ is None else environ
    site_path = SITE_CONFIG if site_config is None else site_config
    site = site_path if site_path.is_file() else None
    chosen = config_path or (Path(env["ENVMGR_CONFIG"]) if env.get("ENVMGR_CONFIG") else None)
    values, site_values = _layered_values(site, chosen)
    if user:
        chosen_root, kernels_dir, pkgs_dir = _user_paths(root, env)
        root_source = "user"
    else:
        chosen_root, root_source = _chosen_root(values, root, env)
        if root_source == "default" and "kernels_dir" not in values:
            kernels_dir = Path(jupyter_data_dir()) / "kernels"  # visible to Jupyter right away
        else:
            kernels_dir = values.get("kernels_dir", chosen_root / "share" / "jupyter" / "kernels")
        pkgs_dir = values.get("pkgs_dir", chosen_root / "pkgs")
    site_root = site_values.get("root")
    personal = user or (site_root is not None
                        and os.path.realpath(site_root) != os.path.realpath(chosen_root))
    policy_file, policy_scope = values.get("policy", (None, "all"))
    return Config(
        root=chosen_root,
        kernels_dir=Path(kernels_dir),
        pkgs_dir=Path(pkgs_dir),
        specs_dir=values.get("specs_dir", Path.cwd() / "specs"),
        specs_dir_configured="specs_dir" in values,
        channels=values.get("channels", {}),
        min_free_bytes=values.get("min_free_bytes", Config.min_free_bytes),
        support_years=values.get("support_years", Config.support_years),
        retention=values.get("retention", RetentionPolicy()),
        pyc=_merge_pyc(values, site_values),
        notify_command=values.get("notify_command", ()),
        solver=values.get("solver", "rattler"),
        conda_lock_command=values.get("conda_lock_command", ()),
        source=chosen or site,
        root_source=root_source,
        site_source=site,
        user=user,
        personal=personal,
        policy_file=policy_file,
        policy_applies_to=policy_scope,
        user_quota=values.get("user_quota"),
        advisories_dir=values.get("advisories_dir"),
        advisories_mode=values.get("advisories", "warn"),
        kernel_env_allow=tuple(values.get("kernel_env_allow", ())),
        pip=values.get("pip", PipIndex()),
        credentials_file=values.get("credentials_file"),
    )

