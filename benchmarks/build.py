"""Build benchmark: cold, warm, unchanged nightly, disk of a second build, vs bare rattler.

Everything runs in one process tree on this machine, in a temporary directory:

1. the demo channel (cold, then cached);
2. a cold build (empty package cache) of specs/example.yaml with .pyc compilation;
3. the unchanged nightly (same spec again: must build nothing);
4. a warm build (`--force`, package cache full), step by step;
5. a bare `rattler.install` of the same solved records into a fresh prefix with the
   same cache, in the same run: the baseline for envmgr's install step;
6. the disk a second build of the same package set adds, counting each inode once
   (hardlinks into the package cache and the first build are free).

Run: python benchmarks/build.py [--repeat N]
"""

from __future__ import annotations

import argparse
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

from envmgr.fsutil import disk_usage  # noqa: E402

BARE_INSTALL = r"""
import sys, time, os
from pathlib import Path
from envmgr._internal import _rattler
from envmgr._internal._exit import hard_exit
channel, target, cache = sys.argv[1:4]
records = _rattler.solve(["python 3.*", "ipykernel >=6", "envmgr-demo-b >=1.0"], [channel])
start = time.monotonic()
_rattler.install(records, Path(target), Path(cache))
print(time.monotonic() - start)
hard_exit(0)
"""


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def envmgr(config: Path, *args: str, env: dict[str, str]) -> tuple[float, dict]:
    elapsed, out = run([sys.executable, "-m", "envmgr", "--config", str(config), *args, "--json"], env)
    return elapsed, json.loads(out)["result"]


def build_json(config: Path, *args: str, env: dict[str, str]) -> tuple[float, dict]:
    elapsed, result = envmgr(config, "build", *args, env=env)
    return elapsed, result["builds"][0]


def record_timings(root: Path, build_id: str) -> dict[str, float]:
    return json.loads((root / "records" / "example" / build_id / "build.json").read_text())["timings"]


def pyc_bytes(prefix: Path) -> int:
    """Bytes of compiled bytecode: written per build (it embeds the prefix path)."""
    return sum(p.stat().st_blocks * 512 for p in prefix.rglob("*.pyc"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="warm builds and bare installs to time")
    args = parser.parse_args()
    env = {**os.environ}
    with tempfile.TemporaryDirectory(prefix="envmgr-bench-") as tmp:
        base = Path(tmp)
        from envmgr.channel.build import build_channel

        start = time.monotonic()
        channel = build_channel(base / "channel")
        channel_cold = time.monotonic() - start
        start = time.monotonic()
        build_channel(base / "channel")
        channel_cached = time.monotonic() - start

        config = base / "config.yaml"
        config.write_text(f"root: {base / 'root'}\nkernels_dir: {base / 'kernels'}\n"
                          f"specs_dir: {REPO / 'specs'}\nchannels:\n  demo: {channel.path}\n"
                          "min_free_space: 100M\n")
        spec = str(REPO / "specs" / "example.yaml")

        cold_wall, cold = build_json(config, spec, env=env)
        unchanged = [build_json(config, spec, env=env) for _ in range(args.repeat)]
        assert all(u["status"] == "unchanged" for _, u in unchanged)
        warm = [build_json(config, spec, "--force", env=env) for _ in range(args.repeat)]
        bare, bare_process = [], []
        for i in range(args.repeat):
            wall, out = run([sys.executable, "-c", BARE_INSTALL, channel.url, str(base / f"bare{i}"),
                             str(base / "root" / "pkgs")], env)
            bare.append(float(out.strip()))
            bare_process.append(wall)

        root = base / "root"
        cold_t = record_timings(root, cold["build_id"])
        warm_t = [record_timings(root, w["build_id"]) for _, w in warm]
        first_prefix = Path(cold["prefix"])
        second_prefix = Path(warm[0][1]["prefix"])
        first_bytes, _ = disk_usage([first_prefix])
        _, kept = disk_usage([first_prefix, root / "pkgs"])
        added, _ = disk_usage([second_prefix], exclude_inodes=kept)
        pyc_added = pyc_bytes(second_prefix)

        med = statistics.median
        warm_install = med(t["install"] for t in warm_t)
        warm_wall = med(w for w, _ in warm)
        warm_pyc = med(t.get("pyc", 0.0) for t in warm_t)
        warm_smoke = med(t.get("smoke", 0.0) for t in warm_t)
        bare_install = med(bare)
        packages = cold["package_count"]
        figures = {
            "packages": packages,
            "channel_cold_s": round(channel_cold, 2),
            "channel_cached_s": round(channel_cached, 3),
            "cold_build_wall_s": round(cold_wall, 2),
            "cold_steps_s": cold_t,
            "unchanged_nightly_wall_s": round(med(w for w, _ in unchanged), 3),
            "warm_build_wall_s": round(warm_wall, 2),
            "warm_install_step_s": round(warm_install, 3),
            "warm_pyc_step_s": round(warm_pyc, 2),
            "warm_smoke_step_s": round(warm_smoke, 2),
            "warm_build_without_pyc_and_smoke_s": round(warm_wall - warm_pyc - warm_smoke, 3),
            "bare_rattler_install_s": round(bare_install, 3),
            "ratio_install_step_vs_bare": round(warm_install / bare_install, 2),
            "bare_process_solve_and_install_s": round(med(bare_process), 3),
            "ratio_build_without_pyc_and_smoke_vs_bare_process": round(
                (warm_wall - warm_pyc - warm_smoke) / med(bare_process), 2),
            "first_build_disk_mb": round(first_bytes / 1e6, 1),
            "second_build_adds_mb": round(added / 1e6, 2),
            "second_build_adds_pct": round(100 * added / first_bytes, 1),
            "second_build_pyc_mb": round(pyc_added / 1e6, 2),
            "second_build_adds_without_pyc_pct": round(100 * (added - pyc_added) / first_bytes, 1),
        }
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
