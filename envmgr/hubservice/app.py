"""The tornado application and its lifecycle as a JupyterHub service.

Works managed (the hub starts ``envmgr serve`` from ``c.JupyterHub.services``
and sets every ``JUPYTERHUB_*`` variable) and external (the admin starts it
with ``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_SERVICE_NAME``). The service name is required: without it
JupyterHub's HubAuth would let any hub user in.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from ..config import Config
from ..errors import ConfigError
from ..results import Progress, no_progress
from .jobs import JobStore
from .settings import ServiceSettings

HERE = Path(__file__).resolve().parent
DEFAULT_BUILD_SCOPE = "custom:envmgr:build"
DEFAULT_PORT = 10101
COOKIE_SECRET_BYTES = 32


def settings_from_environ(config: Config, environ: Mapping[str, str], *, ip: str | None = None,
                          port: int | None = None, build_scope: str = DEFAULT_BUILD_SCOPE,
                          cookie_secret_file: Path | None = None) -> ServiceSettings:
    """Read the hub's variables; name every missing one at once (and what to do)."""
    missing = [name for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_NAME")
               if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"envmgr serve runs as a JupyterHub service; not set: {', '.join(missing)}",
            hint="Add it to c.JupyterHub.services (managed: the hub sets them), or export them for "
                 "an external service; see docs/hub-service.md")
    name = environ["JUPYTERHUB_SERVICE_NAME"]
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{name}/"
    url = urlparse(environ.get("JUPYTERHUB_SERVICE_URL") or "")
    if not build_scope.startswith("custom:"):
        raise ConfigError(f"--build-scope {build_scope!r} must be a custom scope (custom:...)",
                          hint="declare it in c.JupyterHub.custom_scopes; see docs/hub-service.md")
    return ServiceSettings(
        config=config, service_name=name, prefix=prefix if prefix.endswith("/") else prefix + "/",
        ip=ip or url.hostname or "127.0.0.1", port=port or url.port or DEFAULT_PORT,
        build_scope=build_scope, api_url=environ["JUPYTERHUB_API_URL"],
        client_id=environ.get("JUPYTERHUB_CLIENT_ID") or f"service-{name}",
        cookie_secret_file=cookie_secret_file or config.layout.hub_cookie_secret)


def cookie_secret(path: Path) -> bytes:
    """A secret that survives restarts (so sessions and XSRF tokens do), readable by the owner only."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another service instance won the race
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(os.urandom(COOKIE_SECRET_BYTES).hex() + "\n")
    return bytes.fromhex(path.read_text().strip())


def make_app(settings: ServiceSettings, jobs: JobStore | None = None):  # noqa: ANN201 - tornado Application
    """The tornado application: the page, its JSON API, the OAuth callback, static files."""
    from jupyterhub.services.auth import HubOAuth
    from tornado.web import Application

    from . import handlers

    auth = HubOAuth(api_url=settings.api_url, base_url=settings.prefix, oauth_client_id=settings.client_id,
                    access_scopes={settings.access_scope}, cache_max_age=60)
    service = handlers.Service(settings=settings, auth=auth, jobs=jobs or JobStore(settings.config))
    routes = [(settings.prefix + path, handler, {"service": service})
              for path, handler in handlers.ROUTES]
    return Application(
        routes,
        template_path=str(HERE / "templates"),
        static_path=str(HERE / "static"),
        static_url_prefix=settings.prefix + "static/",
        cookie_secret=cookie_secret(settings.cookie_secret_file),
        xsrf_cookies=True,
    )


async def _serve(settings: ServiceSettings, progress: Progress) -> None:
    app = make_app(settings)
    server = app.listen(settings.port, address=settings.ip, xheaders=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The hub stops services with SIGINT, which a service started from a hub
    # running in the background inherits as *ignored*: install handlers explicitly.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    progress(f"envmgr service {settings.service_name} on http://{settings.ip}:{settings.port}"
             f"{settings.prefix} (root {settings.config.root}, build scope {settings.build_scope})")
    await stop.wait()
    progress("stopping (running builds continue; their logs stay under logs/jobs/)")
    server.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    except asyncio.TimeoutError:
        pass


def serve(settings: ServiceSettings, progress: Progress = no_progress) -> int:
    """Run until SIGINT/SIGTERM; builds started from the page keep running after it stops."""
    asyncio.run(_serve(settings, progress))
    return 0
