"""Detached builds started from the staff page, found again after a service restart.

A click on *Build now* starts ``envmgr build --now --no-wait -- FAMILY`` in a
new session (``start_new_session=True``): the hub stopping or restarting the
service (SIGINT/SIGTERM to the service) never reaches the build. Everything
about the job lives under the root, so a restarted service finds it again::

    logs/jobs/<family>/<job-id>.json   who started it, pid, and once ended: exit code, outcome
    logs/jobs/<family>/<job-id>.log    the process's stdout+stderr, appended as it runs

The job log is what the page streams. The build's own
``records/<family>/<build-id>/build.log`` starts only after the lock is taken
and the spec solved (the build id is a hash of the lock), so it misses the
first part and is not known when the button is clicked; the job log covers
the whole run and ends with the result and its package diff. A build the page
did not start (cron, a terminal) has no job: the page shows the lock holder
and streams that build's ``build.log`` instead (``running_build``).

This module does not import tornado: the service, tests and tools share it.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from envmgr.catalog import records
from ..config import Config
from ..errors import NotFound, UsageError
from ..familylock import holder_info
from ..fsutil import atomic_write_json, explain_os_error, read_json
from ..layout import Layout
from ..lockfile import diff
from envmgr.clock import iso, utcnow
from envmgr.define.spec import NAME_RE

JOB_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
RUNNING, ENDED = "running", "ended"


@dataclass(frozen=True)
class Job:
    """One detached ``envmgr build`` started from the page (the job's .json file)."""

    job_id: str
    family: str
    user: str
    started: str
    host: str
    argv: list[str]
    latest_before: str | None
    pid: int | None = None
    pid_start: str | None = None  # /proc/<pid>/stat start time: a reused pid is not our build
    ended: str | None = None
    exit_code: int | None = None  # None when the job ended while no service watched it
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return ENDED if self.ended else RUNNING

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class StartResult:
    """What a click on Build now did: started a job, or found the family already building."""

    started: bool
    job: Job | None
    holder: dict[str, Any] | None = None  # the lock holder when a build not ours is running

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started, "job": self.job.to_json() if self.job else None,
                "holder": self.holder}


def check_family_name(family: str) -> str:
    """Family names come from URLs: refuse anything a spec could not be named."""
    if not NAME_RE.match(family):
        raise UsageError(f"'{family}' is not a family name (lowercase letters, digits and '-')")
    return family


def process_start(pid: int) -> str | None:
    """The start time of a live (non-zombie) process, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may contain spaces and ')'
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def child_environment() -> dict[str, str]:
    """The service's environment without the hub's credentials.

    A build runs the spec's smoke test; it must not see the service's
    JUPYTERHUB_API_TOKEN (nor any other JUPYTERHUB_* variable).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS=env.get("COLUMNS", "120"))
    return env


def build_argv(config: Config, family: str, python: str = sys.executable) -> list[str]:
    """The exact ``envmgr build`` a staff member would type (no shell anywhere)."""
    argv = [python, "-m", "envmgr"]
    if config.source is not None:
        argv += ["--config", str(config.source)]
    return [*argv, "--root", str(config.root), "build", "--now", "--no-wait", "--", family]


