"""Garbage collection: the pure planner, then real prefixes, real leases, real launchers.

Builds are expensive (3-5 s), so one real build per module serves as the
template: further builds are *clones* of it (``cp -al``: the same hardlinked
files a real build shares with the package cache, a copied record under a new
build id, its own lease). Kernels are real processes started by launcher.sh
running the prefix's python (or, for the must-show, a real ipykernel started
by jupyter_client from the kernelspec the build wrote).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from filelock import FileLock

from envmgr.gc import collect as gc
from envmgr.kernels import lease
from envmgr.catalog import records
from envmgr.catalog import stable
from envmgr.gc import trash
from envmgr.build.pipeline import move_latest
from envmgr.kernels import retired
from envmgr.config import RetentionPolicy, load_config
from envmgr.familylock import family_lock
from envmgr.catalog.inventory import BuildInfo, FamilyView
from envmgr.layout import Layout
from envmgr.catalog.records import BuildRecord
from envmgr.clock import iso
from envmgr.catalog.governing import expiring_releases
from envmgr.gc.retention import FamilyInput, RetentionRules, Usage, effective_policy, plan_family
from envmgr.define.spec import Retention

from .conftest import json_of, run_envmgr, write_config, write_spec
from .test_launcher import LAUNCHER, Kernel, wait_until

pytestmark = pytest.mark.slow

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
HOLD = "import sys; print('STARTED', sys.prefix, flush=True); sys.stdin.read()"


def bid(n: int, base: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) -> str:
    return (base + dt.timedelta(hours=n)).strftime("%Y%m%dT%H%M%SZ") + "-abcdef"


# == the planner (pure: synthetic views) =================================================


def rec(n: int, status: str = "ok", **kw) -> BuildRecord:
    started = iso(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=n))
    return BuildRecord(family="fam", build_id=bid(n), status=status, started=started,
                       finished=started, **kw)


def view(recs: list[BuildRecord], latest: int | None, releases=(), published=None) -> FamilyView:
    latest_id = bid(latest) if latest is not None else None
    infos = tuple(BuildInfo(r, published=(published or {}).get(r.build_id, r.status == "ok"),
                            latest=r.build_id == latest_id,
                            releases=tuple(x.release for x in releases if x.build_id == r.build_id))
                  for r in recs)
    return FamilyView("fam", latest_id, infos, tuple(releases))


def decisions(plan) -> dict[str, tuple[str, list[str]]]:
    return {d.build_id: (d.action, [r.code for r in d.reasons]) for d in plan.decisions}


def test_planner_rules_each_keep_reason_and_expiry():
    day = dt.timedelta(days=1)
    retired = lambda days_ago: iso(NOW - days_ago * day)  # noqa: E731
    recs = [
        rec(1, latest_since=retired(400), latest_until=retired(300)),  # old: expired
        rec(2, latest_since=retired(300), latest_until=retired(200)),  # stable until the future
        rec(3, latest_since=retired(200), latest_until=retired(100)),  # stable, support ended
        rec(4, latest_since=retired(100), latest_until=retired(50)),   # pinned by hand
        rec(5, latest_since=retired(50), latest_until=retired(10)),    # rollback window 2
        rec(6, latest_since=retired(10), latest_until=retired(5)),     # rollback window 1
        rec(7, latest_since=retired(5), latest_until=retired(3)),      # rolled back from: grace only
        rec(8, latest_since=retired(3)),                               # latest
        rec(9),                                                        # published, never latest: publishing
        rec(10, "failed", failed_prefix="x"),                          # failed long ago: expired
        rec(11, "building"),                                           # in progress
        rec(12, deleted=retired(1)),                                   # tombstone
        rec(13, latest_since=retired(2), latest_until=retired(1)),     # missing prefix
    ]
    recs[6] = replace(recs[6], rolled_back=True)
    recs[9] = replace(recs[9], finished=retired(30))
    releases = [stable.StableRelease("fam", "2026.1", bid(2), (NOW + 30 * day).date()),
                stable.StableRelease("fam", "2025.1", bid(3), (NOW - day).date())]
    v = view(recs, latest=8, releases=releases,
             published={bid(9): True, bid(12): False, bid(13): False})
    policy = RetentionRules(keep_previous=2, grace_days=7, failed_days=14, pinned=frozenset({bid(4)}))
    # 7 was retired 3 days ago (grace 7) and must not count in the rollback window.
    got = decisions(plan_family(FamilyInput(v, policy, failed_on_disk=frozenset({bid(10)})), NOW))
    assert got == {
        bid(1): ("delete", ["expired"]),
        bid(2): ("keep", ["stable"]),
        bid(3): ("delete", ["expired"]),
        bid(4): ("keep", ["pinned"]),
        bid(5): ("keep", ["rollback"]),
        bid(6): ("keep", ["rollback", "grace"]),
        bid(7): ("keep", ["grace"]),
        bid(8): ("keep", ["latest"]),
        bid(9): ("keep", ["publishing"]),
        bid(10): ("delete", ["expired"]),
        bid(11): ("keep", ["building"]),
        bid(12): ("none", ["tombstone"]),
        bid(13): ("none", ["missing"]),
    }
    plan = plan_family(FamilyInput(v, policy, failed_on_disk=frozenset({bid(10)})), NOW)
    why = {d.build_id: d for d in plan.decisions}
    assert "support ended" in why[bid(3)].why and "stable 2025.1" in why[bid(3)].why
    assert why[bid(7)].reasons[0].until.startswith((NOW + 4 * day).date().isoformat())
    assert why[bid(10)].target == "failed-prefix" and why[bid(1)].target == "prefix"
    assert why[bid(2)].reasons[0].until == (NOW + 30 * day).date().isoformat()


def test_planner_in_use_keeps_an_expired_build_and_deferral_keeps_everything():
    ago = lambda days: iso(NOW - dt.timedelta(days=days))  # noqa: E731
    recs = [rec(1, latest_since=ago(90), latest_until=ago(60)), rec(2, latest_since=ago(60))]
    v = view(recs, latest=2)
    policy = RetentionRules(0, 7, 14)
    usage = {bid(1): Usage(lease_held=True, lease_pids=(4242,), host="hub1")}
    plan = plan_family(FamilyInput(v, policy, usage), NOW)
    d1 = plan.decisions[0]
    assert d1.action == "keep" and [r.code for r in d1.reasons] == ["in-use", "collectable"]
    assert "in use by 1 kernel (pid 4242 on hub1)" in d1.why
    other_host = plan_family(FamilyInput(v, policy, {bid(1): Usage(lease_held=True)}), NOW).decisions[0]
    assert "another host" in other_host.why
    deferred = plan_family(FamilyInput(v, policy, deferred="a rollback holds the lock"), NOW).decisions[0]
    assert deferred.action == "keep" and deferred.reasons[0].code == "deferred"
    assert plan_family(FamilyInput(v, policy), NOW).decisions[0].action == "delete"
    # Same inputs, same plan (pure).
    assert plan_family(FamilyInput(v, policy, usage), NOW) == plan


def test_grace_when_latest_until_was_lost_counts_from_the_successor():
    since = iso(NOW - dt.timedelta(days=2))
    recs = [rec(1, latest_since=iso(NOW - dt.timedelta(days=30))), rec(2, latest_since=since)]
    plan = plan_family(FamilyInput(view(recs, latest=2), RetentionRules(0, 7, 14)), NOW)
    assert decisions(plan)[bid(1)] == ("keep", ["grace"])
    assert f"retired {since}" in plan.decisions[0].why


def test_effective_policy_spec_override():
    site = RetentionPolicy(keep_previous=2, grace_days=7, failed_days=14)
    assert effective_policy(site, None) == RetentionRules(2, 7, 14)
    got = effective_policy(site, Retention(grace_days=0, pinned=("x",)), "spec")
    assert got == RetentionRules(2, 0, 14, frozenset({"x"}), "spec")


def test_freed_bytes_are_hardlink_aware(tmp_path):
    one, two, outside = tmp_path / "one", tmp_path / "two", tmp_path / "cache"
    for d in (one, two, outside):
        d.mkdir()
    (one / "own").write_bytes(b"a" * 100_000)
    (one / "shared").write_bytes(b"b" * 200_000)
    os.link(one / "shared", two / "shared")
    (one / "cached").write_bytes(b"c" * 400_000)
    os.link(one / "cached", outside / "cached")
    t1, t2 = trash.inode_table(one), trash.inode_table(two)
    own, shared = os.stat(one / "own").st_blocks * 512, os.stat(one / "shared").st_blocks * 512
    assert trash.freed_bytes([t1]) == own
    assert trash.freed_bytes([t1, t2]) == own + shared
    assert trash.freed_bytes([t2]) == 0


# == real prefixes ==========================================================================


@dataclass(frozen=True)
class Base:
    """One real build: the template that clones hardlink from."""

    layout: Layout
    build_id: str
    spec_text: str
    channel: str  # the session's demo channel (file:// URL)
    pkgs: Path  # the session's shared package cache

    @property
    def prefix(self) -> Path:
        return self.layout.prefix("fam", self.build_id)

    @property
    def record_dir(self) -> Path:
        return self.layout.record_dir("fam", self.build_id)


@pytest.fixture(scope="module")
def base(tmp_path_factory, demo_channel, shared_pkgs) -> Base:
    tmp = tmp_path_factory.mktemp("gcbase")
    specs = tmp / "specs"
    specs.mkdir()
    config = write_config(tmp / "config.yaml", root=tmp / "root", pkgs_dir=shared_pkgs, specs_dir=specs,
                          kernels_dir=tmp / "kernels", channels={"demo": demo_channel.as_uri()},
                          min_free_space="10M", compile_pyc=False)
    spec = write_spec(specs, "fam")
    out = run_envmgr("build", "--json", spec, config=config, check=True)
    build_id = json_of(out)["result"]["builds"][0]["build_id"]
    return Base(Layout(tmp / "root"), build_id, spec.read_text(), demo_channel.as_uri(), shared_pkgs)


SLIM = ("bin", "conda-meta", "pyvenv.cfg", "lib/python3.11/site-packages/envmgr_demo_b")


def clone(base: Base, layout: Layout, build_id: str, *, status: str = "ok", failed: bool = False,
          finished: dt.datetime | None = None, slim: bool = True) -> Path:
    """A build made of hardlinks to the template's files, with its own record and lease."""
    fam_dir = layout.family_dir("fam")
    target = fam_dir / f".failed-{build_id}" if failed else layout.prefix("fam", build_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    if slim:
        for part in SLIM:
            src = base.prefix / part
            if src.exists():
                (target / part).parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["cp", "-al", str(src), str(target / part)], check=True)
    else:
        subprocess.run(["cp", "-al", str(base.prefix), str(target)], check=True)
    shutil.copytree(base.record_dir, layout.record_dir("fam", build_id))
    when = iso(finished or dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    template = records.load(base.layout, "fam", base.build_id)
    records.save(layout, template.evolve(build_id=build_id, status=status, started=when, finished=when,
                                         latest_since=None, latest_until=None,
                                         failed_prefix=str(target) if failed else None))
    if not failed:
        lease.ensure_lease(layout, "fam", build_id)
    return target


def publish(layout: Layout, build_id: str) -> None:
    """What a build's publication does: move latest (records latest_since/until)."""
    with family_lock(layout, "fam"):
        move_latest(layout, "fam", build_id, layout.latest_build("fam"))


def make_site(tmp: Path, base: Base, *, pkgs_in_root: bool = False, **retention) -> tuple[Path, Layout]:
    """A fresh root whose config maps `demo` to the session channel (real builds work in it)."""
    root = tmp / "root"
    specs = tmp / "specs"
    specs.mkdir(exist_ok=True)
    (specs / "fam.yaml").write_text(base.spec_text)
    config = write_config(tmp / "config.yaml", root=root, specs_dir=specs, kernels_dir=tmp / "kernels",
                          pkgs_dir=root / "pkgs" if pkgs_in_root else base.pkgs,
                          channels={"demo": base.channel}, min_free_space="10M", compile_pyc=False,
                          retention=retention or {"keep_previous": 0, "grace_days": 0, "failed_days": 0})
    return config, Layout(root)


def launch(layout: Layout, target: Path, code: str = HOLD, **popen) -> subprocess.Popen:
    argv = ["/bin/sh", str(LAUNCHER), "--lease-dir", str(layout.lease_dir("fam")), "--lock-wait", "30",
            "--", str(target), "@PREFIX@/bin/python", "-c", code]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)


