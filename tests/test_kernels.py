"""Kernelspec planning and atomic writing (envmgr.kernels.kernelspecs)."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

from envmgr.errors import ConfigError, UsageError
from envmgr.kernels.kernelspecs import (
    KernelFamily,
    StableKernel,
    desired_kernels,
    installed_kernels,
    kernel_name,
    launcher_path,
    launcher_source,
    remove_family_kernels,
    sync_family_kernels,
)
from envmgr.layout import Layout
from tests.test_launcher import build_id, flip_latest, make_build  # the one build fixture

ROOT = Path("/srv/envmgr")
LAUNCHER = Path("/k/.envmgr/launcher-x.sh")
HANDMADE = json.dumps({"argv": ["python"], "display_name": "mine", "language": "python"})


def fam(name: str = "py", latest: str | None = build_id(1), stable=(), **kw) -> KernelFamily:
    return KernelFamily(family=name, display_name=kw.pop("display_name", "Python 3"), group="data",
                        latest_build=latest, latest_built="2025-01-01T00:00:00Z", stable=stable, **kw)


def rel(release: str, n: int) -> tuple[str, str, str, str]:
    return (release, build_id(n), "2024-01-01T00:00:00Z", "2027-01-01")


def ksm(kernels_dir: Path) -> KernelSpecManager:
    return KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)


# -- desired set (pure) --------------------------------------------------------------


def test_desired_kernels_latest_and_stable():
    layout = Layout(ROOT)
    family = fam(stable=[rel("2024.1", 5), rel("2024.2", 6)], env={"OMP_NUM_THREADS": "4"},
                 mem_limit_mib=2048)
    plans = desired_kernels(layout, family, launcher=LAUNCHER)
    assert [p.name for p in plans] == ["py-latest", "py-2024.1", "py-2024.2"]
    assert [p.display_name for p in plans] == ["Python 3 · latest", "Python 3 · 2024.1", "Python 3 · 2024.2"]

    latest, stable = plans[0].kernel_json, plans[1].kernel_json
    assert latest["argv"] == [
        "/bin/sh", str(LAUNCHER), "--lease-dir", str(ROOT / "leases" / "py"), "--mem-kib", str(2048 * 1024),
        "--", str(ROOT / "envs" / "py" / "latest"),
        "@PREFIX@/bin/python", "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    pinned = stable["argv"][stable["argv"].index("--") + 1]
    assert pinned == str(layout.prefix("py", build_id(5))), "stable kernels are pinned to their build"
    assert latest["language"] == "python" and latest["interrupt_mode"] == "signal"
    assert latest["env"] == {"OMP_NUM_THREADS": "4"}
    assert latest["metadata"]["debugger"] is True
    assert latest["metadata"]["envmgr"] == {
        "v": 1, "family": "py", "group": "data", "channel": "latest", "release": None,
        "build_id": build_id(1),
        "built": "2025-01-01T00:00:00Z", "support_until": None, "display_name": "Python 3"}
    assert stable["metadata"]["envmgr"] == {
        "v": 1, "family": "py", "group": "data", "channel": "stable", "release": "2024.1",
        "build_id": build_id(5),
        "built": "2024-01-01T00:00:00Z", "support_until": "2027-01-01", "display_name": "Python 3"}
    assert set(plans[0].files()) == {"kernel.json", "logo-32x32.png", "logo-64x64.png"}


def test_no_latest_kernel_before_the_first_good_build():
    plans = desired_kernels(Layout(ROOT), fam(latest=None, stable=[rel("2024.1", 5)]), launcher=LAUNCHER)
    assert [p.name for p in plans] == ["py-2024.1"]


def test_r_template():
    plans = desired_kernels(Layout(ROOT), fam("r", template="r", display_name="R"), launcher=LAUNCHER)
    spec = plans[0].kernel_json
    assert spec["argv"][-6:] == ["@PREFIX@/bin/R", "--slave", "-e", "IRkernel::main()",
                                 "--args", "{connection_file}"]
    assert spec["language"] == "R"


def test_display_names_carry_the_release_name_unchanged():
    """One canonical label: the release as promoted, in the kernel list, the toolbar and notebooks.

    (The launcher and Select Kernel order releases numerically; display names do not have to.)
    """
    family = fam(stable=[rel("2024.9", 5), rel("2024.10", 6), rel("2023.12", 7)])
    plans = desired_kernels(Layout(ROOT), family, launcher=LAUNCHER)
    labels = {p.name: p.display_name for p in plans}
    assert labels["py-2024.9"] == "Python 3 · 2024.9"
    assert labels["py-2024.10"] == "Python 3 · 2024.10"
    assert all(p.envmgr["v"] == 1 for p in plans), "the metadata block is versioned"
    alone = desired_kernels(Layout(ROOT), fam(stable=[rel("2024.9", 5)]), launcher=LAUNCHER)
    assert alone[1].display_name == labels["py-2024.9"], "a label does not depend on other releases"


def test_stable_release_tuples_and_objects_are_equivalent():
    a = fam(stable=[rel("2024.1", 5)])
    b = fam(stable=[StableKernel(*rel("2024.1", 5))])
    assert a == b


@pytest.mark.parametrize("bad, message", [
    (dict(name="My Env"), "kernel name 'My Env-latest' (family 'My Env', 'latest') is invalid"),
    (dict(name="py/3"), "kernel name 'py/3-latest'"),
    (dict(name="Py"), "kernel name 'Py-latest'"),
    (dict(stable=[rel("2024 spring", 5)]), "kernel name 'py-2024 spring'"),
    (dict(stable=[rel("latest", 5)]), "cannot be called 'latest'"),
    (dict(stable=[rel("2024.1", 5), rel("2024.1", 6)]), "two kernels named 'py-2024.1'"),
    (dict(latest="not-a-build"), "'not-a-build' is not a build id"),
    (dict(env={"A-B": "x"}), "bad environment variable 'A-B'"),
    (dict(mem_limit_mib=0), "memory limit must be a positive number of MiB"),
    (dict(template="../etc"), "unknown kernel template '../etc'"),
])
def test_invalid_input_rejected_readably(bad, message):
    kw = dict(bad)
    name = kw.pop("name", "py")
    with pytest.raises(UsageError) as info:
        desired_kernels(Layout(ROOT), fam(name, **kw), launcher=LAUNCHER)
    assert message in info.value.message
    if "kernel name" in message:
        assert "ASCII letters and numbers" in info.value.hint


def test_kernel_name_is_the_one_validator():
    assert kernel_name("py", "2024.1") == "py-2024.1"
    with pytest.raises(UsageError):
        kernel_name("py", "a b")


@pytest.mark.parametrize("name", ["py-2024.1", "py-latest", "a_b.c-d", "py-a b", "py-ä", "py-x/y", "py-",
                                  "PY-Latest", "py-x\n"])
def test_kernel_name_rule_is_jupyter_clients(name):
    """envmgr copies jupyter_client's rule (to keep jupyter_client out of start-up): same verdicts."""
    from jupyter_client.kernelspec import _is_valid_kernel_name, _kernel_name_description

    from envmgr.kernels.kernelspecs import KERNEL_NAME_RE, KERNEL_NAME_RULE

    assert bool(KERNEL_NAME_RE.match(name)) == bool(_is_valid_kernel_name(name))
    assert KERNEL_NAME_RULE == _kernel_name_description


