"""pip packages in specs: locked as conda-lock `manager: pip` entries from a PEP 503 index
on 127.0.0.1 over wheels the tests build, installed by uv after the conda packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from envmgr.build.kernelcheck import run_cell
from envmgr.layout import Layout

from .conftest import json_of, write_config, write_spec
from .pypi_index import make_wheel, publish, serve

SPEC = """\
name: {name}
display_name: Beamline
group: NSLS-II
channels: [demo]
dependencies:
  - python 3.*
  - ipykernel
  - pip
pip:
{pip}
smoke_test:
  imports: [beam_tool]
"""


def pip_spec(directory: Path, name: str, *requirements: str) -> Path:
    return write_spec(directory, name, text=SPEC.format(
        name=name, pip="\n".join(f"  - {json.dumps(r)}" for r in requirements)))


def with_pip(site: dict[str, Path], **pip: object) -> Path:
    """The site config plus a `pip:` section."""
    yaml = YAML()
    values = yaml.load(site["config"].read_text())
    values["pip"] = {k: [str(x) for x in v] if isinstance(v, list) else v for k, v in pip.items()}
    return write_config(site["config"], **values)


def lock_of(path: Path) -> list[dict]:
    return YAML(typ="safe").load(path.read_text())["package"]


def build(envmgr_cli, *args: str | Path, expect: int = 0) -> dict:
    proc = envmgr_cli("build", *args, "--json")
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return json_of(proc)["result"]["builds"][0]


@pytest.fixture
def index(tmp_path: Path):
    """A PEP 503 index on 127.0.0.1: beam-tool 1.0 (a console script; needs beam-helper and
    ipykernel, which conda provides) and beam-helper 1.0. Neither exists anywhere else."""
    root, wheels = tmp_path / "simple", tmp_path / "built-wheels"
    root.mkdir()
    publish(root, make_wheel(wheels, "beam-tool", "1.0", ["beam-helper>=1.0", "ipykernel"],
                             {"beam-tool": "beam_tool:main"}))
    publish(root, make_wheel(wheels, "beam-helper", "1.0"))
    with serve(root) as url:
        yield {"root": root, "url": f"{url}/", "wheels": wheels}


@pytest.mark.slow
def test_pip_package_builds_upgrades_and_an_unchanged_nightly_builds_nothing(site, envmgr_cli, index):
    with_pip(site, index_url=index["url"])
    pip_spec(site["specs"], "beam", "beam-tool==1.0")
    first = build(envmgr_cli, "--all")
    assert first["status"] == "built", first
    layout = Layout(site["root"])
    prefix = layout.prefix("beam", first["build_id"])

    lock_file = layout.record_dir("beam", first["build_id"]) / "conda-lock.yml"
    pip_entries = {p["name"]: p for p in lock_of(lock_file) if p["manager"] == "pip"}
    assert set(pip_entries) == {"beam-tool", "beam-helper"}  # ipykernel: conda's, not pip's
    assert pip_entries["beam-tool"]["version"] == "1.0"
    assert len(pip_entries["beam-tool"]["hash"]["sha256"]) == 64
    assert pip_entries["beam-tool"]["url"].startswith(index["url"])
    render = subprocess.run([str(Path(sys.executable).with_name("conda-lock")), "render", "-k", "env",
                             "--platform", "linux-64", str(lock_file)], cwd=site["tmp"],
                            capture_output=True, text=True, timeout=120)
    assert render.returncode == 0, render.stderr
    assert "beam-tool" in (site["tmp"] / "conda-linux-64.lock.yml").read_text()

    # The kernel (through its kernelspec and the launcher) imports the pip package.
    check = run_cell([], code="import beam_tool, sys; print(beam_tool.__version__, sys.prefix)",
                     kernel_name="beam-latest", kernels_dir=site["kernels"])
    assert check.prefix.split() == ["1.0", str(prefix)]
    # pip sees what uv installed; the console script points at the published prefix.
    listed = subprocess.run([str(prefix / "bin/python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, timeout=120)
    assert {"name": "beam-tool", "version": "1.0"} in json.loads(listed.stdout), listed.stderr
    script = subprocess.run([str(prefix / "bin/beam-tool")], capture_output=True, text=True, timeout=60)
    assert script.stdout.strip() == "beam-tool 1.0", script.stderr

    # The SBOM lists each pip package once, as pkg:pypi (the security officer's view).
    sbom = envmgr_cli("sbom", "beam")
    assert sbom.returncode == 0, sbom.stderr
    purls = [c.get("purl", "") for c in json.loads(sbom.stdout)["components"]]
    assert sorted(p for p in purls if p.startswith("pkg:pypi/")) == \
        ["pkg:pypi/beam-helper@1.0", "pkg:pypi/beam-tool@1.0"], purls

    # Upstream publishes: the pinned beam-tool stays, its dependency moves; the nightly builds.
    publish(index["root"], make_wheel(index["wheels"], "beam-helper", "1.1"))
    publish(index["root"], make_wheel(index["wheels"], "beam-tool", "1.1", ["beam-helper>=1.0"]))
    nightly = envmgr_cli("build", "--all")
    assert nightly.returncode == 0, nightly.stdout + nightly.stderr
    assert "upgraded beam-helper 1.0 → 1.1 (pip)" in nightly.stdout, nightly.stdout
    assert "beam-tool" not in nightly.stdout.split("upgraded", 1)[1]  # pinned ==1.0
    again = build(envmgr_cli, "--all")
    assert again["status"] == "unchanged", again

    # --from-lock of the first build's record (how a tombstone is re-created): pip 1.0 again.
    old = build(envmgr_cli, "beam", "--from-lock", lock_file)
    assert old["status"] == "built"
    assert [c["name"] for c in old["diff"]["changes"]] == ["beam-helper"]
    helper = subprocess.run([str(Path(old["prefix"]) / "bin/python"), "-c",
                             "import beam_helper; print(beam_helper.__version__)"],
                            capture_output=True, text=True, timeout=60)
    assert helper.stdout.strip() == "1.0"


def test_lock_names_conda_satisfied_requirements_and_find_links_offline(site, envmgr_cli, tmp_path):
    folder = tmp_path / "wheels"
    make_wheel(folder, "offline-only", "2.0", ["ipykernel>=1"])
    with_pip(site, find_links=[folder], index_url="http://127.0.0.1:9/simple")  # nothing listens
    spec = pip_spec(site["specs"], "offl", "offline-only", "ipykernel")
    proc = envmgr_cli("lock", spec, "-o", tmp_path / "offl.conda-lock.yml", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert "(1 from pip)" in proc.stdout
    assert "pip: ipykernel is satisfied by conda ipykernel" in proc.stdout  # the spec's own
    assert proc.stdout.count("is satisfied by conda") == 2  # ... and offline-only's dependency
    entries = [p for p in lock_of(tmp_path / "offl.conda-lock.yml") if p["manager"] == "pip"]
    assert [(p["name"], p["version"]) for p in entries] == [("offline-only", "2.0")]
    assert entries[0]["url"].startswith(folder.as_uri())


def test_unsatisfiable_or_conflicting_pip_requirements_exit_3_naming_them(site, envmgr_cli, index, tmp_path):
    with_pip(site, index_url=index["url"])
    missing = pip_spec(site["specs"], "nope", "beam-tool==9.9")
    proc = envmgr_cli("lock", missing, "-o", tmp_path / "x.yml")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "beam-tool==9.9" in proc.stderr and "Traceback" not in proc.stderr
    conflict = pip_spec(site["specs"], "clash", "ipykernel<1")
    proc = envmgr_cli("lock", conflict, "-o", tmp_path / "y.yml")
    assert proc.returncode == 3 and "ipykernel<1 (conda locked ipykernel" in proc.stderr, proc.stderr
    bad = pip_spec(site["specs"], "bad", "beam tool !!")
    proc = envmgr_cli("spec", "check", bad)
    assert proc.returncode == 2 and "pip[0]" in proc.stdout + proc.stderr
    assert not (tmp_path / "x.yml").exists() and not (tmp_path / "y.yml").exists()


def test_policy_refuses_pip_packages_by_name(site, envmgr_cli, index, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("denied:\n  beam-helper: {reason: not vetted}\n")
    yaml = YAML()
    values = yaml.load(site["config"].read_text())
    values["policy"] = {"file": str(policy)}
    write_config(site["config"], **values)
    with_pip(site, index_url=index["url"])
    spec = pip_spec(site["specs"], "pol", "beam-tool==1.0")
    proc = envmgr_cli("lock", spec, "-o", tmp_path / "pol.yml")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "beam-helper 1.0" in proc.stderr and "not vetted" in proc.stderr


def test_quota_counts_pip_wheels(tmp_path: Path) -> None:
    from envmgr.config import Config
    from envmgr.lockfile import LockedPackage, PackageSet
    from envmgr.define.personal import QuotaExceeded, check_quota
    from envmgr.define.spec import parse_spec_text

    spec = parse_spec_text("name: q\nchannels: [demo]\ndependencies: [python]\npip: [big]\n", tmp_path / "q.yaml")
    wheel = LockedPackage(name="big", version="1.0", build="", subdir="pypi", url="https://x/big.whl",
                          sha256="0" * 64, size=5 * 1024**2, manager="pip")
    packages = PackageSet.of("linux-64", [wheel])
    config = Config(root=tmp_path / "root", kernels_dir=tmp_path / "k", pkgs_dir=tmp_path / "pkgs",
                    specs_dir=tmp_path, personal=True, user_quota=1024**2)
    with pytest.raises(QuotaExceeded, match="needs at least 5.0 MiB more"):
        check_quota(config, spec, packages)


def test_personal_lock_may_install_pip_wheels_only_from_the_site_index(tmp_path: Path) -> None:
    from envmgr.config import Config, PipIndex
    from envmgr.errors import UsageError
    from envmgr.lockfile import LockedPackage
    from envmgr.define.personal import check_lock_pip_sources

    def wheel(url: str) -> LockedPackage:
        return LockedPackage(name="w", version="1", build="", subdir="pypi", url=url, sha256="0" * 64,
                             manager="pip")

    config = Config(root=tmp_path, kernels_dir=tmp_path, pkgs_dir=tmp_path, specs_dir=tmp_path,
                    personal=True, pip=PipIndex(index_url="https://pypi.example.org/simple",
                                                find_links=(tmp_path / "wheels",)))
    check_lock_pip_sources(config, [wheel("https://pypi.example.org/packages/w-1-py3-none-any.whl"),
                                    wheel((tmp_path / "wheels" / "w-1-py3-none-any.whl").as_uri())], "l.yml")
    with pytest.raises(UsageError, match=r"outside the site's pip index.*evil\.example"):
        check_lock_pip_sources(config, [wheel("https://evil.example/w-1-py3-none-any.whl")], "l.yml")


def test_doctor_probes_the_pip_index_with_the_credentials_and_the_offline_folders(site, tmp_path):
    """doctor's pip-index check: as uv will ask it, the token never shown; offline, the wheels."""
    import secrets as _secrets

    from envmgr.config import load_config
    from envmgr.ops.doctor import check_pip_index

    assert check_pip_index(load_config(config_path=site["config"])).detail.startswith("no spec uses pip")
    token = f"tok-{_secrets.token_hex(8)}"
    root = tmp_path / "simple"
    publish(root, make_wheel(tmp_path / "w", "beam-helper", "1.0"))
    creds = tmp_path / "creds.json"
    with serve(root, token=token) as url:
        for secret, status in ((token, "ok"), ("wrong", "fail")):
            creds.write_text(json.dumps({"127.0.0.1": {"BearerToken": secret}}))
            creds.chmod(0o600)
            with_pip(site, index_url=f"{url}/")
            config = load_config(config_path=write_config(site["config"], **{
                **YAML().load(site["config"].read_text()), "credentials_file": str(creds)}))
            check = check_pip_index(config)
            assert check.status == status, check
            assert token not in check.detail + check.fix
        assert "HTTP 401" in check.detail and "credentials_file" in check.fix
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    check = check_pip_index(load_config(config_path=with_pip(site, offline=True, find_links=[empty])))
    assert check.status == "fail" and "no wheels" in check.detail
    check = check_pip_index(load_config(config_path=with_pip(site, offline=True,
                                                             find_links=[tmp_path / "w"])))
    assert check.status == "ok" and "1 wheel(s)" in check.detail, check
