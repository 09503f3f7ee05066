"""R kernels: the demo channel's r-base/r-irkernel wrap the host's R (Debian r-base-core,
r-cran-irkernel; scripts/run-tests installs them when it runs as root with apt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envmgr.channel._rhost import probe_host_r
from envmgr.build.kernelcheck import run_cell
from envmgr.layout import Layout

from .conftest import json_of, write_spec

HOST_R = probe_host_r()
pytestmark = pytest.mark.skipif(
    HOST_R is None or HOST_R.irkernel_version is None,
    reason="R with IRkernel is not installed on this host (Debian r-base-core and r-cran-irkernel; "
           "scripts/run-tests installs them when run as root with apt-get)")

R_SPEC = """\
name: rstats
display_name: Statistics R
group: Data Lab
channels: [demo]
dependencies: [r-base, r-irkernel]
kernel: r
"""


@pytest.mark.slow
def test_r_spec_builds_and_its_kernel_runs_a_cell_through_the_launcher(site, envmgr_cli) -> None:
    write_spec(site["specs"], "rstats", text=R_SPEC)
    proc = envmgr_cli("build", "rstats", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = json_of(proc)["result"]["builds"][0]
    assert built["status"] == "built", built
    layout = Layout(site["root"])
    prefix = layout.prefix("rstats", built["build_id"])
    packages = {p["name"] for p in json.loads(
        (layout.record_dir("rstats", built["build_id"]) / "packages.json").read_text())["packages"]}
    assert packages == {"r-base", "r-irkernel"}  # no python, no ipykernel forced in
    log = Path(built["log"]).read_text()
    assert "R kernel: R version" in log  # the smoke test started IRkernel in the staged prefix

    spec = json.loads((site["kernels"] / "rstats-latest" / "kernel.json").read_text())
    assert spec["language"] == "R" and spec["display_name"] == "Statistics R · latest"
    assert spec["metadata"]["envmgr"]["group"] == "Data Lab"
    assert spec["metadata"]["envmgr"]["build_id"] == built["build_id"]

    check = run_cell([], code="cat(R.version.string)", kernel_name="rstats-latest",
                     kernels_dir=site["kernels"])
    assert check.prefix.startswith(f"R version {HOST_R.version}"), check.prefix
    libs = run_cell([], code="cat(.libPaths()[1], Sys.getenv('ENVMGR_BUILD_ID'))",
                    kernel_name="rstats-latest", kernels_dir=site["kernels"])
    assert libs.prefix.split() == [str(prefix / "lib/R/library"), built["build_id"]]


def _r_kernel(kernels: Path, name: str):
    """A running R kernel started from its installed kernelspec (the launcher holds its lease)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    return km, client


def _r_value(client, code: str) -> str:
    out: list[str] = []
    client.execute_interactive(code, timeout=60,
                               output_hook=lambda m: out.append(m["content"].get("text", ""))
                               if m["msg_type"] == "stream" else None)
    return "".join(out).strip()


@pytest.mark.slow
def test_r_family_lifecycle_latest_moves_running_kernel_stays_stable_pins_gc_waits(site, envmgr_cli) -> None:
    """The lifecycle for an R family, as for Python ones: a running R kernel keeps its build
    through a new build and through gc; a new start lands on the new latest; a stable kernel
    is pinned to its build; gc collects the old build once its kernel has stopped."""
    with site["config"].open("a") as handle:
        handle.write("retention: {keep_previous: 0, grace_days: 0, failed_days: 0}\n")
    write_spec(site["specs"], "rstats", text=R_SPEC)
    first = json_of(envmgr_cli("build", "rstats", "--json"))["result"]["builds"][0]["build_id"]
    layout = Layout(site["root"])
    km, client = _r_kernel(site["kernels"], "rstats-latest")
    try:
        assert _r_value(client, "cat(Sys.getenv('ENVMGR_BUILD_ID'))") == first
        proc = envmgr_cli("build", "rstats", "--force", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        second = json_of(proc)["result"]["builds"][0]["build_id"]
        assert second != first and layout.latest_build("rstats") == second
        # The running kernel stays where it started; a new start follows latest.
        assert _r_value(client, "cat(Sys.getenv('ENVMGR_BUILD_ID'), .libPaths()[1])").split() == \
            [first, str(layout.prefix("rstats", first) / "lib/R/library")]
        fresh = run_cell([], code="cat(Sys.getenv('ENVMGR_BUILD_ID'))", kernel_name="rstats-latest",
                         kernels_dir=site["kernels"])
        assert fresh.prefix == second
        promoted = envmgr_cli("promote", "rstats", "--release", "2026.1", "--no-export")
        assert promoted.returncode == 0, promoted.stderr
        pinned = run_cell([], code="cat(Sys.getenv('ENVMGR_BUILD_ID'))", kernel_name="rstats-2026.1",
                          kernels_dir=site["kernels"])
        assert pinned.prefix == second

        held = envmgr_cli("gc", "--json")
        assert held.returncode == 0, held.stdout + held.stderr
        builds = {b["build_id"]: b for f in json_of(held)["result"]["families"] for b in f["builds"]}
        assert builds[first]["action"] == "keep" and "in-use" in [r["code"] for r in builds[first]["reasons"]]
        assert layout.prefix("rstats", first).is_dir()
        assert _r_value(client, "cat(1 + 1)") == "2", "the kernel still runs on its build after gc"
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    collected = envmgr_cli("gc", "--json")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    builds = {b["build_id"]: b for f in json_of(collected)["result"]["families"] for b in f["builds"]}
    assert builds[first]["action"] == "delete" and not layout.prefix("rstats", first).exists()
    assert builds[second]["action"] == "keep" and layout.prefix("rstats", second).is_dir()
