"""CLI conventions through the installed ``envmgr`` console script (as users and cron run it).

Usage errors exit 2 with a short message and the usage line, never a traceback;
``--json`` turns every failure into an ``ok: false`` envelope on stdout with the
same exit code; ``--version`` and shell completion work; ``config show`` is YAML.
These run under whatever typer/click are installed, so scripts/run-tests
checks them at the pinned versions and, with ENVMGR_TEST_NEWEST=1, the newest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

import envmgr

SCRIPT = Path(sys.executable).parent / "envmgr"


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():  # pragma: no cover - the test venv always has the console script
        pytest.fail(f"the console script {SCRIPT} is not installed")
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ENVMGR_ROOT": str(root), "COLUMNS": "200"})


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream and "internal error" not in stream, stream


# case: (argv, the same mistake with --json or None when the command has no --json, named offender)
USAGE_ERRORS = {
    "unknown command": (["nosuchcmd"], ["nosuchcmd", "--json"], "nosuchcmd"),
    "unknown option": (["build", "--bogus"], ["build", "--json", "--bogus"], "--bogus"),
    "missing argument": (["builds"], ["builds", "--json"], "family"),
    "option without its value": (["--root"], ["rollback", "fam", "--json", "--to"], "--"),
    "bad value": (["serve", "--port", "soon"], None, "--port"),
    "unknown sub-command": (["channel", "nosuch"], ["channel", "nosuch", "--json"], "nosuch"),
}


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_exit_2_with_usage_line(case: str, tmp_path: Path) -> None:
    args, json_args, named = USAGE_ERRORS[case]
    proc = cli(*args, root=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert_no_traceback(proc)
    assert "Usage: envmgr" in proc.stderr and named.lower() in proc.stderr.lower()
    assert proc.stdout == ""
    if json_args is None:
        return
    as_json = cli(*json_args, root=tmp_path)
    assert as_json.returncode == 2, as_json
    assert_no_traceback(as_json)
    doc = json.loads(as_json.stdout)
    assert doc["envmgr"] == 1 and doc["ok"] is False and "command" in doc
    assert set(doc["error"]) >= {"message", "hint", "exit_code"}
    assert doc["error"]["exit_code"] == 2 and named.lower() in doc["error"]["message"].lower(), doc
    assert "Usage: envmgr" in doc["error"]["hint"]


@pytest.mark.parametrize("args", [["builds", "no-such-family"], ["gc", "no-such-family"],
                                  ["rollback", "no-such-family"],
                                  ["promote", "no-such-family", "--release", "2025.9"],
                                  ["diff", "not-a-build", "nor-this"]],
                         ids=lambda a: a[0])
def test_input_errors_are_json_envelopes_under_json(args: list[str], tmp_path: Path) -> None:
    text = cli(*args, root=tmp_path)
    assert text.returncode == 2 and "hint:" in text.stderr, "the hint is printed"
    assert_no_traceback(text)
    proc = cli(*args, "--json", root=tmp_path)
    assert proc.returncode == text.returncode
    doc = json.loads(proc.stdout)
    assert doc == {"envmgr": 1, "command": args[0], "ok": False, "error": doc["error"]}
    assert doc["error"]["exit_code"] == 2 and doc["error"]["message"] and doc["error"]["hint"]


def test_version(tmp_path: Path) -> None:
    proc = cli("--version", root=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"envmgr {envmgr.__version__}"


def test_shell_completion_script(tmp_path: Path) -> None:
    proc = cli("--show-completion", "bash", root=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "_ENVMGR_COMPLETE" in proc.stdout and "complete" in proc.stdout
    if shutil.which("bash"):  # the script is valid bash and really completes sub-commands
        env = {**os.environ, "COMP_WORDS": "envmgr bui", "COMP_CWORD": "1",
               "_ENVMGR_COMPLETE": "complete_bash", "ENVMGR_ROOT": str(tmp_path)}
        done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=60)
        assert {"build", "builds"} <= set(done.stdout.split()), done


def test_config_show_is_yaml_and_json(tmp_path: Path) -> None:
    proc = cli("config", "show", root=tmp_path)
    assert proc.returncode == 0
    shown = YAML(typ="safe").load(proc.stdout)
    assert shown["root"] == str(tmp_path) and shown["policy"] is None
    assert isinstance(shown["retention"], dict), "nested values are YAML, not Python reprs"
    doc = json.loads(cli("config", "show", "--json", root=tmp_path).stdout)
    assert doc["ok"] is True and doc["result"] == shown
