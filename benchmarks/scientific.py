"""Scientific-stack benchmark: envmgr build vs bare py-rattler (+ compileall) vs cp -al.

The recipe, end to end, in one run on this machine:

1. ``pip download`` the wheels of numpy, scipy, pandas, matplotlib, h5py,
   pillow, ipykernel, ipywidgets and their dependencies into ``--wheels``
   (default ``~/.cache/envmgr-bench/scientific-wheels``; kept between runs, so
   later runs only re-check them);
2. ``envmgr channel build CHANNEL --wheel ...`` (a local file:// channel, kept
   beside the wheels; the channel is content-keyed, so later runs reuse it);
3. a spec for the family ``sci`` (the whole stack, smoke test importing it),
   and ``sci2`` sharing most packages (no h5py, no ipywidgets);
4. then, alternating, ``--repeat`` rounds of:

   * envmgr ``build`` **cold** (new root: empty package and .pyc caches);
   * bare **cold**: a py-rattler solve+install script into an empty cache,
     then ``python -m compileall -j0`` over its site-packages;
   * envmgr **warm** (``build --force``: the package and .pyc caches are full);
   * bare **warm**: solve+install with the full cache, without and with compileall;
   * envmgr **unchanged** (the nightly when nothing moved) vs a bare solve-only process;
   * envmgr build of a **second family** (a new ``sci2-<n>`` family in the warm root);
   * ``cp -al`` of a built prefix (the physical floor of a cached install);
   * CLI start-up: ``envmgr --help``, ``envmgr status`` on an empty root, against
     ``python -c 'import typer, rich.console'`` and ``python -c pass``.

It prints medians, the ratios the targets in issue 14 name, and disk (each
inode counted once: an extra identical build adds only what it does not share
with the first build, the package cache and the .pyc cache).

Run: python benchmarks/scientific.py [--repeat 3] [--wheels DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
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

from envmgr.fsutil import disk_usage  # noqa: E402

STACK = ["numpy", "scipy", "pandas", "matplotlib", "h5py", "pillow", "ipykernel", "ipywidgets"]
SPEC = """\
name: {name}
display_name: Scientific {name}
group: Benchmarks
channels: [{channel}]
dependencies:
  - python 3.*
{deps}
smoke_test:
  imports: [{imports}]
"""
IMPORTS = {"numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "matplotlib": "matplotlib",
           "h5py": "h5py", "pillow": "PIL", "ipykernel": "ipykernel", "ipywidgets": "ipywidgets"}
SECOND = [p for p in STACK if p not in ("h5py", "ipywidgets")]

BARE = r"""
import asyncio, sys, time
from pathlib import Path
import rattler
channel, target, cache, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
specs = [rattler.MatchSpec(s) for s in sys.argv[5:]]
start = time.monotonic()
vpkgs = [vp.into_generic() for vp in rattler.VirtualPackage.detect()]
records = asyncio.run(rattler.solve([channel], specs, gateway=rattler.Gateway(),
                                    platforms=["linux-64", "noarch"], virtual_packages=vpkgs))
solved = time.monotonic()
if mode == "install":
    asyncio.run(rattler.install(records, target_prefix=Path(target), cache_dir=Path(cache),
                                show_progress=False, execute_link_scripts=False))
