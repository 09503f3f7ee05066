"""Issue 18: notebooks across retirements, and restore from a tombstone, on real builds and kernels.

One module site: family `example` with build A (release 2025.9, 30 days of
support left) and build B (latest, release 2026.1). Most calls go to the core
functions in-process (the CLI takes seconds to start on a loaded machine); the
CLI is run where its exit codes and rendering are the point.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from envmgr.catalog import records
from envmgr.channel.build import add_demo_package, reindex_channel
from envmgr.config import Config, load_config
from envmgr.kernels import retired
from envmgr.layout import Layout
from envmgr.release import notebooks

from .conftest import json_of, run_envmgr, write_config, write_spec

pytestmark = pytest.mark.slow

PROBE = "import os, sys; print(sys.prefix, os.environ['ENVMGR_BUILD_ID'])"
RETENTION = "retention:\n  keep_previous: 0\n  grace_days: 0\n"


@dataclass(frozen=True)
class Site:
    tmp: Path
    config_file: Path
    kernels: Path
    channel: Path
    a: str  # build of release 2025.9 (expiring)
    b: str  # latest, release 2026.1

    @property
    def config(self) -> Config:
        return load_config(config_path=self.config_file)

    @property
    def layout(self) -> Layout:
        return self.config.layout

    def cli(self, *args: str | Path):
        return run_envmgr(*args, config=self.config_file)


@pytest.fixture(scope="module")
def nbsite(tmp_path_factory, demo_channel, shared_pkgs) -> Site:
    tmp = tmp_path_factory.mktemp("nbsite")
    channel = tmp / "channel"  # private: a test removes a package from it
    shutil.copytree(demo_channel, channel, symlinks=True)
    specs = tmp / "specs"
    specs.mkdir()
    config = write_config(tmp / "config.yaml", root=tmp / "root", pkgs_dir=shared_pkgs, specs_dir=specs,
                          kernels_dir=tmp / "kernels", channels={"demo": channel.as_uri()},
                          min_free_space="10M", compile_pyc=False)
    spec = write_spec(specs, "example", display="Example", group="Demo")
    spec.write_text(spec.read_text() + RETENTION)
    soon = (dt.date.today() + dt.timedelta(days=30)).isoformat()

    def build() -> str:
        out = run_envmgr("build", "--json", spec, config=config, check=True)
        return json_of(out)["result"]["builds"][0]["build_id"]

    a = build()
    run_envmgr("promote", "example", "--release", "2025.9", "--until", soon, "--no-export",
               config=config, check=True)
    add_demo_package(channel, "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
    b = build()
    run_envmgr("promote", "example", "--release", "2026.1", "--no-export", config=config, check=True)
    return Site(tmp, config, tmp / "kernels", channel, a, b)


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


def run_notebook(site: Site, path: Path, monkeypatch) -> list[str]:
    """Execute with nbclient on the kernel the notebook names; returns the probe's words."""
    monkeypatch.setenv("JUPYTER_PATH", str(site.tmp))  # <tmp>/kernels is the kernels dir
    nb = nbformat.read(path, 4)
    NotebookClient(nb, timeout=120).execute()
    return nb.cells[0].outputs[0]["text"].split()


def by_name(result: notebooks.NotebooksResult) -> dict[str, dict]:
    return {Path(n["path"]).name: n for n in result.to_json()["notebooks"]}


