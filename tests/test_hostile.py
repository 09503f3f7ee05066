"""A hostile or unlucky shared host (issue 13), with a real second account and real filesystems.

* A second local account (``useradd``; the test runs as root, else it skips)
  takes every lock it can on every lease file: kernels still start, and
  ``gc --dry-run``/``status`` name it instead of blaming "another host".
* A root that really fills up (a size-limited tmpfs mounted by the test) at
  the install, .pyc and record steps; a root the caller may not write (owned
  by another account, the caller without CAP_DAC_OVERRIDE) and a read-only
  bind mount: exit 5, the step named, no traceback, latest untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from envmgr._internal import _faults
from envmgr.build import pipeline as build
from envmgr.catalog import records
from envmgr.config import load_config
from envmgr.define.limits import MAX_FILE_BYTES, read_limited
from envmgr.errors import UsageError
from envmgr.gc import collect as gc
from envmgr.host import procscan
from envmgr.kernels import lease
from envmgr.kernels.kernelspecs import KernelFamily, sync_family_kernels
from envmgr.layout import Layout

from .conftest import SPEC_TEMPLATE, json_of, run_envmgr, write_config, write_spec
from .test_gc import base, by_id, clone, make_site, publish  # noqa: F401 - base is a fixture
from .test_launcher import LAUNCHER, Kernel, wait_until

pytestmark = pytest.mark.slow

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: adds a local account, "
                               "mounts a tmpfs and a read-only bind mount")
T0 = "20250101T000000Z-aaaaaa"


def bid(n: int) -> str:
    return f"2025010{n}T000000Z-abcdef"


@pytest.fixture
def shared_tmp():
    """A directory every account may traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="envmgr-hostile-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def second_user():
    """A throwaway local account, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a second local account")
    name = f"envmgr-t{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)


def as_user(user: str, *argv: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(["runuser", "-u", user, "--", *argv], **popen)


GRAB = r"""
import errno, fcntl, json, os, struct, sys
rd = struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 0, 0)
wr = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)
out, fds = {}, []
for path in sys.argv[1:]:
    got = {}
    try:
        os.open(path, os.O_RDWR)
        got["open_rw"] = "ok"
    except OSError as e:
        got["open_rw"] = errno.errorcode[e.errno]
    for kind, flag in (("ofd_write", fcntl.F_OFD_SETLK), ("posix_write", fcntl.F_SETLK)):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.fcntl(fd, flag, wr)
            got[kind] = "ok"
        except OSError as e:
            got[kind] = errno.errorcode[e.errno]
        os.close(fd)
    try:
        open(os.path.join(os.path.dirname(path), "mine.lease"), "w")
        got["create_in_dir"] = "ok"
    except OSError as e:
        got["create_in_dir"] = errno.errorcode[e.errno]
    ofd = os.open(path, os.O_RDONLY)
    fcntl.fcntl(ofd, fcntl.F_OFD_SETLK, rd)  # every reader may hold a read lock...
    posix = os.open(path, os.O_RDONLY)
    fcntl.fcntl(posix, fcntl.F_SETLK, rd)
    fds += [ofd, posix]
    out[path] = got
