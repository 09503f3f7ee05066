"""`envmgr doctor`: is this installation set up so that it is safe to run unattended?

Each check returns name, ok/warn/fail, what it found and how to fix it. Checks
gather every offender (conda-pack style) instead of stopping at the first.
The lock check is a real two-process test on the root's filesystem and the
kernel check really starts each family's latest kernel through its installed
kernelspec, because on shared filesystems only trying tells the truth.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


from envmgr.ops.advisories import doctor_summary
from envmgr.config import Config
from envmgr.errors import EXIT_FAILURE, EXIT_OK, EnvmgrError
from envmgr.kernels.kernelspecs import installed_kernels, kernel_name
from envmgr.layout import LATEST
from envmgr.host.mounts import LockSafety, exported_over_nfs, lock_safety, mount_of, read_mounts
from envmgr.define.spec import load_specs
from envmgr.units import human_bytes

OK, WARN, FAIL = "ok", "warn", "fail"
MAX_LISTED = 10
FLOCK_TIMEOUT = 20
KERNEL_TIMEOUT = 90


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURE if any(c.status == FAIL for c in self.checks) else EXIT_OK

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in (OK, WARN, FAIL)}

    def to_json(self) -> dict[str, Any]:
        return {"checks": [c.to_json() for c in self.checks], "summary": self.counts()}


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- configuration -------------------------------------------------------------------


def config_failed(exc: EnvmgrError) -> DoctorReport:
    """The report when the configuration cannot even be loaded."""
    return DoctorReport([Check("config", FAIL, exc.message, exc.hint or "fix the configuration file")])


def check_config(config: Config) -> Check:
    where = f"{config.source}" if config.source else "built-in defaults (no config file)"
    problems: list[str] = []
    count = 0
    if not config.specs_dir.is_dir():
        problems.append(f"specs_dir {config.specs_dir} does not exist (`envmgr build --all` needs it)")
    else:
        try:
            count = len(load_specs([config.specs_dir]))
        except EnvmgrError as exc:
            problems.append(exc.message)
    problems += _missing_channels(config)
    if problems:
        return Check("config", FAIL, f"{where}: " + _listed(problems),
                     "fix the named keys/files; `envmgr spec check` shows spec problems")
    return Check("config", OK, f"{where}; root {config.root} (from {config.root_source}); "
                 f"{count} spec(s) in {config.specs_dir}")


def _missing_channels(config: Config) -> list[str]:
    """Local (file://) channels must exist: a nightly against a missing mirror fails every build."""
    missing = []
    for name in config.channels:
        url = config.resolve_channel(name)
        if not url.startswith("file://"):
            continue
        path = Path(unquote(urlparse(url).path))
        if not any(path.glob("*/repodata.json")):
            missing.append(f"channel '{name}' ({path}) has no */repodata.json")
    return missing


def check_channels(config: Config) -> Check:
    """Every mapped channel answers with repodata, using the configured credentials."""
    from .channels import probe_channels

    probes = probe_channels(config)
    failed = [p for p in probes if p.error]
    if failed:
        return Check("channels", FAIL, _listed([f"'{p.name}': {p.error}" for p in failed]),
                     next((p.hint for p in failed if p.hint), "") or "fix the channel mapping")
    if not probes:
        return Check("channels", OK, "no channel mapping (specs use URLs or the demo channel)")
    return Check("channels", OK, ", ".join(f"'{p.name}' ({p.packages} noarch names)" for p in probes))


def check_pip_index(config: Config) -> Check:
    """The pip index (or the offline wheel folders) answers, when a spec uses ``pip:``."""
    from .channels import probe_pip_index

    probe = probe_pip_index(config)
    if probe is None:
        return Check("pip-index", OK, "no spec uses pip: and the config sets no index (not probed)")
    if probe.error:
        return Check("pip-index", FAIL, f"{probe.name} {probe.url}: {probe.error}", probe.hint or "")
    what = f"{probe.packages} wheel(s)" if probe.packages else "answers"
    return Check("pip-index", OK, f"{probe.name} {probe.url} {what}")


# -- ownership and permissions -----------------------------------------------------


def _mode_problems(path: Path, owner: int, *, others_read: bool) -> list[str]:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return []
    if stat.S_ISLNK(st.st_mode):
        return []
    out = []
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != owner and st.st_uid != 0:
        out.append(f"{path} is owned by {_user_name(st.st_uid)}, not {_user_name(owner)}")
    if mode & 0o022:
        out.append(f"{path} is writable by {'others' if mode & 0o002 else 'its group'} "
                   f"(mode {mode:04o})")
    need = (0o005 if stat.S_ISDIR(st.st_mode) else 0o004) if others_read else 0
    if need and mode & need != need:
        out.append(f"{path} is not readable by other users (mode {mode:04o})")
    return out


def _shared_tree(config: Config) -> list[tuple[Path, bool]]:
    """(path, must other users read it) for the directories envmgr shares with users."""
    layout = config.layout
    items: list[tuple[Path, bool]] = [(layout.root, True), (layout.envs_dir, True),
                                      (layout.records_dir, True), (layout.stable_dir, True),
                                      (layout.leases_root, True), (layout.locks_dir, False),
                                      (layout.logs_dir, False), (layout.trash_dir, False)]
    for family in layout.families():
        items += [(layout.family_dir(family), True), (layout.lease_dir(family), True)]
        lease_dir = layout.lease_dir(family)
        if lease_dir.is_dir():
            items += [(p, True) for p in sorted(lease_dir.glob("*.lease"))]
    return items


def check_ownership(config: Config) -> Check:
    root = config.layout.root
    if not root.is_dir():
        return Check("ownership", FAIL, f"the root {root} does not exist",
                     "create it as the service account (the first `envmgr build` does)")
    owner = root.stat().st_uid
    problems = [p for path, read in _shared_tree(config)
                for p in _mode_problems(path, owner, others_read=read)]
    me = os.geteuid()
    notes = []
    if me == owner:
        for path in (config.layout.envs_dir, config.layout.records_dir, config.layout.locks_dir):
            if path.exists() and not os.access(path, os.W_OK):
                problems.append(f"{path} is not writable by the service account {_user_name(owner)}")
    elif me != 0:
        notes.append(f"you are {_user_name(me)}; the root belongs to {_user_name(owner)}: run doctor "
                     "as the service account to check write access too")
    fix = (f"as {_user_name(owner)}: chown -R {_user_name(owner)} {root}; chmod -R go-w,o+rX {root} "
           f"(leases must stay readable by every user)")
    if problems:
        return Check("ownership", FAIL, _listed(problems), fix)
    detail = f"service account {_user_name(owner)} owns {root}; users can read, only it can write"
    return Check("ownership", WARN if notes else OK, "; ".join([detail, *notes]),
                 "sudo -u <service account> envmgr doctor" if notes else "")


def check_reachable(config: Config) -> Check:
    """Every parent of the root and of the kernels dir must let other users through (o+x).

    A root under a 0700 home directory works for the service account and for
    nobody else: kernels of other users fail with "permission denied".
    """
    blocked = []
    for target in (config.layout.root, Path(config.kernels_dir)):
        for parent in Path(os.path.abspath(target)).parents:
            try:
                mode = parent.stat().st_mode
            except OSError:
                continue
            if not mode & stat.S_IXOTH:
                blocked.append(f"{parent} (mode {stat.S_IMODE(mode):04o}) blocks other users from {target}")
    blocked = list(dict.fromkeys(blocked))
    if blocked:
        return Check("reachable", FAIL, _listed(blocked),
                     "chmod o+x on the named directories, or move the root/kernels dir")
    return Check("reachable", OK, "other users can reach the root and the kernels dir")


def check_prefixes(config: Config) -> Check:
    """Published prefixes: readable by users, writable by nobody but the service account."""
    layout = config.layout
    if not layout.root.is_dir():
        return Check("prefix-permissions", WARN, "no root yet", "")
    owner = layout.root.stat().st_uid
    problems, count = [], 0
    for family in layout.families():
        for build_id in layout.published_builds(family):
            count += 1
            problems += [p for path in _prefix_sample(layout.prefix(family, build_id))
                         for p in _mode_problems(path, owner, others_read=True)]
    if problems:
        return Check("prefix-permissions", FAIL, _listed(problems),
                     "chmod -R go-w,o+rX on the named prefixes (builds do this before publishing)")
    return Check("prefix-permissions", OK, f"{count} published build(s): read-only for users")


def _prefix_sample(prefix: Path) -> list[Path]:
    """The prefix, its top directories, bin/ entries and site-packages: cheap but telling."""
    paths = [prefix]
    for sub in ("bin", "lib", "share", "conda-meta"):
        paths.append(prefix / sub)
    bin_dir = prefix / "bin"
    if bin_dir.is_dir():
        paths += sorted(bin_dir.iterdir())[:200]
    paths += sorted((prefix / "lib").glob("python3*/site-packages"))
    return paths


def check_kernels_dir(config: Config) -> Check:
    kdir = Path(config.kernels_dir)
    if not kdir.is_dir():
        return Check("kernelspecs", WARN, f"{kdir} does not exist yet",
                     "the first successful build writes the kernelspecs")
    owner = config.layout.root.stat().st_uid if config.layout.root.is_dir() else os.geteuid()
    problems = _mode_problems(kdir, owner, others_read=True)
    names = installed_kernels(kdir)
    for name in names:
        problems += _mode_problems(kdir / name, owner, others_read=True)
        problems += _mode_problems(kdir / name / "kernel.json", owner, others_read=True)
    launchers = sorted((kdir / ".envmgr").glob("launcher-*.sh"))
    for launcher in launchers:
        problems += _mode_problems(launcher, owner, others_read=True)
    if problems:
        return Check("kernelspecs", FAIL, _listed(problems), f"chmod -R go-w,o+rX {kdir}")
    return Check("kernelspecs", OK, f"{len(names)} envmgr kernelspec(s) in {kdir}, readable by users")


def check_jupyter_path(config: Config) -> Check:
    from jupyter_core.paths import jupyter_path

    kdir = os.path.realpath(config.kernels_dir)
    searched = jupyter_path("kernels")
    if any(os.path.realpath(p) == kdir for p in searched):
        return Check("jupyter-path", OK, f"{config.kernels_dir} is on Jupyter's kernel path here "
                     "(check the single-user servers' environment too)")
    parent = Path(config.kernels_dir).parent
    return Check("jupyter-path", FAIL, f"{config.kernels_dir} is not on Jupyter's kernel path "
                 f"({', '.join(searched[:4])}, ...): notebooks will not list envmgr kernels",
                 f"set JUPYTER_PATH={parent} for every single-user server (spawner environment), "
                 "or set kernels_dir to a directory Jupyter already searches")


# -- locking ------------------------------------------------------------------------------

_HOLD = ("import fcntl, os, struct, sys\n"  # what launcher.sh's helper does: OFD read lock
         "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
         "fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_RDLCK, 0, 0, 0, 0))\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n")
_TRY = ("import errno, fcntl, os, struct, sys\n"  # what gc does: OFD write lock
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n"
        "    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))\n"
        "except OSError as exc:\n"
        "    print('blocked' if exc.errno in (errno.EAGAIN, errno.EACCES) else 'error: ' + exc.strerror)\n"
        "else:\n"
        "    print('acquired')\n")


def _try_exclusive(path: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", _TRY, str(path)], capture_output=True, text=True,
                          timeout=FLOCK_TIMEOUT)
    return proc.stdout.strip() or f"error: {proc.stderr.strip()[-300:]}"


def flock_between_processes(directory: Path) -> tuple[bool, str]:
    """One process holds an OFD read lock (as a kernel does); another's write lock must fail.

    After the holder exits the exclusive lock must succeed. Returns (works, what happened).
    """
    probe = directory / f".doctor-flock-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    probe.write_bytes(b"")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(probe)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if holder.stdout is None or holder.stdout.readline().strip() != "locked":
            return False, f"the holder could not take a shared lock: {holder.communicate()[1][-300:]}"
        while_held = _try_exclusive(probe)
        holder.communicate("", timeout=FLOCK_TIMEOUT)
        after = _try_exclusive(probe)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        probe.unlink(missing_ok=True)
    if while_held == "blocked" and after == "acquired":
        return True, "a shared lock in one process blocked an exclusive one in another, and was " \
                     "released when its process ended"
    if while_held == "acquired":
        return False, "an exclusive lock succeeded while another process held a shared one: " \
                      "flock does not work here, leases cannot protect running kernels"
    return False, f"while held: {while_held}; after release: {after}"


def check_flock(config: Config) -> Check:
    directory = config.layout.locks_dir if config.layout.locks_dir.is_dir() else config.layout.root
    if not directory.is_dir():
        return Check("flock", FAIL, f"{directory} does not exist", "create the root first")
    try:
        works, detail = flock_between_processes(directory)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("flock", FAIL, f"could not run the lock test in {directory}: {exc}",
                     "run doctor as the service account")
    if works:
        return Check("flock", OK, f"{directory}: {detail}")
    return Check("flock", FAIL, f"{directory}: {detail}",
                 "put the root on a filesystem with working flock (NFS: lockd/statd running, "
                 "no local_lock; Lustre: -o flock)")


def check_flock_command() -> Check:
    """The launcher's lease helper: the Python that takes each kernel's OFD read lock."""
    override = os.environ.get("ENVMGR_LOCK_PYTHON")
    found = override or ("/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK)
                         else shutil.which("python3"))
    if found and os.access(found, os.X_OK):
        return Check("lease-helper", OK, f"{found} (the kernel launcher takes leases with it)")
    return Check("lease-helper", FAIL, "no Python for the launcher's lease helper "
                 "(ENVMGR_LOCK_PYTHON, /usr/bin/python3, python3 on PATH): no envmgr kernel can start",
                 "install python3 on every host that runs kernels, or set ENVMGR_LOCK_PYTHON in the "
                 "spawner's environment")


def check_filesystem(config: Config, mounts_text: str | None = None,
                     exports_text: str | None = None) -> Check:
    mount = mount_of(config.root, read_mounts(mounts_text))
    safety: LockSafety = lock_safety(mount)
    options = f" [{','.join(mount.options)}]" if mount else ""
    export = exported_over_nfs(config.root, exports_text)
    if export is not None and mount is not None and not mount.network:
        return Check("filesystem", WARN, f"{safety.detail}{options}; but this host exports {export} "
                     "over NFS: locks taken here on the local path do not see the POSIX locks "
                     "of kernels on NFS clients",
                     "run builds and gc on a host that mounts the root over NFS, like the kernel hosts")
    return Check("filesystem", safety.level, safety.detail + options, safety.fix)


def check_free_space(config: Config) -> Check:
    probe = config.root if config.root.exists() else config.root.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = config.min_free_bytes
    detail = f"{human_bytes(free)} free on {probe}; a build needs {human_bytes(need)} (min_free_space)"
    if free < need:
        return Check("free-space", FAIL, detail, "run `envmgr gc`, grow the volume, or lower min_free_space")
    if free < 2 * need:
        return Check("free-space", WARN, detail, "run `envmgr gc` or grow the volume soon")
    return Check("free-space", OK, detail)


# -- kernels ----------------------------------------------------------------------------


def check_kernel(config: Config, family: str) -> Check:
    """Start the family's latest kernel through its installed kernelspec and run a cell."""
    from envmgr.build.kernelcheck import run_cell

    name = kernel_name(family, LATEST)
    latest = config.layout.latest_build(family)
    if name not in installed_kernels(Path(config.kernels_dir), family):
        return Check(f"kernel {name}", FAIL, f"no kernelspec {name} in {config.kernels_dir}",
                     f"`envmgr build {family}` rewrites the family's kernelspecs")
    expected = os.path.realpath(config.layout.prefix(family, latest or "?"))
    try:
        result = run_cell((), kernels_dir=Path(config.kernels_dir), kernel_name=name,
                          timeout=KERNEL_TIMEOUT)
    except EnvmgrError as exc:
        return Check(f"kernel {name}", FAIL, exc.message,
                     f"read the latest build log (`envmgr builds {family}`); roll back with "
                     f"`envmgr rollback {family}`")
    if os.path.realpath(result.prefix) != expected:
        return Check(f"kernel {name}", FAIL, f"the kernel ran in {result.prefix}, not in latest "
                     f"{expected}", f"`envmgr build {family}` re-syncs the kernelspec")
    return Check(f"kernel {name}", OK, f"started and ran a cell in {result.seconds} s in {latest}")


def kernel_checks(config: Config) -> list[Check]:
    return [check_kernel(config, f) for f in config.layout.families() if config.layout.latest_build(f)]


# -- all of it ----------------------------------------------------------------------------


def run_doctor(config: Config, *, kernels: bool = True, mounts_text: str | None = None,
               exports_text: str | None = None,
               progress: Callable[[str], None] = lambda _m: None) -> DoctorReport:
    """Run every check; never stops at the first failure."""
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("config", lambda: check_config(config)),
        ("channels", lambda: check_channels(config)),
        ("pip index", lambda: check_pip_index(config)),
        ("ownership", lambda: check_ownership(config)),
        ("reachability", lambda: check_reachable(config)),
        ("prefix permissions", lambda: check_prefixes(config)),
        ("kernelspecs", lambda: check_kernels_dir(config)),
        ("Jupyter path", lambda: check_jupyter_path(config)),
        ("flock between processes", lambda: check_flock(config)),
        ("lease helper", check_flock_command),
        ("filesystem", lambda: check_filesystem(config, mounts_text, exports_text)),
        ("free space", lambda: check_free_space(config)),
        ("advisories", lambda: Check("advisories", *doctor_summary(config))),
    ]
    if kernels:
        steps.append(("kernels", lambda: kernel_checks(config)))
    report = DoctorReport()
    for label, step in steps:
        progress(f"checking {label}")
        found = step()
        report.checks += found if isinstance(found, list) else [found]
    return report