def started(proc: subprocess.Popen) -> str | None:
    """The prefix the held process runs in, or None if the launcher refused (then it has exited)."""
    line = proc.stdout.readline().decode()
    if line.startswith("STARTED"):
        return line.split()[1]
    proc.wait(timeout=30)
    return None


def stop(proc: subprocess.Popen, hard: bool = False) -> None:
    if hard:
        proc.kill()
    else:
        proc.stdin.close()
    proc.wait(timeout=30)


def gc_json(config: Path, *args: str, env: dict | None = None, expect: int = 0) -> dict:
    proc = run_envmgr("gc", "--json", *args, config=config, env=env)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return json_of(proc)["result"] if expect == 0 else {}


def by_id(result: dict, family: str = "fam") -> dict[str, dict]:
    fam = next(f for f in result["families"] if f["family"] == family)
    return {b["build_id"]: b for b in fam["builds"]}


def assert_tombstone(layout: Layout, build_id: str) -> None:
    assert not layout.prefix("fam", build_id).exists()
    assert not (layout.family_dir("fam") / f".failed-{build_id}").exists()
    assert records.load(layout, "fam", build_id).deleted
    for name in ("spec.yaml", "conda-lock.yml", "packages.json", "build.log"):
        assert (layout.record_dir("fam", build_id) / name).is_file(), name


