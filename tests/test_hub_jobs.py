"""Detached builds of the staff page: they outlive the service and are found again.

No hub or browser here (tests/test_hub_service.py has those): a stand-in
"service" process starts a real build through ``JobStore`` and is then killed
with its whole process group, as a service restart would; a fresh JobStore (the
restarted service) must find the build running, follow its log to the end
and report the new build.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.hubservice.jobs import ENDED, RUNNING, JobStore, build_argv, child_environment
from envmgr.hubservice.pagedata import page_state

from .conftest import run_envmgr, write_spec

SERVICE = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from envmgr.config import load_config
    from envmgr.hubservice.jobs import JobStore
    store = JobStore(load_config(config_path=Path(sys.argv[1])))
    result = store.start_build("fam", "staff")
    print(result.job.job_id, flush=True)
    time.sleep(600)
""")


@pytest.mark.slow
def test_build_outlives_the_service_and_is_found_again(site: dict[str, Path]) -> None:
    write_spec(site["specs"], "fam")
    config = load_config(config_path=site["config"])
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(site["config"])], stdout=subprocess.PIPE,
                               text=True, start_new_session=True,
                               env={**os.environ, "JUPYTERHUB_API_TOKEN": "secret-of-the-service"})
    job_id = service.stdout.readline().strip()
    os.killpg(service.pid, signal.SIGKILL)  # the service and everything in its process group
    service.wait()
    service.stdout.close()

    store = JobStore(config)  # the restarted service
    job = store.load("fam", job_id)
    assert job is not None and job.state == RUNNING, job
    assert store.running("fam") == job
    build_env = Path(f"/proc/{job.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in build_env if v.startswith(b"JUPYTERHUB_")]  # the hub's token stays out
    again = store.start_build("fam", "someone-else")  # a second click: no second build
    assert not again.started and again.job is not None and again.job.job_id == job_id
    state = page_state(config, store)
    assert [f["family"] for f in state["in_progress"]] == ["fam"]
    assert state["in_progress"][0]["job_id"] == job_id

    deadline = time.monotonic() + 300
    while (job := store.load("fam", job_id)).state != ENDED and time.monotonic() < deadline:
        time.sleep(0.5)
    latest = config.layout.latest_build("fam")
    assert job.state == ENDED and job.exit_code is None  # ended while no service watched it
    assert job.outcome["status"] == "built" and job.outcome["build_id"] == latest is not None
    assert {c["kind"] for c in job.outcome["diff"]["changes"]} == {"added"}
    log = store.log_path("fam", job_id).read_text()
    assert log.index("solving fam") < log.index(f"latest of fam -> {latest}")
    assert store.running("fam") is None
    entry = page_state(config, store)["groups"][0]["families"][0]
    assert entry["latest"]["build_id"] == latest and entry["last_job"]["job_id"] == job_id
    assert entry["running"] is None and entry["rollback_target"] is None


def test_build_process_gets_no_hub_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "secret")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_NAME", "envmgr")
    env = child_environment()
    assert not [k for k in env if k.startswith("JUPYTERHUB_")]
    config = load_config(root=tmp_path / "root", environ={})
    argv = build_argv(config, "fam")
    assert argv[-2:] == ["--", "fam"] and "--no-wait" in argv and "--now" in argv


def test_serve_outside_a_hub_names_what_is_missing(tmp_path: Path) -> None:
    unset = {"JUPYTERHUB_API_TOKEN": "", "JUPYTERHUB_API_URL": "", "JUPYTERHUB_SERVICE_NAME": ""}
    proc = run_envmgr("--root", tmp_path / "root", "serve", env=unset)
    assert proc.returncode == 2
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_SERVICE_NAME"):
        assert name in proc.stderr
    assert "docs/hub-service.md" in proc.stderr
    assert not (tmp_path / "root").exists()  # nothing created