print(f"{solved - start} {time.monotonic() - solved}", flush=True)
import os; os._exit(0)  # py-rattler 0.28 may crash at interpreter exit (docs/design.md)
"""


def envmgr_command() -> list[str]:
    """The console script beside this python (what users and cron run), else ``python -m envmgr``."""
    script = Path(sys.executable).with_name("envmgr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "envmgr"]


ENVMGR = envmgr_command()


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env or os.environ.copy(), cwd=cwd)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc.stdout


def download(wheels: Path) -> list[Path]:
    wheels.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "-d", str(wheels),
         *STACK])
    return sorted(wheels.glob("*.whl"))


class Envmgr:
    def __init__(self, config: Path):
        self.config = config

    def __call__(self, *args: str) -> tuple[float, dict]:
        wall, out = run([*ENVMGR, "--config", str(self.config), *args, "--json"])
        return wall, json.loads(out)["result"]

    def build(self, *args: str) -> tuple[float, dict]:
        wall, result = self("build", *args)
        return wall, result["builds"][0]


def write_config(path: Path, root: Path, channel: Path, specs: Path) -> Path:
    path.write_text(f"root: {root}\nkernels_dir: {root / 'kernels'}\nspecs_dir: {specs}\n"
                    f"channels:\n  sci: {channel}\nmin_free_space: 1G\n")
    return path


def write_spec(specs: Path, name: str, packages: list[str]) -> Path:
    path = specs / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, channel="sci", deps="\n".join(f"  - {p}" for p in packages),
                                imports=", ".join(IMPORTS[p] for p in packages)))
    return path


def bare(channel: Path, target: Path, cache: Path, packages: list[str], mode: str = "install"
         ) -> tuple[float, float, float]:
    """(process wall, solve, install) of the bare py-rattler script."""
    wall, out = run([sys.executable, "-c", BARE, channel.as_uri(), str(target), str(cache), mode,
                     "python 3.*", *packages])
    solve, install = (float(x) for x in out.split())
    return wall, solve, install


def compileall(prefix: Path) -> float:
    sites = [str(p) for p in prefix.glob("lib/python3*/site-packages")]
    wall, _ = run([str(prefix / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", *sites],
                  env={"PATH": "/usr/bin:/bin"})
    return wall


def pyc_files(prefix: Path) -> int:
    return sum(1 for _ in prefix.rglob("*.pyc"))


def startup(base: Path, rows: dict[str, list[float]]) -> None:
    """CLI start-up against the CLI framework's floor, in the same round."""
    empty = base / "empty-root"
    rows.setdefault("help", []).append(run([*ENVMGR, "--help"])[0])
    rows.setdefault("status_empty", []).append(
        run([*ENVMGR, "--root", str(empty), "status", "--json"])[0])
    rows.setdefault("typer_floor", []).append(run([sys.executable, "-c", "import typer, rich.console"])[0])
    rows.setdefault("python_pass", []).append(run([sys.executable, "-c", "pass"])[0])


