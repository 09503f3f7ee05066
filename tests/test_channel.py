"""The local conda channel: real packages, real solves, real prefixes (no mocks).

Solves and installs run in-process: fast, and the conftest ends pytest with
``hard_exit`` once rattler was imported, so rattler's crash-at-exit cannot turn
a green run red. The channel comes from conftest's session ``demo_channel``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from envmgr._internal import _rattler
from envmgr.channel._condapkg import (
    CONDA_EXT,
    TAR_BZ2_EXT,
    normalize_name,
    requirement_to_depend,
    translate_specifier_set,
    write_package,
)
from envmgr.channel.build import (
    MARKER_FILE,
    add_demo_package,
    build_channel,
    demo_package,
    interpreter_info,
    reindex_channel,
)
from envmgr.errors import BuildFailed, EnvironmentProblem, UsageError

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
ABI = f"cp{sys.version_info[0]}{sys.version_info[1]}"


def run(argv: list[str | Path], **kw: object) -> subprocess.CompletedProcess:
    """Run a prefix's program with an environment that cannot leak the host's packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    kw.setdefault("cwd", "/")  # `python -c` puts the cwd on sys.path: keep the repo off it
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120,
                          env=env, **kw)  # type: ignore[call-overload]


def solved_versions(records: list) -> dict[str, str]:
    return {d["name"]: d["version"] for d in _rattler.records_to_dicts(records)}


def copy_channel(channel: Path, dest: Path) -> Path:
    """A private, real-directory copy (the published channel is a symlink)."""
    shutil.copytree(channel.resolve(), dest)
    return dest


def repodata(channel: Path) -> dict[str, dict]:
    packages: dict[str, dict] = {}
    for subdir in ("noarch", "linux-64"):
        data = json.loads((channel / subdir / "repodata.json").read_text())
        packages.update(data["packages"])
        packages.update(data.get("packages.conda", {}))
    return packages


# -- translation rules (pure functions) ------------------------------------------------------
@pytest.mark.parametrize(("pep440", "conda"), [
    (">=1.0", ">=1.0"),
    ("~=1.4.2", ">=1.4.2,1.4.*"),
    ("~=2.2", ">=2.2,2.*"),
    ("==1.2.*", "1.2.*"),
    ("!=1.2.*", "!=1.2.*"),
    ("!=1.3", "!=1.3"),
    ("===1.0-weird", "==1.0-weird"),
    ("==1.0+cpu", "==1.0"),
    ("<3.1.0,>=3.0.41", "<3.1.0,>=3.0.41"),
    ("", ""),
])
def test_specifier_translation(pep440: str, conda: str) -> None:
    assert translate_specifier_set(pep440) == conda


def test_requirement_translation() -> None:
    env = interpreter_info().markers
    assert requirement_to_depend("Jupyter_Client[test]>=8", env) == "jupyter-client >=8"
    assert requirement_to_depend("pytest; extra == 'test'", env) is None
    assert requirement_to_depend("pywin32; sys_platform == 'win32'", env) is None
    assert requirement_to_depend(f"typing.extensions; python_version >= '{PY}'", env) == "typing-extensions"
    assert requirement_to_depend("foo @ https://example.invalid/foo.whl", env) == "foo"
    assert normalize_name("Foo.Bar__baz") == "foo-bar-baz"


# -- the channel itself -------------------------------------------------------------------------
def test_channel_names_and_dependencies_are_normalized(demo_channel: Path) -> None:
    packages = repodata(demo_channel)
    names = {p["name"] for p in packages.values()}
    assert {"python", "python_abi", "pip", "ipykernel", "jupyter-client", "pyzmq",
            "envmgr-demo-a", "envmgr-demo-b"} <= names
    for fn, pkg in packages.items():
        if pkg["name"] != "python_abi":
            assert pkg["name"] == normalize_name(pkg["name"]), fn
        for dep in pkg["depends"]:
            dep_name, _, version = dep.partition(" ")
            assert dep_name == normalize_name(dep_name) or dep_name == "python_abi", (fn, dep)
            assert dep_name in names, f"{fn} depends on {dep}, which the channel lacks"
            assert not re.search(r"[\[\];]|extra|~=|===", dep), (fn, dep)
    ipykernel = next(p for p in packages.values() if p["name"] == "ipykernel")
    assert ipykernel["noarch"] == "python"
    assert any(d.startswith("jupyter-client ") for d in ipykernel["depends"])


