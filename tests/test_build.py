"""The build pipeline end to end, through the real CLI, on real prefixes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envmgr.channel.build import add_demo_package
from envmgr.layout import Layout

from .conftest import json_of, write_spec

pytestmark = pytest.mark.slow


def prefix_python(prefix: Path, code: str) -> str:
    return subprocess.run([str(prefix / "bin" / "python"), "-c", code], capture_output=True,
                          text=True, check=True).stdout.strip()


def build_json(envmgr_cli, *args: str | Path, expect: int = 0) -> dict:
    proc = envmgr_cli("build", "--json", *args)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return json_of(proc)["result"]["builds"][0]


def test_bump_rebuild_unchanged_rollback(site, envmgr_cli) -> None:
    spec = write_spec(site["specs"], "fam")
    layout = Layout(site["root"])

    first = build_json(envmgr_cli, spec)
    assert first["status"] == "built"
    first_prefix = Path(first["prefix"])
    assert prefix_python(first_prefix, "import sys; print(sys.prefix)") == str(first_prefix)
    assert prefix_python(first_prefix, "import envmgr_demo_b; print(envmgr_demo_b.__version__)") == "1.1"

    add_demo_package(site["channel"], "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
    second = build_json(envmgr_cli, spec)
    assert second["status"] == "built" and second["previous"] == first["build_id"]
    assert layout.latest_build("fam") == second["build_id"] != first["build_id"]
    changes = {c["name"]: c for c in second["diff"]["changes"]}
    assert changes == {"envmgr-demo-b": {"name": "envmgr-demo-b", "kind": "upgraded",
                                         "old": changes["envmgr-demo-b"]["old"],
                                         "new": changes["envmgr-demo-b"]["new"], "manager": "conda"}}
    bump = changes["envmgr-demo-b"]
    assert bump["old"].startswith("1.1") and bump["new"].startswith("1.2")
    # Both prefixes exist; the old one is untouched.
    assert prefix_python(first_prefix, "import envmgr_demo_b; print(envmgr_demo_b.__version__)") == "1.1"

    # The diff is printed for people too.
    text = envmgr_cli("diff", f"fam/{first['build_id']}", f"fam/{second['build_id']}")
    assert text.returncode == 0 and "upgraded" in text.stdout and "envmgr-demo-b" in text.stdout

    before = sorted(p.name for p in layout.family_dir("fam").iterdir())
    records_before = sorted(p.name for p in (layout.records_dir / "fam").iterdir())
    third = build_json(envmgr_cli, spec)
    assert third["status"] == "unchanged" and third["build_id"] == second["build_id"]
    assert sorted(p.name for p in layout.family_dir("fam").iterdir()) == before
    assert sorted(p.name for p in (layout.records_dir / "fam").iterdir()) == records_before

    rolled = envmgr_cli("rollback", "--json", "fam")
    assert rolled.returncode == 0, rolled.stderr
    assert json_of(rolled)["result"]["latest"] == first["build_id"]
    assert layout.latest_build("fam") == first["build_id"]
    # The nightly does not silently republish what staff rolled away from.
    held = build_json(envmgr_cli, spec)
    assert held["status"] == "held" and held["build_id"] == second["build_id"]
    assert layout.latest_build("fam") == first["build_id"]
    # Roll forward explicitly.
    forward = envmgr_cli("rollback", "fam", "--to", second["build_id"])
    assert forward.returncode == 0 and layout.latest_build("fam") == second["build_id"]

    listing = json_of(envmgr_cli("builds", "--json", "fam"))["result"]
    states = {b["build_id"]: b["state"] for b in listing["builds"]}
    assert states == {first["build_id"]: "published", second["build_id"]: "latest"}


def test_lockfile_round_trips_through_conda_lock_and_from_lock(site, envmgr_cli, tmp_path) -> None:
    spec = write_spec(site["specs"], "locked")
    lock_file = tmp_path / "locked.conda-lock.yml"
    proc = envmgr_cli("lock", spec, "-o", lock_file)
    assert proc.returncode == 0, proc.stderr
    text = lock_file.read_text()
    assert "envmgr_command" in text and "sha256" in text and "md5" in text

    render_dir = tmp_path / "render"
    render_dir.mkdir()
    conda_lock = Path(sys.executable).with_name("conda-lock")
    rendered = subprocess.run([str(conda_lock), "render", "-k", "explicit", "--platform", "linux-64",
                               str(lock_file)], cwd=render_dir, capture_output=True, text=True,
                              timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    explicit = (render_dir / "conda-linux-64.lock").read_text()
    assert "@EXPLICIT" in explicit and "envmgr-demo-b-1.1" in explicit

    built = build_json(envmgr_cli, spec, "--from-lock", lock_file)
    assert built["status"] == "built"
    layout = Layout(site["root"])
    from envmgr.catalog.records import package_set
    from envmgr._internal._condalock import read_lockfile

    sets, _channels, _custom = read_lockfile(lock_file)
    assert package_set(layout, "locked", built["build_id"]).digest == sets["linux-64"].digest

    # Newer upstream version: a solve would move, the lock does not.
    add_demo_package(site["channel"], "envmgr-demo-b", "1.3", depends=["envmgr-demo-a >=1.0"])
    again = build_json(envmgr_cli, spec, "--from-lock", lock_file)
    assert again["status"] == "unchanged"
    solved = build_json(envmgr_cli, spec)
    assert solved["status"] == "built" and "envmgr-demo-b" in str(solved["diff"])


def test_pyc_compiled_with_final_paths(site, envmgr_cli) -> None:
    config = site["config"]
    config.write_text(config.read_text().replace("compile_pyc: false", "compile_pyc: true"))
    spec = write_spec(site["specs"], "pyc")
    built = build_json(envmgr_cli, spec)
    prefix = Path(built["prefix"])
    pycs = list(prefix.glob("lib/python3*/site-packages/ipykernel/__pycache__/*.pyc"))
    assert pycs, "ipykernel was not compiled"
    # Code loaded from the (shared, cached) .pyc names the final prefix, not the staging
    # directory it was built in (test_pycache.py checks a real traceback).
    code = prefix_python(prefix, "import ipykernel.kernelapp as m; "
                                 "print(m.__loader__.get_code(m.__name__).co_filename)")
    assert code.startswith(str(prefix)) and ".staging-" not in code
    assert built["timings"].get("pyc", 0) > 0


def test_bad_inputs_change_nothing(site, envmgr_cli, tmp_path) -> None:
    spec = write_spec(site["specs"], "bad")
    original = spec.read_text()
    assert build_json(envmgr_cli, spec)["status"] == "built"
    layout = Layout(site["root"])
    latest = layout.latest_build("bad")

    unsat = write_spec(site["specs"], "bad", text=original.replace(
        "  - envmgr-demo-b", "  - envmgr-demo-b >=99"))
    failed = build_json(envmgr_cli, unsat, expect=3)
    assert failed["status"] == "failed" and "envmgr-demo-b" in failed["error"]
    assert layout.latest_build("bad") == latest

    missing = write_spec(site["specs"], "bad", text=original.replace(
        "channels: [demo]", f"channels: [{tmp_path / 'no-such-channel'}]"))
    proc = envmgr_cli("build", missing)
    assert proc.returncode == 5 and "does not exist" in proc.stdout
    assert layout.latest_build("bad") == latest

    failing_smoke = write_spec(site["specs"], "bad", text=original.replace(
        "imports: [envmgr_demo_b]", "imports: [envmgr_demo_b, no_such_module]"))
    failed = build_json(envmgr_cli, failing_smoke, "--force", expect=3)
    assert "no_such_module" in failed["error"]
    assert layout.latest_build("bad") == latest
    kept = list(layout.family_dir("bad").glob(".failed-*"))
    assert len(kept) == 1, "a failed build is kept for inspection"

    config = site["config"]
    config.write_text(config.read_text().replace("min_free_space: 10M", "min_free_space: 900T"))
    write_spec(site["specs"], "bad", text=original)
    proc = envmgr_cli("build", spec, "--force")
    assert proc.returncode == 5 and "not enough free disk space" in proc.stderr
    assert layout.latest_build("bad") == latest


def test_concurrent_build_of_same_family_names_the_holder(site, envmgr_cli) -> None:
    spec = write_spec(site["specs"], "busy")
    from filelock import FileLock

    layout = Layout(site["root"])
    layout.locks_dir.mkdir(parents=True, exist_ok=True)
    (layout.build_lock_holder("busy")).write_text(
        '{"pid": 4242, "host": "buildhost", "user": "svc", '
        '"since": "2026-11-22T01:00:00Z", "step": "install"}')
    with FileLock(str(layout.build_lock("busy"))):
        proc = envmgr_cli("build", "--no-wait", spec)
    assert proc.returncode == 4
    assert "pid 4242 on buildhost" in proc.stderr and "step: install" in proc.stderr
    assert not layout.family_dir("busy").exists()


KILL_POINTS = ["solve", "install", "smoke", "record", "rename", "pointer"]


def test_kill_at_every_step_leaves_latest_working(site, envmgr_cli) -> None:
    spec = write_spec(site["specs"], "kill")
    layout = Layout(site["root"])
    good = build_json(envmgr_cli, spec)["build_id"]
    published_by_pointer_kill = None
    for point in KILL_POINTS:
        proc = envmgr_cli("build", "--force", spec, env={"ENVMGR_FAULT_POINT": point})
        assert proc.returncode == -9, f"{point}: {proc.returncode} {proc.stderr}"
        latest = layout.latest_build("kill")
        assert latest == good, f"{point}: latest moved to {latest}"
        # latest is a complete, working build at every instant
        prefix = layout.prefix("kill", latest)
        assert prefix_python(prefix, "import ipykernel, envmgr_demo_b, sys; print(sys.prefix)") == str(prefix)
        if point == "pointer":  # killed after the rename, before the swap: published, not latest
            published_by_pointer_kill = max(layout.published_builds("kill"))
            assert published_by_pointer_kill != good
    # Each killed run began by clearing what the previous one left; the next run finishes
    # the interrupted publication, then builds.
    after = build_json(envmgr_cli, spec, "--force")
    assert after["status"] == "built" and after["previous"] == published_by_pointer_kill
    assert not list(layout.family_dir("kill").glob(".staging-*"))
    assert not list(layout.family_dir("kill").glob(".latest.tmp-*"))
    states = {r["build_id"]: r["state"] for r in
              json_of(envmgr_cli("builds", "--json", "kill"))["result"]["builds"]}
    # "solve" dies before a record exists; "pointer" was completed by the next run
    assert list(states.values()).count("interrupted") == 4
    assert states[published_by_pointer_kill] == "published"


def test_kill_during_install_at_random_moment(site, envmgr_cli) -> None:
    """A SIGKILL while rattler links files (not at a checkpoint)."""
    import random
    import time

    spec = write_spec(site["specs"], "rkill")
    layout = Layout(site["root"])
    good = build_json(envmgr_cli, spec)["build_id"]
    env = {**os.environ}
    argv = [sys.executable, "-m", "envmgr", "--config", str(site["config"]), "build", "--force", str(spec)]
    for _ in range(3):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(1.0, 2.5))
        proc.kill()
        proc.wait()
        latest = layout.latest_build("rkill")
        prefix = layout.prefix("rkill", latest)
        assert prefix_python(prefix, "import ipykernel; print('ok')") == "ok"
        good = latest
    after = build_json(envmgr_cli, spec, "--force")
    assert after["status"] == "built" and after["previous"] == good


def test_missing_conda_lock_command_is_a_clear_error(site, envmgr_cli) -> None:
    config = site["config"]
    config.write_text(config.read_text() + "solver: conda-lock\n"
                       "conda_lock_command: [/nonexistent/conda-lock, --conda, /nonexistent/mamba]\n")
    spec = write_spec(site["specs"], "cl")
    proc = envmgr_cli("build", spec)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "conda-lock command not found: /nonexistent/conda-lock" in proc.stdout
    assert not Layout(site["root"]).family_dir("cl").exists()
