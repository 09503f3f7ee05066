"""The build pipeline: lock, install into staging, compile, smoke-test, publish.

Every step before publication works in ``envs/<family>/.staging-<id>``; the
build becomes visible by one ``rename`` to ``envs/<family>/<id>`` and becomes
the family's latest by one ``os.replace`` of the ``latest`` symlink. A kill at
any instant therefore leaves ``latest`` on a complete, working build, and the
next build of the family (under the same lock) clears what was left behind
(``recover``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from envmgr.catalog import records
from envmgr.audit import audit
from envmgr._internal import _rattler
from envmgr.config import Config
from envmgr.errors import BuildFailed, EnvmgrError
from envmgr.kernels.sync import sync_kernels
from envmgr.familylock import Holder, family_lock
from envmgr.build.failure import record_failure, release_space, reserve_space
from envmgr.fsutil import (
    atomic_symlink,
    atomic_write_json,
    atomic_write_text,
    check_free_space,
    make_read_only_for_others,
    remove_stale_temps,
)
from envmgr._internal._faults import checkpoint
from envmgr.build.outcome import BuildOptions, BuildOutcome, BuildStatus
from envmgr.layout import STAGING_PREFIX, Layout
from envmgr.kernels.lease import ensure_lease
from envmgr.lockfile import PackageSet, diff
from envmgr.lock.solve import HOST_PLATFORM, Lock, read_lock, solve_spec, write_lock
from .notify import notify_build
from envmgr.osfault import step_guard
from envmgr.define.personal import check_quota, prepare_spec
from envmgr.catalog.records import BuildRecord
from envmgr.clock import iso, utcnow
from envmgr.results import Progress, no_progress
from envmgr.define.spec import Spec
from envmgr.config import effective_policy

if TYPE_CHECKING:  # the .pyc cache step loads when a build compiles
    from .pycache import PycReport

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
        self._write(f"{iso(utcnow())} {message}\n")
        self._progress(message)

    def raw(self, text: str) -> None:
        if text:
            self._write(text if text.endswith("\n") else text + "\n")

    def _write(self, text: str) -> None:
        """Best effort: a full disk fails the step that needs the space, not the log line."""
        try:
            self._file.write(text)
            self._file.flush()
        except OSError:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[step] = round(time.monotonic() - start, 3)


def prefix_env(prefix: Path) -> dict[str, str]:
    """A clean environment for running the build's own python (no host leakage).

    Smoke tests write no bytecode: what a prefix holds in ``__pycache__`` is
    exactly what its ``pyc`` policy says (cached, unchecked-hash entries),
    not whatever the smoke test happened to import.
    """
    keep = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER") if k in os.environ}
    return {**keep, "PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


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
                actions.append(remove_staging(entry))
        actions += [f"removed temp {p.name}" for p in remove_stale_temps(family_dir)]
    # records.save's temporary files (gc may be writing one now under its own lock: spare young ones)
    actions += [f"removed temp {p.name}" for p in remove_stale_temps(layout.family_records(family),
                                                                       min_age_seconds=3600)]
    latest = layout.latest_build(family)
    for rec in records.all_records(layout, family):
        published = layout.prefix(family, rec.build_id).is_dir()
        unfinished = rec.status in (records.BUILDING, records.OK) and rec.latest_since is None
        if unfinished and not published and rec.deleted is None:
            records.save(layout, rec.evolve(status=records.INTERRUPTED, finished=iso(utcnow()),
                                            error=f"interrupted during step {rec.step}"))
            actions.append(f"marked {rec.build_id} interrupted (step {rec.step})")
            release_space(layout.record_dir(family, rec.build_id))
        elif unfinished and published and not rec.rolled_back and (latest is None or rec.build_id > latest):
            move_latest(layout, family, rec.build_id, latest)
            actions.append(f"finished publishing {rec.build_id}")
            latest = rec.build_id
    actions += _repair_latest_until(layout, family, latest)
    for action in actions:
        log(f"recovery: {action}")
    return actions


def _repair_latest_until(layout: Layout, family: str, latest: str | None) -> list[str]:
    """Give builds that a kill left without ``latest_until`` the time they were superseded."""
    actions, recs = [], records.all_records(layout, family)
    for rec in recs:
        if rec.latest_since and not rec.latest_until and rec.build_id != latest:
            until = records.superseded_at(rec, recs)
            if until is not None:
                records.update(layout, family, rec.build_id, latest_until=until)
                actions.append(f"recorded when {rec.build_id} stopped being latest ({until})")
    return actions


def remove_staging(entry: Path) -> str:
    """Remove a leftover ``.staging-*`` entry (a symlink is unlinked, never followed); say what happened."""
    if entry.is_symlink() or not entry.is_dir():
        entry.unlink(missing_ok=True)
    else:
        shutil.rmtree(entry, ignore_errors=True)
    if os.path.lexists(entry):
        return f"could not remove stale staging {entry.name} (remove it by hand)"
    return f"removed stale staging {entry.name}"


def move_latest(layout: Layout, family: str, build_id: str, previous: str | None) -> None:
    checkpoint("pointer")
    atomic_symlink(build_id, layout.latest_link(family))
    now = iso(utcnow())
    records.update(layout, family, build_id, status=records.OK, step=None, latest_since=now,
                   latest_until=None)
    checkpoint("pointer-recorded")
    if previous and previous != build_id:
        records.update(layout, family, previous, latest_until=now)


# -- the steps ---------------------------------------------------------------------------

def compile_bytecode(config: Config, spec: Spec, staging: Path, log: BuildLog) -> PycReport | None:
    """The spec's and site's ``pyc`` policy applied to ``staging``: cached entries, misses compiled."""
    policy = effective_policy(config.pyc, spec.pyc)
    if policy.compile == "none":
        return None
    from .pycache import fill_pycache

    log(f"bytecode ({policy.compile}): from the .pyc cache, compiling what it lacks")
    report = fill_pycache(staging, python_of(staging), config.pkgs_dir, policy, prefix_env(staging), log.raw)
    log(f"bytecode: {report.summary()}")
    return report


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


def run_smoke_tests(layout: Layout, lock: Lock, build_id: str, staging: Path, log: BuildLog) -> None:
    """The spec's checks and the kernel start through the launcher, side by side.

    Two processes that are mostly imports; the kernel starts exactly as users will start it
    (the kernelspec to be published, the launcher, the spec's env:, build.kernelsmoke).
    """
    from envmgr.build.kernelsmoke import has_kernel, launcher_smoke_test

    if not has_kernel(lock.spec.kernel, lock.host_set):
        smoke_test(lock.spec, staging, log)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="envmgr-kernel-smoke") as pool:
        kernel_check = pool.submit(launcher_smoke_test, layout, lock.spec, build_id, staging, log)
        try:
            smoke_test(lock.spec, staging, log)
        except BaseException:
            wait([kernel_check])  # the spec's own failure is the one reported
            raise
        kernel_check.result()


def write_record_files(layout: Layout, lock: Lock, build_id: str, command: str) -> None:
    from envmgr.catalog import sbom

    family = lock.spec.name
    atomic_write_text(layout.recorded_spec(family, build_id), lock.spec.source_text)
    write_lock(lock, layout.recorded_lock(family, build_id), command=command)
    atomic_write_json(layout.recorded_packages(family, build_id), lock.host_set.to_json())
    sbom.write_for_lock(layout, family, build_id, lock.records.get(HOST_PLATFORM, []),  # CycloneDX
                        list(lock.spec.channels))  # (envmgr.catalog.sbom, from the files above)


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
        with contextlib.suppress(OSError):  # a full disk must not hide the outcome
            holder.set_step("kernels")
        outcome.kernels = _sync_kernels(config, spec, progress)
        try:
            _write_last_run(layout, spec.name, outcome)
        except OSError as exc:
            outcome.warnings.append(f"last-run.json not written: {exc}")
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
                            hint=exc.hint, timings=timings,
                            message="locking failed; nothing built, latest unchanged")
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
    from envmgr.build.advisory_gate import gate as advisory_gate  # past the unchanged check (start-up)

    gate = advisory_gate(config, lock, previous, progress)  # before installing anything
    if gate.refused:
        return BuildOutcome(spec.name, BuildStatus.FAILED, previous=previous, timings=timings, error=gate.error,
                            error_exit_code=gate.exit_code, advisories=gate.found,
                            message="refused by the advisories policy; nothing built, latest unchanged")
    check_free_space(layout.root, config.min_free_bytes)
    check_quota(config, lock.spec, lock.host_set)  # personal roots: user_quota, before installing anything
    outcome = _build_new(config, lock, options, holder, previous, previous_set, timings, progress)
    outcome.advisories = gate.found
    outcome.warnings += [gate.warning] if gate.warning else []
    return outcome


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
    with step_guard("write the build record", layout.record_dir(family, build_id)):
        records.save(layout, record)
        reserve_space(layout.record_dir(family, build_id))
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
                from .pipinstall import install_pip_packages

                install_pip_packages(config, pip_packages, staging, final, log, log.raw)
        if effective_policy(config.pyc, lock.spec.pyc).compile != "none":
            step("pyc")
            with timed(timings, "pyc"):
                report = compile_bytecode(config, lock.spec, staging, log)
                outcome.pyc = asdict(report) if report else None
        step("smoke")
        with timed(timings, "smoke"):
            run_smoke_tests(layout, lock, build_id, staging, log)
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
            with contextlib.suppress(OSError):
                log.raw(traceback.format_exc())
        _fail(layout, family, build_id, staging, exc, outcome, log)
    finally:
        writer.shutdown(wait=True)
        log.close()
        release_space(layout.record_dir(family, build_id))
    if outcome.status == BuildStatus.BUILT:
        outcome.diff = diff(previous_set, lock.host_set)
        outcome.message = f"built {build_id}: {outcome.diff.summary()}"
    return outcome


def _fail(layout: Layout, family: str, build_id: str, staging: Path, exc: Exception,
          outcome: BuildOutcome, log: BuildLog) -> None:
    """Record the failure (envmgr.build.failure), keep or clear the staged prefix, leave latest alone."""
    leftovers = [staging]
    if layout.latest_build(family) != build_id:  # renamed but never pointed at: not published
        leftovers.append(layout.prefix(family, build_id))
    failure = record_failure(layout, family, build_id, exc, leftovers, log)
    outcome.status, outcome.error, outcome.hint = BuildStatus.FAILED, failure.error.message, failure.error.hint
    outcome.error_exit_code, outcome.failed_step = failure.error.exit_code, failure.step
    outcome.message = f"build {build_id} failed at step {failure.step}; latest unchanged"
    if failure.kept:
        outcome.message += f"; kept for inspection in {failure.kept}"
    if failure.removed:
        outcome.message += "; the staged prefix was removed to free space"
    if failure.note:
        outcome.warnings.append(failure.note)
