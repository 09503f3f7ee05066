"""Kernelspec metadata: envmgr's versioned block and nb_conda_kernels' conventional keys."""

from __future__ import annotations

from pathlib import Path

from envmgr.kernels.kernelspecs import KernelFamily, desired_kernels
from envmgr.layout import Layout
from tests.test_launcher import build_id

ROOT = Path("/srv/envmgr")
LAUNCHER = Path("/k/.envmgr/launcher-x.sh")


def _plans(template: str = "python"):
    family = KernelFamily(family="csx", display_name="CSX", group="Beamlines", template=template,
                          latest_build=build_id(1), latest_built="2025-01-01T00:00:00Z",
                          stable=[("2025.9", build_id(2), "2025-09-01T00:00:00Z", "2028-09-01")])
    return {p.name: p.kernel_json["metadata"] for p in desired_kernels(Layout(ROOT), family,
                                                                      launcher=LAUNCHER)}


def test_conventional_conda_keys_name_what_the_kernel_runs_in():
    meta = _plans()
    assert meta["csx-latest"]["conda_env_path"] == str(ROOT / "envs" / "csx" / "latest")
    assert meta["csx-latest"]["conda_env_name"] == "csx/latest"
    assert meta["csx-2025.9"]["conda_env_path"] == str(ROOT / "envs" / "csx" / build_id(2))
    assert meta["csx-2025.9"]["conda_env_name"] == f"csx/{build_id(2)}"
    assert {m["conda_language"] for m in meta.values()} == {"Python"}
    assert _plans("r")["csx-latest"]["conda_language"] == "R"


def test_envmgr_block_is_versioned_and_keeps_its_keys():
    meta = _plans()
    for name, m in meta.items():
        block = m["envmgr"]
        assert block["v"] == 1
        assert {"family", "group", "channel", "release", "build_id", "built", "support_until",
                "display_name"} <= set(block), name
    assert meta["csx-2025.9"]["envmgr"]["release"] == "2025.9"
    assert meta["csx-latest"]["debugger"] is True, "the template's own metadata stays"


def test_diffs_order_versions_as_conda_does():
    """`9f -> 10` is an upgrade (text order read it as a downgrade); `2.0 == 2`."""
    from envmgr.lockfile import _compare_versions

    assert _compare_versions("9f", "10") == -1
    assert _compare_versions("1.9", "1.10") == -1
    assert _compare_versions("1.0a1", "1.0") == -1
    assert _compare_versions("2.0", "2") == 0
