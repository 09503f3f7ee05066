"""The staff page as a managed JupyterHub service, in a real hub and headless Chromium.

A real ``jupyterhub`` (DummyAuthenticator with a shared password) and
configurable-http-proxy from npm on 127.0.0.1 run ``envmgr serve`` exactly as
docs/hub-service.md configures it: a custom build scope granted to a staff
group, view access to a viewer group, and a third user without access. The
hub is started with SIGINT ignored (as ``jupyterhub &`` does), so stopping it
also checks that the service installs its own signal handlers.

``tests/browser/hub_service.mjs`` drives Chromium; screenshots go to
``test-output/hub_service/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from envmgr.audit import read_audit
from envmgr.channel.build import add_demo_package
from envmgr.build.kernelcheck import run_cell
from envmgr.layout import Layout

from .conftest import json_of, write_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
NODE_DIR = REPO / "tests" / "browser"
NODE_SCRIPT = NODE_DIR / "hub_service.mjs"
NODE_BIN = NODE_DIR / "node_modules" / ".bin"
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output" / "hub_service"
PASSWORD = "envmgr-hub-test"
SERVICE = "envmgr"
FORBIDDEN = "Failed to load resource: the server responded with a status of 403 (Forbidden)"


def _missing_tools() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not installed (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node not on PATH"
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core not installed (npm ci --prefix {NODE_DIR})"
    if not (NODE_BIN / "configurable-http-proxy").exists():
        return f"configurable-http-proxy not installed (npm ci --prefix {NODE_DIR})"
    return None


if _missing_tools():
    pytestmark.append(pytest.mark.skip(reason=_missing_tools()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


HUB_CONFIG = """\
import sys
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True

