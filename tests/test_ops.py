"""Operations: `envmgr status`, `envmgr doctor`, notifications and the scheduling files.

One root (module scope) holds several families in every state an admin must
see: a family whose previous build is held by a running kernel (started
through its installed kernelspec, so it holds a real lease), a family with
stable releases, a family whose build failed in its smoke test, and a build in
progress (the test holds the family lock). Everything runs through the real
CLI in subprocesses.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from ruamel.yaml import YAML

from envmgr.channel.build import add_demo_package
from envmgr.familylock import family_lock
from envmgr.layout import Layout
from envmgr.host.mounts import lock_safety, mount_of, parse_mounts

from .conftest import REPO, json_of, run_envmgr, write_config, write_spec

pytestmark = pytest.mark.slow

NOTIFY_SCRIPT = """\
import json, os, sys, pathlib
doc = json.loads(sys.stdin.read())
out = pathlib.Path(sys.argv[1])
out.mkdir(exist_ok=True)
n = len(list(out.glob(doc["family"] + "-*.json")))
doc["_env_status"] = os.environ.get("ENVMGR_STATUS")
(out / f"{doc['family']}-{n}.json").write_text(json.dumps(doc))
"""

FAILING_SPEC = """\
name: gamma
display_name: Gamma
group: Stats
description: Statistics that never pass their smoke test.
channels: [demo]
dependencies: [python 3.*, ipykernel]
smoke_test:
  imports: [no_such_module_xyz]
