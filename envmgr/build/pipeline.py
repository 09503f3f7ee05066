"""The build pipeline: lock, install into staging, compile, smoke-test, publish.

Every step before publication works in ``envs/<family>/.staging-<id>``; the
build becomes visible by one ``rename`` to ``envs/<family>/<id>`` and becomes
the family's latest by one ``os.replace`` of the ``latest`` symlink. A kill at
any instant therefore leaves ``latest`` on a complete, working build, and the
next build of the family (under the same lock) clears what was left behind
(``recover``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from envmgr.catalog import records
from envmgr.audit import audit
from envmgr._internal import _rattler
from envmgr.config import Config
from envmgr.errors import BuildFailed, EnvmgrError
from envmgr.kernels.sync import sync_kernels
from envmgr.familylock import Holder, family_lock
from .kernelsmoke import run_kernel_smoke_test
from envmgr.fsutil import (
    atomic_symlink,
    atomic_write_json,
    atomic_write_text,
    check_free_space,
    explain_os_error,
    make_read_only_for_others,
    remove_stale_temps,
)
from envmgr._internal._faults import checkpoint
from envmgr.build.outcome import BuildOptions, BuildOutcome, BuildStatus
from envmgr.layout import FAILED_PREFIX, STAGING_PREFIX, Layout
from envmgr.kernels.lease import ensure_lease
from envmgr.lockfile import PackageSet, diff
from envmgr.lock.solve import HOST_PLATFORM, Lock, read_lock, solve_spec, write_lock
from .notify import notify_build
from .pipinstall import install_pip_packages
from envmgr.define.personal import check_quota, prepare_spec
from envmgr.catalog.records import BuildRecord
from envmgr.clock import iso, utcnow
from envmgr.results import Progress, no_progress
from envmgr.define.spec import Spec

SMOKE_TIMEOUT = 600


# -- helpers -----------------------------------------------------------------------

def new_build_id(layout: Layout, family: str, digest: str) -> str:
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{digest[:6]}"
    candidate, n = base, 1
    while layout.prefix(family, candidate).exists() or layout.record_dir(family, candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


class BuildLog:
    """Writes timestamped lines to the build's log file and forwards them as progress."""

    def __init__(self, path: Path, progress: Progress):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("a", encoding="utf-8")
        self._progress = progress

    def __call__(self, message: str) -> None:
        self._file.write(f"{iso(utcnow())} {message}\n")
        self._file.flush()
        self._progress(message)

    def raw(self, text: str) -> None:
        if text:
            self._file.write(text if text.endswith("\n") else text + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[step] = round(time.monotonic() - start, 3)


def prefix_env(prefix: Path) -> dict[str, str]:
    """A clean environment for running the build's own python (no host leakage)."""
    keep = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER") if k in os.environ}
    return {**keep, "PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}


def python_of(prefix: Path) -> Path:
    return prefix / "bin" / "python"


def site_packages(prefix: Path) -> list[Path]:
    return sorted((prefix / "lib").glob("python3*/site-packages"))


# -- recovery ------------------------------------------------------------------------

def recover(layout: Layout, family: str, log: Progress = no_progress) -> list[str]:
    """Finish or clear what an interrupted build of ``family`` left (caller holds the lock)."""
    actions: list[str] = []
    family_dir = layout.family_dir(family)
    if family_dir.is_dir():
        for entry in family_dir.iterdir():
            if entry.name.startswith(STAGING_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
                actions.append(f"removed stale staging {entry.name}")
        actions += [f"removed temp {p.name}" for p in remove_stale_temps(family_dir)]
    latest = layout.latest_build(family)
    for rec in records.all_records(layout, family):
        published = layout.prefix(family, rec.build_id).is_dir()
        unfinished = rec.status in (records.BUILDING, records.OK) and rec.latest_since is None
        if unfinished and not published and rec.deleted is None:
            records.save(layout, rec.evolve(status=records.INTERRUPTED, finished=iso(utcnow()),
                                            error=f"interrupted during step {rec.step}"))
            actions.append(f"marked {rec.build_id} interrupted (step {rec.step})")
        elif unfinished and published and not rec.rolled_back and (latest is None or rec.build_id > latest):
            move_latest(layout, family, rec.build_id, latest)
            actions.append(f"finished publishing {rec.build_id}")
            latest = rec.build_id
    for action in actions:
        log(f"recovery: {action}")
    return actions


def move_latest(layout: Layout, family: str, build_id: str, previous: str | None) -> None:
    checkpoint("pointer")
    atomic_symlink(build_id, layout.latest_link(family))
    now = iso(utcnow())
    records.update(layout, family, build_id, status=records.OK, step=None, latest_since=now,
                   latest_until=None)
    if previous and previous != build_id:
        records.update(layout, family, previous, latest_until=now)


# -- the steps ---------------------------------------------------------------------------

def compile_bytecode(prefix: Path, final: Path, log: BuildLog) -> None:
    """Compile .pyc for every site-packages file, on all cores, with the final paths.

    Without it the first kernel start pays for compiling (2.3 s vs 0.8 s
    measured here). Directory mode with -j 0 uses every core; a file list would
    run on one. -s/-p rewrite staging paths to the final prefix in tracebacks.
    """
    dirs = [str(p) for p in site_packages(prefix)]
    if not dirs:
        return
    argv = [str(python_of(prefix)), "-m", "compileall", "-q", "-j", "0",
            "-s", str(prefix), "-p", str(final), *dirs]
    proc = subprocess.run(argv, env=prefix_env(prefix), capture_output=True, text=True, timeout=1800)
    log.raw(proc.stdout + proc.stderr)
    if proc.returncode not in (0, 1):  # 1: some file did not compile (e.g. py2-only tests): harmless
        raise BuildFailed(f"compiling bytecode failed (exit {proc.returncode}); see {log.path}")


def smoke_test(spec: Spec, prefix: Path, log: BuildLog) -> None:
    """Run the spec's imports and script with the environment's own python."""
    checks: list[tuple[str, list[str]]] = []
    if spec.smoke_test.imports:
        code = "\n".join(f"import {name}" for name in spec.smoke_test.imports)
        checks.append(("imports", [str(python_of(prefix)), "-c", code]))
    if spec.smoke_test.script:
        checks.append(("script", [str(python_of(prefix)), "-c", spec.smoke_test.script]))
    if not checks and python_of(prefix).exists():  # an R-only environment has no python
        checks.append(("python", [str(python_of(prefix)), "-c", "import sys; print(sys.prefix)"]))
    for what, argv in checks:
        log(f"smoke test: {what}")
        try:
            proc = subprocess.run(argv, env=prefix_env(prefix), capture_output=True, text=True,
                                  timeout=SMOKE_TIMEOUT, cwd=prefix)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"smoke test ({what}) did not finish in {SMOKE_TIMEOUT} s") from None
        log.raw(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise BuildFailed(f"smoke test ({what}) failed with exit {proc.returncode}:\n  "
                              + "\n  ".join(tail), hint=f"full output in {log.path}")


def write_record_files(layout: Layout, lock: Lock, build_id: str, command: str) -> None:
    family = lock.spec.name
    atomic_write_text(layout.recorded_spec(family, build_id), lock.spec.source_text)
    write_lock(lock, layout.recorded_lock(family, build_id), command=command)
    atomic_write_json(layout.recorded_packages(family, build_id), lock.host_set.to_json())


# -- the pipeline -------------------------------------------------------------------------

def latest_package_set(layout: Layout, family: str) -> tuple[str | None, PackageSet | None]:
    latest = layout.latest_build(family)
    return latest, records.package_set(layout, family, latest) if latest else None


def rolled_back_twin(layout: Layout, family: str, new: PackageSet) -> str | None:
    """A build with the same packages that staff rolled back from: don't republish it."""
    for rec in records.all_records(layout, family):
        if rec.rolled_back and rec.lock_digest == new.digest:
            return rec.build_id
    return None


def _lock(config: Config, spec: Spec, options: BuildOptions, progress: Progress) -> Lock:
    if options.from_lock is not None:
        return read_lock(config, spec, options.from_lock, progress)
    return solve_spec(config, spec, progress)


def _write_last_run(layout: Layout, family: str, outcome: BuildOutcome) -> None:
    atomic_write_json(layout.last_run(family),
                      {"when": iso(utcnow()), "status": outcome.status, "build_id": outcome.build_id,
                       "error": outcome.error, "message": outcome.message})


def build_spec(config: Config, spec: Spec, options: BuildOptions = BuildOptions(),
               progress: Progress = no_progress) -> BuildOutcome:
    """Build one family; returns what happened (raises only for usage problems)."""
    spec = prepare_spec(config, spec)  # --user: the personal family user-<name> (envmgr.personal)
    layout = config.layout
    with family_lock(layout, spec.name, wait=options.wait, progress=progress) as holder:
        recover(layout, spec.name, progress)
        outcome = _build_locked(config, spec, options, holder, progress)
        holder.set_step("kernels")
        outcome.kernels = _sync_kernels(config, spec, progress)
        _write_last_run(layout, spec.name, outcome)
    if (warning := notify_build(config, outcome, progress)) is not None:  # after the lock
        outcome.warnings.append(warning)
    return outcome


def _sync_kernels(config: Config, spec: Spec, progress: Progress) -> list[str]:
    """Kernelspecs follow every run (also unchanged ones, to repair an interrupted run).

    A failure here does not undo a published build: the latest kernel follows
    the pointer anyway; the problem is reported and the next run retries.
    """
    try:
        result = sync_kernels(config, spec.name, spec)
    except (EnvmgrError, OSError) as exc:
        message = exc.message if isinstance(exc, EnvmgrError) else str(exc)
        progress(f"warning: kernelspecs of {spec.name} not updated: {message}")
        return []
    if result is None:
        return []
    changed = result.created + result.updated + result.removed
    if changed:
        progress(f"kernelspecs in {config.kernels_dir}: {', '.join(changed)}")
    return sorted(result.created + result.updated + result.unchanged)


def _build_locked(config: Config, spec: Spec, options: BuildOptions, holder: Holder,
                  progress: Progress) -> BuildOutcome:
    layout = config.layout
    timings: dict[str, float] = {}
    holder.set_step("lock")
    checkpoint("solve")
    try:
        with timed(timings, "lock"):
            lock = _lock(config, spec, options, progress)
    except EnvmgrError as exc:
        return BuildOutcome(spec.name, BuildStatus.FAILED, error=exc.message, error_exit_code=exc.exit_code,
                            timings=timings, message="locking failed; nothing built, latest unchanged")
    previous, previous_set = latest_package_set(layout, spec.name)
    if lock.host_set.same_as(previous_set) and not options.force:
        return BuildOutcome(spec.name, BuildStatus.UNCHANGED, build_id=previous, previous=previous,
                            prefix=layout.prefix(spec.name, previous) if previous else None,
                            timings=timings, package_count=len(lock.host_set.packages),
                            message=f"unchanged: the locked packages equal latest build {previous}")
    twin = rolled_back_twin(layout, spec.name, lock.host_set)
    if twin and not options.force:
        return BuildOutcome(spec.name, BuildStatus.HELD, build_id=twin, previous=previous, timings=timings,
                            message=f"held: the locked packages equal {twin}, which was rolled back; "
                                    "use --force to publish them again")
    check_free_space(layout.root, config.min_free_bytes)
    check_quota(config, lock.spec, lock.host_set)  # personal roots: user_quota, before installing anything
    return _build_new(config, lock, options, holder, previous, previous_set, timings, progress)


def _build_new(config: Config, lock: Lock, options: BuildOptions, holder: Holder,
               previous: str | None, previous_set: PackageSet | None,
               timings: dict[str, float], progress: Progress) -> BuildOutcome:
    layout, family = config.layout, lock.spec.name
    build_id = new_build_id(layout, family, lock.host_set.digest)
    record = BuildRecord(family=family, build_id=build_id, status=records.BUILDING,
                         started=iso(utcnow()) or "", spec_hash=lock.spec.content_hash,
                         lock_digest=lock.host_set.digest, package_count=len(lock.host_set.packages),
                         forced=options.force, command=options.command,
                         from_lock=str(options.from_lock) if options.from_lock else None)
    records.save(layout, record)
    log = BuildLog(layout.build_log(family, build_id), progress)
    staging, final = layout.staging(family, build_id), layout.prefix(family, build_id)
    outcome = BuildOutcome(family, BuildStatus.BUILT, build_id=build_id, prefix=final, previous=previous,
                           timings=timings, log=log.path, package_count=len(lock.host_set.packages))

    def step(name: str) -> None:
        holder.set_step(name)
        records.update(layout, family, build_id, step=name)
        checkpoint(name)

    # conda-lock takes ~0.9 s to import: write the record files while rattler installs,
    # bytecode compiles and the smoke test runs.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="envmgr-record")
    try:
        log(f"build {build_id} of {family}: {len(lock.host_set.packages)} packages")
        record_files = writer.submit(write_record_files, layout, lock, build_id, options.command)
        step("install")
        with timed(timings, "install"):
            log(f"installing into {staging}")
            _rattler.install(lock.records[HOST_PLATFORM], staging, config.pkgs_dir, target_prefix=final,
                             requested_specs=list(lock.spec.dependencies))
        if pip_packages := list(lock.host_set.pip_packages):  # after conda: envmgr.pipinstall
            step("pip")
            with timed(timings, "pip"):
                install_pip_packages(config, pip_packages, staging, final, log, log.raw)
        if config.compile_pyc:
            step("pyc")
            with timed(timings, "pyc"):
                log("compiling bytecode")
                compile_bytecode(staging, final, log)
        step("smoke")
        with timed(timings, "smoke"):
            smoke_test(lock.spec, staging, log)
            run_kernel_smoke_test(lock.spec, lock.host_set, staging, prefix_env(staging), log)
        record_files.result()  # the record is complete before anything is published
        make_read_only_for_others(staging)
        ensure_lease(layout, family, build_id)  # before the first kernel can start
        step("record")
        records.update(layout, family, build_id, status=records.OK, finished=iso(utcnow()),
                       timings=timings, step="publish")
        checkpoint("rename")
        os.rename(staging, final)
        log(f"published {final}")
        move_latest(layout, family, build_id, previous)
        log(f"latest of {family} -> {build_id}")
        audit(layout, "publish", family=family, build_id=build_id, previous=previous)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded; latest stays put
        if not isinstance(exc, (EnvmgrError, OSError)):
            log.raw(traceback.format_exc())
        _fail(layout, family, build_id, staging, exc, outcome, log)
    finally:
        writer.shutdown(wait=True)
        log.close()
    if outcome.status == BuildStatus.BUILT:
        outcome.diff = diff(previous_set, lock.host_set)
        outcome.message = f"built {build_id}: {outcome.diff.summary()}"
    return outcome


def _fail(layout: Layout, family: str, build_id: str, staging: Path, exc: Exception,
          outcome: BuildOutcome, log: BuildLog) -> None:
    """Record the failure, keep the staged prefix for inspection, leave latest alone."""
    if isinstance(exc, EnvmgrError):
        error = exc
    elif isinstance(exc, OSError):
        error = explain_os_error(exc, "build failed")
    else:
        error = BuildFailed(f"unexpected error: {type(exc).__name__}: {exc}")
    kept = None
    if staging.is_dir():
        kept = staging.with_name(f"{FAILED_PREFIX}{build_id}")
        os.rename(staging, kept)
    rec = records.load(layout, family, build_id)
    records.update(layout, family, build_id, status=records.FAILED, finished=iso(utcnow()),
                   error=error.message, step=rec.step if rec else None,
                   failed_prefix=str(kept) if kept else None)
    log(f"FAILED: {error.message}")
    outcome.status, outcome.error, outcome.error_exit_code = BuildStatus.FAILED, error.message, error.exit_code
    outcome.message = f"build {build_id} failed; latest unchanged"
    if kept:
        outcome.message += f"; kept for inspection in {kept}"