# -- as in docs/hub-service.md -------------------------------------------------------
c.JupyterHub.custom_scopes = {{
    "custom:envmgr:build": {{"description": "Build and roll back envmgr environments"}},
}}
c.JupyterHub.load_groups = {{
    "envmgr-staff": {{"users": ["staff"]}},
    "envmgr-viewers": {{"users": ["viewer"]}},
}}
c.JupyterHub.load_roles = [
    {{"name": "envmgr-staff", "groups": ["envmgr-staff"],
      "scopes": ["access:services!service=envmgr", "custom:envmgr:build"]}},
    {{"name": "envmgr-viewer", "groups": ["envmgr-viewers"],
      "scopes": ["access:services!service=envmgr"]}},
]
c.JupyterHub.services = [{{
    "name": "envmgr",
    "url": "http://127.0.0.1:{service_port}",
    "command": [sys.executable, "-m", "envmgr", "--config", {config!r}, "serve"],
    "environment": {environment!r},
    "oauth_client_allowed_scopes": ["custom:envmgr:build"],
    "oauth_no_confirm": True,
}}]
"""


class Hub:
    """jupyterhub + configurable-http-proxy + the managed envmgr service, on free ports."""

    def __init__(self, site: dict[str, Path], out: Path):
        self.dir = site["tmp"] / "hub"
        self.dir.mkdir()
        self.port, self.service_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        keep = ("HOME", "XDG_DATA_HOME", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR")
        isolation = {k: os.environ[k] for k in keep if k in os.environ}
        (self.dir / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=_free_port(), proxy_api_port=_free_port(), dir=self.dir,
            password=PASSWORD, service_port=self.service_port, config=str(site["config"]),
            environment=isolation))
        env = {**os.environ, "PATH": os.pathsep.join([str(NODE_BIN), str(Path(sys.executable).parent),
                                                      os.environ.get("PATH", "")])}
        self.log = out / "jupyterhub.log"
        with self.log.open("w") as log:
            # SIGINT ignored, as for a hub started in the background: the service inherits it.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
                cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"jupyterhub exited with {self.proc.returncode}:\n{self.log.read_text()[-5000:]}")
            if self._answers(f"{self.url}/hub/api") and _listening(self.service_port):
                return
            time.sleep(0.3)
        pytest.fail(f"hub or service not up within 90 s:\n{self.log.read_text()[-5000:]}")

    @staticmethod
    def _answers(url: str) -> bool:
        """200 from the hub through the proxy: the proxy's 404 means its hub route is not there yet."""
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except OSError:  # HTTPError included
            return False

    def browse(self, out: Path, *args: str) -> dict:
        argv = ["node", str(NODE_SCRIPT), "--hub", self.url, "--service", f"/services/{SERVICE}/",
                "--password", PASSWORD, "--out", str(out), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=400)
        if proc.returncode != 0:
            pytest.fail(f"browser script failed ({proc.returncode}):\n{proc.stderr}\n"
                        f"hub log:\n{self.log.read_text()[-6000:]}")
        return json.loads(proc.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def out(request: pytest.FixtureRequest) -> Path:
    path = OUTPUT / request.node.name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _build(envmgr_cli, spec: Path) -> str:
    proc = envmgr_cli("build", "--json", spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json_of(proc)["result"]["builds"][0]["build_id"]


def _check_staff_build(staff: dict, layout: Layout, first: str, new: str) -> None:
    assert staff["status"] == 200 and staff["errors"] == []
    assert staff["consoleErrors"] == [FORBIDDEN]  # the forced POST without a token, only
    assert staff["role"].strip() == "can build and roll back"
    assert {"group": "Beamline", "families": ["fam"]} in staff["groups"]
    assert {"group": "Lab", "families": ["other"]} in staff["groups"]
    before = staff["before"]
    assert before["latest"] == first and before["packages"].isdigit()
    assert before["lastResult"].startswith("built")
    assert [r["release"] for r in before["stable"]] == ["2026.1"]
    assert "until" in before["stable"][0]["text"]
    assert before["build"] == {"disabled": False, "label": "Build now", "title": ""}
    assert before["rollback"]["disabled"] is True  # one build: nothing to roll back to
    # The advisory badge: the last check's finding on the latest build and the stable release on it.
    assert before["advisories"]["text"] == "1 advisory", before
    assert "ENVMGR-TEST-0012 [HIGH] envmgr-demo-b 1.1" in before["advisories"]["title"]
    assert "latest" in before["advisories"]["title"] and "stable 2026.1" in before["advisories"]["title"]
    assert staff["noXsrf"]["status"] == 403  # cookie auth without the XSRF token is refused

    # The second request showed the running build instead of starting another.
    second = staff["secondPost"]
    assert second["status"] == 200 and second["data"]["started"] is False
    assert second["data"]["job"]["job_id"] == staff["firstJob"]
    assert staff["secondClick"]["jobId"] == staff["firstJob"]
    assert len(list((layout.logs_dir / "jobs" / "fam").glob("*.json"))) == 1

    # Watched to the end: the new latest and its diff.
    panel = staff["panel"]
    assert panel["state"] == "done" and panel["status"] == "built", panel
    assert new != first and new in panel["summary"]
    assert f"latest of fam -> {new}" in panel["log"]
    assert "upgraded" in panel["log"] and "envmgr-demo-b" in panel["log"]  # the CLI's own summary
    assert [(d["name"], d["kind"]) for d in panel["diff"]] == [("envmgr-demo-b", "upgraded")]
    bump = panel["diff"][0]["cells"]
    assert bump[2].startswith("1.1") and bump[3].startswith("1.2")
    assert staff["after"]["latest"] == new and staff["after"]["rollback"]["disabled"] is False
    fam = next(f for g in staff["state"]["groups"] for f in g["families"] if f["family"] == "fam")
    assert fam["last_job"]["outcome"]["build_id"] == new
    assert fam["rollback_target"] == first and fam["running"] is None


def _check_refused(viewer: dict, outsider: dict, new: str) -> None:
    assert viewer["status"] == 200 and viewer["errors"] == []
    assert viewer["consoleErrors"] == [FORBIDDEN, FORBIDDEN]  # the two forced POSTs, only
    assert viewer["role"].strip() == "view only"
    assert viewer["row"]["latest"] == new
    assert viewer["row"]["build"]["disabled"] and viewer["row"]["rollback"]["disabled"]
    assert viewer["build"]["status"] == 403
    assert "custom:envmgr:build" in viewer["build"]["data"]["message"]
    assert viewer["rollback"]["status"] == 403
    assert viewer["state"] == 200
    assert outsider["status"] == 403, outsider
    assert "permission to access JupyterHub service envmgr" in outsider["text"]
    assert outsider["api"] == 403


def _check_rollback(rolled: dict, layout: Layout, first: str) -> None:
    assert rolled["errors"] == rolled["consoleErrors"] == []
    assert rolled["dialogs"] and first in rolled["dialogs"][0]
    assert rolled["panel"]["status"] == "rolled-back" and first in rolled["panel"]["summary"]
    assert [(d["name"], d["kind"]) for d in rolled["panel"]["diff"]] == [("envmgr-demo-b", "downgraded")]
    assert rolled["after"]["latest"] == first == layout.latest_build("fam")


def test_staff_build_now_watch_and_roll_back(site, envmgr_cli, out: Path) -> None:
    layout = Layout(site["root"])
    spec = write_spec(site["specs"], "fam", display="Fam analysis", group="Beamline")
    write_spec(site["specs"], "other", display="Other tools", group="Lab")  # never built
    first = _build(envmgr_cli, spec)
    promoted = envmgr_cli("promote", "fam", "--release", "2026.1", "--no-export")
    assert promoted.returncode == 0, promoted.stderr
    add_demo_package(site["channel"], "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
    # The security officer's mirror names an advisory on the built envmgr-demo-b 1.1 (fixed in 1.2).
    osv = site["tmp"] / "osv"
    osv.mkdir()
    (osv / "0.json").write_text(json.dumps({
        "schema_version": "1.6.0", "id": "ENVMGR-TEST-0012", "modified": "2026-11-30T00:00:00Z",
        "summary": "envmgr-demo-b before 1.2 is vulnerable", "database_specific": {"severity": "HIGH"},
        "affected": [{"package": {"ecosystem": "PyPI", "name": "envmgr_demo_b"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]}]}]}))
    with site["config"].open("a") as handle:
        handle.write(f"advisories_dir: {osv}\n")
    checked = envmgr_cli("advisories", "check")
    assert checked.returncode == 3 and "ENVMGR-TEST-0012" in checked.stdout, checked.stdout + checked.stderr

    hub = Hub(site, out)
    try:
        result = hub.browse(out, "--family", "fam", "--scenario", "build")
        (out / "result.json").write_text(json.dumps(result, indent=1))
        new = layout.latest_build("fam")
        _check_staff_build(result["staff"], layout, first, new)
        _check_refused(result["viewer"], result["outsider"], new)

        # The family's latest kernel starts on the new build (through the installed kernelspec).
        check = run_cell([], kernels_dir=site["kernels"], kernel_name="fam-latest")
        assert check.prefix == str(layout.prefix("fam", new))

        rolled = hub.browse(out, "--family", "fam", "--scenario", "rollback")["staff"]
        (out / "rollback.json").write_text(json.dumps(rolled, indent=1))
        _check_rollback(rolled, layout, first)
    finally:
        hub.stop()
    # The hub stopped the service with SIGINT although SIGINT was ignored when it started.
    deadline = time.monotonic() + 15
    while _listening(hub.service_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _listening(hub.service_port), "the service did not stop with the hub"

    actions = [(a["action"], a["user"], a.get("family")) for a in read_audit(layout)]
    assert ("build-requested", "staff", "fam") in actions
    assert ("rollback", "staff", "fam") in actions
    assert [a for a, _, _ in actions].count("rollback") == 1, "one audit line per rollback"
    assert not any(user in ("viewer", "outsider") for _, user, _ in actions)
