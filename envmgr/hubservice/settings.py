"""The staff service's resolved settings, shared by the app and its handlers without a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Config


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service needs, resolved once from flags and the hub's environment."""

    config: Config
    service_name: str
    prefix: str  # URL path, starts and ends with '/'
    ip: str
    port: int
    build_scope: str
    api_url: str
    client_id: str
    cookie_secret_file: Path

    @property
    def access_scope(self) -> str:
        return f"access:services!service={self.service_name}"