print(json.dumps(out), flush=True)
sys.stdin.read()  # ...and keeps them until stdin closes
"""


# -- leases: a second account cannot block kernels, and is named --------------------------------


@ROOT_ONLY
def test_second_account_cannot_block_kernels_and_is_named_as_holder(base, second_user, shared_tmp):  # noqa: F811
    config, layout = make_site(shared_tmp, base)
    old, new = bid(1), bid(2)
    clone(base, layout, old)
    clone(base, layout, new, slim=False)  # a full prefix: a real kernel starts on it
    publish(layout, old)
    publish(layout, new)
    kernels_dir = shared_tmp / "kernels"
    sync_family_kernels(kernels_dir, layout, KernelFamily("fam", "Fam", latest_build=new))
    leases = [str(layout.lease_file("fam", b)) for b in (old, new)]
    for path in [layout.root, layout.lease_dir("fam"), *map(Path, leases)]:
        assert not Path(path).stat().st_mode & 0o022, f"{path} must not be writable by users"

    # The attack of issue 13 first: an exclusive flock on every lease (works on a read-only fd).
    flocks = [as_user(second_user, "flock", "-x", path, "sleep", "600", start_new_session=True)
              for path in leases]
    for path in leases:
        wait_until(lambda: any("FLOCK WRITE" in h.locks for h in lease.holders(Path(path)).locks),
                   what="the second account's flock -x")
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    grab = as_user(second_user, python, "-I", "-c", GRAB, *leases, stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, text=True)
    try:
        tried = json.loads(grab.stdout.readline())
        for path in leases:
            assert tried[path] == {"open_rw": "EACCES", "ofd_write": "EBADF", "posix_write": "EBADF",
                                   "create_in_dir": "EACCES"}, tried
        # flock -x on a read-only fd works (that was issue 13); it no longer stops a kernel.
        for path in leases:
            assert not reader_blocked(path)
        kernel = Kernel(kernels_dir, "fam-latest")
        try:
            out, _ = kernel.run("import sys; print(sys.prefix)")
            assert out.strip() == str(layout.prefix("fam", new))
        finally:
            kernel.km.shutdown_kernel(now=True)

        plan = run_envmgr("gc", "--dry-run", "--json", config=config)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        kept = by_id(json_of(plan)["result"])[old]
        assert kept["action"] == "keep" and kept["reasons"][0]["code"] == "in-use", kept
        assert f"user {second_user}" in kept["why"] and "another host" not in kept["why"], kept["why"]
        assert "flock -x" in kept["why"]
        holders = kept["reasons"][0]["usage"]["holders"]
        assert any("OFDLCK READ" in h for h in holders) and any("FLOCK WRITE" in h for h in holders)

        status = run_envmgr("status", "--json", config=config)
        assert status.returncode in (0, 1), status.stdout + status.stderr
        assert second_user in status.stdout and "another host" not in status.stdout
    finally:
        grab.stdin.close()
        grab.wait(timeout=30)
        for proc in flocks:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
    plan = json_of(run_envmgr("gc", "--dry-run", "--json", config=config))["result"]
    assert by_id(plan)[old]["action"] == "delete", "the holders are gone: collectable again"


@ROOT_ONLY
def test_second_account_cannot_hold_a_build_lock(second_user, shared_tmp):
    """A flock needs only read access, so lock files are the service account's alone (0600).

    Otherwise ``flock -x locks/fam.lock sleep 1d`` by any user would stall every build of
    the family. A lock file an older envmgr left 0644 is tightened the next time it is taken.
    """
    from envmgr.familylock import family_lock, lock_held

    layout = Layout(shared_tmp / "root")
    layout.locks_dir.mkdir(parents=True)
    layout.locks_dir.chmod(0o755)
    old = layout.build_lock("old")
    old.write_text("")
    old.chmod(0o644)  # as envmgr < issue 14 (filelock) left it
    for family in ("fam", "old"):
        with family_lock(layout, family):
            assert lock_held(layout.build_lock(family))
        assert not lock_held(layout.build_lock(family))
        assert layout.build_lock(family).stat().st_mode & 0o777 == 0o600
        tried = subprocess.run(["runuser", "-u", second_user, "--", "flock", "-x", "-n",
                                str(layout.build_lock(family)), "true"], capture_output=True, text=True)
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, tried


def reader_blocked(path: str) -> bool:
    """Whether the user's locks stop a kernel's read lock: the launcher's own helper, non-blocking."""
    code = ("import fcntl, os, struct, sys; fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "try:\n fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_RDLCK, 0, 0, 0, 0))\n"
            "except OSError: sys.exit(1)\n")
    return subprocess.run([sys.executable, "-c", code, path]).returncode != 0


