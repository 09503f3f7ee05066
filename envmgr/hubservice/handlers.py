"""Request handlers: the page, its JSON API and the live log streams.

Everyone the hub lets in (``access:services!service=<name>``) may view; only
users whose OAuth token carries the build scope may build or roll back.
API handlers answer 403 instead of redirecting to the login page, and every
POST needs the XSRF token (``X-XSRFToken`` header; ``?_xsrf=`` for an
EventSource, which cannot send headers).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.iostream import StreamClosedError

from envmgr.catalog import records
from ..audit import audit
from ..errors import Busy, EnvmgrError, NotFound
from ..familylock import holder_info
from ..layout import BUILD_ID_RE
from envmgr.release.rollback import rollback
from .settings import ServiceSettings
from .jobs import ENDED, Job, JobStore, running_build
from .pagedata import SpecCache, page_state

log = logging.getLogger("envmgr.hubservice")

POLL_SECONDS = 0.3
KEEPALIVE_SECONDS = 15.0
FAMILY = r"([a-z0-9][a-z0-9-]*)"
ID = r"([0-9A-Za-z-]+)"


@dataclass
class Service:
    """What every handler shares (passed to each handler; no module-level state)."""

    settings: ServiceSettings
    auth: HubOAuth
    jobs: JobStore
    specs: SpecCache = field(default_factory=SpecCache)


class ServiceHandler(HubOAuthenticated, web.RequestHandler):
    def initialize(self, service: Service) -> None:
        self.service = service
        self.hub_auth = service.auth

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", "default-src 'self'; frame-ancestors 'self'")
        self.set_header("X-Content-Type-Options", "nosniff")

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def can_build(self) -> bool:
        scope = self.service.settings.build_scope
        return bool(self.current_user and self.hub_auth.check_scopes({scope}, self.current_user))


class PageHandler(ServiceHandler):
    @web.authenticated
    def get(self) -> None:
        s = self.service.settings
        token = self.xsrf_token
        self.render("index.html", prefix=s.prefix, user=self.user_name, can_build=self.can_build,
                    build_scope=s.build_scope, service_name=s.service_name,
                    xsrf=token.decode() if isinstance(token, bytes) else token)


class APIHandler(ServiceHandler):
    """JSON in and out; never redirects to a login page."""

    def get_login_url(self) -> str:
        raise web.HTTPError(403, "not logged in to the hub (reload the page to log in)")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": self._reason, "status": status_code, "message": message}))

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, default=str))

    def require_build_scope(self, action: str, family: str) -> None:
        if not self.can_build:
            scope = self.service.settings.build_scope
            log.warning("refused %s of %s for %s: no %s scope", action, family, self.user_name, scope)
            raise web.HTTPError(403, f"user {self.user_name} may not {action}: the hub did not grant "
                                     f"the scope {scope} (staff: log out and in again after a role change)")

    def fail(self, exc: EnvmgrError) -> None:
        status = 409 if isinstance(exc, Busy) else 404 if isinstance(exc, NotFound) else 400
        self.send({"error": type(exc).__name__, "status": status, "message": exc.message,
                   "hint": exc.hint}, status)

    async def in_thread(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


class StateHandler(APIHandler):
    @web.authenticated
    async def get(self) -> None:
        service = self.service
        state = await self.in_thread(page_state, service.settings.config, service.jobs, service.specs)
        state["user"] = {"name": self.user_name, "can_build": self.can_build,
                         "build_scope": self.service.settings.build_scope}
        self.send(state)


class BuildHandler(APIHandler):
    @web.authenticated
    async def post(self, family: str) -> None:
        self.require_build_scope("build", family)
        config = self.service.settings.config
        specs, problems = await self.in_thread(self.service.specs.get, config)
        if family not in specs:
            why = problems[0] if problems else f"no spec for family '{family}' in {config.specs_dir}"
            self.fail(NotFound(why, hint="only families with a spec in specs_dir can be built here"))
            return
        try:
            result = await self.in_thread(self.service.jobs.start_build, family, self.user_name)
        except EnvmgrError as exc:
            self.fail(exc)
            return
        if result.started and result.job:
            audit(config.layout, "build-requested", user=self.user_name, family=family,
                  job=result.job.job_id, via=f"hub service {self.service.settings.service_name}")
        data = result.to_json()
        data["running_build"] = await self.in_thread(running_build, config.layout, family, result.holder)
        self.send(data, 202 if result.started else 200)


class RollbackHandler(APIHandler):
    @web.authenticated
    async def post(self, family: str) -> None:
        self.require_build_scope("roll back", family)
        try:
            body = json.loads(self.request.body) if self.request.body else {}
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON") from None
        to = body.get("to") if isinstance(body, dict) else None
        config = self.service.settings.config
        try:
            result = await self.in_thread(rollback, config, family, to, wait=False)
        except EnvmgrError as exc:
            self.fail(exc)
            return
        audit(config.layout, "rollback", user=self.user_name, family=family, previous=result.previous,
              latest=result.current, marked_rolled_back=result.rolled_back,
              via=f"hub service {self.service.settings.service_name}")
        self.send(result.to_json())


class JobHandler(APIHandler):
    async def find_job(self, family: str, job_id: str) -> Job:
        try:
            job = await self.in_thread(self.service.jobs.load, family, job_id)
        except EnvmgrError as exc:
            raise web.HTTPError(404, exc.message) from None
        if job is None:
            raise web.HTTPError(404, f"no job {job_id} for family {family}")
        return job

    @web.authenticated
    async def get(self, family: str, job_id: str) -> None:
        self.send((await self.find_job(family, job_id)).to_json())


class LogStream(APIHandler):
    """Server-sent events: the log's lines as they are written, then an ``end`` event.

    Each event's id is the byte offset after it, so a reconnecting EventSource
    (``Last-Event-ID``) resumes where it stopped, also across a service restart.
    """

    _closed = False

    def on_connection_close(self) -> None:
        self._closed = True

    def start_offset(self) -> int:
        raw = self.request.headers.get("Last-Event-ID") or self.get_argument("offset", "0")
        return int(raw) if raw.isdigit() else 0

    async def stream(self, path: Path, finished: Any, final: Any) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        offset, idle = self.start_offset(), 0.0
        self.write("retry: 2000\n\n")
        try:
            while not self._closed:
                done = await self.in_thread(finished)  # before reading: the last bytes come after
                chunk, offset = read_lines(path, offset, complete_only=not done)
                if chunk:
                    idle = 0.0
                    data = "".join(f"data: {line}\n" for line in chunk.split("\n"))
                    self.write(f"id: {offset}\n{data}\n")
                if done:
                    end = await self.in_thread(final)
                    self.write(f"id: {offset}\nevent: end\ndata: {json.dumps(end, default=str)}\n\n")
                    await self.flush()
                    break
                idle += POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    self.write(": keepalive\n\n")
                    idle = 0.0
                await self.flush()
                await asyncio.sleep(POLL_SECONDS)
        except StreamClosedError:
            return
        self.finish()


def read_lines(path: Path, offset: int, *, complete_only: bool) -> tuple[str, int]:
    """Text from ``offset`` up to the last newline (or the end, once the writer is done)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(1 << 20)
    except FileNotFoundError:
        return "", offset
    if complete_only:
        data = data[: data.rfind(b"\n") + 1]
    if not data:
        return "", offset
    return data.decode("utf-8", errors="replace").rstrip("\n"), offset + len(data)


