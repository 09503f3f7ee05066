"""Personal environments: a user's own families, under the site's channels, policy and quota.

``envmgr --user build my-env.yaml`` runs the ordinary pipeline (lock, unique
prefix, smoke test, ``latest`` pointer, leases, rollback, gc) against the
user's own root and Jupyter kernels directory (``config.load_config(user=True)``).
This module holds what differs (docs/user-guide.md, "Personal environments"):

* the family is called ``user-<name>`` and grouped "Personal", so its kernel
  ``user-<name>-latest`` can never shadow or be shadowed by a shared family's
  kernel (Jupyter merges the user's kernels dir with the shared ones by name);
  shared families may therefore not be called ``user-*``;
* personal specs may use only the channels the site maps (when it maps any);
* an optional per-user disk quota, checked before a build installs anything.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse


from envmgr.errors import EnvironmentProblem, UsageError
from envmgr.fsutil import disk_usage
from .spec import MAX_NAME_LEN, Spec, parse_spec_text

if TYPE_CHECKING:
    from envmgr.config import Config
    from envmgr.lockfile import PackageSet
    from envmgr.lockfile import LockedPackage

PERSONAL_PREFIX = "user-"
PERSONAL_GROUP = "Personal"
PERSONAL_LABEL = " (personal)"


def personal_name(name: str) -> str:
    return name if name.startswith(PERSONAL_PREFIX) else f"{PERSONAL_PREFIX}{name}"


def personal_spec(spec: Spec) -> Spec:
    """The spec as a personal family: ``user-<name>``, group Personal, "(personal)" label.

    The spec's text is rewritten (comments kept) and parsed again, so the
    spec.yaml stored with each build describes the family exactly as built and
    rollback or gc, which re-read it, see the same names. Idempotent.
    """
    from ruamel.yaml import YAML  # only when writing a personal spec

    yaml = YAML(typ="rt")
    doc = yaml.load(spec.source_text)
    display = spec.display_name if spec.display_name.endswith(PERSONAL_LABEL) \
        else f"{spec.display_name}{PERSONAL_LABEL}"
    doc["name"] = personal_name(spec.name)
    doc["display_name"] = display
    doc["group"] = PERSONAL_GROUP
    out = io.StringIO()
    yaml.dump(doc, out)
    return parse_spec_text(out.getvalue(), spec.path or Path(f"{spec.name}.yaml"))


def check_channels(config: Config, spec: Spec) -> None:
    """Personal specs may use only the channels the site configuration maps (when it maps any)."""
    allowed = config.allowed_channels
    if allowed is None:
        return
    refused = [c for c in spec.channels if c not in allowed]
    if refused:
        raise UsageError(
            f"{spec.path or spec.name}: personal environments may use only the channels the site "
            f"configuration maps ({', '.join(sorted(allowed))}); this spec also asks for: "
            f"{', '.join(refused)}",
            hint="use the mapped channel names; ask the hub admins if a channel is missing")


def check_lock_channels(config: Config, channels: list[str], source: str) -> None:
    """A personal build from a lock file may install only from the mapped channels' URLs."""
    allowed = config.allowed_channels
    if allowed is None:
        return
    urls = {config.resolve_channel(name).rstrip("/") for name in allowed}
    refused = [c for c in channels if c.rstrip("/") not in urls]
    if refused:
        raise UsageError(f"{source} installs from channels the site does not allow for personal "
                         f"environments: {', '.join(refused)}",
                         hint="lock the spec again with `envmgr --user lock`")


def check_lock_pip_sources(config: Config, packages: Sequence[LockedPackage], source: str) -> None:
    """A personal build from a lock file may install pip wheels only from the site's pip sources.

    The same rule as for channels (``personal.check_lock_channels``): the wheel
    URLs of a hand-made lock must lie on the configured index's host or in one
    of its wheel folders, or a user could install any file from anywhere.
    """
    if not config.personal or not packages:
        return
    index = urlparse(config.pip.index_url)
    allowed = [f"{index.scheme}://{index.netloc}/", *(folder.as_uri().rstrip("/") + "/"
                                                       for folder in config.pip.find_links)]
    refused = [f"{p.name} ({p.url})" for p in packages if not p.url.startswith(tuple(allowed))]
    if refused:
        raise UsageError(f"{source} installs pip packages from outside the site's pip index and wheel "
                         f"folders: {', '.join(refused)}",
                         hint="lock the spec again with `envmgr --user lock`")


def prepare_spec(config: Config, spec: Spec) -> Spec:
    """The spec a build of ``config`` uses: personal under --user, checked against the site."""
    if config.user:
        if len(personal_name(spec.name)) > MAX_NAME_LEN:
            raise UsageError(f"{spec.path or spec.name}: personal family names get the prefix "
                             f"{PERSONAL_PREFIX!r} and may then have at most {MAX_NAME_LEN} characters",
                             hint=f"shorten the name to {MAX_NAME_LEN - len(PERSONAL_PREFIX)} characters")
        spec = personal_spec(spec)
    elif spec.name.startswith(PERSONAL_PREFIX):
        raise UsageError(f"family name {spec.name!r}: names beginning with {PERSONAL_PREFIX!r} are "
                         "reserved for personal environments (their kernels live in users' own "
                         "kernels dirs, where the names must not collide)",
                         hint="rename the family, or build it with `envmgr --user`")
    check_channels(config, spec)
    return spec


# -- quota --------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuotaUsage:
    used: int
    needed: int  # at least this much more: archives not yet in the user's package cache
    quota: int


class QuotaExceeded(EnvironmentProblem):
    """A personal build that would not fit in the user's quota (exit 5; nothing built)."""


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def quota_usage(config: Config, packages: PackageSet) -> QuotaUsage | None:
    """What the user's root uses (each hardlinked inode once) and what the build would add."""
    if not config.personal or config.user_quota is None:
        return None
    roots = [config.root]
    if not config.pkgs_dir.is_relative_to(config.root):
        roots.append(config.pkgs_dir)
    used, _ = disk_usage([r for r in roots if r.exists()])
    needed = sum(p.size or 0 for p in packages.packages
                 if not (config.pkgs_dir / f"{p.name}-{p.version}-{p.build}").is_dir())
    return QuotaUsage(used=used, needed=needed, quota=config.user_quota)


def check_quota(config: Config, spec: Spec, packages: PackageSet) -> None:
    """Refuse a personal build before it installs ``packages`` (the host set) if over ``user_quota``."""
    usage = quota_usage(config, packages)
    if usage is None or usage.used + usage.needed <= usage.quota:
        return
    raise QuotaExceeded(
        f"personal quota: your environments in {config.root} use {_gib(usage.used)} of your "
        f"{_gib(usage.quota)} quota and this build of {spec.name} needs at least "
        f"{_gib(usage.needed)} more; nothing built",
        hint="remove personal families or old builds you no longer need (`envmgr --user gc`), "
             "or ask the hub admins for a larger user_quota")
