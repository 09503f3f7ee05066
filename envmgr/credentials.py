"""Credentials for HTTP(S) channels and the pip index: one file, never in anything envmgr writes.

The file is rattler's own authentication file (``RATTLER_AUTH_FILE``): a JSON
object from host (``conda.example.org``, ``*.example.org``) to one of

    {"BearerToken": "…"}
    {"BasicHTTP": {"username": "…", "password": "…"}}
    {"CondaToken": "…"}

so rattler authenticates channel requests itself (the token goes into a
header, never into a URL envmgr records). The pip index gets the same hosts'
credentials through a private netrc file handed to uv (basic auth; a bearer
token is sent as the password of the user ``__token__``, the convention of
PyPI mirrors). Channel and index URLs in specs and the site config must not
carry credentials (checked when they are read); every message that quotes a
tool's output passes through ``redact``.

The file must be readable by its owner only (the service account): anything
else is refused before it is used, because a token readable by hub users
could be used by them to read the vetted mirror directly.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import ConfigError, EnvironmentProblem

RATTLER_AUTH_ENV = "RATTLER_AUTH_FILE"
KINDS = ("BearerToken", "BasicHTTP", "CondaToken")
TOKEN_USER = "__token__"
MASK = "****"


@dataclass(frozen=True)
class Credential:
    host: str
    kind: str  # one of KINDS
    username: str = ""
    secret: str = ""


@dataclass(frozen=True)
class Credentials:
    path: Path
    entries: tuple[Credential, ...]

    def secrets(self) -> list[str]:
        return [e.secret for e in self.entries if e.secret]

    def for_host(self, host: str) -> Credential | None:
        """The entry for ``host``: exact first, then the longest matching ``*.suffix``."""
        exact = [e for e in self.entries if e.host == host]
        if exact:
            return exact[0]
        wild = [e for e in self.entries if e.host.startswith("*.") and host.endswith(e.host[1:])]
        return max(wild, key=lambda e: len(e.host), default=None)


def _parse_entry(path: Path, host: str, value: object) -> Credential:
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in KINDS:
        raise ConfigError(f"{path}: the entry for {host!r} must be one of "
                          + ", ".join(f'{{"{k}": …}}' for k in KINDS))
    kind, body = next(iter(value.items()))
    if kind == "BasicHTTP":
        if not (isinstance(body, Mapping) and isinstance(body.get("username"), str)
                and isinstance(body.get("password"), str)):
            raise ConfigError(f'{path}: {host!r}: BasicHTTP needs {{"username": …, "password": …}}')
        return Credential(host, kind, body["username"], body["password"])
    if not isinstance(body, str) or not body:
        raise ConfigError(f"{path}: {host!r}: {kind} must be a non-empty string")
    return Credential(host, kind, TOKEN_USER, body)


def load_credentials(path: Path | None) -> Credentials | None:
    """Read and check the credentials file (None when none is configured)."""
    if path is None:
        return None
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"credentials file {path} is readable by other users "
                              f"(mode {stat.filemode(info.st_mode)}); refusing to use it",
                              hint=f"chmod 600 {path} (owned by the service account that builds)")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"credentials file {path} (credentials_file in the config) does not exist") from None
    except PermissionError:
        raise EnvironmentProblem(f"cannot read credentials file {path}: permission denied",
                                 hint="builds must run as the service account that owns it") from None
    except ValueError as exc:  # no excerpt of the file: it holds secrets
        raise ConfigError(f"credentials file {path} is not valid JSON (line {getattr(exc, 'lineno', '?')})",
                          hint="use rattler's format: {\"host\": {\"BearerToken\": \"…\"}}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"credentials file {path} must hold a JSON object of host → credential")
    return Credentials(path, tuple(_parse_entry(path, str(h), v) for h, v in data.items()))


def activate(path: Path | None) -> Credentials | None:
    """Load the file and point rattler at it (the only source rattler then uses).

    Without a configured file rattler's own defaults (keyring, ~/.rattler) stay in effect.
    """
    creds = load_credentials(path)
    if creds is not None:
        os.environ[RATTLER_AUTH_ENV] = str(creds.path)
    return creds


def redact(text: str, creds: Credentials | None) -> str:
    """``text`` with every known secret and any URL user-info replaced by ``****``."""
    if creds is not None:
        for secret in sorted(creds.secrets(), key=len, reverse=True):
            text = text.replace(secret, MASK)
    return re.sub(r"(://)[^/\s@:]+(:[^/\s@]*)?@", rf"\1{MASK}@", text)


def host_of(url: str) -> str:
    return urlparse(url).hostname or ""


def basic_authorization(creds: Credentials | None, url: str) -> str | None:
    """The ``Authorization`` header uv's netrc amounts to for ``url``'s host (None: no entry)."""
    import base64

    entry = creds.for_host(host_of(url)) if creds else None
    if entry is None:
        return None
    return "Basic " + base64.b64encode(f"{entry.username}:{entry.secret}".encode()).decode()


@contextmanager
def netrc_for(creds: Credentials | None, urls: list[str]) -> Iterator[dict[str, str]]:
    """Environment for uv: ``NETRC`` naming a private file with the hosts of ``urls``.

    The file lives in a 0700 temporary directory for the duration of the call;
    secrets never reach uv's command line (visible in ``ps``).
    """
    hosts = sorted({h for h in (host_of(u) for u in urls) if h})
    lines = []
    for host in hosts:
        entry = creds.for_host(host) if creds else None
        if entry is not None:
            lines.append(f"machine {host} login {entry.username} password {entry.secret}\n")
    if not lines:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="envmgr-netrc-") as tmp:
        file = Path(tmp) / "netrc"
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(lines)
        yield {"NETRC": str(file)}
