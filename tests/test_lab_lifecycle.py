"""Issue 18 in the browser: end-of-support notices with "Switch", and the build saved in notebooks.

A real ``jupyter lab`` with the prebuilt extension and headless Chromium
(``tests/browser/lab_lifecycle.mjs``), kernelspecs written by envmgr for real
conda prefixes: family `example` with latest, release 2025.9 (30 days left),
release 2026.1, and a retired release 2024.1 (envmgr's retired list).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest

from .test_lab_browser import _MISSING, REPO, TOKEN, Lab, _point_latest, lab_dirs  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]
if _MISSING:
    pytestmark.append(pytest.mark.skip(reason=_MISSING))

SCRIPT = REPO / "tests" / "browser" / "lab_lifecycle.mjs"
PROBE = "import os, sys; print(sys.prefix, os.environ.get('ENVMGR_BUILD_ID'))"
IDS = {None: "20261101T021340Z-ab12cd", "2025.9": "20250901T021340Z-ab12cd",
       "2026.1": "20260101T021340Z-ab12cd"}


@pytest.fixture(scope="module")
def example(lab_dirs: dict[str, Path]) -> dict:  # noqa: F811
    from envmgr.kernels import retired
    from envmgr.kernels.kernelspecs import KernelFamily, StableKernel, sync_family_kernels
    from envmgr.kernels.sync import live_kernels
    from envmgr.layout import Layout

    from .test_launcher import make_build

    kernels_dir = lab_dirs["data"] / "kernels"
    layout = Layout(lab_dirs["data"] / "envmgr-root")
    for build_id in IDS.values():
        make_build(layout, "example", build_id)
    _point_latest(layout, "example", IDS[None])
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    fam = KernelFamily(family="example", display_name="Example", group="Demo", latest_build=IDS[None],
                       latest_built="2026-11-01T02:13:40Z",
                       stable=[StableKernel("2025.9", IDS["2025.9"], "2025-09-01T02:13:40Z", soon),
                               StableKernel("2026.1", IDS["2026.1"], "2026-01-01T02:13:40Z", "2029-01-01")])
    retired.note(kernels_dir, retired.Retirement("example-2024.1", "example", "2024.1",
                                                 "20240101T021340Z-ab12cd", "2027-01-01", "2026-11-30"))
    entries = retired.refresh(kernels_dir, "example", live_kernels(fam))
    fam = replace(fam, resources={retired.RESOURCE_NAME: retired.resource_bytes(entries)})
    sync_family_kernels(kernels_dir, layout, fam)
    for name, kernel in (("soon.ipynb", "example-2025.9"), ("gone.ipynb", "example-2024.1"),
                         ("latest.ipynb", "example-latest")):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        nb.metadata["custom"] = {"keep": True}
        nbformat.write(nb, lab_dirs["notebooks"] / name)
    return {"prefix": layout.family_dir("example"), "soon": soon}


def test_notices_switch_and_the_saved_build(lab_dirs, example, request) -> None:  # noqa: F811
    lab = Lab(lab_dirs, request.node.name)
    try:
        cmd = ["node", str(SCRIPT), "--url", lab.url, "--token", TOKEN, "--out", str(lab.out),
               "--expiring", "soon.ipynb", "--retired", "gone.ipynb", "--latest", "latest.ipynb",
               "--successor", "Example · 2026.1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
        assert proc.returncode == 0, f"{proc.stderr}\nserver log:\n{lab.log.read_text()[-5000:]}"
        result = json.loads(proc.stdout)
    finally:
        lab.stop()
    (lab.out / "result.json").write_text(json.dumps(result, indent=1))
    assert result["pageErrors"] == []
    family_dir = example["prefix"]
    successor = f"{family_dir / IDS['2026.1']} {IDS['2026.1']}"

    soon = result["expiring"]
    assert f"supported until {example['soon']}" in soon["notification"]
    assert "30 days left" in soon["notification"] and "Example · 2026.1" in soon["notification"]
    assert soon["toolbar"] == "Example · 2026.1" and soon["output"] == successor
    assert soon["saved"]["envmgr"] == {"family": "example", "build": IDS["2026.1"], "release": "2026.1",
                                       "v": 1}

    gone = result["retired"]
    assert "example-2024.1" in gone["notification"] and "retired on 2026-11-30" in gone["notification"]
    assert gone["dialogs"] == 0, "the notice replaces the bare kernel dialog"
    assert gone["toolbar"] == "Example · 2026.1" and gone["output"] == successor

    latest = result["latest"]
    assert latest["output"] == f"{family_dir / IDS[None]} {IDS[None]}"
    assert latest["saved"]["envmgr"] == {"family": "example", "build": IDS[None], "v": 1}
    saved = nbformat.read(lab_dirs["notebooks"] / "latest.ipynb", 4)
    nbformat.validate(saved)
    assert saved.metadata.kernelspec.name == "example-latest", "the kernelspec is never changed"
    assert saved.metadata.custom == {"keep": True}
