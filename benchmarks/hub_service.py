"""What the staff page's ``api/state`` costs on a large site, against ``envmgr status``.

    /tmp/venv/bin/python benchmarks/hub_service.py [--families 40] [--builds 6] [-n 7]

The page refreshes ``api/state`` every 3 s while a build runs (15 s otherwise),
so assembling it must stay cheap. It is ``status.collect_status(disk=False)``
plus, per family, the spec list, the job files and the rollback target; this
measures both on the same synthetic root (records, published prefix
directories, latest links, one stable release and a finished page job per
family; no conda packages) and prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from envmgr.catalog import records
from envmgr.config import load_config  # noqa: E402
from envmgr.fsutil import atomic_symlink, atomic_write_json  # noqa: E402
from envmgr.hubservice.jobs import Job, JobStore  # noqa: E402
from envmgr.hubservice.pagedata import SpecCache, page_state  # noqa: E402
from envmgr.catalog.records import BuildRecord  # noqa: E402
from envmgr.catalog.stable import record_promotion  # noqa: E402
from envmgr.ops.status import collect_status  # noqa: E402

SPEC = """\
name: {name}
display_name: Family {i}
group: Group {group}
channels: [demo]
dependencies: [python 3.*, ipykernel]
"""


def make_site(tmp: Path, families: int, builds: int) -> Path:
    import datetime as dt

    specs = tmp / "specs"
    specs.mkdir()
    config_file = tmp / "config.yaml"
    config_file.write_text(f"root: {tmp / 'root'}\nspecs_dir: {specs}\nkernels_dir: {tmp / 'kernels'}\n")
    config = load_config(config_path=config_file, environ={})
    layout, store = config.layout, JobStore(config)
    for i in range(families):
        name = f"fam{i:03d}"
        (specs / f"{name}.yaml").write_text(SPEC.format(name=name, i=i, group=i % 5))
        ids = [f"202611{d + 1:02d}T020000Z-{i:03d}{d:03d}" for d in range(builds)]
        for build_id in ids:
            records.save(layout, BuildRecord(family=name, build_id=build_id, status=records.OK,
                                             started=f"{build_id[:4]}-{build_id[4:6]}-{build_id[6:8]}T02:00:00Z",
                                             finished="2026-11-01T02:05:00Z", package_count=120))
            layout.prefix(name, build_id).mkdir(parents=True)
        atomic_symlink(ids[-1], layout.latest_link(name))
        record_promotion(layout, name, "2026.1", ids[0], dt.date(2029, 11, 1))
        job = Job(job_id="20261101T020000Z-abcdef", family=name, user="staff", started="2026-11-01T02:00:00Z",
                  host=store.host, argv=[], latest_before=ids[-2], ended="2026-11-01T02:05:00Z", exit_code=0,
                  outcome={"status": "built", "build_id": ids[-1]})
        atomic_write_json(store.meta_path(name, job.job_id), job.to_json())
    return config_file


def interleaved_medians(funcs: dict, n: int) -> dict[str, float]:
    """Median seconds of each function, run in turn n times so machine drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(n):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", type=int, default=40)
    parser.add_argument("--builds", type=int, default=6)
    parser.add_argument("-n", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(config_path=make_site(Path(tmp), args.families, args.builds), environ={})
        store, cache = JobStore(config), SpecCache()
        page_state(config, store, cache)  # warm imports and the service's spec cache
        m = interleaved_medians({
            "envmgr status (collect_status, disk=False)": lambda: collect_status(config, disk=False),
            "api/state, specs parsed on every request": lambda: page_state(config, store, SpecCache()),
            "api/state, with the service's spec cache": lambda: page_state(config, store, cache),
        }, args.n)
    print(f"{args.families} families x {args.builds} builds, median of {args.n} interleaved runs:")
    base = next(iter(m.values()))
    for name, seconds in m.items():
        print(f"  {name:44s} {seconds * 1000:8.1f} ms  {seconds / base:5.2f} x status")


if __name__ == "__main__":
    main()