def test_binary_and_python_packages(demo_channel: Path) -> None:
    by_name = {p["name"]: p for p in repodata(demo_channel).values() if p["subdir"] == "linux-64"}
    python = by_name["python"]
    assert python["version"] == ".".join(map(str, sys.version_info[:3]))
    assert ABI in python["build"]
    assert by_name["python_abi"]["build"] == f"0_{ABI}"
    pyzmq = by_name["pyzmq"]  # compiled extension -> linux-64 with an ABI pin
    assert f"python_abi {PY}.* *_{ABI}" in pyzmq["depends"]
    assert any(d.startswith("python >=") and "<" in d for d in pyzmq["depends"])


def test_cached_rebuild_is_a_fast_noop(demo_channel: Path) -> None:
    target = demo_channel.resolve()
    marker = (demo_channel / MARKER_FILE).stat().st_mtime_ns
    result = build_channel(demo_channel)
    assert result.cached
    assert result.seconds < 1.0
    assert demo_channel.resolve() == target
    assert (demo_channel / MARKER_FILE).stat().st_mtime_ns == marker


# -- solving and installing -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed(demo_channel: Path, shared_pkgs: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict:
    """python + ipykernel + envmgr-demo-b, installed into a staging dir for a final
    path and renamed there, as envmgr's builds do."""
    base = tmp_path_factory.mktemp("prefixes")
    staging, final = base / ".staging-x", base / "final"
    records = _rattler.solve(["python", "ipykernel", "envmgr-demo-b"], [demo_channel.as_uri()])
    _rattler.install(records, staging, shared_pkgs, target_prefix=final,
                     requested_specs=["python", "ipykernel", "envmgr-demo-b"])
    staging.rename(final)
    return {"prefix": final, "staging": staging, "records": records, "base": base}


@pytest.mark.slow
def test_demo_versions_solve_to_highest(installed: dict) -> None:
    versions = solved_versions(installed["records"])
    assert versions["envmgr-demo-b"] == "1.1"
    assert versions["envmgr-demo-a"] == "2.0"


