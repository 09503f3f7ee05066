"""Issue 18: notebooks across retirements (check, migrate, retired.json) on a real build and kernel."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from envmgr import retired

from .conftest import json_of, run_envmgr, write_config, write_spec

pytestmark = pytest.mark.slow

PROBE = "import os, sys; print(sys.prefix, os.environ['ENVMGR_BUILD_ID'])"


@dataclass(frozen=True)
class Site:
    tmp: Path
    config: Path
    kernels: Path
    build_id: str
    prefix: Path

    def cli(self, *args: str | Path) -> object:
        return run_envmgr(*args, config=self.config)


@pytest.fixture(scope="module")
def nbsite(tmp_path_factory, demo_channel, shared_pkgs) -> Site:
    """One real build of `example` with two stable releases: 2025.9 (30 days left) and 2026.1."""
    tmp = tmp_path_factory.mktemp("nbsite")
    specs = tmp / "specs"
    specs.mkdir()
    config = write_config(tmp / "config.yaml", root=tmp / "root", pkgs_dir=shared_pkgs, specs_dir=specs,
                          kernels_dir=tmp / "kernels", channels={"demo": demo_channel.as_uri()},
                          min_free_space="10M", compile_pyc=False)
    spec = write_spec(specs, "example", display="Example", group="Demo")
    out = run_envmgr("build", "--json", spec, config=config, check=True)
    build = json_of(out)["result"]["builds"][0]
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    run_envmgr("promote", "example", "--release", "2025.9", "--until", soon, "--no-export",
               config=config, check=True)
    run_envmgr("promote", "example", "--release", "2026.1", "--no-export", config=config, check=True)
    return Site(tmp, config, tmp / "kernels", build["build_id"], Path(build["prefix"]))


def notebook(path: Path, kernel: str | None, *, build: str | None = None, mode: int = 0o644) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    nb.metadata["custom"] = {"keep": [1, 2]}
    nb.metadata["language_info"] = {"name": "python"}
    if kernel:
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    if build:
        nb.metadata["envmgr"] = {"family": "example", "build": build, "v": 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    os.chmod(path, mode)
    return path


def by_name(result: dict) -> dict[str, dict]:
    return {Path(n["path"]).name: n for n in result["notebooks"]}


def test_check_reports_kernel_state_successor_and_last_build(nbsite, tmp_path):
    work = tmp_path / "work"
    notebook(work / "latest.ipynb", "example-latest", build=nbsite.build_id)
    notebook(work / "sub" / "soon.ipynb", "example-2025.9")
    notebook(work / "other.ipynb", "no-such-kernel", build="20200101T000000Z-abcdef")
    notebook(work / "bare.ipynb", None)
    notebook(work / ".ipynb_checkpoints" / "latest-checkpoint.ipynb", "example-2025.9")
    proc = nbsite.cli("notebooks", "check", "--json", work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = by_name(json_of(proc)["result"])
    assert set(found) == {"latest.ipynb", "soon.ipynb", "other.ipynb", "bare.ipynb"}, "checkpoints skipped"
    assert found["latest.ipynb"]["kernel"]["state"] == "latest"
    assert found["latest.ipynb"]["last_run"] == {"family": "example", "build": nbsite.build_id,
                                                 "build_state": "exists"}
    soon = found["soon.ipynb"]["kernel"]
    assert soon["state"] == "expiring" and soon["successor"] == "example-2026.1"
    assert soon["successor_display_name"] == "Example · 2026.1", "one canonical release label"
    assert found["other.ipynb"]["kernel"]["state"] == "unknown"
    assert found["other.ipynb"]["last_run"]["build_state"] == "missing"
    assert found["bare.ipynb"]["kernel"]["state"] == "none"
    text = nbsite.cli("notebooks", "check", work / "sub" / "soon.ipynb")
    assert "expiring" in text.stdout and "example-2026.1" in text.stdout

    broken = work / "broken.ipynb"
    broken.write_text("{not json")
    bad = nbsite.cli("notebooks", "migrate", work)
    assert bad.returncode == 2 and "broken.ipynb" in bad.stderr and "Traceback" not in bad.stderr
    assert nbformat.read(work / "sub" / "soon.ipynb", 4).metadata.kernelspec.name == "example-2025.9", \
        "an unreadable notebook aborts the whole run before anything is written"
    broken.unlink()
    missing = nbsite.cli("notebooks", "check", "--json", tmp_path / "nope")
    assert missing.returncode == 2 and json_of(missing)["ok"] is False
    wrong = nbsite.cli("notebooks", "migrate", "--to", "no-such-kernel", work)
    assert wrong.returncode == 2 and "no such kernel" in wrong.stderr


def test_retire_then_migrate_runs_the_notebook_on_the_successor(nbsite, tmp_path, monkeypatch):
    nb_path = notebook(tmp_path / "nb.ipynb", "example-2025.9", build=nbsite.build_id, mode=0o640)
    proc = nbsite.cli("retire", "example", "2025.9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (nbsite.kernels / "example-2025.9").exists()
    entry = retired.load(nbsite.kernels)["example-2025.9"]
    assert (entry.release, entry.build_id, entry.successor) == ("2025.9", nbsite.build_id, "example-2026.1")
    served = json.loads((nbsite.kernels / "example-latest" / retired.RESOURCE_NAME).read_text())
    assert [e["kernel"] for e in served["retired"]] == ["example-2025.9"], "copy served with the kernelspec"

    state = json_of(nbsite.cli("notebooks", "check", "--json", nb_path))["result"]["notebooks"][0]
    assert state["kernel"]["state"] == "retired" and state["kernel"]["successor"] == "example-2026.1"

    before = nb_path.read_bytes()
    dry = json_of(nbsite.cli("notebooks", "migrate", "--dry-run", "--json", nb_path))["result"]
    assert dry["notebooks"][0]["action"] == "would-migrate" and nb_path.read_bytes() == before

    done = json_of(nbsite.cli("notebooks", "migrate", "--json", nb_path))["result"]["notebooks"][0]
    assert (done["action"], done["target"]) == ("migrated", "example-2026.1")
    nb = nbformat.read(nb_path, 4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec == {"name": "example-2026.1", "display_name": "Example · 2026.1",
                                      "language": "python"}
    assert nb.metadata.envmgr == {"family": "example", "build": nbsite.build_id, "v": 1,
                                  "migrated_from": "example-2025.9"}
    assert nb.metadata.custom == {"keep": [1, 2]} and nb.metadata.language_info == {"name": "python"}
    assert nb_path.stat().st_mode & 0o777 == 0o640, "mode kept"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left"
    again = json_of(nbsite.cli("notebooks", "migrate", "--json", nb_path))["result"]["notebooks"][0]
    assert again["action"] == "unchanged"

    monkeypatch.setenv("JUPYTER_PATH", str(nbsite.tmp))
    NotebookClient(nb, timeout=120).execute()
    assert nb.cells[0].outputs[0]["text"].split() == [str(nbsite.prefix), nbsite.build_id]