def startup_rounds(warm: Envmgr, spec: Path, channel: Path, warm_root: Path, base: Path,
                   repeat: int) -> None:
    _, first = warm.build(str(spec))
    rows: dict[str, list[float]] = {}
    for n in range(repeat):
        print(f"round {n + 1}/{repeat}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
        wall, result = warm.build(str(spec))
        assert result["status"] == "unchanged", result
        rows.setdefault("unchanged", []).append(wall)
        wall, _, _ = bare(channel, base / "unused", warm_root / "pkgs", STACK, mode="solve")
        rows.setdefault("solve_only", []).append(wall)
        startup(base, rows)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(json.dumps({"load_after": os.getloadavg(), "medians_s": {k: round(v, 3) for k, v in med.items()},
                      "ratios": {
                          "unchanged_vs_solve_only_process (target <= 2)":
                              round(med["unchanged"] / med["solve_only"], 2),
                          "status_empty_vs_typer_floor (target <= 1.5)":
                              round(med["status_empty"] / med["typer_floor"], 2),
                          "help_vs_typer_floor": round(med["help"] / med["typer_floor"], 2)}}, indent=2))


def main() -> None:  # noqa: PLR0915 - a linear recipe reads best in one place
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wheels", type=Path,
                        default=Path.home() / ".cache" / "envmgr-bench" / "scientific-wheels")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a temp dir)")
    parser.add_argument("--startup-only", action="store_true",
                        help="one warm build, then only the unchanged nightly and CLI start-up rounds")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    work_ctx = tempfile.TemporaryDirectory(prefix="envmgr-sci-", dir=args.work)
    with work_ctx as tmp:
        base = Path(tmp)
        wheels = download(args.wheels)
        print(f"{len(wheels)} wheels in {args.wheels}", file=sys.stderr)
        channel = args.wheels.parent / "scientific-channel"  # content-keyed: reused when unchanged
        channel_wall, _ = run([*ENVMGR, "channel", "build", str(channel),
                               *[a for w in wheels for a in ("--wheel", str(w))]])
        specs = base / "specs"
        specs.mkdir()
        spec = write_spec(specs, "sci", STACK)
        warm_root = base / "warm"
        warm = Envmgr(write_config(base / "warm.yaml", warm_root, channel, specs))
        rows: dict[str, list[float]] = {k: [] for k in (
            "cold", "cold_install", "cold_pyc", "bare_cold", "bare_cold_compileall",
            "warm", "warm_install", "warm_pyc", "warm_smoke", "bare_warm", "bare_warm_install",
            "bare_warm_compileall", "unchanged", "solve_only", "second_family", "cp_al",
            "help", "status_empty", "typer_floor", "python_pass")}
        first = None
        warm_builds = []
        if args.startup_only:
            startup_rounds(warm, spec, channel, warm_root, base, args.repeat)
            return
        for n in range(args.repeat):
            print(f"round {n + 1}/{args.repeat}, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
            # cold: a new root with empty caches
            cold_root = base / f"cold{n}"
            cold = Envmgr(write_config(base / f"cold{n}.yaml", cold_root, channel, specs))
            wall, built = cold.build(str(spec))
            assert built["status"] == "built", built
            rows["cold"].append(wall)
            rows["cold_install"].append(built["timings"]["install"])
            rows["cold_pyc"].append(built["timings"].get("pyc", 0.0))
            shutil.rmtree(cold_root)
            # bare cold: empty cache, then compileall
            cache = base / f"bare-cache{n}"
            target = base / f"bare-cold{n}"
            wall, _, _ = bare(channel, target, cache, STACK)
            rows["bare_cold"].append(wall)
            rows["bare_cold_compileall"].append(wall + compileall(target))
            shutil.rmtree(target)
            shutil.rmtree(cache)
            # warm: the first round fills the warm root's caches
            if first is None:
                _, first = warm.build(str(spec))
            wall, built = warm.build(str(spec), "--force")
            assert built["status"] == "built", built
            warm_builds.append(built)
            rows["warm"].append(wall)
            rows["warm_install"].append(built["timings"]["install"])
            rows["warm_pyc"].append(built["timings"].get("pyc", 0.0))
            rows["warm_smoke"].append(built["timings"].get("smoke", 0.0))
            target = base / f"bare-warm{n}"
            wall, _, install = bare(channel, target, warm_root / "pkgs", STACK)
            rows["bare_warm"].append(wall)
            rows["bare_warm_install"].append(install)
            rows["bare_warm_compileall"].append(wall + compileall(target))
            shutil.rmtree(target)
            wall, result = warm.build(str(spec))
            assert result["status"] == "unchanged", result
            rows["unchanged"].append(wall)
            wall, _, _ = bare(channel, base / "unused", warm_root / "pkgs", STACK, mode="solve")
            rows["solve_only"].append(wall)
            second = write_spec(specs, f"sci2-{n}", SECOND)
            wall, result = warm.build(str(second))
            assert result["status"] == "built", result
            rows["second_family"].append(wall)
            copy = base / f"copy{n}"
            start = time.monotonic()
            subprocess.run(["cp", "-al", str(first["prefix"]), str(copy)], check=True)
            rows["cp_al"].append(time.monotonic() - start)
            shutil.rmtree(copy)
            startup(base, rows)

        first_prefix = Path(first["prefix"])
        extra_prefix = Path(warm_builds[0]["prefix"])
        first_bytes, _ = disk_usage([first_prefix])
        _, shared = disk_usage([first_prefix, warm_root / "pkgs"])
        added, _ = disk_usage([extra_prefix], exclude_inodes=shared)
        pyc_bytes, _ = disk_usage(list(first_prefix.rglob("__pycache__")))
        file_count = sum(1 for p in first_prefix.rglob("*") if not p.is_dir())
        med = {k: statistics.median(v) for k, v in rows.items() if v}
        ratio = lambda a, b: round(med[a] / med[b], 2)  # noqa: E731
        figures = {
            "load_after": os.getloadavg(),
            "wheels": len(wheels), "packages": first["package_count"], "files_in_prefix": file_count,
            "pyc_files_in_prefix": pyc_files(first_prefix), "channel_build_s": round(channel_wall, 1),
            "first_build_pyc": first.get("pyc"), "warm_build_pyc": warm_builds[-1].get("pyc"),
            "medians_s": {k: round(v, 3) for k, v in med.items()},
            "ratios": {
                "warm_vs_bare_warm_plus_compileall (target <= 0.3)": ratio("warm", "bare_warm_compileall"),
                "warm_vs_bare_warm_install_process (target <= 6)": ratio("warm", "bare_warm"),
                "cold_vs_bare_cold_plus_compileall (target <= 1.0)": ratio("cold", "bare_cold_compileall"),
                "install_step_vs_cp_al (target <= 2)": ratio("warm_install", "cp_al"),
                "install_step_vs_bare_rattler_install": ratio("warm_install", "bare_warm_install"),
                "unchanged_vs_solve_only_process (target <= 2)": ratio("unchanged", "solve_only"),
                "second_family_vs_warm": ratio("second_family", "warm"),
                "status_empty_vs_typer_floor (target <= 1.5)": ratio("status_empty", "typer_floor"),
                "help_vs_typer_floor": ratio("help", "typer_floor"),
            },
            "disk": {
                "first_build_mib": round(first_bytes / 2**20, 1),
                "first_build_pyc_mib": round(pyc_bytes / 2**20, 1),
                "extra_identical_build_adds_mib": round(added / 2**20, 2),
                "extra_identical_build_adds_pct (target <= 5)": round(100 * added / first_bytes, 2),
            },
        }
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
