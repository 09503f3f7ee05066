"""The status cache (envmgr/ops/statuscache.py): a cached status is the status.

Each test compares ``collect_status`` served from the cache with the same call
computed afresh (``ENVMGR_NO_CACHE=1``) at the same moment, on a synthetic root
written by envmgr's own writers (records.save, the latest link, promotions, the
last-run file, gc), with a real lock holder and a real lease holder. Entries
are stored only once their inputs are ``RACY_SECONDS`` old, so the tests wait
that long where they need hits.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envmgr.build.pipeline import move_latest, recover
from envmgr.catalog import records
from envmgr.catalog.governing import family_spec, spec_index
from envmgr.catalog.records import BuildRecord
from envmgr.catalog.stable import record_promotion
from envmgr.config import Config, load_config
from envmgr.familylock import family_lock
from envmgr.fsutil import TMP_MARK, atomic_symlink, atomic_write_json
from envmgr.gc import collect as gc
from envmgr.host.procscan import ProcessScan
from envmgr.kernels import lease
from envmgr.layout import Layout
from envmgr.ops import status, statuscache
from envmgr.ops.statuscache import RACY_SECONDS, StatusCache

from .conftest import write_config

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
TODAY = NOW.date()
SPEC = """\
name: {name}
display_name: {display}
group: {group}
channels: [demo]
dependencies: [python 3.*, ipykernel]
"""
FAMILIES = ("alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota")


def bid(day: int, n: int) -> str:
    return f"202611{day:02d}T020000Z-{n:06x}"


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Site:
    def __init__(self, tmp: Path) -> None:
        self.specs = tmp / "specs"
        self.specs.mkdir()
        self.path = write_config(tmp / "config.yaml", root=tmp / "root", specs_dir=self.specs,
                                 kernels_dir=tmp / "kernels", pkgs_dir=tmp / "pkgs",
                                 retention={"keep_previous": 1, "grace_days": 7, "failed_days": 3})
        self.config: Config = load_config(config_path=self.path, environ={})
        self.layout: Layout = self.config.layout
        self.serial = 0

    def spec(self, name: str, display: str | None = None, group: str = "Team") -> None:
        (self.specs / f"{name}.yaml").write_text(SPEC.format(name=name, display=display or name.title(),
                                                             group=group))

    def build(self, family: str, day: int, *, status: str = records.OK, failed: bool = False,
              finished: dt.datetime | None = None, publish: bool = True) -> str:
        """A build as the pipeline leaves it: record, prefix (renamed into place), latest moved."""
        self.serial += 1
        build_id = bid(day, self.serial)
        when = iso(finished or dt.datetime(2026, 11, day, 2, 5, tzinfo=dt.timezone.utc))
        records.save(self.layout, BuildRecord(family=family, build_id=build_id, status=status,
                                              started=when, finished=when, package_count=10))
        spec_text = (self.specs / f"{family}.yaml")
        recorded = self.layout.recorded_spec(family, build_id)
        recorded.write_text(spec_text.read_text() if spec_text.exists()
                            else SPEC.format(name=family, display=f"{family} as built {day}", group="Rec"))
        staging = self.layout.staging(family, build_id)
        staging.mkdir(parents=True)
        if failed:
            staging.rename(self.layout.family_dir(family) / f".failed-{build_id}")
        elif publish:
            staging.rename(self.layout.prefix(family, build_id))
            move_latest(self.layout, family, build_id, self.layout.latest_build(family))
        return build_id


def report(site: Site, monkeypatch: pytest.MonkeyPatch, *, cached: bool, now: dt.datetime = NOW,
           **kw) -> tuple[dict, int]:
    """(families by name, served from the cache) of one status call at ``now``."""
    if cached:
        monkeypatch.delenv("ENVMGR_NO_CACHE", raising=False)
    else:
        monkeypatch.setenv("ENVMGR_NO_CACHE", "1")
    rep = status.collect_status(site.config, disk=False, now=now, today=now.date(), **kw)
    monkeypatch.delenv("ENVMGR_NO_CACHE", raising=False)
    doc = json.loads(json.dumps(rep.to_json()))
    return {f["family"]: f for f in doc["families"]}, rep.cached_families


def agree(site: Site, monkeypatch: pytest.MonkeyPatch, now: dt.datetime = NOW) -> tuple[dict, int]:
    """The cached report equals the fresh one; returns it and how many entries were cached."""
    cached, hits = report(site, monkeypatch, cached=True, now=now)
    fresh, _ = report(site, monkeypatch, cached=False, now=now)
    assert cached == fresh
    return cached, hits


def settle() -> None:
    """Let every input become older than the racy window, so entries are stored."""
    time.sleep(RACY_SECONDS + 0.2)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = Site(tmp_path)
    for name in FAMILIES:
        if name != "theta":  # theta is governed by its recorded spec
            s.spec(name)
        for day in (1, 2, 3):
            s.build(name, day)
    return s


@pytest.fixture
def lease_holder(site: Site) -> Iterator[subprocess.Popen]:
    """A process holding zeta's latest lease as the launcher does (a shared lock)."""
    build_id = site.layout.latest_build("zeta")
    path = lease.ensure_lease(site.layout, "zeta", build_id)
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_SH); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)])  # one process: kill frees it
    deadline = time.monotonic() + 10
    while not lease.probe(path):
        assert time.monotonic() < deadline, "the lease holder did not take its lock"
        time.sleep(0.05)
    yield holder
    holder.kill()
    holder.wait()


