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
