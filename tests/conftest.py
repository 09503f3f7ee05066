"""Shared fixtures: a real local conda channel, isolated roots, the CLI in a subprocess.

Nothing here is mocked: builds install real prefixes from a real file://
channel, kernels are real ipykernel processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_exit_status: list[int] = []


# -- the py-rattler exit crash ---------------------------------------------------------
# About 1 in 5 processes that ran a rattler solve + install crashed at interpreter
# exit. When this pytest process imported rattler, it leaves with os._exit after
# everything (summary, reports) is written, so a green run is never turned red.
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if "rattler" in sys.modules and _exit_status:
        from envmgr._internal._exit import hard_exit

        hard_exit(_exit_status[-1])


# -- isolation -------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _isolated_jupyter(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user's Jupyter or envmgr directories."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(home / "jupyter-data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(home / "jupyter-config"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(home / "jupyter-runtime"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))  # envmgr.yamlcache: per test
    monkeypatch.delenv("ENVMGR_ROOT", raising=False)
    monkeypatch.delenv("ENVMGR_CONFIG", raising=False)
    monkeypatch.delenv("JUPYTER_PATH", raising=False)


@pytest.fixture(scope="session")
def demo_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local demo channel, built once per test session (real conda packages)."""
    from envmgr.channel.build import build_channel

    return Path(build_channel(tmp_path_factory.mktemp("channel") / "demo").path)


@pytest.fixture(scope="session")
def shared_pkgs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One package cache for the session: second installs hardlink (as on a real site)."""
    return tmp_path_factory.mktemp("pkgs")


def write_config(path: Path, **values: object) -> Path:
    from ruamel.yaml import YAML

    with path.open("w") as handle:
        YAML().dump({k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}, handle)
    return path


@pytest.fixture
def site(tmp_path: Path, demo_channel: Path, shared_pkgs: Path) -> dict[str, Path]:
    """A fresh envmgr root with a config mapping `demo` to a private copy of the demo channel.

    The copy lets a test publish new package versions without affecting others.
    """
    import shutil

    channel = tmp_path / "channel"
    shutil.copytree(demo_channel, channel, symlinks=True)
    root = tmp_path / "root"
    specs = tmp_path / "specs"
    specs.mkdir()
    config = write_config(tmp_path / "config.yaml", root=root, pkgs_dir=shared_pkgs,
                          specs_dir=specs, kernels_dir=tmp_path / "kernels",
                          channels={"demo": channel.as_uri()}, min_free_space="10M",
                          compile_pyc=False)  # one test covers .pyc; the rest save ~7 s a build
    return {"root": root, "channel": channel, "specs": specs, "config": config,
            "kernels": tmp_path / "kernels", "tmp": tmp_path}


SPEC_TEMPLATE = """\
name: {name}
display_name: {display}
group: {group}
channels: [demo]
dependencies:
  - python 3.*
  - ipykernel
  - envmgr-demo-b
smoke_test:
  imports: [envmgr_demo_b]
"""


def write_spec(directory: Path, name: str = "fam", *, display: str = "Fam", group: str = "Team",
               text: str | None = None) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text or SPEC_TEMPLATE.format(name=name, display=display, group=group))
    return path


def run_envmgr(*args: str | Path, config: Path | None = None, check: bool = False,
               env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (as cron and staff run it)."""
    argv = [sys.executable, "-m", "envmgr"]
    if config is not None:
        argv += ["--config", str(config)]
    argv += [str(a) for a in args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"envmgr {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def json_of(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


@pytest.fixture
def envmgr_cli(site: dict[str, Path]) -> Iterator:
    def call(*args: str | Path, **kw: object) -> subprocess.CompletedProcess:
        return run_envmgr(*args, config=site["config"], **kw)  # type: ignore[arg-type]

    yield call
