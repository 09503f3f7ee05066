"""The envmgr JupyterLab extension in a real JupyterLab and headless Chromium.

Starts ``jupyter lab`` on 127.0.0.1 with temporary Jupyter directories, a
kernelspec set of two envmgr groups and one ordinary kernel, and drives it
with ``tests/browser/lab_launcher.mjs`` (playwright-core, Debian chromium).

The extension is loaded from the repository's prebuilt copy
(``labextension/prebuilt``) through ``JUPYTER_PATH``, which comes before the
user and sys.prefix data dirs, so an editable envmgr install or a stale
installed copy cannot hide what this checkout ships.

Screenshots go to ``test-output/lab_browser/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
PREBUILT = REPO / "labextension" / "prebuilt"
EXTENSION = "envmgr-launcher"
NODE_SCRIPT = REPO / "tests" / "browser" / "lab_launcher.mjs"
NODE_MODULES = REPO / "tests" / "browser" / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "test-output" / "lab_browser"
TOKEN = "envmgr-browser-test"

STOCK_PLUGINS = {
    "@jupyterlab/launcher-extension:plugin",
    "@jupyterlab/apputils-extension:sessionDialogs",
}


def _missing_tools() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not installed (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node not on PATH"
    if not (NODE_MODULES / "playwright-core").is_dir():
        return f"playwright-core not installed (npm install --prefix {NODE_MODULES.parent})"
    return None


_MISSING = _missing_tools()
if _MISSING:
    pytestmark.append(pytest.mark.skip(reason=_MISSING))


# --------------------------------------------------------------------------
# Test kernelspecs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LabKernel:
    """A kernelspec the test server offers."""

    name: str
    display_name: str
    envmgr: dict | None
    expected_prefix: str


# (group, family, family display name, releases; None is the latest channel)
KERNEL_SET = [
    ("CFN", "cfn-analysis", "CFN analysis", [None, "2025.9", "2025.10"]),
    ("NSLS-II", "nsls2-base", "NSLS-II base", [None, "2025.3", "2026.1"]),
    ("NSLS-II", "nsls2-ml", "NSLS-II ML", [None, "2026.1"]),
]
PLAIN_KERNEL = "plain-python"
PLAIN_DISPLAY_NAME = "Plain Python (no envmgr)"

# What the launcher must show for KERNEL_SET, in order.
EXPECTED_GROUPS = {
    "CFN": {
        "current": ["cfn-analysis-latest", "cfn-analysis-2025.10"],
        "folded": ["cfn-analysis-2025.9"],
    },
    "NSLS-II": {
        "current": [
            "nsls2-base-latest",
            "nsls2-base-2026.1",
            "nsls2-ml-latest",
            "nsls2-ml-2026.1",
        ],
        "folded": ["nsls2-base-2025.3"],
    },
}


def _write_kernelspec(kernels_dir: Path, name: str, display_name: str, metadata: dict) -> None:
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True, **metadata},
    }
    (kernels_dir / name).mkdir(parents=True)
    (kernels_dir / name / "kernel.json").write_text(json.dumps(spec, indent=1))


@pytest.fixture(scope="module")
def lab_kernels(lab_dirs: dict[str, Path]) -> list[LabKernel]:
    """Kernelspecs written by envmgr itself, for real conda prefixes from the demo channel.

    Each release and each latest gets its own build (a real prefix), so the
    test can check that a clicked card runs exactly that build.
    """
    from envmgr.kernels.kernelspecs import KernelFamily, StableKernel, installed_kernels, sync_family_kernels
    from envmgr.layout import Layout

    from .test_launcher import make_build

    kernels_dir = lab_dirs["data"] / "kernels"
    layout = Layout(lab_dirs["data"] / "envmgr-root")
    kernels: list[LabKernel] = []
    for n_family, (group, family, family_name, releases) in enumerate(KERNEL_SET):
        ids = {r: f"2026{n_family + 1:02d}{i + 1:02d}T021340Z-ab12cd" for i, r in enumerate(releases)}
        for build_id in ids.values():
            make_build(layout, family, build_id)
        latest = ids[None]
        _point_latest(layout, family, latest)
        stable = [StableKernel(r, ids[r], "2026-11-22T02:13:40Z", f"{int(r[:4]) + 3}-11-22")
                  for r in releases if r]
        sync_family_kernels(kernels_dir, layout, KernelFamily(
            family=family, display_name=family_name, group=group, latest_build=latest,
            latest_built="2026-11-22T02:13:40Z", stable=stable))
        for name, meta in installed_kernels(kernels_dir, family).items():
            spec = json.loads((kernels_dir / name / "kernel.json").read_text())
            prefix = layout.prefix(family, ids[meta["release"]])
            kernels.append(LabKernel(name, spec["display_name"], meta, str(prefix)))
    _write_kernelspec(kernels_dir, PLAIN_KERNEL, PLAIN_DISPLAY_NAME, {})
    kernels.append(LabKernel(PLAIN_KERNEL, PLAIN_DISPLAY_NAME, None, sys.prefix))
    return kernels


def _point_latest(layout, family: str, build_id: str) -> None:  # noqa: ANN001
    from envmgr.fsutil import atomic_symlink

    atomic_symlink(build_id, layout.latest_link(family))


# --------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lab")
    dirs = {
        name: root / name
        for name in ("path", "data", "config", "runtime", "settings", "workspaces", "notebooks")
    }
    for path in dirs.values():
        path.mkdir()
    (dirs["path"] / "labextensions").mkdir()
    (dirs["path"] / "labextensions" / EXTENSION).symlink_to(PREBUILT, target_is_directory=True)
    # No news / update prompts over the screenshots.
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    return dirs


def _lab_env(dirs: dict[str, Path]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JUPYTER_PATH=str(dirs["path"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within 90 s:\n{log.read_text()}")


class Lab:
    """A running ``jupyter lab`` and the browser script that drives it."""

    def __init__(self, dirs: dict[str, Path], name: str):
        # A workspace saved by an earlier server would reopen its tabs.
        shutil.rmtree(dirs["workspaces"])
        dirs["workspaces"].mkdir()
        self.env = _lab_env(dirs)
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.out = OUTPUT / name
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir(parents=True)
        self.log = self.out / "jupyter-lab.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "jupyterlab",
                    "--no-browser",
                    "--ServerApp.ip=127.0.0.1",
                    f"--ServerApp.port={self.url.rsplit(':', 1)[1]}",
                    "--ServerApp.port_retries=0",
                    "--ServerApp.allow_root=True",
                    "--LabApp.extension_manager=readonly",
                    f"--IdentityProvider.token={TOKEN}",
                    f"--ServerApp.root_dir={dirs['notebooks']}",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_for_server(self.url, self.proc, self.log)

    def browse(self, *args: str) -> dict:
        cmd = ["node", str(NODE_SCRIPT), "--url", self.url, "--token", TOKEN, "--out", str(self.out)]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=400)
        if proc.returncode != 0:
            pytest.fail(
                f"browser script failed ({proc.returncode}):\n{proc.stderr}\n"
                f"server log:\n{self.log.read_text()[-5000:]}"
            )
        (self.out / "result.json").write_text(proc.stdout)
        return json.loads(proc.stdout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def lab(lab_dirs: dict[str, Path], lab_kernels: list[LabKernel], request: pytest.FixtureRequest):
    assert (PREBUILT / "package.json").is_file(), "labextension/prebuilt is missing: npm run build"
    server = Lab(lab_dirs, request.node.name)
    yield server
    server.stop()


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def _section(launcher: dict, title: str) -> dict:
    matches = [s for s in launcher["sections"] if s["title"] == title]
    assert len(matches) == 1, f"section {title!r}: {[s['title'] for s in launcher['sections']]}"
    return matches[0]


def _kernels(lab_kernels: list[LabKernel]) -> dict[str, LabKernel]:
    return {k.name: k for k in lab_kernels}


def test_launcher_groups_envmgr_kernels(lab: Lab, lab_kernels: list[LabKernel]) -> None:
    result = lab.browse(
        "--open-kernel", "nsls2-base-latest",
        "--console-kernel", "cfn-analysis-2025.10",
        "--docs-screenshot", str(lab.out / "docs-launcher.png"),
    )  # fmt: skip
    launcher = result["launcher"]
    assert result["pageErrors"] == []
    assert launcher["envmgrClass"]
    assert STOCK_PLUGINS <= set(result["disabledExtensions"])
    assert result["newLauncherButtons"] == 1, "file browser lost its New Launcher button"
    assert result["fileMenuItems"] == 1, "File menu lost its New Launcher item"

    titles = [s["title"] for s in launcher["sections"]]
    assert titles[:4] == ["CFN", "NSLS-II", "Notebook", "Console"], titles
    assert "Other" in titles
    kernels = _kernels(lab_kernels)
    for group, expected in EXPECTED_GROUPS.items():
        section = _section(launcher, group)
        assert section["group"] == group
        assert [k["kernel"] for k in section["current"]] == expected["current"]
        assert section["folded"]["open"] is False
        assert [k["kernel"] for k in section["folded"]["kernels"]] == expected["folded"]
        for card in section["current"] + section["folded"]["kernels"]:
            meta = kernels[card["kernel"]].envmgr
            assert (card["family"], card["channel"]) == (meta["family"], meta["channel"])
            assert card["badge"] == (meta["release"] or "latest")
            assert card["label"] == meta["display_name"]
            assert card["launch"] == ["notebook", "console"]
            assert "2026-11-22 02:13 UTC" in card["title"]
            assert (meta["support_until"] or "rolling") in card["title"]

    # Ordinary kernels keep the stock sections; envmgr kernels are not there.
    for category in ("Notebook", "Console"):
        cards = _section(launcher, category)["cards"]
        labels = {c["label"] for c in cards}
        assert PLAIN_DISPLAY_NAME in labels
        assert not any("·" in label for label in labels), labels
        assert {c["category"] for c in cards} == {category}
    assert _section(launcher, "Other")["cards"], "stock Other section lost its cards"

    # The folded part opens on click.
    unfolded = _section(result["afterUnfold"], "CFN")["folded"]
    assert unfolded["open"] is True

    # The clicked card opened a notebook on its kernel and ran a cell.
    notebook = result["notebook"]
    assert notebook["toolbarKernel"] == kernels["nsls2-base-latest"].display_name
    assert notebook["output"] == kernels["nsls2-base-latest"].expected_prefix
    sessions = {(s["type"], s["kernel"]) for s in result["sessions"]}
    assert ("notebook", "nsls2-base-latest") in sessions
    assert ("console", "cfn-analysis-2025.10") in sessions

    # Select Kernel lists envmgr kernels by group, the older ones after.
    groups = notebook["selectKernel"]
    dialog = {g["label"]: [(o["value"] or {}).get("name") for o in g["options"]] for g in groups}
    labels = [g["label"] for g in groups]
    assert labels.index("CFN") < labels.index("CFN: older releases") < labels.index("NSLS-II")
    for group, expected in EXPECTED_GROUPS.items():
        assert dialog[group] == expected["current"]
        assert dialog[f"{group}: older releases"] == expected["folded"]
    # As stock: the running kernel of the notebook is the selected choice.
    kernel_ids = [s["kernelId"] for s in result["sessions"] if s["kernel"] == "nsls2-base-latest"]
    selected = [o["value"] for g in groups for o in g["options"] if o["selected"]]
    assert selected == [{"id": kernel_ids[0]}]
    assert set(kernels) <= {name for names in dialog.values() for name in names}

    # Kernels are never hidden from the REST API.
    with urllib.request.urlopen(f"{lab.url}/api/kernelspecs?token={TOKEN}") as response:
        assert set(kernels) <= set(json.load(response)["kernelspecs"])


def test_disabled_extension_restores_stock_launcher(
    lab_dirs: dict[str, Path], lab_kernels: list[LabKernel], request: pytest.FixtureRequest
) -> None:
    env = _lab_env(lab_dirs)
    cmd = [sys.executable, "-m", "jupyter", "labextension"]
    subprocess.run([*cmd, "disable", "--level=user", EXTENSION], env=env, check=True)
    try:
        server = Lab(lab_dirs, request.node.name)
        try:
            result = server.browse("--mode", "stock")
        finally:
            server.stop()
    finally:
        subprocess.run([*cmd, "enable", "--level=user", EXTENSION], env=env, check=True)

    launcher = result["launcher"]
    assert result["pageErrors"] == []
    assert not launcher["envmgrClass"]
    assert not STOCK_PLUGINS & set(result["disabledExtensions"])
    assert (result["newLauncherButtons"], result["fileMenuItems"]) == (1, 1)
    assert all(s["group"] is None and not s["current"] for s in launcher["sections"])
    titles = [s["title"] for s in launcher["sections"]]
    assert titles[:2] == ["Notebook", "Console"], titles
    labels = {c["label"] for c in _section(launcher, "Notebook")["cards"]}
    assert {k.display_name for k in lab_kernels} <= labels
