"""The kernel launcher, leases and the gc protocol, with real kernels and a real server.

Kernels are started by jupyter_client / jupyter_server from kernelspecs written
by ``sync_family_kernels``; builds are real prefixes (see ``make_build``).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import websocket
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from envmgr.kernels import lease
from envmgr.host import procscan
from envmgr.errors import Busy, UsageError
from envmgr.kernels.kernelspecs import KernelFamily, desired_kernels, sync_family_kernels
from envmgr.layout import Layout

pytestmark = pytest.mark.slow

LAUNCHER = Path(__file__).resolve().parents[1] / "envmgr" / "kernels" / "launcher.sh"
PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"
TIMEOUT = 60
PRINT_PREFIX = "import sys; print(sys.prefix)"


# -- builds ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _kernel_env() -> tuple[list, Path]:
    """Solved records for a kernel environment, from the real demo channel (once per process).

    The channel and package cache live in a fixed per-user temp directory: the
    channel is content-cached and installs hardlink from the cache, so each
    build below is a real conda prefix that costs a fraction of a second.
    """
    from envmgr._internal import _rattler
    from envmgr.channel.build import build_channel

    base = Path(tempfile.gettempdir()) / f"envmgr-test-builds-{os.getuid()}"
    channel = build_channel(base / "channel")
    return _rattler.solve(["python 3.*", "ipykernel"], [channel.url]), base / "pkgs"


def make_build(layout: Layout, family: str, build_id: str) -> Path:
    """Publish a real conda prefix (python + ipykernel from the demo channel) as a build.

    Publication also creates the lease file, as the build pipeline does.
    """
    from envmgr._internal import _rattler

    records, pkgs = _kernel_env()
    prefix = layout.prefix(family, build_id)
    _rattler.install(records, prefix, pkgs)
    lease.ensure_lease(layout, family, build_id)
    return prefix


def build_id(n: int) -> str:
    return f"20250101T{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}Z-abcdef"


def flip_latest(layout: Layout, family: str, build: str) -> None:
    """Atomically re-point the family's latest pointer (what publication does)."""
    link = layout.latest_link(family)
    tmp = link.with_name(f".latest.tmp-{uuid.uuid4().hex[:6]}")
    os.symlink(build, tmp)
    os.replace(tmp, link)


def family(name: str, latest: str | None, stable=(), **kw) -> KernelFamily:
    return KernelFamily(family=name, display_name=name.capitalize(), group="test",
                        latest_build=latest, latest_built="2025-01-01T00:00:00Z", stable=stable, **kw)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "root")


@pytest.fixture
def kernels_dir(tmp_path: Path) -> Path:
    return tmp_path / "share" / "jupyter" / "kernels"


def realprefix(layout: Layout, fam: str, build: str) -> str:
    return os.path.realpath(layout.prefix(fam, build))


# -- kernels ---------------------------------------------------------------------