def test_relative_root_rejected():
    with pytest.raises(UsageError, match="absolute"):
        desired_kernels(Layout(Path("rel/root")), fam(), launcher=LAUNCHER)


# -- writing -----------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "root")


@pytest.fixture
def kernels_dir(tmp_path: Path) -> Path:
    return tmp_path / "kernels"


def test_sync_writes_readable_kernelspecs(layout, kernels_dir):
    old = os.umask(0o077)  # must not leak into the files
    try:
        result = sync_family_kernels(kernels_dir, layout, fam(stable=[rel("2024.1", 5)]))
    finally:
        os.umask(old)
    assert result.created == ["py-latest", "py-2024.1"] and not result.updated and not result.removed
    specs = ksm(kernels_dir).find_kernel_specs()
    assert set(specs) == {"py-latest", "py-2024.1"}, "nothing else (.envmgr, staging) looks like a kernel"
    spec = KernelSpec.from_resource_dir(specs["py-latest"])
    assert spec.display_name == "Python 3 · latest"
    for path in [kernels_dir / "py-latest", *(kernels_dir / "py-latest").iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o444 == 0o444 and not mode & 0o022, (path, oct(mode))

    launcher = result.launcher
    assert launcher == launcher_path(kernels_dir) and launcher.read_bytes() == launcher_source()
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    assert spec.argv[1] == str(launcher)

    again = sync_family_kernels(kernels_dir, layout, fam(stable=[rel("2024.1", 5)]))
    assert again.unchanged == ["py-latest", "py-2024.1"] and not again.created and not again.updated


def test_old_launchers_are_kept_for_running_kernels(layout, kernels_dir):
    """A running kernel restarts with the argv (launcher path) it started with."""
    sync_family_kernels(kernels_dir, layout, fam())
    old = kernels_dir / ".envmgr" / "launcher-000000000000.sh"
    old.write_text("#!/bin/sh\n")
    sync_family_kernels(kernels_dir, layout, fam(latest=build_id(2)))
    assert old.exists()


def test_retire_removes_one_release_only(layout, kernels_dir):
    sync_family_kernels(kernels_dir, layout, fam(stable=[rel("2023.1", 3), rel("2024.1", 5)]))
    sync_family_kernels(kernels_dir, layout, fam("py-gpu", display_name="Python GPU"))
    foreign = kernels_dir / "py-handmade"
    foreign.mkdir()
    (foreign / "kernel.json").write_text(HANDMADE)

    result = sync_family_kernels(kernels_dir, layout, fam(stable=[rel("2024.1", 5)]))
    assert result.removed == ["py-2023.1"]
    assert result.unchanged == ["py-latest", "py-2024.1"]
    listed = set(ksm(kernels_dir).find_kernel_specs())
    assert listed == {"py-latest", "py-2024.1", "py-gpu-latest", "py-handmade"}
    assert set(installed_kernels(kernels_dir, "py")) == {"py-latest", "py-2024.1"}


def test_family_owning_the_name_is_decided_by_metadata(layout, kernels_dir):
    """Family 'py' must not touch 'py-gpu-latest' even though the name starts with 'py-'."""
    sync_family_kernels(kernels_dir, layout, fam("py-gpu"))
    sync_family_kernels(kernels_dir, layout, fam("py", stable=[]))
    assert remove_family_kernels(kernels_dir, "py") == ["py-latest"]
    assert set(installed_kernels(kernels_dir)) == {"py-gpu-latest"}
    # family 'py' with release 'gpu-latest' would collide with family 'py-gpu''s latest kernel
    with pytest.raises(ConfigError, match="belongs to family 'py-gpu'"):
        sync_family_kernels(kernels_dir, layout, fam("py", stable=[rel("gpu-latest", 5)]))
    assert not (kernels_dir / "py-latest").exists(), "nothing is written when the check fails"


def test_refuses_to_overwrite_a_kernelspec_envmgr_does_not_manage(layout, kernels_dir):
    handmade = kernels_dir / "py-latest"
    handmade.mkdir(parents=True)
    (handmade / "kernel.json").write_text(HANDMADE)
    with pytest.raises(ConfigError, match="is not managed by envmgr") as info:
        sync_family_kernels(kernels_dir, layout, fam())
    assert info.value.hint
    assert (handmade / "kernel.json").read_text() == HANDMADE


def test_remove_family_kernels(layout, kernels_dir):
    sync_family_kernels(kernels_dir, layout, fam(stable=[rel("2024.1", 5)]))
    sync_family_kernels(kernels_dir, layout, fam("r", template="r", display_name="R"))
    assert remove_family_kernels(kernels_dir, "py") == ["py-2024.1", "py-latest"]
    assert set(ksm(kernels_dir).find_kernel_specs()) == {"r-latest"}
    assert remove_family_kernels(kernels_dir, "py") == []
    assert remove_family_kernels(kernels_dir / "missing", "py") == []


def test_crash_leftovers_are_invisible_and_cleaned(layout, kernels_dir):
    sync_family_kernels(kernels_dir, layout, fam())
    debris = kernels_dir / ".envmgr" / "staging" / "py-latest-dead"
    debris.mkdir()
    (debris / "kernel.json").write_text("{")  # a half-written kernel.json from a killed run
    assert set(ksm(kernels_dir).find_kernel_specs()) == {"py-latest"}
    sync_family_kernels(kernels_dir, layout, fam())
    assert not debris.exists()


def test_rewrites_are_atomic_for_readers(layout, kernels_dir):
    """A reader hammering kernel.json during 200 rewrites never sees it missing or partial."""
    sync_family_kernels(kernels_dir, layout, fam())
    kernel_json = kernels_dir / "py-latest" / "kernel.json"
    stop = threading.Event()
    seen: set[str] = set()
    problems: list[str] = []
    reads = 0

    listing = ksm(kernels_dir)

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                spec = KernelSpec.from_resource_dir(str(kernel_json.parent))
                seen.add(spec.display_name)
                if "py-latest" not in listing.find_kernel_specs():
                    problems.append("py-latest missing from the listing")
            except Exception as exc:  # noqa: BLE001 -- any failure is the finding
                problems.append(repr(exc))
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            result = sync_family_kernels(kernels_dir, layout, fam(display_name=f"Python {i:03d}"))
            assert result.updated == ["py-latest"]
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert reads > 200 and len(seen) > 10
    assert KernelSpec.from_resource_dir(str(kernel_json.parent)).display_name == "Python 199 · latest"


def test_kernelspecs_listed_with_real_builds(layout, kernels_dir):
    """Smoke test with the shared build fixture: the written kernelspec points at a real prefix."""
    make_build(layout, "py", build_id(1))
    flip_latest(layout, "py", build_id(1))
    sync_family_kernels(kernels_dir, layout, fam())
    spec = ksm(kernels_dir).get_kernel_spec("py-latest")
    target = Path(spec.argv[spec.argv.index("--") + 1])
    assert target.resolve() == layout.prefix("py", build_id(1)).resolve()
    assert Path(spec.argv[spec.argv.index("--lease-dir") + 1]) == layout.lease_dir("py")
