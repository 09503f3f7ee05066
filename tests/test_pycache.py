"""The content-addressed .pyc cache and the `pyc` policy, on real builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from envmgr.config import load_config
from envmgr.errors import ConfigError
from envmgr.build.pycache import entry_count, prune, select_sources
from envmgr.config import PycPolicy
from envmgr.define.spec import SpecError, parse_spec_text

from .conftest import SPEC_TEMPLATE, json_of, write_config, write_spec


def build_json(envmgr_cli, *args: str | Path) -> dict:
    proc = envmgr_cli("build", "--json", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json_of(proc)["result"]["builds"][0]


def enable_pyc(site: dict[str, Path], extra: str = "") -> None:
    config = site["config"]
    config.write_text(config.read_text().replace("compile_pyc: false\n", "") + extra)


def pycs(prefix: Path, package: str) -> list[Path]:
    return list(prefix.glob(f"lib/python3*/site-packages/{package}/__pycache__/*.pyc"))


@pytest.mark.slow
def test_cached_pyc_traceback_names_final_prefix_and_rebuild_compiles_nothing(site, envmgr_cli) -> None:
    enable_pyc(site)
    spec = write_spec(site["specs"], "pyc")
    first = build_json(envmgr_cli, spec)
    second = build_json(envmgr_cli, spec, "--force")
    assert first["pyc"]["files"] > 100 and second["pyc"]["files"] == first["pyc"]["files"]
    # The second build of the same set compiles nothing: every source comes from the cache.
    assert second["pyc"]["compiled"] == 0, second["pyc"]
    assert second["pyc"]["hits"] + second["pyc"]["known_bad"] == second["pyc"]["files"]

    prefix = Path(second["prefix"])
    python = str(prefix / "bin" / "python")
    code = ("import packaging.version as v, sys; print(v.__spec__.cached, file=sys.stderr); "
            "v.Version('not a version')")
    proc = subprocess.run([python, "-v", "-c", code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    cached = next(line for line in proc.stderr.splitlines() if line.endswith(".pyc")
                  and "packaging/__pycache__/version" in line and not line.startswith("#"))
    # Loaded through the cached .pyc (python -v says so), which is the cache's own inode ...
    assert f"# code object from '{cached}'" in proc.stderr
    # The same inode in both builds (the session's package cache is shared with other tests,
    # so other prefixes may link the entry too: at least the cache entry and these two builds).
    in_first = Path(first["prefix"]) / Path(cached).relative_to(prefix)
    assert os.path.samefile(cached, in_first) and os.stat(cached).st_nlink >= 3
    with open(cached, "rb") as handle:
        assert int.from_bytes(handle.read(8)[4:], "little") == 0b01  # unchecked-hash (PEP 552)
    # ... and the traceback names the source in this prefix, with its line of code.
    tail = proc.stderr[proc.stderr.index("Traceback"):]
    assert f'File "{prefix}/lib/' in tail and "packaging/version.py" in tail
    assert ".staging-" not in tail and str(first["prefix"]) not in tail
    assert "InvalidVersion" in tail


@pytest.mark.slow
def test_spec_policy_noarch_and_exclude_then_gc_prunes_unlinked(site, envmgr_cli) -> None:
    root = site["root"]
    write_config(site["config"], root=root, pkgs_dir=root / "pkgs", specs_dir=site["specs"],
                 kernels_dir=site["kernels"], channels={"demo": site["channel"].as_uri()},
                 min_free_space="10M", pyc={"exclude": ["*/tests/*"]},
                 retention={"keep_previous": 0, "grace_days": 0, "failed_days": 0})
    text = SPEC_TEMPLATE.format(name="lean", display="Lean", group="Team")
    spec = write_spec(site["specs"], "lean", text=text + "pyc:\n  compile: noarch\n"
                                                         "  exclude: ['*/traitlets/config/*']\n")
    first = build_json(envmgr_cli, spec)
    prefix = Path(first["prefix"])
    assert pycs(prefix, "traitlets"), "noarch traitlets was not compiled"
    assert not pycs(prefix, "traitlets/config"), "the spec's exclude glob was ignored"
    assert not pycs(prefix, "zmq"), "pyzmq is not noarch: compile: noarch must skip it"
    selected = select_sources(prefix, PycPolicy("all", ("*/tests/*",)))
    assert selected and not [f for f in selected if "/tests/" in f]
    traitlets = {p.stat().st_ino for p in prefix.glob("lib/python3*/site-packages/traitlets/**/*.pyc")}

    write_spec(site["specs"], "lean", text=text + "pyc:\n  compile: noarch\n"
                                                  "  exclude: ['*/traitlets/*']\n")
    second = build_json(envmgr_cli, spec, "--force")
    assert not pycs(Path(second["prefix"]), "traitlets") and pycs(Path(second["prefix"]), "comm")

    # gc deletes the first build; the entries only it linked leave the .pyc cache with it: those
    # of traitlets (but an empty __init__.py shares its entry with every other empty one).
    only_first = {p.stat().st_ino for p in prefix.rglob("*.pyc") if p.stat().st_nlink == 2}
    assert len(only_first & traitlets) >= len(traitlets) - 2
    before = entry_count(root / "pkgs")
    dry = json_of(envmgr_cli("gc", "--dry-run", "--json"))["result"]
    assert dry["cache"]["pyc"]["entries"] == len(only_first) > 0
    done = json_of(envmgr_cli("gc", "--json"))["result"]
    assert done["cache"]["pyc"]["entries"] == len(only_first)
    assert entry_count(root / "pkgs") == before - len(only_first)
    assert not prefix.exists() and pycs(Path(second["prefix"]), "comm")
    assert prune(root / "pkgs", apply=False).entries == 0


def test_pyc_section_and_alias(tmp_path) -> None:
    def load(text: str):
        path = tmp_path / "config.yaml"
        path.write_text(f"root: {tmp_path / 'root'}\n{text}")
        return load_config(config_path=path, site_config=tmp_path / "none.yaml", environ={})

    assert load("").pyc == PycPolicy("all", ())
    assert load("compile_pyc: false\n").pyc.compile == "none"
    assert not load("compile_pyc: false\n").compile_pyc
    policy = load("pyc:\n  compile: noarch\n  exclude: ['*/tests/*']\n").pyc
    assert policy == PycPolicy("noarch", ("*/tests/*",))
    with pytest.raises(ConfigError) as bad:
        load("compile_pyc: true\npyc:\n  compile: none\n  exclud: []\n")
    text = bad.value.message
    assert "contradicts pyc.compile" in text and "exclude" in text
    with pytest.raises(ConfigError, match="must be one of all, noarch, none"):
        load("pyc:\n  compile: sometimes\n")


def test_spec_pyc_section_is_validated(tmp_path) -> None:
    base = SPEC_TEMPLATE.format(name="s", display="S", group="G")
    spec = parse_spec_text(base + "pyc:\n  exclude: ['*/tests/*']\n", tmp_path / "s.yaml")
    assert spec.pyc is not None and spec.pyc.compile is None and spec.pyc.exclude == ("*/tests/*",)
    with pytest.raises(SpecError) as bad:
        parse_spec_text(base + "pyc:\n  compile: yes-please\n", tmp_path / "s.yaml")
    assert "pyc.compile" in str(bad.value.problems[0])
