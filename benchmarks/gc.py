"""gc benchmark: planning (`gc --dry-run`) and deleting over 1,000 builds.

Synthetic but real on disk, in a temporary root: F families x B builds, each
with a complete record (build.json, packages.json, spec.yaml) and a small
prefix whose files are hardlinks into a shared "package cache" directory plus
a few files of its own (as conda-meta and entry points are), a lease file per
build and a ``latest`` symlink per family. Most builds are long retired, so
the plan has ~900 deletions to size (the hardlink-aware walk is the costly part).

Figures, each the median of --repeat runs:

1. baseline: ``inventory.family_view`` for every family (what `envmgr builds`
   reads; no plan), measured in the same run;
2. ``gc.collect(dry_run_only=True)`` in-process, with its parts: family views +
   lease probes + /proc scan + planning, then the hardlink-aware sizing;
3. ``envmgr gc --dry-run --json`` through the CLI (includes interpreter start);
4. once: a real ``gc`` deleting every collectable build (rename into the trash,
   tombstone, audit line, then emptying the trash).

Target: the dry run over 1,000 builds under 1 s.

Run: python benchmarks/gc.py [--families 10] [--builds 100] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envmgr.gc import collect as gc
from envmgr.kernels import lease
from envmgr.host import procscan
from envmgr.catalog import records
from envmgr.config import load_config  # noqa: E402
from envmgr.fsutil import atomic_symlink  # noqa: E402
from envmgr.catalog.inventory import family_view  # noqa: E402
from envmgr.layout import Layout  # noqa: E402
from envmgr.catalog.records import BuildRecord  # noqa: E402
from envmgr.clock import iso  # noqa: E402

SPEC = """\
name: {name}
display_name: {name}
group: Bench
channels: [demo]
dependencies: [python 3.*]
"""
FILES_PER_PREFIX = 24  # hardlinked from the cache
CACHE_ENTRIES = 48  # build b uses entries [b // 10 % 24, + 24): old builds use packages latest does not
OWN_FILES = 3  # written per prefix (conda-meta, entry points)


def make_cache(pkgs: Path, n: int) -> list[Path]:
    files = []
    for i in range(n):
        entry = pkgs / f"pkg{i}-1.0-0"
        (entry / "info").mkdir(parents=True)
        (entry / "info" / "index.json").write_text("{}")
        f = entry / "lib" / f"mod{i}.py"
        f.parent.mkdir()
        f.write_bytes(os.urandom(2048))
        files.append(f)
    return files


def packages_json(window: range) -> dict:
    pkgs = [{"name": f"pkg{i}", "version": "1.0", "build": "0", "subdir": "noarch",
             "url": f"file:///x/pkg{i}-1.0-0.conda", "sha256": f"{i:064x}"} for i in window]
    return {"platform": "linux-64", "digest": "0" * 64, "packages": pkgs}


def make_build(layout: Layout, family: str, build_id: str, cache: list[Path], window: range,
               when: dt.datetime, until: dt.datetime | None) -> None:
    prefix = layout.prefix(family, build_id)
    (prefix / "lib").mkdir(parents=True)
    (prefix / "conda-meta").mkdir()
    for i in window:
        os.link(cache[i], prefix / "lib" / cache[i].name)
    for i in range(OWN_FILES):
        (prefix / "conda-meta" / f"own{i}.json").write_bytes(os.urandom(1024))
    rec_dir = layout.record_dir(family, build_id)
    rec_dir.mkdir(parents=True)
    (rec_dir / "packages.json").write_text(json.dumps(packages_json(window)))
    (rec_dir / "spec.yaml").write_text(SPEC.format(name=family))
    records.save(layout, BuildRecord(family=family, build_id=build_id, status="ok", started=iso(when),
                                     finished=iso(when), latest_since=iso(when), latest_until=iso(until)))
    lease.ensure_lease(layout, family, build_id)


def make_root(tmp: Path, families: int, builds: int) -> Path:
    root = tmp / "root"
    layout = Layout(root)
    cache = make_cache(root / "pkgs", CACHE_ENTRIES)
    specs = tmp / "specs"
    specs.mkdir()
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for f in range(families):
        family = f"fam{f:02d}"
        (specs / f"{family}.yaml").write_text(SPEC.format(name=family))
        ids = []
        for b in range(builds):
            when = start + dt.timedelta(days=b)
            build_id = when.strftime("%Y%m%dT%H%M%SZ") + f"-{f:06x}"
            until = when + dt.timedelta(days=1) if b < builds - 1 else None
            first = b // 10 % (CACHE_ENTRIES - FILES_PER_PREFIX)
            make_build(layout, family, build_id, cache, range(first, first + FILES_PER_PREFIX), when, until)
            ids.append(build_id)
        atomic_symlink(ids[-1], layout.latest_link(family))
    config = tmp / "config.yaml"
    config.write_text(f"root: {root}\nspecs_dir: {specs}\nkernels_dir: {tmp / 'kernels'}\n"
                      f"pkgs_dir: {root / 'pkgs'}\n")
    return config


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=10)
    parser.add_argument("--builds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envmgr-gc-bench-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        config_path = make_root(tmp, args.families, args.builds)
        setup = time.perf_counter() - t0
        config = load_config(config_path=config_path)
        layout = config.layout
        total = args.families * args.builds
        families = layout.families()
        print(f"{total} builds in {len(families)} families, {FILES_PER_PREFIX} hardlinked + "
              f"{OWN_FILES} own files per prefix (setup {setup:.1f} s)")

        base, _ = timed(lambda: [family_view(config, f) for f in families], args.repeat)
        scan, _ = timed(lambda: procscan.scan_processes(layout.envs_dir), args.repeat)
        dry, result = timed(lambda: gc.collect(config, dry_run_only=True), args.repeat)
        counts = result.counts()
        print(f"baseline: family views of all families       {base * 1000:7.0f} ms")
        print(f"/proc scan (once per run)                    {scan * 1000:7.0f} ms")
        print(f"gc --dry-run, in-process                     {dry * 1000:7.0f} ms "
              f"({dry / base:.1f}x baseline; {counts['delete']} to delete, {counts['keep']} kept; "
              f"would free {result.freed_bytes / 1e6:.1f} MB)")
        argv = [sys.executable, "-m", "envmgr", "--config", str(config_path), "gc", "--dry-run", "--json"]
        cli, proc = timed(lambda: subprocess.run(argv, capture_output=True, check=True),
                          max(1, args.repeat // 2))
        doc = json.loads(proc.stdout)
        assert doc["result"]["summary"]["delete"] == counts["delete"]
        startup, _ = timed(lambda: subprocess.run([sys.executable, "-m", "envmgr", "--help"],
                                                  capture_output=True, check=True), 2)
        print(f"envmgr gc --dry-run --json (CLI, wall)       {cli * 1000:7.0f} ms "
              f"(of which interpreter + imports ~{startup * 1000:.0f} ms: `envmgr --help`)")
        t0 = time.perf_counter()
        real = gc.collect(config)
        applied = time.perf_counter() - t0
        print(f"gc (real): deleted {real.counts()['deleted']} builds in {applied:.2f} s "
              f"({applied / max(1, real.counts()['deleted']) * 1000:.1f} ms per build), "
              f"pruned {len(real.cache.pruned)} cache entries, freed {real.freed_bytes / 1e6:.1f} MB")
        verdict = "OK" if dry < 1.0 else "OVER"
        print(f"target: dry run over {total} builds < 1 s: {dry:.3f} s {verdict}")


if __name__ == "__main__":
    main()