# -- the must-show ---------------------------------------------------------------------------


def test_running_kernel_keeps_a_retired_build_until_it_stops(site, envmgr_cli, tmp_path):
    """Real builds, a real kernel started by jupyter_client: kept while running, then a tombstone."""
    from envmgr.channel.build import add_demo_package

    spec = write_spec(site["specs"], "fam")
    spec.write_text(spec.read_text() + "retention:\n  keep_previous: 0\n  grace_days: 0\n")
    layout = Layout(site["root"])
    a = json_of(envmgr_cli("build", "--json", spec, check=True))["result"]["builds"][0]["build_id"]
    kernel = Kernel(site["kernels"], "fam-latest")
    try:
        assert kernel.prefix() == str(layout.prefix("fam", a))
        add_demo_package(site["channel"], "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
        b = json_of(envmgr_cli("build", "--json", spec, check=True))["result"]["builds"][0]["build_id"]
        assert layout.latest_build("fam") == b != a

        plan = gc_json(site["config"], "--dry-run")
        assert plan["dry_run"] is True
        builds = by_id(plan)
        assert builds[b]["action"] == "keep" and builds[b]["reasons"][0]["code"] == "latest"
        kept = builds[a]
        assert kept["action"] == "keep" and [r["code"] for r in kept["reasons"]] == ["in-use", "collectable"]
        assert "otherwise collectable" in kept["why"] and "grace ended" in kept["why"]
        assert kernel.pid in kept["reasons"][0]["usage"]["lease_pids"]
        assert f"pid {kernel.pid}" in kept["why"]
        policy = plan["families"][0]["policy"]
        assert policy["grace_days"] == 0 and policy["source"].startswith("spec")

        real = gc_json(site["config"])  # past its grace period, but a kernel runs on it
        assert by_id(real)[a]["action"] == "keep" and layout.prefix("fam", a).is_dir()
        assert kernel.run("print(6 * 7)")[0].strip() == "42", "the kernel still works"
    finally:
        kernel.close()

    plan = gc_json(site["config"], "--dry-run")
    gone = by_id(plan)[a]
    assert gone["action"] == "delete" and gone["reasons"][0]["code"] == "expired"
    assert "grace ended" in gone["why"] and gone["bytes"] > 0
    assert all(b["why"] and b["reasons"] for b in by_id(plan).values()), "every decision explained"
    assert layout.prefix("fam", a).is_dir(), "--dry-run changes nothing"

    done = gc_json(site["config"])
    assert by_id(done)[a]["state"] == "deleted" and done["summary"]["deleted"] == 1
    assert done["summary"]["freed_bytes"] > 0
    assert_tombstone(layout, a)
    assert layout.prefix("fam", b).is_dir() and layout.latest_build("fam") == b
    assert not list(layout.trash_dir.iterdir())
    assert not layout.lease_file("fam", a).exists()
    audit = [json.loads(x) for x in layout.audit_log.read_text().splitlines()]
    assert [(e["action"], e["build_id"]) for e in audit if e["action"] == "gc.delete"] == [("gc.delete", a)]
    assert {"user", "time", "host"} <= set(audit[-1])

    listing = json_of(envmgr_cli("builds", "--json", "fam"))["result"]["builds"]
    states = {x["build_id"]: x["state"] for x in listing}
    assert states == {a: "deleted", b: "latest"}
    lock = layout.record_dir("fam", a) / "conda-lock.yml"  # spec.yaml beside it names the family
    again = json_of(envmgr_cli("build", "--json", "--from-lock", lock, check=True))["result"]["builds"][0]
    assert again["status"] == "built" and again["build_id"] not in (a, b)
    downgraded = {c["name"]: c["kind"] for c in again["diff"]["changes"]}
    assert downgraded == {"envmgr-demo-b": "downgraded"}, "the tombstone's lock recreated its packages"


# -- randomized: builds, kernels, gc ---------------------------------------------------------


class Model:
    """What the test knows independently of gc: which builds exist, when retired, who runs where."""

    def __init__(self, policy: RetentionRules):
        self.policy = policy
        self.order: list[str] = []
        self.failed: dict[str, dt.datetime] = {}
        self.retired: dict[str, dt.datetime] = {}
        self.releases: dict[str, dt.date] = {}
        self.latest: str | None = None

    def must_keep(self, now: dt.datetime, in_use: set[str]) -> set[str]:
        keep = set(in_use) | set(self.policy.pinned)
        if self.latest:
            keep.add(self.latest)
            older = [b for b in self.order if b < self.latest and b not in self.failed]
            keep.update(older[-self.policy.keep_previous:] if self.policy.keep_previous else [])
        keep.update(b for b, t in self.retired.items() if now < t + dt.timedelta(days=self.policy.grace_days))
        keep.update(b for b, t in self.failed.items() if now < t + dt.timedelta(days=self.policy.failed_days))
        keep.update(b for b, until in self.releases.items() if until >= now.date())
        return keep


def test_randomized_builds_kernels_and_gc_never_delete_what_is_kept_or_used(base, tmp_path):
    rng = random.Random(int(os.environ.get("ENVMGR_GC_SEED", "5")))
    config_path, layout = make_site(tmp_path, base, keep_previous=1, grace_days=2, failed_days=3)
    config = load_config(config_path=config_path)
    model = Model(RetentionRules(1, 2, 3))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    kernels: list[tuple[subprocess.Popen, str]] = []
    counts = {"gc": 0, "deleted": 0, "kept-in-use": 0, "refused": 0}
    serial = 0

    def new_build(failed: bool = False) -> None:
        nonlocal serial
        serial += 1
        build_id = now.strftime("%Y%m%dT%H%M%SZ") + f"-{serial:06x}"
        clone(base, layout, build_id, status="failed" if failed else "ok", failed=failed, finished=now)
        model.order.append(build_id)
        if failed:
            model.failed[build_id] = now
            return
        previous = model.latest
        with family_lock(layout, "fam"):
            move_latest(layout, "fam", build_id, previous)
        if previous:  # simulated time: publication happened "now"
            records.update(layout, "fam", previous, latest_until=iso(now))
            model.retired[previous] = now
        model.latest = build_id

    def alive_builds() -> set[str]:
        return {b for p, b in kernels if p.poll() is None}

    def start_kernel() -> None:
        published = [b for b in model.order if layout.prefix("fam", b).is_dir()]
        if not published:
            return
        via_latest = rng.random() < 0.5
        target = layout.latest_link("fam") if via_latest else layout.prefix("fam", rng.choice(published))
        proc = launch(layout, target)
        prefix = started(proc)
        if prefix is None:
            counts["refused"] += 1
            assert not via_latest, proc.stderr.read().decode()
            return
        kernels.append((proc, Path(prefix).name))

    def run_gc() -> None:
        in_use = alive_builds()
        before = {b for b in model.order if layout.prefix("fam", b).is_dir()
                  or (layout.family_dir("fam") / f".failed-{b}").is_dir()}
        result = gc.collect(config, now=now, prune=False)
        counts["gc"] += 1
        keep = model.must_keep(now, in_use)
        for b in before:
            gone = records.load(layout, "fam", b).deleted is not None
            if b in keep:
                why = by_id(result.to_json())[b]["why"]
                assert not gone, f"gc deleted {b}, which must be kept ({in_use=}, {now=}): {why}"
                assert layout.prefix("fam", b).is_dir() or b in model.failed
            else:
                assert gone, f"gc kept {b} although nothing needs it: " + json.dumps(
                    by_id(result.to_json())[b])
                assert_tombstone(layout, b)
                counts["deleted"] += 1
        counts["kept-in-use"] += len(in_use - model.must_keep(now, set()))
        for proc, b in kernels:
            if proc.poll() is None:
                assert layout.prefix("fam", b).is_dir(), f"a live kernel lost its build {b}"
        assert not any(layout.trash_dir.rglob("*")), "trash emptied"

    try:
        new_build()
        (tmp_path / "specs" / "fam.yaml").write_text(
            base.spec_text + f"retention:\n  pinned: [{model.order[0]}]\n")
        model.policy = replace(model.policy, pinned=frozenset({model.order[0]}))
        # Fixed prologue, so every seed covers it: a kernel on a build nothing else keeps.
        new_build()
        proc = launch(layout, layout.prefix("fam", model.order[-1]))
        assert started(proc) == str(layout.prefix("fam", model.order[-1]))
        kernels.append((proc, model.order[-1]))
        new_build()
        new_build()
        now += dt.timedelta(days=5)
        run_gc()
        assert counts["kept-in-use"] == 1
        for _ in range(70):
            op = rng.choices(["build", "fail", "start", "stop", "time", "promote", "gc"],
                             weights=[4, 1, 5, 4, 4, 1, 3])[0]
            if op == "build":
                new_build()
            elif op == "fail":
                new_build(failed=True)
            elif op == "start":
                start_kernel()
            elif op == "stop":
                live = [(p, b) for p, b in kernels if p.poll() is None]
                if live:
                    stop(rng.choice(live)[0], hard=rng.random() < 0.5)
            elif op == "time":
                now += dt.timedelta(hours=rng.choice([1, 12, 30, 60, 100]))
            elif op == "promote":
                good = [b for b in model.order if b not in model.failed and layout.prefix("fam", b).is_dir()]
                until = (now + dt.timedelta(days=rng.choice([1, 3, 10]))).date()
                chosen = rng.choice(good)
                release = f"r{len(stable.promoted(layout, 'fam'))}"  # a new name: never replaces one
                stable.record_promotion(layout, "fam", release, chosen, until)
                model.releases[chosen] = max(until, model.releases.get(chosen, until))
            else:
                run_gc()
        for proc, _ in kernels:
            if proc.poll() is None:
                stop(proc)
        now += dt.timedelta(days=30)
        run_gc()
    finally:
        for proc, _ in kernels:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(counts)
    assert counts["gc"] >= 5 and counts["deleted"] >= 5 and counts["kept-in-use"] >= 1


# -- kill -9 mid-delete, then recovery ---------------------------------------------------------


FAULTS = ["gc-marked", "gc-trashed", "gc-tombstoned", "gc-rmtree", "gc-cache"]


def cache_name(base: Base, package: str) -> str:
    """The package-cache entry name of ``package`` as the template build installed it."""
    p = records.package_set(base.layout, "fam", base.build_id).by_name()[package]
    return f"{p.name}-{p.version}-{p.build}"


def fake_cache_entry(pkgs: Path, name: str) -> None:
    (pkgs / name / "info").mkdir(parents=True)
    (pkgs / name / "info" / "index.json").write_text("{}")
    (pkgs / name / "data.bin").write_bytes(os.urandom(50_000))
    (pkgs / f"{name}.lock").write_bytes(b"")


def test_kill_at_every_gc_step_is_finished_by_the_next_gc(base, tmp_path, shared_pkgs):
    config, layout = make_site(tmp_path, base, pkgs_in_root=True)
    pkgs = layout.root / "pkgs"
    pkgs.mkdir(parents=True)
    used = cache_name(base, "envmgr-demo-b")
    subprocess.run(["cp", "-al", str(shared_pkgs / used), str(pkgs / used)], check=True)
    latest = bid(1000)
    clone(base, layout, latest)
    publish(layout, latest)
    for n, point in enumerate(FAULTS):
        victim = bid(n)
        clone(base, layout, victim, finished=NOW)
        records.update(layout, "fam", victim, latest_since=iso(NOW), latest_until=iso(NOW))
        fake_cache_entry(pkgs, f"unused-{n}-1.0-0")
        proc = run_envmgr("gc", config=config, env={"ENVMGR_FAULT_POINT": point})
        assert proc.returncode == -signal.SIGKILL, (point, proc.stdout, proc.stderr)
        if point == "gc-marked":
            assert lease.deleting_marker(layout, "fam", victim).exists()
            refused = launch(layout, layout.prefix("fam", victim))
            assert started(refused) is None and refused.returncode == 69
            assert "is being deleted" in refused.stderr.read().decode()
        ok = launch(layout, layout.latest_link("fam"))
        assert started(ok) == str(layout.prefix("fam", latest)), f"latest works after a kill at {point}"
        stop(ok)
        after = gc_json(config)
        assert_tombstone(layout, victim)
        if point in ("gc-marked", "gc-trashed"):
            assert after["recovered"], point
        assert not any(layout.trash_dir.rglob("*")), point
        cache_trash = pkgs / trash.PKGS_TRASH
        assert not cache_trash.exists() or not any(cache_trash.iterdir()), point
        assert not lease.deleting_marker(layout, "fam", victim).exists()
        assert not (pkgs / f"unused-{n}-1.0-0").exists() and not (pkgs / f"unused-{n}-1.0-0.lock").exists()
        assert (pkgs / used / "info").is_dir(), "a package a kept build uses stays in the cache"
        assert layout.prefix("fam", latest).is_dir()
    deletes = [json.loads(x) for x in layout.audit_log.read_text().splitlines()]
    per_build = {e["build_id"] for e in deletes if e["action"] == "gc.delete"}
    assert per_build == {bid(n) for n in range(len(FAULTS))}, "every deletion audited"


def test_cache_pruning_frees_what_deleting_builds_alone_cannot(base, tmp_path, shared_pkgs):
    config, layout = make_site(tmp_path, base, pkgs_in_root=True)
    pkgs = layout.root / "pkgs"
    pkgs.mkdir(parents=True)
    name = cache_name(base, "envmgr-demo-b")
    shutil.copytree(shared_pkgs / name, pkgs / name)  # a private copy: its inodes are this root's alone
    old, new = bid(1), bid(2)
    clone(base, layout, old, finished=NOW)
    clone(base, layout, new, finished=NOW)
    publish(layout, old)
    publish(layout, new)
    # The new build no longer uses envmgr-demo-b (as after an upgrade).
    pkg_file = layout.record_dir("fam", new) / "packages.json"
    data = json.loads(pkg_file.read_text())
    data["packages"] = [p for p in data["packages"] if p["name"] != "envmgr-demo-b"]
    pkg_file.write_text(json.dumps(data))
    # As after a real install, the old build's package files are hardlinks into (this) cache.
    old_pkg = layout.prefix("fam", old) / "lib/python3.11/site-packages/envmgr_demo_b"
    shutil.rmtree(old_pkg)
    for src in (pkgs / name / "site-packages" / "envmgr_demo_b").rglob("*"):
        if src.is_file():
            dst = old_pkg / src.relative_to(pkgs / name / "site-packages" / "envmgr_demo_b")
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
    shared = sum(p.stat().st_blocks * 512 for p in old_pkg.rglob("*") if p.is_file())
    assert shared > 0

    alone = gc_json(config, "--dry-run", "--no-prune-cache")
    both = gc_json(config, "--dry-run")
    assert both["cache"]["pruned"] == [name] and alone["cache"]["enabled"] is False
    assert both["summary"]["freed_bytes"] >= alone["summary"]["freed_bytes"] + shared
    assert by_id(both)[old]["bytes"] == by_id(alone)[old]["bytes"], "a build alone frees its own inodes"
    done = gc_json(config)
    assert done["summary"]["freed_bytes"] == both["summary"]["freed_bytes"]
    assert not (pkgs / name).exists() and done["cache"]["pruned"] == [name]


# -- gc, build and kernel starts at the same time ----------------------------------------------


def test_gc_build_and_kernel_starts_run_concurrently(base, tmp_path):
    config, layout = make_site(tmp_path, base)
    spec = tmp_path / "specs" / "fam.yaml"
    olds = [bid(n) for n in range(6)]
    for b in olds:
        clone(base, layout, b, finished=NOW)
        publish(layout, b)
    builder = subprocess.Popen([sys.executable, "-m", "envmgr", "--config", str(config), "build", "--force",
                                "--json", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop_flag = threading.Event()
    live: list[tuple[subprocess.Popen, str]] = []
    refusals: list[str] = []
    gc_runs: list[dict] = []

    def starter() -> None:
        rng = random.Random(3)
        while not stop_flag.is_set():
            on_latest = rng.random() < 0.5
            target = layout.latest_link("fam") if on_latest else layout.prefix("fam", rng.choice(olds))
            proc = launch(layout, target)
            prefix = started(proc)
            if prefix is None:
                err = proc.stderr.read().decode()
                assert not on_latest, err
                assert proc.returncode == 69 and ("being deleted" in err or "no longer exists" in err), err
                refusals.append(target.name)
            else:
                assert Path(prefix).is_dir()
                live.append((proc, Path(prefix).name))
                if len(live) > 6:
                    stop(live.pop(0)[0])
            time.sleep(0.05)

    def collector() -> None:
        while not stop_flag.is_set():
            proc = run_envmgr("gc", "--json", config=config)
            assert proc.returncode in (0, 4), proc.stderr
            gc_runs.append(json_of(proc))
            for p, b in list(live):
                if p.poll() is None:
                    assert layout.prefix("fam", b).is_dir(), f"gc deleted {b} under a running kernel"

    failures: list[BaseException] = []

    def guarded(fn):  # an assertion in a thread must fail the test, not just print
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                failures.append(exc)
                stop_flag.set()
        return run

    threads = [threading.Thread(target=guarded(starter)), threading.Thread(target=guarded(collector))]
    for t in threads:
        t.start()
    try:
        out, err = builder.communicate(timeout=300)
    finally:
        stop_flag.set()
        for t in threads:
            t.join(120)
        if failures:
            for proc, _ in live:
                proc.kill()
    if failures:
        raise failures[0]
    assert builder.returncode == 0, err.decode()
    new = json.loads(out)["result"]["builds"][0]["build_id"]
    assert layout.latest_build("fam") == new and layout.prefix("fam", new).is_dir()
    for proc, b in live:
        assert proc.poll() is None and layout.prefix("fam", b).is_dir()
    assert len(gc_runs) >= 2
    for proc, _ in live:
        stop(proc)
    final = gc_json(config)
    assert {b for b in olds if records.load(layout, "fam", b).deleted} == set(olds), final
    assert sorted(p.name for p in layout.family_dir("fam").iterdir()) == sorted([new, "latest"])
    print(f"gc runs: {len(gc_runs)}, refused starts: {len(refusals)}, kernels alive at the end: {len(live)}")


# -- locks, stable expiry, failed builds ---------------------------------------------------------


def test_gc_defers_a_family_whose_lock_a_rollback_holds_and_works_beside_a_build(base, tmp_path):
    config, layout = make_site(tmp_path, base, pkgs_in_root=True)
    fake_cache_entry(layout.root / "pkgs", "unused-1.0-0")
    old, new = bid(1), bid(2)
    for b in (old, new):
        clone(base, layout, b, finished=NOW)
        publish(layout, b)
    with family_lock(layout, "fam") as holder:  # as rollback/promote/retire hold it: step "starting"
        deferred = gc_json(config)
        assert "build lock is held by pid" in deferred["families"][0]["deferred"]
        assert by_id(deferred)[old]["reasons"][0]["code"] == "deferred"
        assert layout.prefix("fam", old).is_dir()
        holder.set_step("install")  # a build only adds a build id: gc may proceed beside it
        beside = gc_json(config)
        assert by_id(beside)[old]["state"] == "deleted"
        assert "a build of fam holds its lock" in beside["cache"]["skipped"], "no pruning during a build"
        assert (layout.root / "pkgs" / "unused-1.0-0").is_dir()
    assert_tombstone(layout, old)
    assert gc_json(config)["cache"]["pruned"] == ["unused-1.0-0"]
    with FileLock(str(layout.gc_lock)):
        proc = run_envmgr("gc", config=config)
        assert proc.returncode == 4 and "another envmgr gc is running" in proc.stderr


def test_expired_stable_release_loses_its_kernel_then_its_build(base, tmp_path):
    config, layout = make_site(tmp_path, base)
    cfg = load_config(config_path=config)
    rel, latest = bid(1), bid(2)
    for b in (rel, latest):
        clone(base, layout, b, finished=NOW)
        publish(layout, b)
    today = dt.date.today()
    stable.record_promotion(layout, "fam", "2023.1", rel, today + dt.timedelta(days=30))
    gc.collect(cfg)  # syncs kernels: the release gets its kernel
    kernel_dir = cfg.kernels_dir / "fam-2023.1"
    assert kernel_dir.is_dir()
    soon = expiring_releases(cfg, today=today)
    assert [(e.release.release, e.days_left, e.expired) for e in soon] == [("2023.1", 30, False)]
    assert expiring_releases(cfg, today=today, within_days=10) == []

    stable.record_promotion(layout, "fam", "2023.1", rel, today - dt.timedelta(days=1))
    assert expiring_releases(cfg, today=today)[0].expired
    runner = launch(layout, layout.prefix("fam", rel))  # a kernel started from the stable kernelspec
    assert started(runner) == str(layout.prefix("fam", rel))
    first = gc_json(config)
    assert first["families"][0]["kernels_removed"] == ["fam-2023.1"] and not kernel_dir.exists()
    gone = retired.load(cfg.kernels_dir)["fam-2023.1"]  # notebooks on it learn where to go
    assert (gone.reason, gone.build_id, gone.successor) == ("expired", rel, "fam-latest")
    why = by_id(first)[rel]
    assert why["action"] == "keep" and why["reasons"][0]["code"] == "in-use"
    assert "support ended" in why["why"]
    stop(runner)
    second = gc_json(config)
    assert by_id(second)[rel]["state"] == "deleted"
    assert_tombstone(layout, rel)


def test_failed_builds_staging_and_processes_outside_the_launcher(base, tmp_path):
    config, layout = make_site(tmp_path, base, keep_previous=0, grace_days=0, failed_days=3)
    cfg = load_config(config_path=config)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    old_fail, new_fail, latest, busy, building = bid(1), bid(2), bid(3), bid(4), bid(5)
    clone(base, layout, old_fail, status="failed", failed=True, finished=now - dt.timedelta(days=10))
    clone(base, layout, new_fail, status="failed", failed=True, finished=now - dt.timedelta(days=1))
    clone(base, layout, busy, finished=now)
    publish(layout, busy)
    clone(base, layout, latest, finished=now)
    publish(layout, latest)
    shutil.copytree(base.record_dir, layout.record_dir("fam", building))
    records.save(layout, records.load(layout, "fam", latest).evolve(build_id=building, status="building",
                                                                    latest_since=None))
    staging = layout.staging("fam", building)
    staging.mkdir(parents=True)
    # A process using the retired build without the launcher (cwd inside it): the second signal.
    squatter = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                cwd=layout.prefix("fam", busy), stdin=subprocess.PIPE)
    try:
        wait_until(lambda: os.readlink(f"/proc/{squatter.pid}/cwd") == str(layout.prefix("fam", busy)))
        result = gc.collect(cfg).to_json()
        got = by_id(result)
        assert got[old_fail]["state"] == "deleted" and got[old_fail]["target"] == "failed-prefix"
        assert got[new_fail]["action"] == "keep" and got[new_fail]["reasons"][0]["code"] == "failed"
        assert got[busy]["action"] == "keep" and str(squatter.pid) in got[busy]["why"]
        assert got[building]["action"] == "keep" and got[building]["reasons"][0]["code"] == "building"
        assert staging.is_dir(), "gc never touches a build in progress"
        assert_tombstone(layout, old_fail)
    finally:
        squatter.stdin.close()
        squatter.wait()
    assert by_id(gc.collect(cfg).to_json())[busy]["state"] == "deleted"


def test_unknown_family_is_a_usage_error_naming_every_one(base, tmp_path):
    config, layout = make_site(tmp_path, base)
    clone(base, layout, bid(1))
    publish(layout, bid(1))
    proc = run_envmgr("gc", "nope", "fam", "nada", config=config)
    assert proc.returncode == 2 and "no families 'nope', 'nada' under" in proc.stderr
    assert layout.prefix("fam", bid(1)).is_dir()


def test_pins_come_from_the_specs_dir_else_from_the_latest_builds_recorded_spec(base, tmp_path):
    config, layout = make_site(tmp_path, base)
    cfg = load_config(config_path=config)
    pinned, other, latest = bid(1), bid(2), bid(3)
    for b in (pinned, other, latest):
        clone(base, layout, b, finished=NOW)
        publish(layout, b)
    spec_file = tmp_path / "specs" / "fam.yaml"
    spec_file.write_text(base.spec_text + "retention:\n  pinned: [nonexistent]\n  grudge: 1\n")
    broken = gc.collect(cfg, dry_run_only=True)
    assert "its spec cannot be read" in broken.plans[0].deferred and "grudge" in broken.plans[0].deferred
    assert {d.action for d in broken.plans[0].decisions} == {"keep"}, "an unreadable spec keeps everything"

    spec_file.unlink()  # no spec in the specs dir: the spec the latest build was built from speaks
    recorded = layout.record_dir("fam", latest) / "spec.yaml"
    recorded.write_text(base.spec_text + f"retention:\n  pinned: [{pinned}]\n")
    got = by_id(gc.collect(cfg).to_json())
    assert got[pinned]["action"] == "keep" and got[pinned]["reasons"][0]["code"] == "pinned"
    assert got[other]["state"] == "deleted"
    assert layout.prefix("fam", pinned).is_dir()


def test_gc_decides_the_same_from_every_working_directory(base, tmp_path):
    """No specs_dir configured: gc and status never read ./specs, so `/`, a specs checkout and a
    temp dir give the same decisions; a configured specs_dir governs the same from all three."""
    root = tmp_path / "root"
    layout = Layout(root)
    old, latest = bid(1), bid(2)
    for b in (old, latest):
        clone(base, layout, b, finished=NOW)
        publish(layout, b)
    checkout = tmp_path / "checkout"
    (checkout / "specs").mkdir(parents=True)  # a specs repository checkout whose spec pins `old`
    (checkout / "specs" / "fam.yaml").write_text(base.spec_text + f"retention:\n  pinned: [{old}]\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    site = dict(root=root, kernels_dir=tmp_path / "kernels", pkgs_dir=base.pkgs, channels={"demo": base.channel},
                min_free_space="10M", compile_pyc=False,
                retention={"keep_previous": 0, "grace_days": 0, "failed_days": 0})
    unnamed = write_config(tmp_path / "unnamed.yaml", **site)
    named = write_config(tmp_path / "named.yaml", specs_dir=checkout / "specs", **site)

    def from_dir(cwd: Path, config: Path, *args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "envmgr", "--config", str(config), *args, "--json"],
                              cwd=cwd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)["result"]

    def decisions(cwd: Path, config: Path) -> dict:
        fam = from_dir(cwd, config, "gc", "--dry-run")["families"][0]
        return {"policy": fam["policy"], **{b["build_id"]: (b["action"], [r["code"] for r in b["reasons"]])
                                            for b in fam["builds"]}}

    for config, expected in ((unnamed, ("delete", ["expired"])), (named, ("keep", ["pinned"]))):
        seen = [decisions(cwd, config) for cwd in (Path("/"), checkout, empty)]
        assert seen[0] == seen[1] == seen[2], (config.name, seen)
        assert seen[0][old] == expected and seen[0][latest][0] == "keep", (config.name, seen[0])
        sources = {from_dir(cwd, config, "status", "--no-disk")["families"][0]["spec_source"]
                   for cwd in (Path("/"), checkout)}
        assert len(sources) == 1, sources
        assert sources.pop().startswith("recorded " if config == unnamed else str(checkout / "specs"))
    assert layout.prefix("fam", old).is_dir(), "a dry run deletes nothing"

def test_a_deletion_is_sized_once_and_the_figure_kept_with_its_record(base, tmp_path):
    config, layout = make_site(tmp_path, base)
    old, new = bid(1), bid(2)
    clone(base, layout, old, finished=NOW)
    clone(base, layout, new, finished=NOW)
    publish(layout, old)
    publish(layout, new)
    first = by_id(gc_json(config, "--dry-run", "--no-prune-cache"))[old]
    kept = json.loads((layout.record_dir("fam", old) / "size.json").read_text())
    assert first["action"] == "delete" and kept == {**kept, "target": "prefix", "bytes": first["bytes"]}
    # The next dry run reads the figure instead of walking the prefix again.
    (layout.record_dir("fam", old) / "size.json").write_text(json.dumps({**kept, "bytes": 12345}))
    again = gc_json(config, "--dry-run", "--no-prune-cache")
    assert by_id(again)[old]["bytes"] == 12345 and again["summary"]["freed_bytes"] >= 12345
    done = gc_json(config, "--no-prune-cache")  # the real run counts what it really freed
    assert by_id(done)[old]["state"] == "deleted" and by_id(done)[old]["bytes"] == first["bytes"]


def test_gc_prunes_what_uv_no_longer_reaches_and_keeps_what_it_reuses(base, tmp_path):
    """uv's cache (pip packages) is pruned by uv itself, only while no build runs."""
    from envmgr._internal._uv import uv_bin

    from .pypi_index import make_wheel

    config, layout = make_site(tmp_path, base, pkgs_in_root=True)
    clone(base, layout, bid(1), finished=NOW)
    publish(layout, bid(1))
    cache = layout.root / "pkgs" / "uv-cache"
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "beam-helper", "1.0")
    filled = subprocess.run([uv_bin(), "pip", "install", "--no-index", "--find-links", str(wheels),
                             "--target", str(tmp_path / "target"), "--python", sys.executable,
                             "--cache-dir", str(cache), "--link-mode", "copy", "beam-helper"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "UV_NO_CONFIG": "1"})
    assert filled.returncode == 0, filled.stderr
    reusable = sorted(p for p in cache.rglob("*") if p.is_file() and "wheels-v0" not in p.parts)
    assert reusable
    stale = cache / "wheels-v0" / "pypi" / "beam-helper" / "beam_helper-0.9-py3-none-any.whl"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 65536)  # a bucket of an older uv's cache layout

    dry = gc_json(config, "--dry-run")
    assert dry["cache"]["uv"]["ran"] is False and dry["cache"]["uv"]["bytes"] >= 65536
    assert stale.exists()
    with family_lock(layout, "fam"):  # a build runs: uv may be using the cache
        busy = gc_json(config)
    assert busy["cache"]["skipped"] and busy["cache"]["uv"]["ran"] is False and stale.exists()

    result = gc_json(config)
    assert result["cache"]["uv"] == {"ran": True, "bytes": result["cache"]["uv"]["bytes"], "error": None}
    assert result["cache"]["uv"]["bytes"] >= 65536
    assert not stale.exists()
    assert [p for p in reusable if not p.exists()] == [], "uv pruned what a later install reuses"
    text = run_envmgr("gc", config=config)
    assert text.returncode == 0, text.stderr
    assert "uv cache: pruned" in text.stdout

    # A prune that fails (a file nobody may remove, even root): exit 5, named, nothing else lost.
    stuck = cache / "wheels-v0" / "pypi" / "stuck" / "stuck.whl"
    stuck.parent.mkdir(parents=True)
    stuck.write_bytes(b"\0")
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode != 0:
        return  # no immutable flag here (not root, or not ext4): the failure path needs one
    try:
        failed = run_envmgr("gc", "--json", config=config)
        assert failed.returncode == 5, failed.stdout + failed.stderr
        doc = json_of(failed)["result"]
        assert doc["cache"]["uv"]["ran"] and "uv cache prune failed" in doc["cache"]["uv"]["error"]
        assert any(e.startswith("uv cache: ") for e in doc["errors"]) and "Traceback" not in failed.stderr
        assert stuck.exists() and [p for p in reusable if not p.exists()] == []
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
