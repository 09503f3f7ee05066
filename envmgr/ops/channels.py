"""Is every mapped channel reachable, with the configured credentials? (``envmgr doctor``)

A nightly against a mirror that moved, or whose token expired, fails every
build; doctor finds out first by fetching each mapped channel's ``noarch``
repodata exactly as a build would (same client, same credentials file).
"""

from __future__ import annotations

from dataclasses import dataclass

from envmgr._internal import _rattler
from envmgr.config import Config
from envmgr.credentials import activate
from envmgr.errors import EnvmgrError


@dataclass(frozen=True)
class ChannelProbe:
    name: str
    url: str
    packages: int = 0
    error: str | None = None
    hint: str | None = None


def probe_channels(config: Config) -> list[ChannelProbe]:
    """One probe per channel of the site mapping (never stops at the first failure)."""
    try:
        activate(config.credentials_file)
    except EnvmgrError as exc:
        return [ChannelProbe(name, config.resolve_channel(name), error=exc.message, hint=exc.hint)
                for name in config.channels]
    probes = []
    for name in sorted(config.channels):
        url = config.resolve_channel(name)
        try:
            probes.append(ChannelProbe(name, url, packages=_rattler.probe_channel(url)))
        except EnvmgrError as exc:
            probes.append(ChannelProbe(name, url, error=exc.message, hint=exc.hint))
    return probes