class JobStore:
    """Starts detached builds and answers what they are doing, from the files alone."""

    def __init__(self, config: Config, *, python: str = sys.executable):
        self.config = config
        self.layout: Layout = config.layout
        self.host = socket.gethostname()
        self._python = python
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._watched: set[str] = set()  # jobs whose process this service waits for

    # -- files -----------------------------------------------------------------
    def jobs_dir(self, family: str) -> Path:
        return self.layout.jobs_dir(family)

    def meta_path(self, family: str, job_id: str) -> Path:
        return self.jobs_dir(family) / f"{job_id}.json"

    def log_path(self, family: str, job_id: str) -> Path:
        return self.jobs_dir(family) / f"{job_id}.log"

    def _save(self, job: Job) -> Job:
        atomic_write_json(self.meta_path(job.family, job.job_id), job.to_json())
        return job

    def load(self, family: str, job_id: str) -> Job | None:
        check_family_name(family)
        if not JOB_ID_RE.match(job_id):
            raise NotFound(f"'{job_id}' is not a job id")
        data = read_json(self.meta_path(family, job_id))
        return self.refresh(Job.from_json(data)) if data else None

    def jobs(self, family: str) -> list[Job]:
        """The family's jobs, newest first (job ids sort by time)."""
        directory = self.jobs_dir(check_family_name(family))
        if not directory.is_dir():
            return []
        found = []
        for path in sorted(directory.glob("*.json"), reverse=True):
            if JOB_ID_RE.match(path.stem) and (data := read_json(path)):
                found.append(self.refresh(Job.from_json(data)))
        return found

    def running(self, family: str) -> Job | None:
        return next((job for job in self.jobs(family) if job.state == RUNNING), None)

    # -- liveness --------------------------------------------------------------------
    def is_alive(self, job: Job) -> bool:
        if job.job_id in self._watched:
            return True  # our child: the reaper thread records its end
        if job.host != self.host:  # started by a service on another host: ask the lock
            holder = holder_info(self.layout, job.family) or {}
            return holder.get("pid") == job.pid and holder.get("host") == job.host
        if job.pid is None:  # the service died between writing the job and starting it
            return False
        return process_start(job.pid) == job.pid_start

    def refresh(self, job: Job) -> Job:
        """Record the end of a job that ended while no service was watching it."""
        if job.ended:
            return job
        with self._state_lock:  # the reaper may be recording the same end right now
            data = read_json(self.meta_path(job.family, job.job_id))
            job = Job.from_json(data) if data else job
            if job.ended or self.is_alive(job):
                return job
            return self.finish(job, None)

    def finish(self, job: Job, exit_code: int | None) -> Job:
        return self._save(replace(job, ended=iso(utcnow()), exit_code=exit_code,
                                  outcome=self.outcome(job, exit_code)))

    def outcome(self, job: Job, exit_code: int | None) -> dict[str, Any]:
        """What the build did, from the run summary it wrote under the family lock.

        ``records/<family>/last-run.json`` is written at the end of every run;
        it is this job's if it was written after the job started.
        """
        last = read_json(self.layout.last_run(job.family)) or {}
        ours = bool(last.get("when")) and last["when"] >= job.started
        if not ours:
            why = (f"the build process exited with {exit_code}" if exit_code is not None
                   else "the build process ended without a result")
            return {"status": "unknown" if exit_code in (None, 0) else "failed", "build_id": None,
                    "error": f"{why}; see the log", "message": why, "diff": None}
        result = {k: last.get(k) for k in ("status", "build_id", "error", "message")}
        result["diff"] = None
        if last.get("status") == "built" and last.get("build_id"):
            after = records.package_set(self.layout, job.family, last["build_id"])
            before = (records.package_set(self.layout, job.family, job.latest_before)
                      if job.latest_before else None)
            if after is not None:
                result["diff"] = diff(before, after).to_json()
        return result

    # -- starting --------------------------------------------------------------------
    def start_build(self, family: str, user: str) -> StartResult:
        """Start a detached build, unless the family is already building (then say who)."""
        check_family_name(family)
        with self._start_lock:
            current = self.running(family)
            holder = holder_info(self.layout, family)
            if current is not None or holder is not None:
                return StartResult(False, current, holder)
            return StartResult(True, self._spawn(family, user))

    def _new_job(self, family: str, user: str) -> Job:
        job_id = f"{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        return Job(job_id=job_id, family=family, user=user, started=iso(utcnow()) or "",
                   host=self.host, argv=build_argv(self.config, family, self._python),
                   latest_before=self.layout.latest_build(family))

    def _spawn(self, family: str, user: str) -> Job:
        job = self._save(self._new_job(family, user))
        log_fd = os.open(self.log_path(family, job.job_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            proc = subprocess.Popen(job.argv, stdin=subprocess.DEVNULL, stdout=log_fd,
                                    stderr=subprocess.STDOUT, cwd=self.layout.root,
                                    env=child_environment(), start_new_session=True)
        except OSError as exc:
            self._save(replace(job, ended=iso(utcnow()), outcome={
                "status": "failed", "error": f"could not start the build: {exc}", "diff": None}))
            raise explain_os_error(exc, "could not start the build process") from exc
        finally:
            os.close(log_fd)
        job = self._save(replace(job, pid=proc.pid, pid_start=process_start(proc.pid)))
        self._watched.add(job.job_id)
        threading.Thread(target=self._reap, args=(job, proc), name=f"reap-{job.job_id}",
                         daemon=True).start()
        return job

    def _reap(self, job: Job, proc: subprocess.Popen) -> None:
        """Wait for our child (no zombie), then record how it ended."""
        code = proc.wait()
        with self._state_lock:
            try:
                self.finish(job, code)
            finally:
                self._watched.discard(job.job_id)


def running_build(layout: Layout, family: str, holder: dict[str, Any] | None) -> str | None:
    """The build id the lock holder is building, once it has one (else None)."""
    if not holder:
        return None
    for rec in reversed(records.all_records(layout, family)):
        if rec.status == records.BUILDING and rec.pid == holder.get("pid") and rec.host == holder.get("host"):
            return rec.build_id
    return None
