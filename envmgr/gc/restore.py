"""`envmgr restore FAMILY BUILD`: bring a garbage-collected build back from its tombstone.

The tombstone (``records/<family>/<build-id>/``) keeps the exact lock, so a
deleted build can come back under its own id, at its own prefix path, with the
same packages: the lock is read, never re-solved, and the packages are looked
up in the configured channels by name, version, build and sha256. The restore
goes through the build's own steps: install into ``.staging-<id>`` with the
final prefix patched in, compile bytecode, smoke test (imports, script, a real
kernel), read-only for others, then one ``rename`` into place. ``latest`` is
never moved. Stable releases of the build that were retired come back with
their kernels (unless their support ended), and so do spec pins on it.

Runs under the family's build lock and the gc lock, so no collector deletes
or tidies the build while it comes back. A kill at any instant leaves either
the tombstone (the next build or restore clears the staging) or the published
prefix (a repeated restore then only finishes the record).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envmgr._internal import _rattler
from envmgr._internal._faults import checkpoint
from envmgr.audit import audit
from envmgr.build.pipeline import BuildLog, compile_bytecode, recover, run_smoke_tests
from envmgr.build.pipinstall import install_pip_packages
from envmgr.catalog import records, stable
from envmgr.clock import iso, utcnow
from envmgr.config import Config
from envmgr.define.spec import load_spec
from envmgr.errors import EXIT_OK, BuildFailed, EnvmgrError, NotFound, UsageError
from envmgr.familylock import family_lock
from envmgr.fsutil import check_free_space, explain_os_error, make_read_only_for_others
from envmgr.gc import trash
from envmgr.gc.collect import gc_lock
from envmgr.kernels import lease, retired
from envmgr.kernels.sync import sync_kernels
from envmgr.layout import BUILD_ID_RE
from envmgr.lock.solve import HOST_PLATFORM, read_lock
from envmgr.results import Progress, no_progress


@dataclass
class RestoreResult:
    family: str
    build_id: str
    prefix: Path
    releases: list[str] = field(default_factory=list)  # stable releases whose kernels came back
    not_restored: list[str] = field(default_factory=list)  # retired releases whose support ended
    kernels: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    exit_code = EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "build_id": self.build_id, "prefix": str(self.prefix),
                "releases": self.releases, "not_restored": self.not_restored,
                "kernels": self.kernels, "timings": self.timings}


def restore(config: Config, family: str, build_id: str, progress: Progress = no_progress) -> RestoreResult:
    layout = config.layout
    record = _tombstone(config, family, build_id)
    with gc_lock(layout), family_lock(layout, family, progress=progress) as holder:
        recover(layout, family, progress)
        if layout.prefix(family, build_id).is_dir():  # an earlier restore was killed after the rename
            progress(f"{family}/{build_id} is already in place; finishing its record")
            timings: dict[str, float] = {}
        else:
            _not_in_trash(config, family, build_id)
            holder.set_step("install")
            timings = _reinstall(config, record, progress)
        _revive_record(layout, family, build_id)
        releases, too_late = _revive_releases(config, family, build_id)
        holder.set_step("kernels")
        synced = sync_kernels(config, family)
    audit(layout, "restore", family=family, build_id=build_id, releases=releases)
    kernels = sorted(synced.created + synced.updated + synced.unchanged) if synced else []
    return RestoreResult(family, build_id, layout.prefix(family, build_id), releases, too_late,
                         kernels, timings)


def _tombstone(config: Config, family: str, build_id: str) -> records.BuildRecord:
    """The record to restore from; refuses anything that is not a good, deleted build."""
    layout = config.layout
    if family not in layout.families():
        raise NotFound(f"no family '{family}' under {layout.root}", hint="`envmgr status` lists the families")
    if not BUILD_ID_RE.match(build_id):
        raise UsageError(f"'{build_id}' is not a build id (e.g. 20261122T021340Z-ab12cd)")
    record = records.load(layout, family, build_id)
    if record is None:
        raise NotFound(f"family '{family}' has no build {build_id}",
                       hint=f"`envmgr builds {family}` lists its builds and tombstones")
    if not record.deleted and layout.prefix(family, build_id).is_dir():
        raise UsageError(f"build {family}/{build_id} is not deleted; there is nothing to restore")
    if record.status != records.OK:
        raise UsageError(f"build {family}/{build_id} {record.status}; only builds that were published "
                         "can be restored", hint="build the spec again instead")
    rec_dir = layout.record_dir(family, build_id)
    absent = [n for n in ("spec.yaml", "conda-lock.yml") if not (rec_dir / n).is_file()]
    if absent:
        raise NotFound(f"the tombstone {rec_dir} has no {' or '.join(absent)}; it cannot be restored")
    return record


def _not_in_trash(config: Config, family: str, build_id: str) -> None:
    for entry in trash.pending(config.layout, config.pkgs_dir):
        if (entry.family, entry.build_id) == (family, build_id):
            raise UsageError(f"the old prefix of {family}/{build_id} is still in the trash ({entry.path})",
                             hint="run `envmgr gc` to finish deleting it, then restore")


def _reinstall(config: Config, record: records.BuildRecord, progress: Progress) -> dict[str, float]:
    """The build's own steps on the recorded lock, into the build's own prefix."""
    layout, family, build_id = config.layout, record.family, record.build_id
    rec_dir = layout.record_dir(family, build_id)
    spec = load_spec(rec_dir / "spec.yaml")
    lock = read_lock(config, spec, rec_dir / "conda-lock.yml", progress)  # exit 3 names what is gone
    if record.lock_digest and lock.host_set.digest != record.lock_digest:
        raise BuildFailed(f"the lock in {rec_dir} does not match the build's recorded packages "
                          f"(digest {lock.host_set.digest[:12]} != {record.lock_digest[:12]})",
                          hint="the tombstone was edited; rebuild with `envmgr build --from-lock` instead")
    check_free_space(layout.root, config.min_free_bytes)
    staging, final = layout.staging(family, build_id), layout.prefix(family, build_id)
    log = BuildLog(rec_dir / "build.log", progress)
    timings: dict[str, float] = {}
    try:
        log(f"restore {build_id} of {family} from its tombstone: {len(lock.host_set.packages)} packages")
        start = time.monotonic()
        _rattler.install(lock.records[HOST_PLATFORM], staging, config.pkgs_dir, target_prefix=final,
                         requested_specs=list(spec.dependencies))
        timings["install"] = round(time.monotonic() - start, 3)
        if pip_packages := list(lock.host_set.pip_packages):  # after conda, as the build did
            install_pip_packages(config, pip_packages, staging, final, log, log.raw)
        compile_bytecode(config, spec, staging, log)  # the pyc policy; entries from the .pyc cache
        # The launcher refuses a build marked for deletion: clear gc's marker before the smoke test.
        lease.deleting_marker(layout, family, build_id).unlink(missing_ok=True)
        lease.ensure_lease(layout, family, build_id)
        start = time.monotonic()
        run_smoke_tests(layout, lock, build_id, staging, log)  # the build's own smoke step
        timings["smoke"] = round(time.monotonic() - start, 3)
        make_read_only_for_others(staging)
        checkpoint("restore-rename")
        os.rename(staging, final)
        checkpoint("restore-renamed")  # in place, record still a tombstone: a repeated restore finishes
        log(f"restored {final}")
    except (EnvmgrError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)  # the tombstone stays as it was
        error = exc if isinstance(exc, EnvmgrError) else explain_os_error(exc, "restore failed")
        log(f"RESTORE FAILED: {error.message}")
        raise error from None
    finally:
        log.close()
    return timings


def _revive_record(layout: Any, family: str, build_id: str) -> None:
    record = records.load(layout, family, build_id)
    if record is None or not record.deleted:
        return
    now, user = iso(utcnow()) or "", getpass.getuser()
    history = (*record.history, {"event": "deleted", "when": record.deleted},
               {"event": "restored", "when": now, "user": user})
    records.save(layout, record.evolve(deleted=None, history=history))


def _revive_releases(config: Config, family: str, build_id: str) -> tuple[list[str], list[str]]:
    """Retired releases of this build get their kernels back while their support lasts."""
    back, too_late = [], []
    today = dt.date.today()
    for entry in retired.load(Path(config.kernels_dir)).values():
        if entry.family != family or entry.build_id != build_id:
            continue
        until = dt.date.fromisoformat(entry.until) if entry.until else None
        if until is None or until < today:
            too_late.append(entry.release)
            continue
        stable.record_promotion(config.layout, family, entry.release, build_id, until)
        back.append(entry.release)
    return sorted(back), sorted(too_late)