"""


def _envmgr_json(config: Path, *args: str, expect: int | None = 0, env: dict | None = None) -> dict:
    proc = run_envmgr(*args, "--json", config=config, env=env)
    if expect is not None:
        assert proc.returncode == expect, proc.stdout + proc.stderr
    return json_of(proc)


def _by_family(status: dict) -> dict[str, dict]:
    return {f["family"]: f for f in status["families"]}


class Ops:
    """The module's root and what was built in it."""

    def __init__(self, base: Path, channel: Path, pkgs: Path):
        self.base = base
        self.root = base / "root"
        self.channel = channel
        self.specs = base / "specs"
        self.kernels = base / "share" / "jupyter" / "kernels"
        self.notified = base / "notified"
        self.specs.mkdir()
        (base / "notify.py").write_text(NOTIFY_SCRIPT)
        self.config = write_config(
            base / "config.yaml", root=self.root, pkgs_dir=pkgs, specs_dir=self.specs,
            kernels_dir=self.kernels, channels={"demo": channel.as_uri()}, min_free_space="10M",
            compile_pyc=False, notify_command=[sys.executable, str(base / "notify.py"), str(self.notified)])
        self.layout = Layout(self.root)
        self.builds: dict[str, list[str]] = {}
        self.kernel: KernelManager | None = None

    def build(self, name: str, expect: int = 0) -> dict:
        result = _envmgr_json(self.config, "build", str(self.specs / f"{name}.yaml"), expect=expect)
        outcome = result["result"]["builds"][0]
        self.builds.setdefault(name, []).append(outcome["build_id"])
        return outcome

    def start_latest_kernel(self, family: str) -> KernelManager:
        """Start <family>-latest through its installed kernelspec (launcher, real lease)."""
        ksm = KernelSpecManager(kernel_dirs=[str(self.kernels)])
        km = KernelManager(kernel_name=f"{family}-latest", kernel_spec_manager=ksm)
        km.start_kernel()
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
        finally:
            client.stop_channels()
        self.kernel = km
        return km


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, demo_channel: Path, shared_pkgs: Path) -> Iterator[Ops]:
    # Not under pytest's 0700 temp dir: doctor checks that other users can reach the root.
    base = Path(tempfile.mkdtemp(prefix="envmgr-ops-"))
    os.chmod(base, 0o755)
    channel = base / "channel"
    shutil.copytree(demo_channel, channel, symlinks=True)
    site = Ops(base, channel, shared_pkgs)
    write_spec(site.specs, "alpha", display="Alpha", group="Beamline")
    write_spec(site.specs, "beta", display="Beta", group="Beamline")
    write_spec(site.specs, "gamma", text=FAILING_SPEC)
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse isolation is per test
        for name in ("JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "XDG_DATA_HOME"):
            mp.setenv(name, str(base / "home" / name.lower()))
        for name in ("ENVMGR_ROOT", "ENVMGR_CONFIG", "JUPYTER_PATH"):
            mp.delenv(name, raising=False)
        yield from _populate(site, channel)
    # Hand the tree to pytest's temp dir (same filesystem): pytest prunes old ones like every
    # other test's; deleting ~50k files here would cost seconds of I/O.
    try:
        os.rename(base, tmp_path_factory.getbasetemp() / base.name)
    except OSError:  # another filesystem (--basetemp elsewhere)
        shutil.rmtree(base, ignore_errors=True)


def _populate(site: Ops, channel: Path) -> Iterator[Ops]:
    """Build alpha twice (a kernel on the first), beta with two releases, gamma failing."""
    try:
        site.build("alpha")
        site.start_latest_kernel("alpha")  # holds the lease of alpha's first build
        add_demo_package(channel, "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
        site.build("alpha")  # latest moves on; the kernel keeps the first build
        site.build("beta")
        today = dt.date.today()
        for release, days in (("2025.1", 30), ("2025.2", 400)):
            _envmgr_json(site.config, "promote", "beta", "--release", release,
                         "--until", (today + dt.timedelta(days=days)).isoformat())
        failed = site.build("gamma", expect=3)
        assert failed["status"] == "failed"
        yield site
    finally:
        if site.kernel is not None and site.kernel.has_kernel:
            site.kernel.shutdown_kernel(now=True)


# -- status -------------------------------------------------------------------------------


def test_status_reports_every_family_state(ops: Ops) -> None:
    alpha1, alpha2 = ops.builds["alpha"]
    kernel_pid = ops.kernel.provisioner.process.pid
    with family_lock(ops.layout, "beta") as holder:  # a build in progress, as status sees it
        holder.set_step("install")
        status = _envmgr_json(ops.config, "status")["result"]
    assert status["groups"] == {"Beamline": ["alpha", "beta"], "Stats": ["gamma"]}
    fams = _by_family(status)

    alpha = fams["alpha"]
    assert alpha["latest"]["build_id"] == alpha2 and alpha["latest"]["package_count"] > 10
    assert 0 <= alpha["latest"]["built_age_seconds"] < 3600
    assert 0 <= alpha["latest"]["age_seconds"] < 3600
    assert alpha["last_run"]["status"] == "built" and alpha["last_run"]["build_id"] == alpha2
    held = {g["build_id"]: g for g in alpha["gc_waiting"]}
    assert set(held) == {alpha1}, alpha["gc_waiting"]
    assert held[alpha1]["in_use"] is True and kernel_pid in held[alpha1]["pids"]
    assert held[alpha1]["action"] == "keep" and str(kernel_pid) in held[alpha1]["held_by"]
    assert "in-use" in {r["code"] for r in held[alpha1]["reasons"]}
    assert alpha["building"] is None and alpha["disk_bytes"] > 0

    beta = fams["beta"]
    releases = {r["release"]: r for r in beta["stable"]}
    assert set(releases) == {"2025.1", "2025.2"}
    assert releases["2025.1"]["days_left"] == 30 and releases["2025.1"]["expiring_soon"]
    assert releases["2025.2"]["days_left"] == 400 and not releases["2025.2"]["expiring_soon"]
    assert releases["2025.1"]["build_id"] == ops.builds["beta"][0] and releases["2025.1"]["published"]
    building = beta["building"]
    assert building["pid"] == os.getpid() and building["step"] == "install" and building["since"]
    assert beta["gc_waiting"] == []

    gamma = fams["gamma"]
    assert gamma["latest"] is None and gamma["group"] == "Stats"
    assert gamma["description"] == "Statistics that never pass their smoke test."
    assert gamma["last_run"]["status"] == "failed"
    assert "no_such_module_xyz" in gamma["last_run"]["error"]
    assert gamma["last_build"]["status"] == "failed" and gamma["last_build"]["step"] == "smoke"
    assert [g["target"] for g in gamma["gc_waiting"]] == ["failed-prefix"]

    kinds = {(w["kind"], w["family"]) for w in status["warnings"]}
    assert ("last-run-failed", "gamma") in kinds
    assert ("stable-expiring", "beta") in kinds
    assert not any(w["family"] == "alpha" for w in status["warnings"])
    failed_msg = next(w["message"] for w in status["warnings"] if w["kind"] == "last-run-failed")
    assert "no_such_module_xyz" in failed_msg
    expiring = [w["message"] for w in status["warnings"] if w["kind"] == "stable-expiring"]
    assert len(expiring) == 1 and "2025.1" in expiring[0]

    disk = status["disk"]
    assert disk["free_bytes"] > 0 and disk["used_bytes"] >= disk["pkgs_bytes"] > 0
    assert disk["families"]["alpha"] == alpha["disk_bytes"]


def test_status_text_and_cached_disk(ops: Ops) -> None:
    first = _envmgr_json(ops.config, "status", "--refresh")["result"]["disk"]
    assert first["cached"] is False
    again = _envmgr_json(ops.config, "status")["result"]["disk"]
    assert again["cached"] is True and again["used_bytes"] == first["used_bytes"]
    text = run_envmgr("status", config=ops.config)
    assert text.returncode == 0, text.stderr
    for needle in ("alpha", "beta", "gamma", "Beamline", "2025.1", "no_such_module_xyz", "warning"):
        assert needle in text.stdout, text.stdout
    # The description sits under the family name; rich wraps it inside the cell.
    family_cells = " ".join(line.split("│")[2].strip() for line in text.stdout.splitlines()
                            if line.count("│") > 3)
    assert "Statistics that never pass their smoke test." in " ".join(family_cells.split()), text.stdout


def test_status_and_doctor_warn_when_nfs_makes_leases_host_local(ops: Ops, tmp_path: Path) -> None:
    real = "/dev/vda / ext4 rw,relatime 0 0\n"
    unsafe = tmp_path / "mounts-unsafe"
    unsafe.write_text(real + f"nfs.example.org:/export/envmgr {ops.root} nfs4 "
                      "rw,relatime,vers=4.2,hard,proto=tcp,local_lock=flock,addr=10.0.0.5 0 0\n")
    safe = tmp_path / "mounts-safe"
    safe.write_text(real + f"nfs.example.org:/export/envmgr {ops.root} nfs4 "
                    "rw,relatime,vers=4.2,hard,proto=tcp,local_lock=none,addr=10.0.0.5 0 0\n")

    status = _envmgr_json(ops.config, "status", "--no-disk", "--mounts-file", str(unsafe))["result"]
    unsafe_warnings = [w for w in status["warnings"] if w["kind"] == "lease-locking-unsafe"]
    assert len(unsafe_warnings) == 1 and "local_lock=flock" in unsafe_warnings[0]["message"]
    assert status["filesystem"]["fstype"] == "nfs4"
    status = _envmgr_json(ops.config, "status", "--no-disk", "--mounts-file", str(safe))["result"]
    assert not [w for w in status["warnings"] if w["kind"] == "lease-locking-unsafe"]

    doc = _envmgr_json(ops.config, "doctor", "--no-kernels", "--mounts-file", str(unsafe), expect=None)
    fs = next(c for c in doc["result"]["checks"] if c["name"] == "filesystem")
    assert fs["status"] == "warn" and "UNSAFE" in fs["detail"] and "local_lock=flock" in fs["detail"]
    assert "local_lock" in fs["fix"]


@pytest.mark.parametrize(("line", "level", "needle"), [
    ("srv:/e /x nfs rw,vers=3,nolock 0 0", "warn", "nolock"),
    ("srv:/e /x nfs4 rw,local_lock=all 0 0", "warn", "local_lock=all"),
    ("srv:/e /x nfs4 rw,local_lock=posix 0 0", "ok", "emulated"),
    ("mgs@tcp:/fs /x lustre rw,localflock 0 0", "warn", "localflock"),
    ("mgs@tcp:/fs /x lustre rw,flock 0 0", "ok", "coherent"),
    ("//srv/share /x cifs rw,nobrl 0 0", "warn", "nobrl"),
    ("/dev/sda1 /x xfs rw 0 0", "ok", "local"),
])
def test_lock_safety_of_mount_options(line: str, level: str, needle: str) -> None:
    mounts = parse_mounts("/dev/vda / ext4 rw 0 0\n" + line)
    mount = mount_of(Path("/x/envmgr/root"), mounts)
    assert mount is not None and mount.mountpoint == "/x"
    verdict = lock_safety(mount)
    assert verdict.level == level and needle in verdict.detail, verdict


def test_mount_of_decodes_escapes_and_prefers_the_longest_mount() -> None:
    mounts = parse_mounts("/dev/a / ext4 rw 0 0\nsrv:/e /srv/my\\040data nfs4 rw 0 0\n"
                          "srv:/f /srv/my\\040data/sub nfs4 rw,local_lock=flock 0 0\n")
    assert mount_of(Path("/srv/my data/root"), mounts).mountpoint == "/srv/my data"
    assert mount_of(Path("/srv/my data/sub/r"), mounts).option("local_lock") == "flock"
    assert mount_of(Path("/srv/my datax"), mounts).mountpoint == "/"


# -- doctor ---------------------------------------------------------------------------------


def test_doctor_passes_on_a_good_site_and_starts_every_latest_kernel(ops: Ops) -> None:
    env = {"JUPYTER_PATH": str(ops.kernels.parent)}
    doc = _envmgr_json(ops.config, "doctor", env=env)
    checks = {c["name"]: c for c in doc["result"]["checks"]}
    assert doc["ok"] is True and doc["result"]["summary"]["fail"] == 0, checks
    for name in ("config", "ownership", "prefix-permissions", "kernelspecs", "jupyter-path", "flock",
                 "lease-helper", "filesystem", "free-space"):
        assert checks[name]["status"] in ("ok", "warn"), checks[name]
    assert checks["flock"]["status"] == "ok" and "blocked" in checks["flock"]["detail"]
    assert checks["kernel alpha-latest"]["status"] == "ok"
    assert ops.builds["alpha"][1] in checks["kernel alpha-latest"]["detail"]
    assert checks["kernel beta-latest"]["status"] == "ok"
    assert "kernel gamma-latest" not in checks  # no good build, nothing to start
    for c in checks.values():
        assert set(c) == {"name", "status", "detail", "fix"}


def test_doctor_fails_on_broken_setup_and_names_the_fix(ops: Ops) -> None:
    prefix = ops.layout.prefix("beta", ops.builds["beta"][0])
    kernel_json = ops.kernels / "alpha-latest" / "kernel.json"
    saved = kernel_json.read_bytes()
    mode = prefix.stat().st_mode
    os.chmod(prefix, mode | stat.S_IWOTH)
    kernel_json.write_text(json.dumps({**json.loads(saved), "argv": ["/nonexistent/python", "-f",
                                                                      "{connection_file}"]}))
    try:
        proc = run_envmgr("doctor", "--json", config=ops.config)  # no JUPYTER_PATH either
        assert proc.returncode == 1, proc.stdout + proc.stderr
        doc = json_of(proc)
    finally:
        os.chmod(prefix, mode)
        kernel_json.write_bytes(saved)
    checks = {c["name"]: c for c in doc["result"]["checks"]}
    assert doc["ok"] is False
    assert checks["prefix-permissions"]["status"] == "fail"
    assert str(prefix) in checks["prefix-permissions"]["detail"]
    assert "chmod" in checks["prefix-permissions"]["fix"]
    assert checks["jupyter-path"]["status"] == "fail"
    assert f"JUPYTER_PATH={ops.kernels.parent}" in checks["jupyter-path"]["fix"]
    assert checks["kernel alpha-latest"]["status"] == "fail"
    assert checks["kernel beta-latest"]["status"] == "ok"
    text = run_envmgr("doctor", "--no-kernels", config=ops.config)
    assert text.returncode == 1 and "jupyter-path" in text.stdout and "fail" in text.stdout


def test_doctor_reports_a_bad_config_as_a_failed_check(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"root: {tmp_path / 'root'}\nretension: {{}}\n")
    proc = run_envmgr("doctor", "--json", config=config)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = json_of(proc)["result"]["checks"]
    assert checks[0]["name"] == "config" and checks[0]["status"] == "fail"
    assert "retension" in checks[0]["detail"]


# -- notifications -----------------------------------------------------------------------------


def _notices(ops: Ops, family: str) -> list[dict]:
    files = sorted(ops.notified.glob(f"{family}-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [json.loads(p.read_text()) for p in files]


def test_notify_command_gets_every_build_run_on_stdin(ops: Ops) -> None:
    alpha = _notices(ops, "alpha")
    assert [n["status"] for n in alpha[:2]] == ["built", "built"]
    first, second = alpha[0], alpha[1]
    assert first["previous"] is None and first["build_id"] == ops.builds["alpha"][0]
    assert second["previous"] == ops.builds["alpha"][0] and second["build_id"] == ops.builds["alpha"][1]
    assert second["diff"]["counts"]["upgraded"] == 1 and "1 upgraded" in second["diff"]["summary"]
    assert Path(second["log"]).is_file() and second["host"] and second["time"]
    assert second["_env_status"] == "built"
    gamma = _notices(ops, "gamma")[-1]
    assert gamma["status"] == "failed" and "no_such_module_xyz" in gamma["error"]
    assert Path(gamma["log"]).is_file()

    result = _envmgr_json(ops.config, "build", str(ops.specs / "alpha.yaml"))
    unchanged = result["result"]["builds"][0]
    assert unchanged["status"] == "unchanged" and unchanged["warnings"] == []
    last = _notices(ops, "alpha")[-1]
    assert last["status"] == "unchanged" and last["build_id"] == ops.builds["alpha"][1]


def test_a_failing_notify_command_never_fails_the_build(ops: Ops, tmp_path: Path) -> None:
    data = YAML(typ="safe").load(ops.config.read_text())
    data["notify_command"] = [sys.executable, "-c", "import sys; sys.stderr.write('hook down'); sys.exit(7)"]
    config = write_config(tmp_path / "config.yaml", **data)
    proc = run_envmgr("build", "--json", ops.specs / "beta.yaml", config=config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcome = json_of(proc)["result"]["builds"][0]
    assert outcome["status"] == "unchanged"
    assert len(outcome["warnings"]) == 1 and "exited 7" in outcome["warnings"][0]
    assert "hook down" in outcome["warnings"][0]

    data["notify_command"] = [str(tmp_path / "missing-hook")]
    config = write_config(tmp_path / "config2.yaml", **data)
    text = run_envmgr("build", ops.specs / "beta.yaml", config=config)
    assert text.returncode == 0 and "missing-hook not found" in text.stdout + text.stderr


# -- scheduling files ---------------------------------------------------------------------------

SCRIPTS = REPO / "scripts"


def _verify_root(tmp_path: Path) -> Path:
    """A filesystem root for `systemd-analyze verify --root`: the host's units and our files."""
    root = tmp_path / "sysroot"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "opt" / "envmgr" / "bin").mkdir(parents=True)
    shutil.copy2(SCRIPTS / "nightly", root / "opt" / "envmgr" / "bin" / "envmgr-nightly")
    for unit in (SCRIPTS / "systemd").iterdir():
        shutil.copy2(unit, root / "etc" / "systemd" / "system" / unit.name)
    return root


def _verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir(),
                    reason="systemd-analyze missing: install Debian's `systemd` package")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    root = _verify_root(tmp_path)
    units = ("envmgr-nightly.service", "envmgr-nightly.timer")
    proc = _verify(root, *units)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    service = (root / "etc/systemd/system/envmgr-nightly.service").read_text()
    assert "ExecStart=/opt/envmgr/bin/envmgr-nightly" in service and "Type=oneshot" in service
    timer = (root / "etc/systemd/system/envmgr-nightly.timer").read_text()
    assert "Unit=envmgr-nightly.service" in timer and "Persistent=true" in timer
    # The check can fail: a typo in the timer is refused.
    bad = root / "etc/systemd/system/envmgr-nightly.timer"
    bad.write_text(timer.replace("OnCalendar=", "OnCalender="))
    proc = _verify(root, "envmgr-nightly.timer")
    assert proc.returncode != 0 and "OnCalender" in proc.stderr


def _cron_ok(expr: str) -> bool:
    fields = expr.split()
    allowed = set("0123456789*/,-")
    return len(fields) == 5 and all(f and set(f) <= allowed for f in fields)


def test_kubernetes_cronjob_manifest_is_valid(tmp_path: Path) -> None:
    docs = [d for d in YAML(typ="safe").load_all((SCRIPTS / "kubernetes" / "envmgr-nightly.yaml").read_text())
            if d]
    by_kind = {d["kind"]: d for d in docs}
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"], d
    job = by_kind["CronJob"]
    assert job["apiVersion"] == "batch/v1" and job["metadata"]["name"] == "envmgr-nightly"
    spec = job["spec"]
    assert _cron_ok(spec["schedule"]) and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["name"] and container["image"]
    assert container["command"] == ["/opt/envmgr/bin/envmgr-nightly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(mounts) <= set(volumes)
    claim = volumes[next(n for n, m in mounts.items() if m["mountPath"] == "/srv/envmgr")]
    pvc = by_kind["PersistentVolumeClaim"]
    assert claim["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    config = YAML(typ="safe").load(by_kind["ConfigMap"]["data"]["config.yaml"])
    assert config["root"] == "/srv/envmgr" and isinstance(config["notify_command"], list)
    # The embedded config is a valid envmgr config.
    (tmp_path / "config.yaml").write_text(by_kind["ConfigMap"]["data"]["config.yaml"])
    shown = _envmgr_json(tmp_path / "config.yaml", "config", "show")["result"]
    assert shown["root"] == "/srv/envmgr"


def test_cron_example_runs_the_nightly_with_logs() -> None:
    lines = [line for line in (SCRIPTS / "cron" / "envmgr").read_text().splitlines()
             if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    (entry,) = lines
    fields = entry.split(None, 6)
    assert _cron_ok(" ".join(fields[:5])) and fields[5] == "envmgr"
    assert fields[6].startswith("/opt/envmgr/bin/envmgr-nightly >>/var/log/envmgr/nightly.log 2>&1")
    assert "%" not in entry  # cron would turn it into a newline


# -- the nightly script -------------------------------------------------------------------------


def _nightly(site: dict[str, Path], **env: str) -> subprocess.CompletedProcess:
    bindir = Path(sys.executable).parent
    full = {**os.environ, "ENVMGR_CONFIG": str(site["config"]), "ENVMGR": str(bindir / "envmgr"),
            "ENVMGR_NIGHTLY_LOCK": str(site["tmp"] / "nightly.lock"), **env}
    return subprocess.run(["bash", str(SCRIPTS / "nightly")], capture_output=True, text=True,
                          env=full, timeout=600)


def _has_gc(site: dict[str, Path]) -> bool:
    return run_envmgr("gc", "--help", config=site["config"]).returncode == 0


def test_nightly_exit_code_contract(site: dict[str, Path]) -> None:
    gc_env = {} if _has_gc(site) else {"ENVMGR_NIGHTLY_GC": "0"}  # gc lands with issue 5
    ok = _nightly(site, **gc_env)  # no specs yet: nothing to build
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "exit 0 (ok)" in ok.stdout and "envmgr build --all exited 0" in ok.stdout
    assert ("envmgr gc exited 0" if not gc_env else "gc skipped") in ok.stdout

    with open(site["tmp"] / "nightly.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = _nightly(site, **gc_env)
    assert skipped.returncode == 4 and "previous nightly still running" in skipped.stdout

    (site["specs"] / "broken.yaml").write_text("name: broken\nchannels: [demo]\ndependencies: 7\n")
    usage = _nightly(site, **gc_env)
    assert usage.returncode == 2, usage.stdout + usage.stderr
    assert "broken.yaml" in usage.stderr
    (site["specs"] / "broken.yaml").unlink()

    write_spec(site["specs"], "gamma", text=FAILING_SPEC)
    failed = _nightly(site, **gc_env)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "exit 3 (some build failed)" in failed.stdout
    last_run = json.loads((Layout(site["root"]).records_dir / "gamma" / "last-run.json").read_text())
    assert last_run["status"] == "failed"