def test_holders_report_another_host_only_without_a_local_holder(tmp_path):
    layout = Layout(tmp_path / "root")
    path = lease.ensure_lease(layout, "fam", T0)
    assert lease.holders(path).locks == ()
    proc = subprocess.Popen(["flock", "-s", str(path), "sleep", "60"], start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 10
        while not lease.holders(path).locks and time.monotonic() < deadline:
            time.sleep(0.05)
        found = lease.holders(path)
        # flock(1) and the sleep it forked share the locked descriptor: both hold it.
        assert found.locked_here and {h.locks for h in found.locks} == {("FLOCK READ",)}
        assert any(h.command == "sleep 60" for h in found.locks)
        assert {h.user for h in found.locks} == {__import__("pwd").getpwuid(os.geteuid()).pw_name}
        assert lease.probe(path) is True, "a shared flock (the previous launcher's) blocks gc"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    import time

    time.sleep(0.2)  # the forked sleep dies too
    assert lease.probe(path) is False
    from envmgr.gc.retention import Usage

    assert "another host" in Usage(lease_held=True).describe()
    assert "another host" not in Usage(lease_held=True, locked_here=True).describe()
    assert "another host" not in Usage(lease_held=True, holders=("pid 1 (user x: y; OFDLCK READ)",),
                                       host="h").describe()


# -- gc's process check ------------------------------------------------------------------------


def test_process_scan_sees_a_python_symlinked_out_of_the_prefix(base, tmp_path):  # noqa: F811
    _, layout = make_site(tmp_path, base)
    prefix = clone(base, layout, bid(1))
    other = clone(base, layout, bid(2))
    python = prefix / "bin" / "python"
    assert python.is_symlink() and not os.path.realpath(python).startswith(str(prefix))
    sleep = "import time; time.sleep(60)"
    by_prefix = subprocess.Popen([str(python), "-S", "-c", sleep], cwd="/")
    on_path = subprocess.Popen(["python", "-S", "-c", sleep], cwd="/",
                               env={"PATH": f"{other / 'bin'}:/usr/bin:/bin"})
    plain = subprocess.Popen([os.path.realpath(python), "-S", "-c", sleep], cwd="/")
    tagged = subprocess.Popen(["sleep", "60"], env={"ENVMGR_PREFIX": str(prefix)}, cwd="/")
    try:
        import time

        time.sleep(0.5)  # exec'd
        scan = procscan.scan_processes(layout.envs_dir)
        assert by_prefix.pid in scan.pids("fam", bid(1)), "exe is the symlink's target; argv[0] says"
        assert on_path.pid in scan.pids("fam", bid(2)), "argv[0] found through PATH"
        assert tagged.pid in scan.pids("fam", bid(1)), "ENVMGR_PREFIX names the build"
        assert plain.pid not in scan.pids("fam", bid(1)) + scan.pids("fam", bid(2)), \
            "the same interpreter started from outside the prefix does not use it"
    finally:
        for proc in (by_prefix, on_path, plain, tagged):
            proc.kill()
            proc.wait()


# -- the machine refuses -------------------------------------------------------------------------


def _capless(*argv: str) -> list[str]:
    """Run as root without capabilities: like any account that does not own the root."""
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *argv]


def _cli(argv_prefix: list[str], config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*argv_prefix, sys.executable, "-m", "envmgr", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=600)


@ROOT_ONLY
@pytest.mark.parametrize("how", ["not-owner", "read-only"])
def test_build_gc_rollback_on_a_root_the_caller_cannot_write(base, second_user, shared_tmp, how):  # noqa: F811
    config, layout = make_site(shared_tmp, base)
    clone(base, layout, bid(1))
    clone(base, layout, bid(2))
    publish(layout, bid(1))
    publish(layout, bid(2))
    before = sorted(p.name for p in layout.family_dir("fam").iterdir())
    if how == "not-owner":
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed")
        subprocess.run(["chown", "-R", second_user, str(layout.root)], check=True)
        prefix, code = _capless(), "EACCES"
    else:
        subprocess.run(["mount", "--bind", str(layout.root), str(layout.root)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(layout.root)], check=True)
        prefix, code = [], "EROFS"
    try:
        for args, step in ((("build", "fam"), "take the family lock"), (("gc",), "take the gc lock"),
                           (("rollback", "fam"), "take the family lock")):
            text = _cli(prefix, config, *args)
            assert text.returncode == 5, text.stdout + text.stderr
            assert "Traceback" not in text.stderr and "internal error" not in text.stderr
            assert f"step {step}" in text.stderr and f"({code})" in text.stderr, text.stderr
            assert str(layout.root) in text.stderr and "hint:" in text.stderr
            as_json = _cli(prefix, config, *args[:1], "--json", *args[1:])
            assert as_json.returncode == 5, as_json.stdout + as_json.stderr
            doc = json.loads(as_json.stdout)
            assert doc["ok"] is False, doc
            error = doc.get("error") or {}
            assert error.get("exit_code") == 5 and f"({code})" in error.get("message", ""), doc
    finally:
        if how == "read-only":
            subprocess.run(["umount", str(layout.root)], check=True)
        else:
            subprocess.run(["chown", "-R", "root", str(layout.root)], check=True)
    assert sorted(p.name for p in layout.family_dir("fam").iterdir()) == before
    assert layout.latest_build("fam") == bid(2)