@pytest.mark.slow
def test_prefix_python_is_the_prefix(installed: dict) -> None:
    prefix = installed["prefix"]
    proc = run([prefix / "bin" / "python", "-c",
                "import sys, ipykernel, envmgr_demo_b, envmgr_demo_a; "
                "print(sys.prefix); print(envmgr_demo_a.__version__)"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(prefix), "2.0"]
    assert (prefix / "pyvenv.cfg").read_text().count("include-system-site-packages = false") == 1
    assert (prefix / "share/jupyter/kernels/python3/kernel.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("module", ["pytest", "rattler", "envmgr"])
def test_prefix_cannot_import_host_packages(installed: dict, module: str) -> None:
    proc = run([installed["prefix"] / "bin" / "python", "-c", f"import {module}"])
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr


@pytest.mark.slow
def test_entry_points_point_at_the_final_prefix_and_run(installed: dict) -> None:
    prefix, staging = installed["prefix"], installed["staging"]
    scripts = [p for p in (prefix / "bin").iterdir()
               if p.is_file() and not p.is_symlink() and p.read_bytes().startswith(b"#!")]
    assert {"jupyter-kernel", "jupyter-kernelspec", "ipython", "debugpy"} <= {p.name for p in scripts}
    for script in scripts:
        text = script.read_text()
        assert text.startswith(f"#!{prefix}/bin/python"), (script, text.splitlines()[0])
        assert str(staging) not in text and "anaconda1anaconda2" not in text, script
        assert os.access(script, os.X_OK), script
    for argv in (["jupyter-kernel", "--help"],        # noarch, link.json launcher
                 ["jupyter-kernelspec", "list"],      # dotted entry point (Class.method)
                 ["ipython", "-c", "print(6 * 7)"],
                 ["debugpy", "--version"]):           # compiled package, our own launcher
        proc = run([prefix / "bin" / argv[0], *argv[1:]])
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    assert "42" in run([prefix / "bin" / "ipython", "-c", "print(6 * 7)"]).stdout


@pytest.mark.slow
def test_conda_pack_accepts_the_prefix(installed: dict) -> None:
    import conda_pack

    out = installed["base"] / "packed.tar"
    conda_pack.pack(prefix=str(installed["prefix"]), output=str(out), format="tar",
                    ignore_missing_files=False, verbose=False)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert "bin/conda-unpack" in names
    assert any(n.startswith(f"lib/python{PY}/site-packages/ipykernel/") for n in names)


# -- "upstream released a new version" --------------------------------------------------------------
@pytest.mark.slow
def test_new_demo_version_is_picked_by_a_fresh_solve(demo_channel: Path, tmp_path: Path) -> None:
    channel = copy_channel(demo_channel, tmp_path / "channel")
    assert solved_versions(_rattler.solve(["envmgr-demo-a"], [str(channel)]))["envmgr-demo-a"] == "2.0"
    add_demo_package(channel, "envmgr-demo-a", "2.1")
    assert solved_versions(_rattler.solve(["envmgr-demo-a"], [str(channel)]))["envmgr-demo-a"] == "2.1"
    add_demo_package(channel, "envmgr-demo-b", "1.2", ["envmgr-demo-a >=2.1"], reindex=False)
    add_demo_package(channel, "envmgr-demo-a", "3.0", reindex=False)
    reindex_channel(channel)
    versions = solved_versions(_rattler.solve(["envmgr-demo-b", "envmgr-demo-a <3"], [str(channel)]))
    assert (versions["envmgr-demo-b"], versions["envmgr-demo-a"]) == ("1.2", "2.1")


def test_rattler_calls_work_under_a_running_event_loop(demo_channel: Path) -> None:
    """Callers inside an event loop (a server extension) must not trip asyncio.run."""
    async def main() -> list:
        return _rattler.solve(["envmgr-demo-a"], [str(demo_channel)])

    assert solved_versions(asyncio.run(main()))["envmgr-demo-a"] == "2.0"


def test_solver_errors_are_envmgr_errors(demo_channel: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="envmgr-demo-a >=99"):
        _rattler.solve(["envmgr-demo-a >=99"], [str(demo_channel)])
    with pytest.raises(EnvironmentProblem, match=str(tmp_path / "missing")):
        _rattler.solve(["python"], [str(tmp_path / "missing")])
    with pytest.raises(UsageError):
        _rattler.solve(["python =>>1"], [str(demo_channel)])


# -- cache, publish, recovery -------------------------------------------------------------------------
def test_small_channel_rebuild_publish_and_cleanup(tmp_path: Path) -> None:
    dest = tmp_path / "channels" / "demo"
    first = build_channel(dest, distributions=())
    assert not first.cached and dest.is_symlink()
    old_target = dest.resolve()
    assert build_channel(dest, distributions=()).cached

    add_demo_package(dest, "envmgr-demo-a", "9.0")  # the channel no longer matches its key
    leftover = dest.parent / ".demo.v-deadbeef"    # as a killed build would leave it
    leftover.mkdir()
    second = build_channel(dest, distributions=())
    assert not second.cached
    assert dest.resolve() != old_target and not old_target.exists() and not leftover.exists()
    assert "9.0" not in solved_versions(_rattler.solve(["envmgr-demo-a"], [str(dest)])).values()


def test_refuses_to_replace_a_directory_that_is_not_a_channel(tmp_path: Path) -> None:
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(UsageError, match="not a conda channel"):
        build_channel(precious, distributions=())
    assert (precious / "thesis.tex").read_text() == "do not delete"


@pytest.mark.slow
def test_killed_build_leaves_the_previous_channel_intact(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    build_channel(dest, distributions=())
    before = dest.resolve()
    key = json.loads((dest / MARKER_FILE).read_text())["key"]
    proc = subprocess.Popen([sys.executable, "-c",
                             "import sys; from pathlib import Path; from envmgr.channel.build import "
                             "build_channel; build_channel(Path(sys.argv[1]))", str(dest)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            staged = [p for p in tmp_path.glob(".demo.v-*") if p != before]
            if any(any(s.glob("*/*.conda")) or any(s.glob("*/*.tar.bz2")) for s in staged):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert dest.resolve() == before
    assert json.loads((dest / MARKER_FILE).read_text())["key"] == key
    assert build_channel(dest, distributions=()).cached
    assert "envmgr-demo-a" in solved_versions(_rattler.solve(["envmgr-demo-a"], [str(dest)]))


# -- wheels --------------------------------------------------------------------------------------------
def make_wheel(directory: Path, *, tag: str = "py3-none-any", pure: bool = True) -> Path:
    """A wheel written from scratch: module, console script, data file, script."""
    name, version = "Envmgr_Test.Wheel", "0.3"
    dist_info = "envmgr_test_wheel-0.3.dist-info"
    data = "envmgr_test_wheel-0.3.data"
    members = {
        "envmgr_test_wheel/__init__.py": "def main():\n    print('wheel says hi')\n",
        f"{data}/data/share/envmgr-test/hello.txt": "hello\n",
        f"{data}/scripts/envmgr-test-raw": "#!python\nimport sys\nprint(sys.prefix)\n",
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                  "Requires-Dist: Envmgr_Demo.A>=1.0\n"
                                  "Requires-Dist: pytest; extra == 'test'\n"
                                  "Requires-Dist: pywin32; sys_platform == 'win32'\n"),
        f"{dist_info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: hand\n"
                               f"Root-Is-Purelib: {'true' if pure else 'false'}\nTag: {tag}\n"),
        f"{dist_info}/entry_points.txt": "[console_scripts]\nenvmgr-test = envmgr_test_wheel:main\n",
        f"{dist_info}/RECORD": "",
    }
    path = directory / f"envmgr_test_wheel-0.3-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(member, text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("pure", [True, False], ids=["noarch", "linux-64"])
def test_wheel_becomes_an_installable_package(tmp_path: Path, pure: bool,
                                              shared_pkgs: Path) -> None:
    wheel = make_wheel(tmp_path, pure=pure,
                       tag="py3-none-any" if pure else f"{ABI}-{ABI}-linux_x86_64")
    result = build_channel(tmp_path / "channel", distributions=(), wheels=[wheel])
    [pkg] = [p for p in result.packages if p.name == "envmgr-test-wheel"]
    assert pkg.subdir == ("noarch" if pure else "linux-64")
    record = next(p for p in repodata(result.path).values() if p["name"] == "envmgr-test-wheel")
    assert sorted(record["depends"])[0] == "envmgr-demo-a >=1.0"
    assert not any("pytest" in d or "pywin32" in d for d in record["depends"])

    prefix = tmp_path / "prefix"
    records = _rattler.solve(["envmgr-test-wheel"], [result.url])
    _rattler.install(records, prefix, shared_pkgs)
    assert run([prefix / "bin" / "envmgr-test"]).stdout == "wheel says hi\n"
    assert run([prefix / "bin" / "envmgr-test-raw"]).stdout.strip() == str(prefix)
    assert (prefix / "share" / "envmgr-test" / "hello.txt").read_text() == "hello\n"


def test_foreign_wheel_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, pure=False, tag="cp27-cp27mu-linux_x86_64")
    with pytest.raises(UsageError, match="does not fit"):
        build_channel(tmp_path / "channel", distributions=(), wheels=[wheel])


def test_unknown_distribution_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not installed"):
        build_channel(tmp_path / "channel", distributions=["no-such-dist-envmgr"])


# -- package formats -------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [CONDA_EXT, TAR_BZ2_EXT])
def test_packages_are_reproducible(tmp_path: Path, ext: str) -> None:
    pkg = dataclasses.replace(demo_package("envmgr-demo-a", "1.0"), ext=ext)
    first, second = write_package(pkg, tmp_path / "one"), write_package(pkg, tmp_path / "two")
    assert first.name.endswith(ext)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.slow
def test_both_package_formats_install(tmp_path: Path, shared_pkgs: Path) -> None:
    result = build_channel(tmp_path / "channel", distributions=())
    for version, ext in (("7.0", TAR_BZ2_EXT), ("7.1", CONDA_EXT)):
        write_package(dataclasses.replace(demo_package("envmgr-demo-a", version), ext=ext), result.path)
    reindex_channel(result.path)
    for version in ("7.0", "7.1"):
        prefix = tmp_path / f"prefix-{version}"
        _rattler.install(_rattler.solve([f"envmgr-demo-a =={version}"], [result.url]), prefix, shared_pkgs)
        proc = run([prefix / "bin" / "python", "-c", "import envmgr_demo_a as m; print(m.__version__)"])
        assert proc.stdout.strip() == version, proc.stderr
