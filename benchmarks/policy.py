"""What the package policy and the personal quota cost, against baselines in the same run.

    /tmp/venv/bin/python benchmarks/policy.py [-n 5]

1. Policy check of a real lock (specs/example.yaml, 33 packages, every name
   listed with a version spec) vs solving that lock: the check runs after
   every solve, so it must be small next to it.
2. Scale: a synthetic 1,500-package locked set (a large data-science
   environment) against a 20,000-entry allow list (a vetted mirror), half the
   packages version-restricted, one refused package deep in the graph (its
   chain computed) — vs the solve of step 1.
3. The quota's hardlink-aware usage scan of a personal root holding one build
   and its package cache vs `du -sk` of the same directories.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# This directory holds build.py, which would shadow the `build` package conda-lock imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

from envmgr.build.outcome import BuildOptions  # noqa: E402
from envmgr.build.pipeline import build_spec  # noqa: E402
from envmgr.channel.build import build_channel  # noqa: E402
from envmgr.config import load_config  # noqa: E402
from envmgr.fsutil import disk_usage  # noqa: E402
from envmgr.lockfile import LockedPackage, PackageSet  # noqa: E402
from envmgr.lock.solve import solve_spec  # noqa: E402
from envmgr.define.policy import check_package_set, load_policy, parse_policy_text  # noqa: E402
from envmgr.define.spec import load_spec  # noqa: E402


def median_seconds(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def policy_for(pkg_set: PackageSet) -> str:
    lines = ["allowed:"]
    lines += [f'  {p.name}: ">={p.version.split(".")[0]}"' for p in pkg_set.packages]
    return "\n".join(lines) + "\n"


def synthetic(count: int, allow_entries: int) -> tuple[PackageSet, str, list[str]]:
    rng = random.Random(9)
    names = [f"pkg{i:05d}" for i in range(count)]
    packages = []
    for i, name in enumerate(names):
        deps = tuple(f"{names[j]} >=1.0" for j in rng.sample(range(i + 1, count), min(4, count - i - 1)))
        packages.append(LockedPackage(name=name, version=f"{1 + i % 3}.{i % 17}.0", build="0",
                                      subdir="noarch", url=f"file:///c/noarch/{name}.conda",
                                      sha256="0" * 64, depends=deps))
    lines = ["allowed:"]
    for k in range(allow_entries):
        name = f"pkg{k:05d}"
        lines.append(f'  {name}: ">=1,<3"' if k % 2 else f"  {name}:")
    text = "\n".join(lines) + "\n"
    return PackageSet.of("linux-64", packages), text, names[:20]


def cli_lock_times(plain: Path, policed: Path, base: Path, n: int) -> tuple[float, float]:
    """Median wall time of `envmgr lock` without and with the policy, interleaved."""
    times: dict[Path, list[float]] = {plain: [], policed: []}
    for _ in range(n):
        for cfg in (plain, policed):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "envmgr", "--config", str(cfg), "lock",
                            str(REPO / "specs" / "example.yaml"), "-o", str(base / "out.yml")],
                           check=True, capture_output=True, cwd=REPO)
            times[cfg].append(time.perf_counter() - start)
    return statistics.median(times[plain]), statistics.median(times[policed])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory(prefix="envmgr-bench-policy-") as tmp:
        base = Path(tmp)
        channel = build_channel(base / "channel").path
        cfg_file = base / "config.yaml"
        cfg_file.write_text(f"root: {base / 'root'}\nkernels_dir: {base / 'kernels'}\n"
                            f"channels: {{demo: {Path(channel).as_uri()}}}\ncompile_pyc: false\n"
                            "min_free_space: 10M\n")
        config = load_config(config_path=cfg_file, environ={})
        spec = load_spec(REPO / "specs" / "example.yaml")

        lock = solve_spec(config, spec)
        policy = parse_policy_text(policy_for(lock.host_set), base / "policy.yaml")
        solve = median_seconds(lambda: solve_spec(config, spec), n)
        check = median_seconds(lambda: check_package_set(policy, lock.host_set, spec.dependencies), n)
        parse = median_seconds(lambda: parse_policy_text(policy_for(lock.host_set), base / "p.yaml"), n)
        print(f"1. real lock ({len(lock.host_set.packages)} packages): solve {solve * 1000:.0f} ms, "
              f"policy parse {parse * 1000:.1f} ms + check {check * 1000:.1f} ms "
              f"= {(parse + check) / solve:.1%} of the solve")
        (base / "policy.yaml").write_text(policy_for(lock.host_set))
        with_policy = base / "with-policy.yaml"
        with_policy.write_text(cfg_file.read_text() + f"policy: {{file: {base / 'policy.yaml'}}}\n")
        plain, policed = cli_lock_times(cfg_file, with_policy, base, n)
        print(f"   `envmgr lock` wall: {plain:.2f} s without a policy, {policed:.2f} s with it "
              f"({policed / plain:.2f}x)")

        big, text, roots = synthetic(1500, 20000)
        big_file = base / "big.yaml"
        big_file.write_text(text)
        big_parse = median_seconds(lambda: parse_policy_text(text, big_file), max(1, n // 2))
        big_policy = load_policy(big_file)  # the first load parses; later ones reuse it
        cached = median_seconds(lambda: load_policy(big_file), n)
        violations = check_package_set(big_policy, big, roots)
        big_check = median_seconds(lambda: check_package_set(big_policy, big, roots), n)
        print(f"2. 1,500 locked packages vs 20,000 allowed entries: check {big_check * 1000:.0f} ms "
              f"({len(violations)} refused, chains included) = {big_check / solve:.2f}x the "
              f"33-package solve; parsing the file {big_parse:.2f} s once per process, "
              f"then {cached * 1e6:.0f} us")

        outcome = build_spec(config, spec, BuildOptions())
        assert outcome.status == "built", outcome.error
        dirs = [config.root]
        scan = median_seconds(lambda: disk_usage(dirs), n)
        du = median_seconds(lambda: subprocess.run(["du", "-sk", *map(str, dirs)], check=True,
                                                   capture_output=True), n)
        used, inodes = disk_usage(dirs)
        print(f"3. quota scan of a personal root (1 build + cache, {len(inodes)} inodes, "
              f"{used / 1024**2:.0f} MiB): {scan * 1000:.0f} ms vs du -sk {du * 1000:.0f} ms "
              f"({scan / du:.1f}x)")


if __name__ == "__main__":
    main()