class Kernel:
    """A kernel started by jupyter_client from a kernelspec in kernels_dir."""

    def __init__(self, kernels_dir: Path, name: str):
        ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
        self.km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
        self.km.start_kernel()
        self.kc = None
        self._connect()

    def _connect(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid

    def run(self, code: str, timeout: float = TIMEOUT) -> tuple[str, dict]:
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        return "".join(out), reply["content"]

    def prefix(self) -> str:
        return self.run("import sys; print(sys.prefix)")[0].strip()

    def restart(self) -> None:
        self.km.restart_kernel(now=False)
        self._connect()

    def close(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernels():
    started: list[Kernel] = []

    def start(kernels_dir: Path, name: str) -> Kernel:
        k = Kernel(kernels_dir, name)
        started.append(k)
        return k

    yield start
    for k in started:
        k.close()


def wait_until(cond, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_launcher(layout: Layout, fam: str, target: Path, code: str, *, shell: str = "/bin/sh",
                 opts: tuple[str, ...] = (), env: dict | None = None, args: tuple[str, ...] = (),
                 **popen) -> subprocess.Popen:
    """Run launcher.sh with a tiny Python program instead of ipykernel."""
    argv = [shell, str(LAUNCHER), "--lease-dir", str(layout.lease_dir(fam)), *opts, "--",
            str(target), "@PREFIX@/bin/python", "-c", code, *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, **popen)


def finish(proc: subprocess.Popen, stdin: bytes | None = None) -> tuple[int, str, str]:
    out, err = proc.communicate(stdin, timeout=TIMEOUT)
    return proc.returncode, out.decode(), err.decode()


def wait_for_lock_waiter(lease_file: Path) -> None:
    """Wait until some process is blocked on a lock of lease_file (a '->' line in /proc/locks)."""
    st = lease_file.stat()
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"

    def blocked() -> bool:
        with open("/proc/locks") as fh:
            return any("->" in line and key in line.split() for line in fh)

    wait_until(blocked, what="the launcher to block on the lease")


# -- restart follows latest --------------------------------------------------------


def test_kernel_runs_resolved_build_and_restart_follows_latest(layout, kernels_dir, kernels):
    a, b = build_id(1), build_id(2)
    make_build(layout, "py", a)
    make_build(layout, "py", b)
    flip_latest(layout, "py", a)
    sync_family_kernels(kernels_dir, layout, family("py", a))

    first = kernels(kernels_dir, "py-latest")
    second = kernels(kernels_dir, "py-latest")
    assert first.prefix() == realprefix(layout, "py", a)
    assert second.prefix() == realprefix(layout, "py", a)
    out, _ = first.run("import os, sys; print(os.environ['ENVMGR_BUILD_ID']);"
                       "print(any('/latest' in p for p in sys.path))")
    assert out.split() == [a, "False"], "the kernel must never import through the pointer"

    flip_latest(layout, "py", b)
    first.restart()
    assert first.prefix() == realprefix(layout, "py", b)
    assert second.prefix() == realprefix(layout, "py", a), "a running kernel stays on its build"
    second.restart()
    assert second.prefix() == realprefix(layout, "py", b)


def test_stable_kernel_stays_pinned_across_flips(layout, kernels_dir, kernels):
    a, b = build_id(1), build_id(2)
    make_build(layout, "py", a)
    make_build(layout, "py", b)
    flip_latest(layout, "py", b)
    sync_family_kernels(kernels_dir, layout,
                        family("py", b, stable=[("2024.1", a, "2024-01-01", "2027-01-01")]))
    k = kernels(kernels_dir, "py-2024.1")
    assert k.prefix() == realprefix(layout, "py", a)
    k.restart()
    assert k.prefix() == realprefix(layout, "py", a)


def test_launched_kernel_is_the_process_jupyter_started(layout, kernels_dir, kernels):
    """exec: same pid, so interrupt/shutdown reach the kernel itself."""
    a = build_id(1)
    make_build(layout, "py", a)
    flip_latest(layout, "py", a)
    sync_family_kernels(kernels_dir, layout, family("py", a))
    k = kernels(kernels_dir, "py-latest")
    out, _ = k.run("import os; print(os.getpid())")
    assert int(out) == k.pid

    k.kc.execute("import time; time.sleep(30)")
    time.sleep(0.5)
    started = time.monotonic()
    k.km.interrupt_kernel()
    reply = k.kc.get_shell_msg(timeout=TIMEOUT)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 10
    # ipykernel aborts requests that arrive right after an error (stop_on_error);
    # the same happens with a direct, launcher-less argv. Retry briefly.
    wait_until(lambda: k.run("x = 1 + 1")[1]["status"] == "ok", what="the kernel to accept code again")
    assert k.run("print(x)")[0].strip() == "2", "the kernel survives an interrupt"

    pid = k.pid
    k.km.shutdown_kernel()
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_memory_limit_from_kernelspec(layout, kernels_dir, kernels):
    a = build_id(1)
    make_build(layout, "py", a)
    flip_latest(layout, "py", a)
    sync_family_kernels(kernels_dir, layout, family("py", a, mem_limit_mib=3072))
    k = kernels(kernels_dir, "py-latest")
    out, _ = k.run("import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])")
    assert int(out) == 3072 * 1024 * 1024


def test_memory_limit_env_var_tighter_wins(layout):
    a = build_id(1)
    prefix = make_build(layout, "py", a)
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0] // 1024)"
    both = finish(run_launcher(layout, "py", prefix, code, opts=("--mem-kib", "4000000"),
                               env={"ENVMGR_MEM_LIMIT_KIB": "3000000"}))
    assert both[1].strip() == "3000000", both
    arg = finish(run_launcher(layout, "py", prefix, code, opts=("--mem-kib", "3500000"),
                              env={"ENVMGR_MEM_LIMIT_KIB": "9000000"}))
    assert arg[1].strip() == "3500000", arg
    bad = finish(run_launcher(layout, "py", prefix, code, env={"ENVMGR_MEM_LIMIT_KIB": "3G"}))
    assert bad[0] == 64 and "ENVMGR_MEM_LIMIT_KIB" in bad[2]


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_arguments_pass_through_unevaluated(layout, tmp_path, shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    prefix = make_build(layout, "py", build_id(1))
    nasty = ("a b", "$(touch pwned)", "`touch pwned`", "*", "'\"\\", "line\nbreak", "",
             "-e", "x@PREFIX@y@PREFIX@", "${HOME}")
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    rc, out, err = finish(run_launcher(layout, "py", prefix, code, shell=shutil.which(shell),
                                       args=nasty, cwd=tmp_path))
    assert rc == 0, err
    real = realprefix(layout, "py", build_id(1))
    expected = [arg.replace("@PREFIX@", real) for arg in nasty]
    assert json.loads(out) == expected
    assert not (tmp_path / "pwned").exists()


# -- leases ------------------------------------------------------------------------


def test_lease_held_while_kernel_runs(layout, kernels_dir, kernels):
    a = build_id(1)
    make_build(layout, "py", a)
    flip_latest(layout, "py", a)
    sync_family_kernels(kernels_dir, layout, family("py", a))
    lease_file = layout.lease_file("py", a)
    assert lease.probe(lease_file) is False

    k = kernels(kernels_dir, "py-latest")
    assert lease.probe(lease_file) is True
    held = lease.holders(lease_file)
    assert k.pid in held.pids and held.locked_here and held.complete
    assert lease.probe(lease_file) is True, "probing must not disturb the lease"

    k.run(f"import os; os.chdir({str(layout.prefix('py', a))!r})")
    assert k.pid in procscan.prefix_users(layout.prefix("py", a)).pids

    k.km.shutdown_kernel()
    assert lease.probe(lease_file) is False
    assert lease.holders(lease_file).pids == ()


def test_sigkill_frees_the_lease_but_forked_children_keep_it(layout, kernels_dir, kernels):
    a = build_id(1)
    make_build(layout, "py", a)
    flip_latest(layout, "py", a)
    sync_family_kernels(kernels_dir, layout, family("py", a))
    lease_file = layout.lease_file("py", a)

    k = kernels(kernels_dir, "py-latest")
    os.kill(k.pid, signal.SIGKILL)
    wait_until(lambda: not k.km.is_alive(), what="the kernel to die")
    assert lease.probe(lease_file) is False

    k = kernels(kernels_dir, "py-latest")
    out, _ = k.run("import os, time\n"
                   "pid = os.fork()\n"
                   "if pid == 0:\n"
                   "    time.sleep(120); os._exit(0)\n"
                   "print(pid)")
    child = int(out)
    try:
        os.kill(k.pid, signal.SIGKILL)
        wait_until(lambda: not k.km.is_alive(), what="the kernel to die")
        assert lease.probe(lease_file) is True, "a forked child inherits fd 9 and the lease"
        assert lease.holders(lease_file).pids == (child,)
    finally:
        os.kill(child, signal.SIGKILL)
    wait_until(lambda: not lease.probe(lease_file), what="the lease to be freed")


def test_probe_never_creates_the_lease_file(layout):
    missing = layout.lease_file("py", build_id(9))
    assert lease.probe(missing) is False
    assert not missing.exists()
    assert lease.holders(missing).pids == ()


def test_leases_are_usable_by_every_user_whatever_the_umask(layout):
    old = os.umask(0o077)
    try:
        lease_file = lease.ensure_lease(layout, "py", build_id(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(lease_file.stat().st_mode) == 0o644
    assert stat.S_IMODE(lease_file.parent.stat().st_mode) == 0o755
    lease_file.write_text("keep")
    lease.ensure_lease(layout, "py", build_id(1))
    assert lease_file.read_text() == "keep", "never truncated"


def test_prefix_users_finds_a_process_running_from_the_prefix(layout):
    prefix = make_build(layout, "py", build_id(1))
    sleeper = prefix / "bin" / "sleep-copy"
    shutil.copy2(shutil.which("sleep"), sleeper)
    proc = subprocess.Popen([str(sleeper), "60"])
    try:
        assert proc.pid in procscan.prefix_users(prefix).pids
        other = make_build(layout, "py", build_id(2))
        assert proc.pid not in procscan.prefix_users(other).pids
    finally:
        proc.kill()
        proc.wait()


# -- the gc protocol ---------------------------------------------------------------


def test_launcher_refuses_a_build_marked_for_deletion(layout, kernels_dir):
    a, b = build_id(1), build_id(2)
    make_build(layout, "py", a)
    make_build(layout, "py", b)
    flip_latest(layout, "py", b)
    plans = desired_kernels(layout, family("py", b, stable=[("2024.1", a, "2024-01-01", "2027-01-01")]),
                            launcher=LAUNCHER)
    stable_argv = [a.replace("{connection_file}", "/nonexistent.json") for a in plans[1].kernel_json["argv"]]

    with lease.mark_deleting(layout, "py", a) as marker:
        assert marker == layout.lease_dir("py") / f"{a}.deleting", "launcher.sh derives the same path"
        proc = subprocess.Popen(stable_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_lock_waiter(layout.lease_file("py", a))  # waits while gc holds EX
    rc, out, err = finish(proc)
    assert (rc, out) == (69, "")
    assert err.strip().splitlines()[-1] == (
        f"envmgr: build {a} of family py is being deleted (release retired); choose another kernel")
    assert marker.exists(), "the marker stays after a successful deletion"

    layout.trash_dir.mkdir(parents=True)
    os.rename(layout.prefix("py", a), layout.trash_dir / a)
    proc = subprocess.run(stable_argv, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 69
    assert f"build {a} of family py no longer exists" in proc.stderr


def test_mark_deleting_is_busy_while_a_kernel_runs_and_undone_on_error(layout, kernels_dir, kernels):
    a, b = build_id(1), build_id(2)
    make_build(layout, "py", a)
    make_build(layout, "py", b)
    flip_latest(layout, "py", a)
    sync_family_kernels(kernels_dir, layout, family("py", a))
    k = kernels(kernels_dir, "py-latest")
    flip_latest(layout, "py", b)
    with pytest.raises(Busy, match="in use by a running kernel"):
        with lease.mark_deleting(layout, "py", a):
            pytest.fail("must not get here")
    assert not lease.deleting_marker(layout, "py", a).exists()
    k.km.shutdown_kernel()

    with pytest.raises(RuntimeError):
        with lease.mark_deleting(layout, "py", a) as marker:
            assert marker.exists()
            raise RuntimeError("rename into trash failed")
    assert not marker.exists(), "a failed deletion leaves the build usable"


def test_mark_deleting_refuses_the_latest_build(layout):
    make_build(layout, "py", build_id(1))
    flip_latest(layout, "py", build_id(1))
    with pytest.raises(UsageError, match="is the latest of family py"):
        with lease.mark_deleting(layout, "py", build_id(1)):
            pytest.fail("must not get here")
    assert not lease.deleting_marker(layout, "py", build_id(1)).exists()


def test_launcher_follows_the_pointer_when_its_build_gets_deleted_while_waiting(layout):
    """Resolved latest=A, blocked on A's lease while gc marks A; latest moved to B meanwhile."""
    a, b = build_id(1), build_id(2)
    make_build(layout, "py", a)
    make_build(layout, "py", b)
    flip_latest(layout, "py", a)
    lease_file = layout.lease_file("py", a)
    gc_fd = os.open(lease_file, os.O_RDWR)
    try:
        fcntl.flock(gc_fd, fcntl.LOCK_EX)  # gc, step 1
        proc = run_launcher(layout, "py", layout.latest_link("py"), "import sys; print(sys.prefix)")
        wait_for_lock_waiter(lease_file)
        flip_latest(layout, "py", b)
        lease.deleting_marker(layout, "py", a).write_text("{}")  # gc, step 2
        layout.trash_dir.mkdir(parents=True, exist_ok=True)
        os.rename(layout.prefix("py", a), layout.trash_dir / a)
    finally:
        os.close(gc_fd)
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert out.strip() == realprefix(layout, "py", b)


def test_lock_wait_is_bounded(layout):
    a = build_id(1)
    prefix = make_build(layout, "py", a)
    fd = os.open(layout.lease_file("py", a), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        rc, _, err = finish(run_launcher(layout, "py", prefix, "print(1)", opts=("--lock-wait", "1")))
        assert rc == 75 and "could not take the lease" in err
        assert time.monotonic() - started < 5
    finally:
        os.close(fd)


def test_missing_lease_is_created_and_unusable_lease_dir_is_explained(layout, tmp_path):
    a = build_id(1)
    prefix = make_build(layout, "py", a)
    layout.lease_file("py", a).unlink()
    rc, out, err = finish(run_launcher(layout, "py", prefix, "print('ok')"))
    assert (rc, out.strip()) == (0, "ok"), err
    assert layout.lease_file("py", a).exists()

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    argv = ["/bin/sh", str(LAUNCHER), "--lease-dir", str(not_a_dir), "--", str(prefix),
            "@PREFIX@/bin/python", "-c", "print('started')"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 66 and "started" not in proc.stdout
    assert f"cannot open lease file {not_a_dir}/{a}.lease" in proc.stderr


def test_launcher_refuses_a_pointer_to_something_that_is_not_a_build(layout):
    a = build_id(1)
    make_build(layout, "py", a)
    flip_latest(layout, "py", a)
    (layout.family_dir("py") / ".staging-x").mkdir()
    flip_latest(layout, "py", ".staging-x")
    rc, _, err = finish(run_launcher(layout, "py", layout.latest_link("py"), "print(1)"))
    assert rc == 69 and "not a published build" in err

    flip_latest(layout, "py", build_id(7))  # dangling
    rc, _, err = finish(run_launcher(layout, "py", layout.latest_link("py"), "print(1)"))
    assert rc == 69 and f"points at build {build_id(7)} of family py, which does not exist" in err


def test_gc_race_never_starts_a_kernel_on_a_deleted_build(layout):
    """gc (thread, real mark_deleting) races launchers (processes) a few dozen times."""
    layout.trash_dir.mkdir(parents=True)
    hold = ("import os, sys\n"
            "print('STARTED', os.path.isdir(sys.prefix), flush=True)\n"
            "sys.stdin.read()\n")
    outcomes: Counter = Counter()
    for i in range(40):
        build = build_id(100 + i)
        prefix = make_build(layout, "race", build)
        result: dict = {}

        def gc(build: str = build, prefix: Path = prefix, result: dict = result) -> None:
            time.sleep(random.uniform(0, 0.012))  # ~ the launcher's time to its lock
            try:
                with lease.mark_deleting(layout, "race", build):
                    os.rename(prefix, layout.trash_dir / build)
                result["deleted"] = True
            except Busy:
                result["deleted"] = False

        proc = run_launcher(layout, "race", prefix, hold, stdin=subprocess.PIPE)
        thread = threading.Thread(target=gc)
        thread.start()
        thread.join(TIMEOUT)
        rc, out, err = finish(proc, stdin=b"")  # the kernel lives until gc has finished
        if out.startswith("STARTED"):
            assert out.split() == ["STARTED", "True"]
            assert result["deleted"] is False, "gc deleted a build a kernel was running on"
            assert prefix.is_dir()
            outcomes["kernel won"] += 1
        else:
            assert result["deleted"] is True
            assert rc == 69, err
            assert ("is being deleted" in err) or ("no longer exists" in err), err
            outcomes["gc won"] += 1
    assert sum(outcomes.values()) == 40
    print(dict(outcomes))


# -- a real jupyter server -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``jupyter server`` on 127.0.0.1 with JUPYTER_PATH pointing at our kernels dir."""

    def __init__(self, tmp: Path, jupyter_path: Path):
        self.port = free_port()
        self.token = uuid.uuid4().hex
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "JUPYTER_PATH": str(jupyter_path),
               "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_DATA_DIR": str(tmp / "data"),
               "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}
        cmd = [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
               f"--ServerApp.root_dir={tmp}", "--KernelSpecManager.ensure_native_kernel=False"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers
        self.log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._up, timeout=TIMEOUT, what="jupyter server to start")

    def _up(self) -> bool:
        assert self.proc.poll() is None, "jupyter server exited"
        try:
            return requests.get(f"{self.base}/api/status", headers=self.headers, timeout=2).ok
        except requests.ConnectionError:
            return False

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def api(self, method: str, path: str, **kw) -> requests.Response:
        resp = requests.request(method, f"{self.base}{path}", headers=self.headers, timeout=TIMEOUT, **kw)
        resp.raise_for_status()
        return resp

    def execute(self, kernel_id: str, code: str) -> str:
        """Run code over the kernel's websocket (the way JupyterLab does); return stdout."""
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels?token={self.token}",
            timeout=TIMEOUT)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                           "session": uuid.uuid4().hex, "version": "5.3",
                           "date": datetime.now(timezone.utc).isoformat()},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }))
            out: list[str] = []
            while True:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id or msg["channel"] != "iopub":
                    continue
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return "".join(out)
        finally:
            ws.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=2)  # first SIGINT asks for confirmation on a tty only
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=TIMEOUT)
        self.log.close()


def _system_kernels() -> set[str]:
    """Kernels installed machine-wide (e.g. Debian's r-cran-irkernel): not ours, not the venv's."""
    from jupyter_core.paths import SYSTEM_JUPYTER_PATH

    return {p.name for d in SYSTEM_JUPYTER_PATH for p in (Path(d) / "kernels").glob("*")
            if (p / "kernel.json").is_file()}


def test_jupyter_server_restart_lands_on_new_latest(layout, kernels_dir, tmp_path):
    a, b = build_id(1), build_id(2)
    make_build(layout, "py", a)
    make_build(layout, "py", b)
    flip_latest(layout, "py", a)
    stable = [("2024.1", a, "2024-01-01", "2027-01-01")]
    sync_family_kernels(kernels_dir, layout, family("py", a, stable=stable))
    make_build(layout, "rb", build_id(3))
    flip_latest(layout, "rb", build_id(3))
    sync_family_kernels(kernels_dir, layout, family("rb", build_id(3)))

    srv = Server(tmp_path, kernels_dir.parent)
    try:
        specs = srv.api("GET", "/api/kernelspecs").json()["kernelspecs"]
        ours = {n for n, s in specs.items() if "envmgr" in s["spec"]["metadata"]}
        assert ours == {"py-latest", "py-2024.1", "rb-latest"}
        assert not set(specs) - ours - {"python3"} - _system_kernels(), \
            "only the dev venv's own kernel and the machine's system-wide kernels besides ours"
        assert specs["py-latest"]["spec"]["display_name"] == "Py · latest"
        assert set(specs["py-latest"]["resources"]) >= {"logo-32x32", "logo-64x64"}

        kernel = srv.api("POST", "/api/kernels", json={"name": "py-latest"}).json()
        assert srv.execute(kernel["id"], PRINT_PREFIX).strip() == realprefix(layout, "py", a)
        assert lease.probe(layout.lease_file("py", a))

        flip_latest(layout, "py", b)
        srv.api("POST", f"/api/kernels/{kernel['id']}/restart")
        assert srv.execute(kernel["id"], PRINT_PREFIX).strip() == realprefix(layout, "py", b)
        wait_until(lambda: not lease.probe(layout.lease_file("py", a)), what="build A's lease to be freed")
        assert lease.probe(layout.lease_file("py", b))

        srv.api("DELETE", f"/api/kernels/{kernel['id']}")
        wait_until(lambda: not lease.probe(layout.lease_file("py", b)), what="build B's lease to be freed")
    finally:
        srv.stop()

