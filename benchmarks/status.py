"""Status benchmark: `envmgr status` over 20 families, against the disk walk it avoids.

Setup (not timed): the demo channel, one real build of specs/example.yaml, then
20 families x 3 builds cloned from it with `cp -al` (real trees: every file is
there, hardlinked as the package cache would be), their records, latest
pointers, leases, last-run files, 5 stable releases and 20 spec files.

Measured in the same run:

* baseline: a hardlink-aware walk of the whole root and package cache, which a
  status without the cache would pay on every call;
* status with a cold disk measurement (--refresh), warm (cached), without disk,
  and with gc's /proc scan (--processes), in-process, median of N;
* the CLI: `envmgr status --json` wall time against `envmgr --help` (the CLI's
  fixed start-up cost), median of N.

Run: python benchmarks/status.py [--families 20] [--builds 3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from envmgr.catalog import stable
from envmgr.config import load_config  # noqa: E402
from envmgr.fsutil import disk_usage  # noqa: E402
from envmgr.layout import Layout  # noqa: E402
from envmgr.ops.status import collect_status  # noqa: E402


def envmgr(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envmgr", "--config", str(config), *args],
                          capture_output=True, text=True, check=True)


def first_build(base: Path) -> tuple[Path, Layout, str]:
    from envmgr.channel.build import build_channel

    channel = Path(build_channel(base / "channel").path)
    specs = base / "specs"
    specs.mkdir()
    config = base / "config.yaml"
    config.write_text(f"root: {base / 'root'}\npkgs_dir: {base / 'pkgs'}\nspecs_dir: {specs}\n"
                      f"kernels_dir: {base / 'kernels'}\nchannels: {{demo: {channel.as_uri()}}}\n"
                      "min_free_space: 10M\ncompile_pyc: false\n")
    shutil.copy(REPO / "specs" / "example.yaml", base / "example.yaml")
    result = json.loads(envmgr(config, "build", "--json", str(base / "example.yaml")).stdout)
    return config, Layout(base / "root"), result["result"]["builds"][0]["build_id"]


def clone_family(layout: Layout, source_id: str, family: str, builds: int, specs: Path) -> None:
    """`builds` builds of `family`, each a hardlinked copy of the example build."""
    src_prefix = layout.prefix("example", source_id)
    src_record = layout.record_dir("example", source_id)
    spec_text = (src_record / "spec.yaml").read_text().replace("name: example", f"name: {family}")
    (specs / f"{family}.yaml").write_text(spec_text)
    ids = [f"20260101T0{n:05d}Z-abcdef" for n in range(builds)]
    layout.family_dir(family).mkdir(parents=True)
    layout.lease_dir(family).mkdir(parents=True)
    for n, build_id in enumerate(ids):
        subprocess.run(["cp", "-al", str(src_prefix), str(layout.prefix(family, build_id))], check=True)
        rec_dir = layout.record_dir(family, build_id)
        rec_dir.mkdir(parents=True)
        for name in ("packages.json", "conda-lock.yml"):
            shutil.copy(src_record / name, rec_dir / name)
        (rec_dir / "spec.yaml").write_text(spec_text)
        record = json.loads((src_record / "build.json").read_text())
        record.update(family=family, build_id=build_id, latest_since=f"2026-01-0{n + 1}T00:00:00Z",
                      latest_until=None if n == builds - 1 else f"2026-01-0{n + 2}T00:00:00Z")
        (rec_dir / "build.json").write_text(json.dumps(record))
        layout.lease_file(family, build_id).touch()
    os.symlink(ids[-1], layout.latest_link(family))
    (layout.records_dir / family / "last-run.json").write_text(json.dumps(
        {"when": "2026-01-03T02:30:00Z", "status": "unchanged", "build_id": ids[-1], "error": None,
         "message": "unchanged"}))


def median_time(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def wall(argv: list[str], repeat: int) -> float:
    return median_time(lambda: subprocess.run(argv, capture_output=True, check=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=20)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="envmgr-bench-status-"))
    try:
        config_path, layout, source_id = first_build(base)
        for i in range(args.families):
            clone_family(layout, source_id, f"fam{i:02d}", args.builds, base / "specs")
        for i in range(min(5, args.families)):
            stable.record_promotion(layout, f"fam{i:02d}", "2026.1", "20260101T000000Z-abcdef",
                                    dt.date.today() + dt.timedelta(days=30 + 100 * i))
        config = load_config(config_path=config_path, environ={})
        entries = sum(1 for _ in layout.root.rglob("*"))
        report(config, config_path, layout, entries, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def report(config, config_path: Path, layout: Layout, entries: int, args) -> None:  # noqa: ANN001
    walk = median_time(lambda: disk_usage([layout.root, Path(config.pkgs_dir)]), args.repeat)
    cold = median_time(lambda: collect_status(config, refresh_disk=True), args.repeat)
    warm = median_time(lambda: collect_status(config), args.repeat)
    no_disk = median_time(lambda: collect_status(config, disk=False), args.repeat)
    procs = median_time(lambda: collect_status(config, processes=True), args.repeat)
    status = collect_status(config)
    assert len(status.families) == args.families + 1 and status.disk is not None and status.disk.cached
    cli = [sys.executable, "-m", "envmgr", "--config", str(config_path)]
    cli_status = wall([*cli, "status", "--json"], args.repeat)
    cli_help = wall([*cli, "--help"], args.repeat)
    nproc = sum(1 for p in os.listdir("/proc") if p.isdigit())
    print(f"root: {args.families + 1} families, {args.families * args.builds + 1} prefixes, "
          f"{entries} entries below the root; {nproc} processes on this host; "
          f"load {os.getloadavg()[0]:.1f}")
    rows = [
        ("baseline: hardlink-aware walk of root + package cache", walk),
        ("status, disk measured now (--refresh)", cold),
        ("status, disk from cache (default)", warm),
        ("status --no-disk", no_disk),
        ("status --processes (gc's /proc scan)", procs),
        ("CLI: envmgr --help (start-up baseline), wall", cli_help),
        ("CLI: envmgr status --json, wall", cli_status),
    ]
    for label, seconds in rows:
        print(f"  {label:<58} {seconds * 1000:9.1f} ms")
    print(f"  ratio warm status / walk baseline: {warm / walk:.3f}")
    print(f"  ratio cold status / walk baseline: {cold / walk:.2f}")
    print(f"  CLI status above CLI start-up: {(cli_status - cli_help) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