def ensure_retired(site: Site, release: str) -> None:
    if f"example-{release}" not in retired.load(site.kernels):
        proc = site.cli("retire", "example", release)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_reports_kernel_state_successor_and_last_build(nbsite, tmp_path):
    work = tmp_path / "work"
    notebook(work / "latest.ipynb", "example-latest", build=nbsite.b)
    notebook(work / "sub" / "soon.ipynb", "example-2025.9", build=nbsite.a)
    notebook(work / "other.ipynb", "no-such-kernel", build="20200101T000000Z-abcdef")
    notebook(work / "bare.ipynb", None)
    notebook(work / ".ipynb_checkpoints" / "latest-checkpoint.ipynb", "example-2025.9")
    found = by_name(notebooks.check(nbsite.config, [work]))
    assert set(found) == {"latest.ipynb", "soon.ipynb", "other.ipynb", "bare.ipynb"}, "checkpoints skipped"
    assert found["latest.ipynb"]["kernel"]["state"] == "latest"
    assert found["latest.ipynb"]["last_run"] == {"family": "example", "build": nbsite.b,
                                                 "build_state": "exists"}
    soon = found["soon.ipynb"]["kernel"]
    assert (soon["state"], soon["until"]) == ("expiring", str(dt.date.today() + dt.timedelta(days=30)))
    assert soon["successor"] == "example-2026.1"
    assert soon["successor_display_name"] == "Example · 2026.1", "one canonical release label"
    assert found["other.ipynb"]["kernel"]["state"] == "unknown"
    assert found["other.ipynb"]["last_run"]["build_state"] == "missing"
    assert found["bare.ipynb"]["kernel"]["state"] == "none"
    later = notebooks.check(nbsite.config, [work], today=dt.date.today() - dt.timedelta(days=90))
    assert by_name(later)["soon.ipynb"]["kernel"]["state"] == "stable", "outside the notice period"

    text = nbsite.cli("notebooks", "check", work / "sub" / "soon.ipynb")
    assert text.returncode == 0 and "expiring" in text.stdout and "example-2026.1" in text.stdout
    gate = nbsite.cli("notebooks", "check", "--fail-on", "retired,unknown", "--json", work)
    assert gate.returncode == 1, gate.stdout + gate.stderr  # other.ipynb names an unknown kernel
    assert [Path(p).name for p in json_of(gate)["result"]["failing"]] == ["other.ipynb"]
    passing = nbsite.cli("notebooks", "check", "--fail-on", "retired,expired", work)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    typo = nbsite.cli("notebooks", "check", "--fail-on", "retierd", work)
    assert typo.returncode == 2 and "retierd" in typo.stderr and "Traceback" not in typo.stderr
    broken = work / "broken.ipynb"
    broken.write_text("{not json")
    before = (work / "sub" / "soon.ipynb").read_bytes()
    bad = nbsite.cli("notebooks", "migrate", "--json", work)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "broken.ipynb" in json_of(bad)["error"]["message"]
    assert (work / "sub" / "soon.ipynb").read_bytes() == before, "nothing written when one is unreadable"
    wrong = nbsite.cli("notebooks", "migrate", "--to", "no-such-kernel", work / "sub")
    assert wrong.returncode == 2 and "no such kernel" in wrong.stderr


