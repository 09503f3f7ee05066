"""A newcomer's first steps, as the README gives them, on a bare install.

A fresh venv, ``pip install <checkout>`` with no extras, README command 1
(``envmgr quickstart``) as a new user with an empty home directory, then the
registered kernel is started through jupyter_client and executes a cell. The
suite's own venv has the test extra, which once hid that quickstart needed
ipykernel; this test has only what ``pip install .`` brings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow

KERNEL_CELL = r'''
import sys
from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="example-latest", startup_timeout=120)
try:
    msg_id = kc.execute("import sys; print(sys.prefix)")
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            sys.exit("the cell failed: " + msg["content"]["evalue"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    print("".join(out), end="")
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
'''


def newcomer_env(home: Path, venv: Path) -> dict[str, str]:
    """A user with an empty home and the fresh venv activated; none of the suite's overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER_", "XDG_", "ENVMGR_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    if os.environ.get("ENVMGR_TEST_NEWEST", "0") != "1":
        env["PIP_CONSTRAINT"] = str(REPO / "constraints.txt")  # reproducible, as scripts/run-tests
    return env


def test_pip_install_then_readme_command_1_then_a_kernel_cell(tmp_path: Path) -> None:
    home, venv = tmp_path / "home", tmp_path / "venv"
    home.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = newcomer_env(home, venv)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--no-compile", str(REPO)],
                             capture_output=True, text=True, env=env, timeout=900)
    assert install.returncode == 0, install.stdout + install.stderr

    # README command 1, exactly (the `pip install .` half is above).
    quick = subprocess.run(["envmgr", "quickstart"], capture_output=True, text=True, env=env,
                           timeout=900, cwd=home)
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert "Traceback" not in quick.stderr and "example-latest" in quick.stdout
    latest = home / ".local" / "share" / "envmgr" / "envs" / "example" / "latest"
    assert (home / ".local" / "share" / "jupyter" / "kernels" / "example-latest" / "kernel.json").is_file()

    cell = subprocess.run([str(venv / "bin" / "python"), "-c", KERNEL_CELL], capture_output=True,
                          text=True, env=env, timeout=600, cwd=home)
    assert cell.returncode == 0, cell.stdout + cell.stderr
    assert os.path.realpath(cell.stdout.strip()) == os.path.realpath(latest)