def test_every_change_to_a_family_is_seen_and_unchanged_families_come_from_the_cache(
        site: Site, monkeypatch: pytest.MonkeyPatch, lease_holder: subprocess.Popen) -> None:
    layout = site.layout
    settle()
    first, hits = agree(site, monkeypatch)
    assert hits == 0  # nothing stored yet
    again, hits = agree(site, monkeypatch)
    assert hits == len(FAMILIES) and again == first
    assert first["zeta"]["latest"]["in_use"] is True and first["zeta"]["kernels"]

    # One change per family, each through the writer that makes it in real life.
    mutated_at = time.monotonic()
    site.build("alpha", 4)  # a new build, published: latest moves
    records.update(layout, "beta", layout.latest_build("beta"), package_count=11)  # same size, renamed
    record_promotion(layout, "gamma", "2026.1", layout.published_builds("gamma")[0], dt.date(2029, 1, 1))
    site.spec("delta", display="Delta renamed")  # staff edit the spec in place
    site.build("eps", 4, status=records.FAILED, failed=True)  # a failed build kept for inspection
    lease_holder.kill()  # zeta's kernel stops
    lease_holder.wait()
    atomic_write_json(layout.last_run("eta"), {"status": "failed", "when": iso(NOW), "error": "solver: boom"})
    site.build("theta", 4)  # its recorded spec now comes from the new latest
    with family_lock(layout, "iota") as holder:  # iota is being built (live: never cached)
        holder.set_step("solve")
        changed, hits = agree(site, monkeypatch)
        assert changed["iota"]["building"]["step"] == "solve"
    for name in FAMILIES:
        if name != "iota":
            assert changed[name] != first[name], f"{name}: the change did not show, so the test proves nothing"
    assert changed["beta"]["latest"]["package_count"] == 11
    assert changed["delta"]["display_name"] == "Delta renamed"
    assert changed["theta"]["display_name"] == "theta as built 4"
    assert changed["zeta"]["latest"]["in_use"] is False
    assert hits == 1  # iota: who builds it is probed live; the rest of its entry is unchanged
    # What was written this instant is not stored yet (racy): only iota and zeta (a lock released
    # writes nothing) come from the cache on the next call (unless a loaded machine took longer
    # than the racy window to get here: then the entries were rightly stored).
    hits = agree(site, monkeypatch)[1]
    if time.monotonic() - mutated_at < RACY_SECONDS:
        assert hits == 2

    settle()
    agree(site, monkeypatch)
    final, hits = agree(site, monkeypatch)
    assert hits == len(FAMILIES)
    assert final["iota"]["building"] is None