def test_retire_then_migrate_runs_the_notebook_on_the_successor(nbsite, tmp_path, monkeypatch):
    nb_path = notebook(tmp_path / "nb.ipynb", "example-2025.9", build=nbsite.a, mode=0o640)
    ensure_retired(nbsite, "2025.9")
    assert not (nbsite.kernels / "example-2025.9").exists()
    entry = retired.load(nbsite.kernels)["example-2025.9"]
    assert (entry.release, entry.build_id, entry.successor) == ("2025.9", nbsite.a, "example-2026.1")
    served = json.loads((nbsite.kernels / "example-latest" / retired.RESOURCE_NAME).read_text())
    assert [e["kernel"] for e in served["retired"]] == ["example-2025.9"], "copy served with the kernelspec"
    state = by_name(notebooks.check(nbsite.config, [nb_path]))["nb.ipynb"]["kernel"]
    assert (state["state"], state["successor"]) == ("retired", "example-2026.1")

    before = nb_path.read_bytes()
    dry = by_name(notebooks.migrate(nbsite.config, [nb_path], dry_run=True))["nb.ipynb"]
    assert dry["action"] == "would-migrate" and nb_path.read_bytes() == before

    proc = nbsite.cli("notebooks", "migrate", "--json", nb_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = json_of(proc)["result"]["notebooks"][0]
    assert (done["action"], done["target"]) == ("migrated", "example-2026.1")
    nb = nbformat.read(nb_path, 4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec == {"name": "example-2026.1", "display_name": "Example · 2026.1",
                                      "language": "python"}
    assert nb.metadata.envmgr == {"family": "example", "build": nbsite.a, "v": 1,
                                  "migrated_from": "example-2025.9"}
    assert nb.metadata.custom == {"keep": [1, 2]} and nb.metadata.language_info == {"name": "python"}
    assert nb_path.stat().st_mode & 0o777 == 0o640, "mode kept"
    assert [p.name for p in tmp_path.iterdir()] == ["nb.ipynb"], "no temp file left"
    again = by_name(notebooks.migrate(nbsite.config, [nb_path]))["nb.ipynb"]
    assert again["action"] == "unchanged"
    assert run_notebook(nbsite, nb_path, monkeypatch) == [str(nbsite.layout.prefix("example", nbsite.b)),
                                                          nbsite.b]


def conda_meta(prefix: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((prefix / "conda-meta").iterdir())}


def test_gc_then_restore_brings_the_build_and_its_stable_kernel_back(nbsite, tmp_path, monkeypatch):
    layout, a = nbsite.layout, nbsite.a
    prefix = layout.prefix("example", a)
    meta_before = conda_meta(prefix)
    pinned = notebook(tmp_path / "pinned.ipynb", "example-2025.9")
    ensure_retired(nbsite, "2025.9")
    gc = nbsite.cli("gc", "--json")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert not prefix.exists() and records.load(layout, "example", a).deleted

    killed = run_envmgr("restore", "example", a, config=nbsite.config_file,
                        env={"ENVMGR_FAULT_POINT": "restore-rename"})  # SIGKILL just before the rename
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not prefix.exists() and records.load(layout, "example", a).deleted, "still a tombstone"
    assert layout.staging("example", a).is_dir()
    killed = run_envmgr("restore", "example", a, config=nbsite.config_file,
                        env={"ENVMGR_FAULT_POINT": "restore-renamed"})  # SIGKILL just after the rename
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert prefix.is_dir() and not layout.staging("example", a).exists(), "the staging was cleared, renamed"
    assert records.load(layout, "example", a).deleted, "killed before the record was finished"
    proc = nbsite.cli("restore", "--json", "example", a)  # finds the prefix in place, finishes the record
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not layout.staging("example", a).exists()
    result = json_of(proc)["result"]
    assert (result["prefix"], result["releases"]) == (str(prefix), ["2025.9"])
    assert conda_meta(prefix) == meta_before, "same packages, same prefix: identical conda-meta"
    assert "example-2025.9" in result["kernels"] and (nbsite.kernels / "example-2025.9").is_dir()
    assert "example-2025.9" not in retired.load(nbsite.kernels), "no longer retired"
    assert layout.latest_build("example") == nbsite.b, "restore never moves latest"
    assert run_notebook(nbsite, pinned, monkeypatch) == [str(prefix), a]
    listing = json_of(nbsite.cli("builds", "--json", "example"))["result"]["builds"]
    builds = {b["build_id"]: b for b in listing}
    assert builds[a]["state"] == "published" and builds[a]["releases"] == ["2025.9"]
    assert [e["event"] for e in builds[a]["history"]] == ["deleted", "restored"]
    again = nbsite.cli("restore", "example", a)
    assert again.returncode == 2 and "not deleted" in again.stderr

    ensure_retired(nbsite, "2025.9")
    assert nbsite.cli("gc").returncode == 0 and not prefix.exists()
    for gone in nbsite.channel.glob("noarch/envmgr-demo-b-1.1-*"):
        gone.unlink()
    reindex_channel(nbsite.channel)
    refused = nbsite.cli("restore", "example", a)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    message = " ".join(refused.stderr.split())
    assert "envmgr-demo-b=1.1" in message and nbsite.channel.as_uri() in message
    assert "Traceback" not in refused.stderr
    assert records.load(layout, "example", a).deleted and not prefix.exists(), "the tombstone stays"
    assert not layout.staging("example", a).exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_usage_in_status_and_prometheus_metrics_behind_the_token(nbsite, tmp_path):
    import getpass
    import subprocess
    import sys
    import time

    import requests

    from envmgr.ops.status import collect_status

    from .test_launcher import Kernel

    kernel = Kernel(nbsite.kernels, "example-latest")
    service = None
    try:
        status = {f.family: f for f in collect_status(nbsite.config, disk=False).families}["example"]
        usage = {k.build_id: k for k in status.kernels}
        assert usage[nbsite.b].kernels == 1 and usage[nbsite.b].users == (getpass.getuser(),)
        assert usage[nbsite.b].other_host is False
        assert status.to_json()["kernels"][0]["build_id"] == nbsite.b

        port = _free_port()
        env = {**os.environ, "JUPYTERHUB_API_TOKEN": "not-used", "JUPYTERHUB_SERVICE_NAME": "envmgr",
               "JUPYTERHUB_API_URL": f"http://127.0.0.1:{_free_port()}/hub/api",  # no hub: token only
               "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}", "ENVMGR_METRICS_TOKEN": "s3cret"}
        service = subprocess.Popen([sys.executable, "-m", "envmgr", "--config", str(nbsite.config_file),
                                    "serve", "--cookie-secret-file", str(tmp_path / "cookie")], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}/services/envmgr/metrics"
        deadline = time.monotonic() + 120
        while True:
            try:
                anonymous = requests.get(url, timeout=30)
                break
            except requests.ConnectionError:
                assert service.poll() is None and time.monotonic() < deadline, service.stderr.read()
                time.sleep(0.5)
        assert anonymous.status_code == 403
        wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 403
        ok = requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=60)
        assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("text/plain")
        lines = ok.text.splitlines()
        assert f'envmgr_kernels{{build="{nbsite.b}",family="example"}} 1.0' in lines
        assert 'envmgr_builds{family="example",state="latest"} 1.0' in lines
        assert f'envmgr_stable_days_left{{build="{nbsite.b}",family="example",release="2026.1"}}' in ok.text
        assert any(x.startswith('envmgr_disk_bytes{family="example"}') for x in lines)
        assert any(x.startswith('envmgr_last_run_ok{family="example",status="built"} 1.0') for x in lines)
    finally:
        kernel.close()
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
