"""Is every mapped channel reachable, with the configured credentials? (``envmgr doctor``)

A nightly against a mirror that moved, or whose token expired, fails every
build; doctor finds out first by fetching each mapped channel's ``noarch``
repodata exactly as a build would (same client, same credentials file).
"""

from __future__ import annotations

from dataclasses import dataclass

from envmgr._internal import _rattler
from envmgr.config import Config, PipIndex
from envmgr.credentials import activate, basic_authorization, host_of, load_credentials, redact
from envmgr.errors import EnvmgrError

PIP_TIMEOUT = 15


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


def pip_in_use(config: Config) -> list[str]:
    """Families whose governing spec has ``pip:`` requirements (the index matters to them)."""
    from envmgr.catalog.governing import spec_index

    return sorted(name for name, choice in spec_index(config).items() if choice.spec and choice.spec.pip)


def probe_pip_index(config: Config) -> ChannelProbe | None:
    """The pip index answers with the credentials file's entry for its host (as uv will ask it);
    offline, the wheel folders hold wheels. None when no spec uses pip and the config sets no index."""
    pip = config.pip
    if pip == PipIndex() and not pip_in_use(config):
        return None
    missing = [str(p) for p in pip.find_links if not p.is_dir()]
    if missing:
        return ChannelProbe("pip find_links", ", ".join(map(str, pip.find_links)),
                            error=f"wheel folder(s) missing: {', '.join(missing)}",
                            hint="fix pip.find_links in the config")
    if pip.offline:
        wheels = sum(1 for folder in pip.find_links for _ in folder.glob("*.whl"))
        error = None if wheels else "offline, and the wheel folders hold no wheels"
        return ChannelProbe("pip (offline)", ", ".join(map(str, pip.find_links)), packages=wheels,
                            error=error, hint="put the wheels there (docs/admin-guide.md)" if error else None)
    return _probe_index(config, pip.index_url)


def _probe_index(config: Config, url: str) -> ChannelProbe:
    import urllib.error
    import urllib.request

    try:
        creds = load_credentials(config.credentials_file)
    except EnvmgrError as exc:
        return ChannelProbe("pip index", url, error=exc.message, hint=exc.hint)
    if url.startswith("file://"):
        path = _rattler.channel_path(url)
        ok = path is not None and path.is_dir()
        return ChannelProbe("pip index", url, error=None if ok else f"no index at {path}",
                            hint=None if ok else "fix pip.index_url in the config")
    request = urllib.request.Request(url.rstrip("/") + "/", method="HEAD")
    if (header := basic_authorization(creds, url)) is not None:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=PIP_TIMEOUT):  # noqa: S310 - http(s) only (config check)
            return ChannelProbe("pip index", url)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return ChannelProbe("pip index", url, error=f"refused the credentials (HTTP {exc.code})",
                                hint=f"check the entry for {host_of(url)} in credentials_file "
                                     f"({config.credentials_file or 'none configured'})")
        if exc.code in (405, 501):  # an index that does not answer HEAD still answered
            return ChannelProbe("pip index", url)
        return ChannelProbe("pip index", url, error=f"HTTP {exc.code}", hint="check pip.index_url")
    except (OSError, ValueError) as exc:
        reason = redact(str(getattr(exc, "reason", exc)), creds)
        return ChannelProbe("pip index", url, error=f"unreachable ({reason})",
                            hint="check pip.index_url, the proxy, or set pip.offline with find_links")