class JobLogHandler(LogStream, JobHandler):
    @web.authenticated
    async def get(self, family: str, job_id: str) -> None:
        jobs = self.service.jobs
        await self.find_job(family, job_id)

        def current() -> dict:
            found = jobs.load(family, job_id)
            return found.to_json() if found else {}

        await self.stream(jobs.log_path(family, job_id),
                          lambda: current().get("state") == ENDED, current)


class BuildLogHandler(LogStream):
    """The build.log of a build the page did not start (cron, a terminal)."""

    @web.authenticated
    async def get(self, family: str, build_id: str) -> None:
        layout = self.service.settings.config.layout
        if not BUILD_ID_RE.match(build_id) or records.load(layout, family, build_id) is None:
            raise web.HTTPError(404, f"no build {build_id} of family {family}")

        def record() -> dict:
            rec = records.load(layout, family, build_id)
            return rec.to_json() if rec else {}

        def finished() -> bool:  # a killed build stays "building" until the next run recovers it
            return record().get("status") != records.BUILDING or holder_info(layout, family) is None

        await self.stream(layout.build_log(family, build_id), finished, record)


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """Finishes the hub's OAuth with *this* service's HubOAuth (not the global singleton)."""

    def initialize(self, service: Service) -> None:
        self.hub_auth = service.auth


ROUTES: list[tuple[str, type[web.RequestHandler]]] = [
    (r"", PageHandler),
    (r"oauth_callback", OAuthCallbackHandler),
    (r"api/state", StateHandler),
    (rf"api/families/{FAMILY}/build", BuildHandler),
    (rf"api/families/{FAMILY}/rollback", RollbackHandler),
    (rf"api/families/{FAMILY}/jobs/{ID}", JobHandler),
    (rf"api/families/{FAMILY}/jobs/{ID}/log", JobLogHandler),
    (rf"api/families/{FAMILY}/builds/{ID}/log", BuildLogHandler),
]