def test_gc_and_time_passing_are_seen(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = site.layout
    old = layout.published_builds("alpha")[0]
    retired = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
    records.update(layout, "alpha", old, latest_until=iso(retired), rolled_back=True)  # grace till 12-05
    grace_end = retired + dt.timedelta(days=7)
    settle()
    before = grace_end - dt.timedelta(minutes=1)
    agree(site, monkeypatch, now=before)
    waiting, hits = agree(site, monkeypatch, now=before)
    assert hits == len(FAMILIES)
    entry = next(w for w in waiting["alpha"]["gc_waiting"] if w["build_id"] == old)
    assert entry["action"] == "keep" and entry["reasons"][0]["code"] == "grace"

    after = grace_end + dt.timedelta(minutes=1)  # the grace period ends: not from the cache
    expired, hits = agree(site, monkeypatch, now=after)
    assert hits == len(FAMILIES) - 1
    assert next(w for w in expired["alpha"]["gc_waiting"] if w["build_id"] == old)["action"] == "delete"
    moved = expired["beta"]["latest"]["age_seconds"] - waiting["beta"]["latest"]["age_seconds"]
    assert moved == (after - before).total_seconds()  # a cached entry's ages move with the clock

    gc.collect(site.config, now=after, prune=False)  # a real gc deletes what expired
    collected, _ = agree(site, monkeypatch, now=after)
    assert not any(w["build_id"] == old for w in collected["alpha"]["gc_waiting"])

    tomorrow, hits = agree(site, monkeypatch, now=after + dt.timedelta(days=1))
    assert hits == 0  # days left of stable releases move at midnight: a new day starts afresh


def test_every_file_an_entry_reads_is_in_its_key(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit hooks see every open and listing made while a family's entry is computed."""
    record_promotion(site.layout, "beta", "2026.1", site.layout.published_builds("beta")[0],
                     dt.date(2029, 1, 1))
    site.build("beta", 4, status=records.FAILED, failed=True)
    atomic_write_json(site.layout.last_run("beta"), {"status": "built", "when": iso(NOW)})
    lease.ensure_lease(site.layout, "beta", site.layout.latest_build("beta"))
    seen: list[tuple[str, str]] = []
    watching = False

    def hook(event: str, args: tuple) -> None:
        if watching and event in ("open", "os.listdir", "os.scandir") and args and args[0] is not None:
            seen.append((event, os.fsdecode(args[0]) if not isinstance(args[0], int) else ""))

    sys.addaudithook(hook)
    root = os.fspath(site.layout.root)
    for family in ("beta", "theta"):
        cache = StatusCache(site.config, TODAY)
        key = cache.key(family)
        choice = family_spec(site.config, family, spec_index(site.config))
        seen.clear()
        watching = True
        try:
            status._compute(site.config, family, choice, NOW, TODAY, ProcessScan())
        finally:
            watching = False
        records_dir = f"{root}/records/{family}/"
        for event, path in seen:
            if not path.startswith(root):
                continue  # the interpreter's own files
            inside = path[len(records_dir):].split("/") if path.startswith(records_dir) else []
            # records.save renames every build.json from records/<family>/, and last-run.json is
            # replaced there: the folder's stat in the key stands for both
            by_folder = event == "open" and (inside == ["last-run.json"]
                                             or (len(inside) == 2 and inside[1] == "build.json"))
            covered = (path in key.files or path in key.folders or by_folder
                       or path.startswith(f"{root}/leases/")  # probed live on every call
                       or path == os.fspath(site.layout.advisories_check))  # in the file's site key
            assert covered, f"{family}: {event} {path} is read but not in the status cache's key"
        assert f"{root}/records/{family}" in key.folders and f"{root}/envs/{family}" in key.folders


def test_a_record_replaced_changes_its_family_folder(site: Site) -> None:
    """records.save renames from records/<family>/: the folder's stat is a key for all its records."""
    folder = site.layout.family_records("beta")
    before = folder.stat()
    time.sleep(0.05)  # past the filesystem's timestamp tick
    records.update(site.layout, "beta", site.layout.published_builds("beta")[0], package_count=11)
    after = folder.stat()
    assert after.st_mtime_ns > before.st_mtime_ns and after.st_ino == before.st_ino
    assert not [p for p in folder.iterdir() if TMP_MARK in p.name]


def test_a_stale_temporary_record_is_removed_by_the_next_build_only_when_old(site: Site) -> None:
    folder = site.layout.family_records("beta")
    young, old = folder / f".build.json{TMP_MARK}young", folder / f".build.json{TMP_MARK}old"
    young.write_text("{")
    old.write_text("{")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    with family_lock(site.layout, "beta"):
        actions = recover(site.layout, "beta")
    assert not old.exists() and young.exists()  # a young one may be gc's write in progress
    assert any(old.name in a for a in actions)


def test_a_cache_file_someone_else_may_write_is_ignored_and_garbage_is_replaced(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    settle()
    agree(site, monkeypatch)
    path = statuscache._store_path(site.config)
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    assert agree(site, monkeypatch)[1] == len(FAMILIES)
    os.chmod(path, 0o620)  # group-writable: another account could steer what status says
    assert agree(site, monkeypatch)[1] == 0
    path.write_bytes(b"\x00not json")
    os.chmod(path, 0o600)
    assert agree(site, monkeypatch)[1] == 0
    assert agree(site, monkeypatch)[1] == len(FAMILIES)  # rewritten by the call before
    doc = json.loads(path.read_text())
    for entry in doc["families"].values():  # well-formed JSON, damaged entries: computed afresh
        entry["status"].pop("gc_waiting")
    path.write_text(json.dumps(doc))
    assert agree(site, monkeypatch)[1] == 0


def test_refresh_recomputes_and_processes_bypass(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    settle()
    agree(site, monkeypatch)
    assert report(site, monkeypatch, cached=True, refresh_disk=True)[1] == 0
    assert report(site, monkeypatch, cached=True, processes=True)[1] == 0
    assert report(site, monkeypatch, cached=True)[1] == len(FAMILIES)
