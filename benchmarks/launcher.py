"""What the kernel launcher costs, and how /api/kernelspecs scales.

    /tmp/venv/bin/python benchmarks/launcher.py [-n 10]

1. Kernel start-to-ready (KernelManager.start_kernel + wait_for_ready) through
   the launcher vs a direct argv on the same build, interleaved so drift hits
   both alike; prints medians and the median ratio.
2. The launcher alone: exec'ing /bin/true through it vs directly.
3. GET /api/kernelspecs on a real jupyter server with 1 family and with
   20 families x (latest + 5 stable releases) = 120 kernelspecs.

Builds come from the test suite's build fixture (tests/test_launcher.make_build).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

from envmgr.kernels.kernelspecs import KernelFamily, sync_family_kernels  # noqa: E402
from envmgr.layout import Layout  # noqa: E402
from tests.test_launcher import LAUNCHER, Server, build_id, flip_latest, make_build  # noqa: E402


def start_to_ready(kernels_dir: Path, name: str) -> float:
    """Seconds from start_kernel to a kernel_info reply; the kernel is shut down after."""
    ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    started = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        return time.perf_counter() - started
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def bench_kernels(tmp: Path, n: int) -> None:
    layout = Layout(tmp / "root")
    kernels_dir = tmp / "kernels"
    prefix = make_build(layout, "bench", build_id(1))
    flip_latest(layout, "bench", build_id(1))
    sync_family_kernels(kernels_dir, layout, KernelFamily("bench", "Bench", latest_build=build_id(1)))
    direct = kernels_dir / "direct"
    direct.mkdir()
    (direct / "kernel.json").write_text(json.dumps({
        "argv": [str(prefix / "bin" / "python"), "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "direct", "language": "python", "interrupt_mode": "signal"}))

    true = "/bin/true"
    argv = ["/bin/sh", str(LAUNCHER), "--lease-dir", str(layout.lease_dir("bench")), "--",
            str(layout.latest_link("bench")), true]
    launcher, plain = [], []
    for _ in range(50):
        launcher.append(_run_time(argv))
        plain.append(_run_time([true]))
    print(f"launcher alone (exec /bin/true), N=50: median {statistics.median(launcher) * 1000:.2f} ms"
          f" vs {statistics.median(plain) * 1000:.2f} ms direct")

    times: dict[str, list[float]] = {"bench-latest": [], "direct": []}
    start_to_ready(kernels_dir, "direct")  # warm the page cache once
    for i in range(n):
        order = ["bench-latest", "direct"] if i % 2 == 0 else ["direct", "bench-latest"]
        for name in order:
            times[name].append(start_to_ready(kernels_dir, name))
    via, raw = statistics.median(times["bench-latest"]), statistics.median(times["direct"])
    ratios = [a / b for a, b in zip(times["bench-latest"], times["direct"], strict=True)]
    print(f"start-to-ready, N={n} each, interleaved")
    print(f"  via launcher: median {via * 1000:7.1f} ms  (min {min(times['bench-latest']) * 1000:.1f})")
    print(f"  direct argv:  median {raw * 1000:7.1f} ms  (min {min(times['direct']) * 1000:.1f})")
    print(f"  ratio of medians {via / raw:.3f}; median of paired ratios {statistics.median(ratios):.3f}")


def _run_time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


def bench_kernelspecs(tmp: Path, families: int, releases: int, n: int = 30) -> float:
    """Median seconds of GET /api/kernelspecs with families x (latest + releases) kernelspecs."""
    layout = Layout(tmp / "root")
    share = tmp / "share" / "jupyter"
    for f in range(families):
        stable = [(f"2024.{r + 1:02d}", build_id(100 + r), "2024-01-01T00:00:00Z", "2027-01-01")
                  for r in range(releases)]
        fam = KernelFamily(f"fam{f:02d}", f"Family {f:02d}", group="bench", latest_build=build_id(1),
                           latest_built="2025-01-01T00:00:00Z", stable=stable)
        sync_family_kernels(share / "kernels", layout, fam)
    server = Server(tmp, share)
    try:
        count = len(server.api("GET", "/api/kernelspecs").json()["kernelspecs"])
        times = []
        for _ in range(n):
            started = time.perf_counter()
            server.api("GET", "/api/kernelspecs")
            times.append(time.perf_counter() - started)
    finally:
        server.stop()
    median = statistics.median(times)
    what = f"{families} famil{'y' if families == 1 else 'ies'} x (latest + {releases} stable)"
    print(f"GET /api/kernelspecs, {count} kernelspecs ({what}"
          f" + the dev venv's python3), N={n}: median {median * 1000:.1f} ms, max {max(times) * 1000:.1f} ms")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="kernel starts per variant")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envmgr-bench-") as tmp:
        os.environ["JUPYTER_RUNTIME_DIR"] = str(Path(tmp) / "runtime")
        bench_kernels(Path(tmp) / "k", args.n)
        small = bench_kernelspecs(Path(tmp) / "s1", 1, 5)
        large = bench_kernelspecs(Path(tmp) / "s20", 20, 5)
        print(f"  120 vs 6 envmgr kernelspecs: x{large / small:.1f}")


if __name__ == "__main__":
    main()
