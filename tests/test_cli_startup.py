"""CLI start-up: the read-only commands never import the solver, the lock writer or the pipeline.

Asserts behaviour (which modules a real `envmgr` process imported, as
``python -X importtime`` reports them), not a timing: benchmarks/scientific.py
measures the start-up itself.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import json_of, write_spec

HEAVY = ("rattler", "conda_lock", "jupyter_client", "envmgr.build.pipeline", "envmgr.build.batch",
         "envmgr._internal._rattler", "envmgr._internal._condalock")


def imported(*args: str, config=None) -> tuple[subprocess.CompletedProcess, set[str]]:
    argv = [sys.executable, "-X", "importtime", "-m", "envmgr"]
    if config is not None:
        argv += ["--config", str(config)]
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:")}
    return proc, names


def heavy(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY))


def test_help_imports_nothing_heavy(tmp_path) -> None:
    proc, names = imported("--help")
    assert proc.returncode == 0 and "typer" in names and "envmgr.cli" in names
    assert heavy(names) == []
    proc, names = imported("--root", str(tmp_path / "empty"), "status", "--json")
    assert proc.returncode == 0 and json_of(proc)["ok"] is True
    assert heavy(names) == [] and not (tmp_path / "empty").exists()


@pytest.mark.slow
def test_status_builds_gc_dry_run_on_a_built_root(site, envmgr_cli) -> None:
    spec = write_spec(site["specs"], "quick")
    proc = envmgr_cli("build", "--json", spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, built = imported("build", "--json", str(spec), config=site["config"])
    assert "rattler" in built, "the check itself must be able to see a heavy import"
    for args in (("status", "--json"), ("builds", "quick", "--json"), ("gc", "--dry-run", "--json")):
        proc, names = imported(*args, config=site["config"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json_of(proc)["ok"] is True
        assert heavy(names) == [], f"envmgr {' '.join(args)} imported {heavy(names)}"
