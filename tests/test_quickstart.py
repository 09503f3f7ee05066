"""README command 1: `envmgr quickstart` on embedded defaults, with no conda anywhere."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from .conftest import json_of, run_envmgr

pytestmark = pytest.mark.slow


def test_quickstart_builds_a_real_prefix_and_registers_its_kernel(tmp_path: Path) -> None:
    proc = run_envmgr("quickstart", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json_of(proc)["result"]
    build = result["build"]
    assert build["status"] == "built" and build["kernels"] == ["example-latest"]
    root = Path(os.environ["XDG_DATA_HOME"]) / "envmgr"
    assert result["root"] == str(root)  # the per-user default root
    prefix = Path(build["prefix"])
    assert prefix.parent == root / "envs" / "example"

    out = subprocess.run([str(prefix / "bin" / "python"), "-c", "import ipykernel, sys; print(sys.prefix)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(prefix)
    kernel = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / "example-latest" / "kernel.json"
    assert kernel.is_file(), "the kernel goes to the user's own Jupyter kernels dir"
    assert list(prefix.glob("lib/python3*/site-packages/ipykernel/__pycache__/*.pyc")), "pyc compiled"

    # conda-pack reads conda-meta and checks every file: the records are real.
    import conda_pack

    archive = tmp_path / "example.tar.gz"
    conda_pack.pack(prefix=str(prefix), output=str(archive), ignore_missing_files=False)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.startswith("conda-meta/ipykernel-") for n in names)

    again = run_envmgr("quickstart", "--json")
    assert again.returncode == 0 and json_of(again)["result"]["build"]["status"] == "unchanged"
