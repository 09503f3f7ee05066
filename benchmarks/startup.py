"""CLI start-up: `envmgr status --json` on an empty root and at 5,000 builds, against typer's floor.

    python benchmarks/startup.py [--families 500] [--builds 10] [-n 15]

Issue 14's targets: ``envmgr status`` on an empty root within 1.5x of
``python -c 'import typer, rich.console'`` (the CLI framework's own import),
and ``envmgr status --json`` on a site of 5,000 builds within 2x of the
empty-root figure. The large site is synthetic (``hub_service.make_site``:
records, published prefix directories, latest links, a stable release, a spec
and a staff-page job per family; no packages), with a config file, as a real
site has. Before timing, one ``status --refresh`` call warms what the nightly
leaves warm (the disk-usage cache, the parsed-spec cache and the status cache:
the nightly ends with ``envmgr status --refresh``), and the script waits until
every family is served from the status cache (entries are stored once their
inputs are 2 s old). The same call with ``ENVMGR_NO_CACHE=1`` shows what every
entry costs to compute. Every command is a fresh process through the
installed ``envmgr`` console script, alternating, median of ``-n`` rounds.
Run it from an install that has its ``.pyc`` files (``pip install .``
compiles them): an editable install under ``PYTHONDONTWRITEBYTECODE=1``
compiles every envmgr module in every run, and the script says so.
Also shown: a minimal typer 0.29 app with one ``Path`` option (what any typer
command costs: typer coerces option values through pydantic, which
``envmgr._internal._typer`` avoids for plain options) and ``envmgr --help``.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hub_service import make_site  # noqa: E402

MINIMAL_TYPER = """
from pathlib import Path
import typer
app = typer.Typer()
@app.command()
def main(root: Path = typer.Option(None, "--root")) -> None:
    print("{}")
app()
"""


def envmgr_command() -> list[str]:
    """The console script beside this python (what users run), else ``python -m envmgr``."""
    script = Path(sys.executable).with_name("envmgr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "envmgr"]


def missing_bytecode() -> list[str]:
    """envmgr modules of this python's install that have no .pyc (each run compiles them)."""
    import importlib.util

    spec = importlib.util.find_spec("envmgr")
    if spec is None or not spec.submodule_search_locations:
        return []
    base = Path(next(iter(spec.submodule_search_locations)))
    return [str(p.relative_to(base)) for p in sorted(base.rglob("*.py"))
            if not Path(importlib.util.cache_from_source(str(p))).exists()]


def cached_families(argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    doc = json.loads(subprocess.run(argv, capture_output=True, text=True, env=env).stdout)["result"]
    return doc["cached_families"], len(doc["families"])


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.monotonic() - start
    if proc.returncode not in (0, 1):  # status exits 1 when it has warnings
        raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--families", type=int, default=500)
    parser.add_argument("--builds", type=int, default=10)
    parser.add_argument("-n", type=int, default=15)
    args = parser.parse_args()
    envmgr = envmgr_command()
    with tempfile.TemporaryDirectory(prefix="envmgr-startup-") as tmp:
        base = Path(tmp)
        env = {**os.environ, "XDG_CACHE_HOME": str(base / "cache")}
        print(f"load before: {os.getloadavg()}", file=sys.stderr)
        site = base / "site"
        site.mkdir()
        config = make_site(site, args.families, args.builds)
        empty = base / "empty-root"
        subprocess.run([*envmgr, "--config", str(config), "status", "--json", "--refresh"],
                       stdout=subprocess.DEVNULL, env=env, check=False)  # what the nightly leaves
        subprocess.run([*envmgr, "--root", str(empty), "status", "--json"],
                       stdout=subprocess.DEVNULL, env=env, check=False)
        large = [*envmgr, "--config", str(config), "status", "--json"]
        for _ in range(50):  # until every entry is stored: inputs younger than 2 s are not
            time.sleep(0.5)
            cached, families = cached_families(large, env)
            if cached == families:
                break
        print(f"status cache: {cached} of {families} families served", file=sys.stderr)
        uncompiled = missing_bytecode()
        if uncompiled:
            print(f"warning: {len(uncompiled)} envmgr modules have no .pyc (e.g. {uncompiled[0]}): every "
                  "run compiles them; install with `pip install .` for what users see", file=sys.stderr)
        builds = families * args.builds
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "floor: python -c 'import typer, rich.console'": [sys.executable, "-c",
                                                              "import typer, rich.console"],
            "a minimal typer app with one Path option": [sys.executable, "-c", MINIMAL_TYPER,
                                                         "--root", str(empty)],
            "envmgr --help": [*envmgr, "--help"],
            "envmgr status --json, empty root": [*envmgr, "--root", str(empty), "status", "--json"],
            f"envmgr status --json, {builds} builds": large,
            f"envmgr status --json, {builds} builds, ENVMGR_NO_CACHE=1": large,
        }
        no_cache = {**env, "ENVMGR_NO_CACHE": "1"}
        rows: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.n):
            for name, argv in commands.items():
                rows[name].append(timed(argv, no_cache if name.endswith("ENVMGR_NO_CACHE=1") else env))
        med = {k: statistics.median(v) for k, v in rows.items()}
    floor = med["floor: python -c 'import typer, rich.console'"]
    empty_s = med["envmgr status --json, empty root"]
    large_s = med[f"envmgr status --json, {builds} builds"]
    print(json.dumps({
        "load_after": os.getloadavg(), "rounds": args.n, "python": sys.version.split()[0],
        "medians_ms": {k: round(v * 1000, 1) for k, v in med.items()},
        "ratios": {
            "status_empty_vs_floor (target <= 1.5)": round(empty_s / floor, 2),
            f"status_{builds}_builds_vs_status_empty (target <= 2)": round(large_s / empty_s, 2),
            f"status_{builds}_builds_uncached_vs_status_empty": round(
                med[f"envmgr status --json, {builds} builds, ENVMGR_NO_CACHE=1"] / empty_s, 2),
            "minimal_typer_app_vs_floor": round(med["a minimal typer app with one Path option"] / floor, 2),
            "help_vs_floor": round(med["envmgr --help"] / floor, 2),
        }}, indent=2))


if __name__ == "__main__":
    main()
