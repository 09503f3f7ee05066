"""Issue 4 end to end: envmgr builds, a real jupyter server, REST restarts, leases, nbclient.

Every build here is made by the real CLI from the demo channel; kernels are
started by jupyter_server through the kernelspecs envmgr wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from envmgr.kernels import lease
from envmgr.channel.build import add_demo_package
from envmgr.layout import Layout

from .conftest import json_of, write_spec
from .test_launcher import Server

pytestmark = pytest.mark.slow


def build(envmgr_cli, spec: Path) -> str:
    proc = envmgr_cli("build", "--json", spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json_of(proc)["result"]["builds"][0]
    assert result["status"] == "built", result
    return result["build_id"]


def test_latest_follows_restart_stable_stays_and_leases_track_kernels(site, envmgr_cli, tmp_path) -> None:
    layout = Layout(site["root"])
    spec = write_spec(site["specs"], "beam", display="Beam", group="Beamlines")
    a = build(envmgr_cli, spec)
    promoted = envmgr_cli("promote", "beam", "--release", "2026.1", "--export-dir", tmp_path / "locks")
    assert promoted.returncode == 0, promoted.stderr
    prefix_a = str(layout.prefix("beam", a))

    (tmp_path / "server").mkdir()
    server = Server(tmp_path / "server", jupyter_path=site["tmp"])
    try:
        specs = server.api("GET", "/api/kernelspecs").json()["kernelspecs"]
        ours = {name for name, ks in specs.items() if "envmgr" in ks["spec"]["metadata"]}
        assert ours == {"beam-latest", "beam-2026.1"}
        meta = specs["beam-latest"]["spec"]["metadata"]["envmgr"]
        assert meta["family"] == "beam" and meta["group"] == "Beamlines" and meta["channel"] == "latest"

        k1 = server.api("POST", "/api/kernels", json={"name": "beam-latest"}).json()["id"]
        k2 = server.api("POST", "/api/kernels", json={"name": "beam-latest"}).json()["id"]
        assert server.execute(k1, "import sys; print(sys.prefix)").strip() == prefix_a
        assert server.execute(k2, "import sys; print(sys.prefix)").strip() == prefix_a
        assert lease.probe(layout.lease_file("beam", a)), "running kernels must hold the lease"

        add_demo_package(site["channel"], "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
        b = build(envmgr_cli, spec)
        prefix_b = str(layout.prefix("beam", b))
        server.api("POST", f"/api/kernels/{k1}/restart")
        assert server.execute(k1, "import sys; print(sys.prefix)").strip() == prefix_b
        assert server.execute(k1, "import envmgr_demo_b; print(envmgr_demo_b.__version__)").strip() == "1.2"
        # k2 started before the flip: still on A until its own restart.
        assert server.execute(k2, "import sys; print(sys.prefix)").strip() == prefix_a
        assert server.execute(k2, "import envmgr_demo_b; print(envmgr_demo_b.__version__)").strip() == "1.1"
        assert lease.probe(layout.lease_file("beam", a)) and lease.probe(layout.lease_file("beam", b))

        server.api("DELETE", f"/api/kernels/{k2}")
        assert not lease.probe(layout.lease_file("beam", a)), "the lease is released with the last kernel"
        assert lease.probe(layout.lease_file("beam", b))
        server.api("DELETE", f"/api/kernels/{k1}")
        assert not lease.probe(layout.lease_file("beam", b))
    finally:
        server.stop()

    # Several newer builds later, a notebook that names the stable kernel still runs on its build.
    add_demo_package(site["channel"], "envmgr-demo-b", "1.3", depends=["envmgr-demo-a >=1.0"])
    build(envmgr_cli, spec)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "beam-2026.1", "display_name": "x",
                                                           "language": "python"}})
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, envmgr_demo_b; print(sys.prefix, envmgr_demo_b.__version__)"))
    os.environ["JUPYTER_PATH"] = str(site["tmp"])  # restored by the autouse isolation fixture
    NotebookClient(nb, timeout=120, kernel_name="beam-2026.1").execute()
    assert nb.cells[0].outputs[0]["text"].split() == [prefix_a, "1.1"]

    listing = subprocess.run([sys.executable, "-m", "jupyter", "kernelspec", "list", "--json"],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "JUPYTER_PATH": str(site["tmp"])})
    names = {n for n, ks in json.loads(listing.stdout)["kernelspecs"].items()
             if "envmgr" in ks["spec"].get("metadata", {})}
    assert names == {"beam-latest", "beam-2026.1"}, "nightly builds get no kernel of their own"
