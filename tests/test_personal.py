"""Personal environments (`envmgr --user`) under a site configuration at the fixed path.

The CLI runs in a subprocess whose fixed site path (/etc/envmgr/config.yaml on
a hub) points at this test's site file, as an installer would set it; nothing
a user controls (flags, environment, files) can move it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from envmgr.channel.build import add_demo_package
from envmgr.config import ConfigFileError, load_config
from envmgr.errors import UsageError
from envmgr.build.kernelcheck import run_cell
from envmgr.layout import Layout

from .conftest import json_of, write_config, write_spec
from .test_policy import CHAIN, write_policy

pytestmark = pytest.mark.slow

# Runs the real CLI with the fixed site path replaced (argv[1]) before anything reads it.
BOOT = ("import sys; from pathlib import Path; import envmgr.config as c; "
        "c.SITE_CONFIG = Path(sys.argv.pop(1)); from envmgr.cli import main; main()")

ALLOWED_SPEC = """\
name: {name}
display_name: {display}
channels: [demo]
dependencies:
  - python 3.*
  - ipykernel
  - envmgr-demo-b
  - envmgr-demo-a <2
smoke_test:
  imports: [envmgr_demo_a, envmgr_demo_b]
"""

Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def hub(site: dict[str, Path], shared_pkgs: Path) -> dict[str, Path]:
    """A hub: shared root + kernels, a vetted policy in the specs repo, a user's home."""
    policy = write_policy(site["specs"] / "policy.yaml", site["channel"])
    (site["tmp"] / "etc").mkdir()
    site_file = write_config(site["tmp"] / "etc" / "config.yaml", root=site["root"],
                             pkgs_dir=shared_pkgs, specs_dir=site["specs"], kernels_dir=site["kernels"],
                             channels={"demo": site["channel"].as_uri()}, min_free_space="10M",
                             compile_pyc=False, policy={"file": str(policy), "applies_to": "personal"})
    home = Path(os.environ["XDG_DATA_HOME"]).parent  # the autouse isolation fixture's home
    return {**site, "site_file": site_file, "policy": policy, "home": home,
            "user_root": Path(os.environ["XDG_DATA_HOME"]) / "envmgr",
            "user_kernels": Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels"}


@pytest.fixture
def hub_cli(hub: dict[str, Path]) -> Cli:
    def call(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-c", BOOT, str(hub["site_file"]), *map(str, args)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600,
                              env={**os.environ, **(env or {})})
    return call


def personal_spec(hub: dict[str, Path], name: str, display: str = "My env", text: str = ALLOWED_SPEC
                  ) -> Path:
    path = hub["home"] / f"{name}.yaml"
    path.write_text(text.format(name=name, display=display))
    return path


def built(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (outcome,) = json_of(proc)["result"]["builds"]
    return outcome


@contextmanager
def running_kernel(kernels_dir: Path, name: str) -> Iterator[None]:
    """A kernel started from an installed kernelspec, running until the block ends."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    km.start_kernel()
    client = km.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=120)
        yield
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# -- configuration rules (no builds) ----------------------------------------------------------

def test_user_mode_paths_and_the_locked_site_keys(hub: dict[str, Path]) -> None:
    site_file = hub["site_file"]
    env = {"XDG_DATA_HOME": os.environ["XDG_DATA_HOME"], "ENVMGR_ROOT": str(hub["root"])}
    cfg = load_config(user=True, environ=env, site_config=site_file)
    assert cfg.root == hub["user_root"] and cfg.root_source == "user"  # ENVMGR_ROOT is not used
    assert cfg.kernels_dir == hub["user_kernels"] and cfg.pkgs_dir == hub["user_root"] / "pkgs"
    assert cfg.personal and cfg.policy_enforced == hub["policy"] and cfg.allowed_channels == ("demo",)
    staff = load_config(environ={}, site_config=site_file)
    assert staff.root == hub["root"] and not staff.personal and staff.policy_enforced is None
    elsewhere = load_config(root=hub["tmp"] / "mine", environ={}, site_config=site_file)
    assert elsewhere.personal and elsewhere.policy_enforced == hub["policy"]

    with pytest.raises(UsageError, match="--root cannot be combined with --user"):
        load_config(user=True, root=hub["tmp"] / "x", environ=env, site_config=site_file)
    own = hub["tmp"] / "own.yaml"
    own.write_text("compile_pyc: true\npolicy:\n  file: /dev/null\nchannels: {demo: /srv/x}\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(user=True, config_path=own, environ=env, site_config=site_file)
    assert f"{own}:2:1: policy: is set by the site configuration {site_file}" in info.value.message
    assert f"{own}:4:1: channels: is set by the site configuration" in info.value.message
    # Keys the site file does not set stay the user's to choose.
    own.write_text("compile_pyc: true\n")
    assert load_config(user=True, config_path=own, environ=env, site_config=site_file).compile_pyc

    bad = hub["tmp"] / "bad-site.yaml"
    bad.write_text("policy:\n  applies_to: everyone\nuser_quota: lots\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(environ={}, site_config=bad)
    assert f"{bad}:1:1: policy.file: is required" in info.value.message
    assert f"{bad}:2:15: policy.applies_to: must be 'all' or 'personal'" in info.value.message
    assert f"{bad}:3:13: user_quota: 'lots' is not a size" in info.value.message


def test_user_cannot_escape_the_site_policy(hub: dict[str, Path], hub_cli: Cli) -> None:
    """A spec pulling a disallowed dependency is refused however the user invokes envmgr."""
    spec = write_spec(hub["home"], "greedy")  # envmgr-demo-b → envmgr-demo-a 2.0 (policy: <2)
    before = tree(hub["root"])
    refused = hub_cli("--user", "build", "--json", spec)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    (outcome,) = json_of(refused)["result"]["builds"]
    assert outcome["family"] == "user-greedy" and CHAIN in outcome["error"]
    assert not (hub["user_root"] / "envs" / "user-greedy").exists()

    allow_all = hub["home"] / "allow-all.yaml"
    allow_all.write_text("denied:\n  nothing-at-all:\n")
    own = write_config(hub["home"] / "own.yaml", policy={"file": str(allow_all)})
    remap = write_config(hub["home"] / "remap.yaml", channels={"mine": str(hub["channel"])})
    attempts: list[tuple[list[str | Path], dict[str, str], int, str]] = [
        (["--user", "--config", own], {}, 2, "is set by the site configuration"),
        (["--user"], {"ENVMGR_CONFIG": str(own)}, 2, "is set by the site configuration"),
        (["--config", own, "--root", hub["home"] / "r1"], {}, 2, "is set by the site configuration"),
        (["--user", "--config", remap], {}, 2, "channels: is set by the site configuration"),
        (["--user", "--root", hub["home"] / "r2"], {}, 2, "--root cannot be combined with --user"),
        (["--root", hub["home"] / "r3"], {}, 3, CHAIN),  # another root is personal use
        ([], {"ENVMGR_ROOT": str(hub["home"] / "r4")}, 3, CHAIN),
    ]
    for flags, env, code, message in attempts:
        proc = hub_cli(*flags, "build", spec, env=env)
        assert proc.returncode == code, (flags, env, proc.stdout + proc.stderr)
        assert message in proc.stdout + proc.stderr, (flags, env, proc.stdout + proc.stderr)
    for n in range(1, 5):
        assert not (hub["home"] / f"r{n}" / "envs").exists()

    other_channel = personal_spec(hub, "elsewhere", text=ALLOWED_SPEC.replace("[demo]", "[demo, bioconda]"))
    proc = hub_cli("--user", "build", other_channel)
    assert proc.returncode == 2 and "may use only the channels the site configuration maps (demo)" \
        in proc.stderr and "bioconda" in proc.stderr

    # A lock file naming another channel cannot be installed in personal mode.
    ok_spec = personal_spec(hub, "pinned")
    lock = hub["home"] / "pinned.conda-lock.yml"
    assert hub_cli("--user", "lock", ok_spec, "-o", lock).returncode == 0
    foreign = hub["home"] / "foreign.conda-lock.yml"
    foreign.write_text(lock.read_text().replace(hub["channel"].as_uri(), "file:///srv/unvetted"))
    proc = hub_cli("--user", "build", "--from-lock", foreign, ok_spec)
    assert proc.returncode == 2 and "file:///srv/unvetted" in proc.stdout
    assert "does not allow for personal environments" in proc.stdout
    assert not (hub["user_root"] / "envs" / "user-pinned").exists()
    assert tree(hub["root"]) == before  # the shared root was never touched


def test_personal_env_builds_beside_an_unaffected_shared_family(hub: dict[str, Path], hub_cli: Cli) -> None:
    shared_spec = write_spec(hub["specs"], "fam")  # pulls envmgr-demo-a 2.0: fine for shared builds
    shared = built(hub_cli("build", "--json", shared_spec))  # staff, on the shared root
    assert shared["status"] == "built" and shared["kernels"] == ["fam-latest"]
    shared_tree, shared_kernels = tree(hub["root"] / "envs"), tree(hub["kernels"])

    spec = personal_spec(hub, "fam")  # the same family name, as a user's own environment
    first = built(hub_cli("--user", "build", "--json", spec))
    assert first["family"] == "user-fam" and first["kernels"] == ["user-fam-latest"]
    prefix = Path(first["prefix"])
    assert prefix.parent == hub["user_root"] / "envs" / "user-fam"
    assert sorted(p.name for p in hub["user_kernels"].iterdir() if p.name != ".envmgr") == ["user-fam-latest"]

    # The kernel starts from the user's own kernels dir and runs in the personal build.
    check = run_cell([], kernels_dir=hub["user_kernels"], kernel_name="user-fam-latest",
                     code="import sys, envmgr_demo_a; print(sys.prefix, envmgr_demo_a.__version__)")
    assert check.prefix == f"{prefix} 1.1"

    # The same lifecycle as shared families: a new unique prefix, rollback, gc with leases.
    with running_kernel(hub["user_kernels"], "user-fam-latest"):  # holds the first build's lease
        add_demo_package(hub["channel"], "envmgr-demo-b", "1.2", depends=["envmgr-demo-a >=1.0"])
        second = built(hub_cli("--user", "build", "--json", spec))
        assert second["status"] == "built" and second["previous"] == first["build_id"]
        assert Path(second["prefix"]) != prefix and prefix.is_dir()
        back = hub_cli("--user", "rollback", "--json", "user-fam")
        assert back.returncode == 0 and json_of(back)["result"]["latest"] == first["build_id"]
        assert Layout(hub["user_root"]).latest_build("user-fam") == first["build_id"]
        forward = hub_cli("--user", "rollback", "user-fam", "--to", second["build_id"])
        assert forward.returncode == 0 and Layout(hub["user_root"]).latest_build("user-fam") == \
            second["build_id"]
        # The user's own settings (not the site's locked keys) may shorten retention.
        mine = write_config(hub["home"] / "mine.yaml", retention={"keep_previous": 0, "grace_days": 0})
        assert hub_cli("--user", "--config", mine, "gc").returncode == 0
        assert prefix.is_dir()  # a kernel still runs on it
    assert hub_cli("--user", "--config", mine, "gc").returncode == 0
    assert not prefix.exists() and Path(second["prefix"]).is_dir()

    # The shared family did not notice: same builds, same latest, same kernels.
    assert tree(hub["root"] / "envs") == shared_tree and tree(hub["kernels"]) == shared_kernels
    assert Layout(hub["root"]).latest_build("fam") == shared["build_id"]
    assert not (hub["root"] / "envs" / "user-fam").exists()

    # user- names belong to personal environments; a shared family cannot take one.
    clash = write_spec(hub["specs"], "user-fam")
    proc = hub_cli("build", clash)
    assert proc.returncode == 2 and "reserved for personal environments" in proc.stderr


def test_quota_refuses_a_personal_build_before_installing(hub: dict[str, Path], hub_cli: Cli) -> None:
    text = hub["site_file"].read_text() + "user_quota: 1M\n"
    hub["site_file"].write_text(text)
    spec = personal_spec(hub, "big")
    proc = hub_cli("--user", "build", spec)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "personal quota" in proc.stderr and "1.0 MiB quota" in proc.stderr
    assert "nothing built" in proc.stderr
    assert not (hub["user_root"] / "envs" / "user-big").exists()
    assert not (hub["user_root"] / "pkgs").exists() or not any((hub["user_root"] / "pkgs").iterdir())
