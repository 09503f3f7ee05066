"""What the SBOM and the advisories check cost, against baselines in the same run.

    python benchmarks/advisories.py [--records 15000] [--packages 1500] [-n 5]

1. Reading an OSV dump the size of osv.dev's PyPI/all.zip (15,000 records in one
   zip, every one with ranges) with ``advisories.load_db`` vs only ``json.loads``
   of the same members: what envmgr's checking of each record adds.
2. ``cached_db`` on an unchanged directory (what ``build --all`` pays per family
   after the first) vs the first load.
3. Matching a 1,500-package build (a large data-science environment) against
   that database vs building a ``set`` of its names (the cheapest possible lookup).
4. The CycloneDX SBOM of that build (``sbom.cyclonedx_json``, cyclonedx-python-lib)
   vs ``json.dumps`` of its packages.json: the build-time cost of the SBOM.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

from envmgr.catalog import advisories as advisory_db  # noqa: E402
from envmgr.catalog.advisories import load_db, match_packages  # noqa: E402
from envmgr.catalog.sbom import SbomInfo, SbomPackage, cyclonedx_json  # noqa: E402


def median_seconds(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_dump(directory: Path, records: int, names: list[str]) -> Path:
    rng = random.Random(17)
    (directory / "PyPI").mkdir(parents=True)
    path = directory / "PyPI" / "all.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(records):
            name = rng.choice(names) if i % 10 == 0 else f"other-project-{i}"
            record = {"schema_version": "1.6.0", "id": f"PYSEC-2026-{i}", "modified": "2026-11-30T00:00:00Z",
                      "summary": "synthetic", "aliases": [f"CVE-2026-{i}"],
                      "database_specific": {"severity": "MODERATE"},
                      "affected": [{"package": {"ecosystem": "PyPI", "name": name},
                                    "ranges": [{"type": "ECOSYSTEM", "events": [
                                        {"introduced": "0"}, {"fixed": f"{rng.randint(1, 3)}.{rng.randint(0, 20)}"}]}],
                                    "versions": [f"1.{k}" for k in range(rng.randint(0, 30))]}]}
            zf.writestr(f"PYSEC-2026-{i}.json", json.dumps(record, indent=2))
    return path


def json_only(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(len(json.loads(zf.read(m))) for m in zf.namelist())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=15000)
    parser.add_argument("--packages", type=int, default=1500)
    parser.add_argument("-n", type=int, default=5)
    args = parser.parse_args()
    names = [f"pkg{i:05d}" for i in range(args.packages)]
    packages = [("conda", name, f"{1 + i % 3}.{i % 17}") for i, name in enumerate(names)]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "osv"
        dump = write_dump(directory, args.records, names)
        baseline = median_seconds(lambda: json_only(dump), args.n)
        loaded = median_seconds(lambda: load_db(directory), args.n)
        print(f"1. load {args.records} records: {loaded:.2f} s vs json.loads only {baseline:.2f} s "
              f"(x{loaded / baseline:.2f})")
        advisory_db._DB_CACHE.clear()
        first = median_seconds(lambda: (advisory_db._DB_CACHE.clear(), advisory_db.cached_db(directory)), 1)
        again = median_seconds(lambda: advisory_db.cached_db(directory), args.n)
        print(f"2. cached_db again: {again * 1000:.1f} ms vs first load {first:.2f} s (x{again / first:.4f})")
        db = load_db(directory)
        found: list = []
        match = median_seconds(lambda: found.append(match_packages(db, packages)), args.n)
        names_set = median_seconds(lambda: {p[1] for p in packages}, args.n)
        print(f"3. match {args.packages} packages: {match * 1000:.1f} ms ({len(found[-1])} matches) "
              f"vs a name set {names_set * 1000:.3f} ms (x{match / names_set:.0f})")
    info = SbomInfo("bench", "20261201T000000Z-abcdef", "ab" * 32, "cd" * 32, "linux-64",
                    "2026-12-01T00:00:00Z",
                    tuple(SbomPackage("conda", name, f"1.{i % 17}", build="py_0", subdir="noarch",
                                      channel="conda-forge", url=f"https://m.example.org/cf/noarch/{name}-1.0-py_0.conda",
                                      sha256="0" * 64, license="MIT", depends=(names[(i + 1) % len(names)],))
                          for i, name in enumerate(names)))
    sbom_s = median_seconds(lambda: cyclonedx_json(info), args.n)
    plain = median_seconds(lambda: json.dumps([p.__dict__ for p in info.packages], indent=2), args.n)
    print(f"4. CycloneDX SBOM of {args.packages} packages: {sbom_s:.2f} s vs json.dumps {plain * 1000:.1f} ms "
          f"(x{sbom_s / plain:.0f})")


if __name__ == "__main__":
    main()
