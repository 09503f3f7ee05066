"""The package policy: which packages (and versions) a hub allows, checked on every lock.

A hub holding sensitive data allows only vetted packages. The list lives in a
YAML file in the specs repository and changes by pull request (docs/policy.md)::

    allowed:                      # when present, every locked package must be listed
      python: "3.11.*|3.12.*"     # a conda version spec
      numpy: ">=1.26"
      pandas:                     # any version
    denied:                       # refused even when allowed
      openssl: {version: "<3", reason: "CVE-2023-0286"}

The check runs on the **locked** package set, transitive dependencies
included, because that is what gets installed: a spec asking for an allowed
package that pulls in a refused one must be refused too. Each violation names
the requested dependency that pulled the package in, through the locked
records' ``depends``. Version matching is rattler's (conda semantics), through
the adapter; never a comparator of our own.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any


from envmgr._internal import _rattler
from envmgr.define.limits import read_limited
from envmgr.errors import BuildFailed, ConfigError
from envmgr.lockfile import LockedPackage, PackageSet
from envmgr.yamlcheck import FileProblems, Problem, YamlChecker, read_yaml

if TYPE_CHECKING:
    from ruamel.yaml.comments import CommentedMap

    from envmgr.config import Config
    from collections.abc import Mapping

    from envmgr.define.spec import Spec

PACKAGE_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.+-]*$")
TOP_KEYS = ("allowed", "denied")
ENTRY_KEYS = ("version", "reason")
ARROW = " → "


class PolicyFileError(FileProblems, ConfigError):
    """Every problem of a policy file, with file:line:column (exit 2)."""

    title = "invalid package policy"
    recheck = "Fix the entries named above; `envmgr spec check --policy FILE` re-checks."


@dataclass(frozen=True)
class Rule:
    """One package entry: a name, an optional version spec, an optional reason."""

    name: str
    version: str | None = None  # conda version spec; None: every version
    reason: str = ""

    def matches(self, version: str) -> bool:
        return self.version is None or _rattler.version_matches(version, self.version)


@dataclass(frozen=True)
class Policy:
    path: Path
    allowed: Mapping[str, Rule] | None  # None: no allow list, everything not denied is allowed
    denied: Mapping[str, Rule]

    def refusal(self, name: str, version: str) -> tuple[str, str | None] | None:
        """(why ``name`` ``version`` is refused, the allowed versions if only the version is
        wrong), or None if the policy allows it."""
        deny = self.denied.get(name)
        if deny is not None and deny.matches(version):
            scope = f" (versions {deny.version})" if deny.version else ""
            return f"denied{scope}" + (f": {deny.reason}" if deny.reason else ""), None
        if self.allowed is None:
            return None
        allow = self.allowed.get(name)
        if allow is None:
            return "not allowed: not in the allowed list", None
        if not allow.matches(version):
            return f"not allowed: allowed versions {allow.version}", allow.version
        return None

    def to_json(self) -> dict[str, Any]:
        def rules(m: Mapping[str, Rule]) -> dict[str, Any]:
            return {n: {"version": r.version, "reason": r.reason or None} for n, r in m.items()}
        return {"path": str(self.path), "allowed": rules(self.allowed) if self.allowed is not None
                else None, "denied": rules(self.denied)}


# -- reading the file -----------------------------------------------------------------

def _entry(c: YamlChecker, section: CommentedMap, name: Any, where: str) -> Rule | None:
    key = f"{where}.{name}"
    if not isinstance(name, str) or not PACKAGE_NAME_RE.match(name):
        c.add(c.key_pos(section, name), key,
              "is not a conda package name (lowercase letters, digits and _ . + -)")
        return None
    value = section[name]
    version, reason = value, ""
    if isinstance(value, dict):
        c.check_keys(value, ENTRY_KEYS, f"{key}.")
        version, reason = value.get("version"), c.string(value, "reason", f"{key}.")
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        c.add(c.value_pos(section, name), key, f"write the version spec in quotes ('{version}'): "
              "YAML reads an unquoted 2.10 as the number 2.1")
        return None
    if version is not None and (not isinstance(version, str) or not version.strip()):
        c.add(c.value_pos(section, name), key, "must be a version spec such as '>=1.2,<2', "
              "a mapping {version, reason}, or empty for every version")
        return None
    version = version.strip() if isinstance(version, str) else None
    if version is not None:
        try:
            _rattler.check_version_spec(version)
        except ValueError as exc:
            c.add(c.value_pos(section, name), key, f"'{version}' is not a conda version spec: {exc}")
            return None
    return Rule(name, None if version in (None, "*") else version, reason)


def _section(c: YamlChecker, doc: CommentedMap, where: str) -> dict[str, Rule] | None:
    section = c.mapping(doc, where, "")
    if section is None:
        return None
    if not section:
        c.add(c.value_pos(doc, where), where, "lists no packages (remove the key instead)")
    rules = (_entry(c, section, name, where) for name in section)
    return {r.name: r for r in rules if r is not None}


def parse_policy_text(text: str, path: Path) -> Policy:
    """Parse and validate a policy; raise PolicyFileError listing every problem."""
    doc = read_yaml(path, text, PolicyFileError)
    c = YamlChecker(str(path))
    if not isinstance(doc, dict):
        raise PolicyFileError([Problem(str(path), 1, 1, "(document)", "must be a YAML mapping "
                                       "with 'allowed' and/or 'denied'")])
    c.check_keys(doc, TOP_KEYS, "")
    allowed, denied = _section(c, doc, "allowed"), _section(c, doc, "denied")
    if allowed is None and denied is None and not c.problems:
        c.add((0, 0), "(document)", "has neither 'allowed' nor 'denied'")
    if c.problems:
        raise PolicyFileError(c.problems)
    return Policy(path=path, allowed=allowed, denied=denied or {})


def load_policy(path: Path) -> Policy:
    """Read the policy at ``path``. A policy that cannot be read refuses everything (fail closed).

    Parsed once per process and file version: YAML parsing is pure Python and
    costs ~0.25 ms per entry (5 s for a 20,000-entry mirror list), while a
    nightly ``build --all`` checks every family's lock against the same file.
    An edited file (new mtime, size or inode) is parsed again.
    """
    try:
        st = path.stat()
        return _parse_file(str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        raise ConfigError(f"package policy file not found: {path}",
                          hint="nothing is locked or built while the configured policy is missing; "
                               "fix `policy.file` in the site configuration") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the package policy {path}: {exc}",
                          hint="the policy must be readable (mode 0644) UTF-8 text") from None


@functools.lru_cache(maxsize=4)
def _parse_file(path: str, _mtime_ns: int, _size: int, _inode: int) -> Policy:
    """The parsed policy of one version of a file (the key's stat fields identify the version)."""
    policy = parse_policy_text(read_limited(Path(path), "package policy"), Path(path))
    return Policy(policy.path, None if policy.allowed is None else MappingProxyType(dict(policy.allowed)),
                  MappingProxyType(dict(policy.denied)))


# -- checking a lock ---------------------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    """A refused locked package and how the spec pulled it in."""

    platform: str
    package: LockedPackage
    reason: str
    requested: str | None  # the spec's dependency whose closure holds the package
    chain: tuple[str, ...]  # "name version" from the requested package down to this one
    allowed_versions: str | None = None  # set when only the version is refused

    def line(self) -> str:
        pkg = f"{self.package.name} {self.package.version}"
        if self.requested is None:
            return f"{pkg} ({self.reason}; not reached from any requested package)"
        return ARROW.join([f"requested {self.requested}", *self.chain]) + f" ({self.reason})"

    def to_json(self) -> dict[str, Any]:
        return {"platform": self.platform, "name": self.package.name,
                "version": self.package.version, "build": self.package.build,
                "reason": self.reason, "requested": self.requested, "chain": list(self.chain),
                "explanation": self.line()}


class PolicyViolation(BuildFailed):
    """Locked packages the policy refuses: nothing is built (exit 3, like an unsolvable spec)."""

    def __init__(self, policy: Policy, family: str, violations: Sequence[Violation]):
        self.violations = list(violations)
        multi = len({v.platform for v in violations}) > 1
        lines = "\n".join(f"  {'[' + v.platform + '] ' if multi else ''}{v.line()}" for v in violations)
        noun = "package" if len(violations) == 1 else "packages"
        super().__init__(
            f"the package policy {policy.path} refuses {len(violations)} locked {noun} of "
            f"{family}; nothing built:\n{lines}", hint=_hint(violations, policy.path))

    def to_json(self) -> dict:
        return {**super().to_json(), "violations": [v.to_json() for v in self.violations]}


def _hint(violations: Sequence[Violation], path: Path) -> str:
    pins = sorted({f"'{v.package.name} {v.allowed_versions}'" for v in violations
                   if v.allowed_versions})
    pin = f"pin allowed versions in the spec's dependencies ({', '.join(pins)}), or " if pins else ""
    return f"{pin}propose a change to {path} by pull request"


def _depend_name(depend: str) -> str:
    try:
        return _rattler.match_spec_name(depend)
    except ValueError:
        return depend.split()[0] if depend.split() else depend


def _requested_names(requested: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for text in requested:
        try:
            pairs.append((_rattler.match_spec_name(text), text))
        except ValueError:
            continue  # the spec check reports it; a chain just cannot start there
    return pairs


def dependency_chains(pkg_set: PackageSet, requested: Iterable[str]
                      ) -> dict[str, tuple[str, tuple[str, ...]]]:
    """For every package reachable from a requested one: (requested spec, shortest chain).

    A breadth-first search over the locked records' ``depends`` from all
    requested packages at once (in the spec's order, so ties go to the first
    requested), which yields the shortest explanation for each package.
    """
    by_name = pkg_set.by_name()
    parent: dict[str, str | None] = {}
    origin: dict[str, str] = {}
    queue: deque[str] = deque()
    for name, text in _requested_names(requested):
        if name in by_name and name not in parent:
            parent[name], origin[name] = None, text
            queue.append(name)
    while queue:
        name = queue.popleft()
        for dep in (_depend_name(d) for d in by_name[name].depends):
            if dep in by_name and dep not in parent:
                parent[dep], origin[dep] = name, origin[name]
                queue.append(dep)
    chains = {}
    for name in parent:
        path, step = [], name
        while step is not None:
            path.append(f"{step} {by_name[step].version}")
            step = parent[step]
        chains[name] = (origin[name], tuple(reversed(path)))
    return chains


def check_package_set(policy: Policy, pkg_set: PackageSet, requested: Sequence[str]) -> list[Violation]:
    """Every package of ``pkg_set`` the policy refuses, with its dependency chain."""
    refused = [(p, why) for p in pkg_set.packages if (why := policy.refusal(p.name, p.version))]
    if not refused:
        return []
    chains = dependency_chains(pkg_set, requested)
    violations = []
    for pkg, (why, allowed_versions) in refused:
        requested_by, chain = chains.get(pkg.name, (None, ()))
        violations.append(Violation(pkg_set.platform, pkg, why, requested_by, chain, allowed_versions))
    return violations


def check_sets(policy: Policy, family: str, sets: Mapping[str, PackageSet],
               requested: Sequence[str]) -> None:
    """Raise PolicyViolation naming every refused package of every platform."""
    violations = [v for platform in sorted(sets)
                  for v in check_package_set(policy, sets[platform], requested)]
    if violations:
        raise PolicyViolation(policy, family, violations)


def enforce_policy(config: Config, spec: Spec, sets: Mapping[str, PackageSet]) -> None:
    """The site's policy on a new lock's package sets (solved or read), when it applies here.

    Called by ``envmgr.locking`` for every lock, so ``envmgr lock``, ``build``
    and ``build --from-lock`` are all covered; the policy file is re-read each
    time (a merged pull request applies to the next run).
    """
    path = config.policy_enforced
    if path is not None:
        check_sets(load_policy(path), spec.name, sets, spec.dependencies)