@pytest.fixture
def small_root(shared_tmp):
    """A 700 MiB tmpfs as the envmgr root: big enough for two builds, and it really fills up."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a size-limited tmpfs")
    root = shared_tmp / "root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700m,mode=0755", "tmpfs", str(root)], check=True)
    yield root
    subprocess.run(["umount", "-l", str(root)], check=False)


def test_a_disk_that_fills_up_at_each_step_gives_exit_5(small_root, shared_tmp, demo_channel, shared_pkgs):
    from envmgr.channel.build import add_demo_package

    channel = shared_tmp / "channel"
    shutil.copytree(demo_channel, channel, symlinks=True)
    specs = shared_tmp / "specs"
    specs.mkdir()
    values = dict(root=small_root, pkgs_dir=shared_pkgs, specs_dir=specs, kernels_dir=shared_tmp / "k",
                  channels={"demo": channel.as_uri()}, min_free_space="1M")
    quick = write_config(shared_tmp / "quick.yaml", **values, compile_pyc=False)
    config = write_config(shared_tmp / "config.yaml", **values, compile_pyc=True)
    spec = write_spec(specs, "fam")
    layout = Layout(small_root)
    first = run_envmgr("build", "--json", spec, config=quick)
    assert first.returncode == 0, first.stdout + first.stderr
    latest = layout.latest_build("fam")
    add_demo_package(channel, "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
    ballast = small_root / "ballast"

    for step in ("install", "pyc", "record"):
        env = {_faults.FILL_ENV: f"{step}:{ballast}"}
        text = run_envmgr("build", spec, config=config, env=env)
        assert text.returncode == 5, (step, text.stdout + text.stderr)
        assert "Traceback" not in text.stdout + text.stderr
        assert "No space left on device (ENOSPC)" in text.stdout and f"step {step}" in text.stdout, text.stdout
        ballast.unlink()
        as_json = run_envmgr("build", "--json", spec, config=config, env=env)
        assert as_json.returncode == 5, as_json.stdout + as_json.stderr
        outcome = json_of(as_json)["result"]["builds"][0]
        assert outcome["status"] == "failed" and outcome["failed_step"] == step, outcome
        assert "ENOSPC" in outcome["error"] and "free space" in outcome["hint"]
        ballast.unlink()
        rec = records.load(layout, "fam", outcome["build_id"])
        assert rec.status == records.FAILED and rec.step == step, rec
        assert layout.latest_build("fam") == latest, "latest untouched"
        leftovers = [p.name for p in layout.family_dir("fam").iterdir()
                     if p.name.startswith((".staging-", ".failed-", outcome["build_id"]))]
        assert leftovers == [], f"a full disk leaves no staging behind: {leftovers}"
        ran = subprocess.run(["/bin/sh", str(LAUNCHER), "--lease-dir", str(layout.lease_dir("fam")), "--",
                              str(layout.latest_link("fam")), "@PREFIX@/bin/python", "-c",
                              "import envmgr_demo_b; print(envmgr_demo_b.__version__)"],
                             capture_output=True, text=True, timeout=120)
        assert (ran.returncode, ran.stdout.strip()) == (0, "1.1"), ran.stderr

    after = run_envmgr("build", "--json", spec, config=config)  # space freed: it builds
    assert after.returncode == 0, after.stdout + after.stderr
    assert json_of(after)["result"]["builds"][0]["status"] == "built"
    assert layout.latest_build("fam") != latest


# -- kernel env and the smoke test -------------------------------------------------------------


def test_spec_env_that_breaks_the_launcher_is_refused_with_file_and_line(site, envmgr_cli):
    text = SPEC_TEMPLATE.format(name="fam", display="Fam", group="T") + \
        "env:\n  OMP_NUM_THREADS: '2'\n  PATH: /nowhere\n  ENVMGR_PREFIX: /x\n"
    spec = write_spec(site["specs"], "fam", text=text)
    checked = envmgr_cli("spec", "check", "--json", spec)
    assert checked.returncode == 2
    problems = json_of(checked)["result"]["problems"]
    assert [(p["key"], p["line"]) for p in problems] == [("env.PATH", 13), ("env.ENVMGR_PREFIX", 14)]
    assert "kernel_env_allow" in problems[0]["message"]
    built = envmgr_cli("build", spec)
    assert built.returncode == 2 and f"{spec}:13" in built.stderr
    assert not Layout(site["root"]).family_dir("fam").exists(), "refused before anything happened"


def test_kernel_that_cannot_start_through_the_launcher_is_not_published(site):
    cfg = load_config(config_path=site["config"])
    config = write_config(site["tmp"] / "allow.yaml", root=site["root"], pkgs_dir=cfg.pkgs_dir,
                          specs_dir=site["specs"], kernels_dir=site["kernels"],
                          channels={"demo": site["channel"].as_uri()}, min_free_space="10M",
                          compile_pyc=False, kernel_env_allow=["PATH"])
    text = SPEC_TEMPLATE.format(name="fam", display="Fam", group="T") + "env:\n  PATH: /nowhere\n"
    spec = write_spec(site["specs"], "fam", text=text)
    assert run_envmgr("spec", "check", spec, config=config).returncode == 0, "the site allows PATH"
    built = run_envmgr("build", "--json", spec, config=config)
    assert built.returncode == 3, built.stdout + built.stderr
    outcome = json_of(built)["result"]["builds"][0]
    assert outcome["status"] == "failed" and outcome["failed_step"] == "smoke", outcome
    layout = Layout(site["root"])
    assert layout.latest_build("fam") is None and layout.published_builds("fam") == []
    assert not list(Path(site["kernels"]).glob("fam-*")), "no kernelspec published"


# -- limits and smaller items ---------------------------------------------------------------------


def test_oversized_spec_policy_and_too_many_dependencies_are_refused(site, envmgr_cli):
    big = site["specs"] / "big.yaml"
    big.write_text(SPEC_TEMPLATE.format(name="big", display="B", group="T")
                   + "description: |\n" + ("  " + "x" * 1000 + "\n") * 1100)
    assert big.stat().st_size > MAX_FILE_BYTES
    refused = envmgr_cli("spec", "check", big)
    assert refused.returncode == 2 and "larger than 1 MiB" in refused.stderr
    assert "Traceback" not in refused.stderr
    many = site["specs"] / "many.yaml"
    many.write_text("name: many\nchannels: [demo]\ndependencies:\n"
                    + "".join(f"  - pkg{n}\n" for n in range(501)))
    checked = envmgr_cli("spec", "check", "--json", many)
    assert checked.returncode == 2
    problems = json_of(checked)["result"]["problems"]
    assert [(p["key"], p["line"]) for p in problems] == [("dependencies", 3)]
    assert "at most 500" in problems[0]["message"]
    policy = site["tmp"] / "policy.yaml"
    policy.write_text("deny:\n" + "".join(f"  - name: p{n}\n    reason: {'r' * 60}\n" for n in range(14000)))
    with pytest.raises(UsageError, match="larger than 1 MiB"):
        read_limited(policy, "package policy")


def test_recovery_removes_a_planted_staging_symlink_without_following_it(tmp_path):
    layout = Layout(tmp_path / "root")
    layout.family_dir("fam").mkdir(parents=True)
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "data").write_text("keep")
    (layout.family_dir("fam") / ".staging-planted").symlink_to(victim)
    actions = build.recover(layout, "fam")
    assert actions == ["removed stale staging .staging-planted"]
    assert not os.path.lexists(layout.family_dir("fam") / ".staging-planted")
    assert (victim / "data").read_text() == "keep"


def test_kill_between_pointer_and_previous_record_keeps_the_retired_time_fixed(base, tmp_path):  # noqa: F811
    config, layout = make_site(tmp_path, base, keep_previous=0, grace_days=30, failed_days=0)
    for n in (1, 2, 3):
        clone(base, layout, bid(n))
    publish(layout, bid(1))
    code = ("from pathlib import Path; from envmgr.build.pipeline import move_latest; "
            "from envmgr.layout import Layout; "
            f"move_latest(Layout(Path({str(layout.root)!r})), 'fam', {bid(2)!r}, {bid(1)!r})")
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ,
                                                                _faults.FAULT_ENV: "pointer-recorded"})
    assert killed.returncode == -9 and layout.latest_build("fam") == bid(2)
    assert records.load(layout, "fam", bid(1)).latest_until is None, "the kill lost it"
    took_over = records.load(layout, "fam", bid(2)).latest_since
    cfg = load_config(config_path=config)

    def retired(now: dt.datetime) -> str:
        plan = gc.collect(cfg, dry_run_only=True, now=now)
        first = next(d for d in plan.plans[0].decisions if d.build_id == bid(1))
        return next(r.text for r in first.reasons if r.code == "grace")

    now = dt.datetime.now(dt.timezone.utc)
    before = retired(now)
    import time

    time.sleep(1.1)
    publish(layout, bid(3))  # a later build takes over: bid(1) retired when bid(2) took over
    assert retired(now + dt.timedelta(days=1)) == before and took_over in before
    assert any("stopped being latest" in a for a in build.recover(layout, "fam"))
    assert records.load(layout, "fam", bid(1)).latest_until == took_over
