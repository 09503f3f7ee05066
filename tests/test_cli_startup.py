"""CLI start-up: the read-only commands never import the solver, the lock writer or the pipeline.

Asserts behaviour (which modules a real `envmgr` process imported, as
``python -X importtime`` reports them), not a timing: benchmarks/scientific.py
measures the start-up itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from envmgr.ops.statuscache import RACY_SECONDS

from .conftest import json_of, write_spec

HEAVY = ("rattler", "conda_lock", "jupyter_client", "envmgr.build.pipeline", "envmgr.build.batch",
         "envmgr._internal._rattler", "envmgr._internal._condalock")


def imported(*args: str, config=None) -> tuple[subprocess.CompletedProcess, set[str]]:
    argv = [sys.executable, "-X", "importtime", "-m", "envmgr"]
    if config is not None:
        argv += ["--config", str(config)]
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:")}
    return proc, names


def among(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    """The modules in ``names`` that are one of ``prefixes`` or inside one."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def heavy(names: set[str]) -> list[str]:
    return among(names, HEAVY)


def built_quick(site, envmgr_cli):
    """A real build of a small spec in the site (what the import checks then run against)."""
    spec = write_spec(site["specs"], "quick")
    proc = envmgr_cli("build", "--json", spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return spec


def test_help_imports_nothing_heavy(tmp_path) -> None:
    proc, names = imported("--help")
    assert proc.returncode == 0 and "typer" in names and "envmgr.cli" in names
    assert heavy(names) == []
    proc, names = imported("--root", str(tmp_path / "empty"), "status", "--json")
    assert proc.returncode == 0 and json_of(proc)["ok"] is True
    assert heavy(names) == [] and not (tmp_path / "empty").exists()


@pytest.mark.slow
def test_status_builds_gc_dry_run_on_a_built_root(site, envmgr_cli) -> None:
    spec = built_quick(site, envmgr_cli)
    _, built = imported("build", "--json", str(spec), config=site["config"])
    assert "rattler" in built, "the check itself must be able to see a heavy import"
    for args in (("status", "--json"), ("builds", "quick", "--json"), ("gc", "--dry-run", "--json")):
        proc, names = imported(*args, config=site["config"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json_of(proc)["ok"] is True
        assert heavy(names) == [], f"envmgr {' '.join(args)} imported {heavy(names)}"
    # A status served from the status cache (ops/statuscache.py) reads no record, parses no spec
    # and plans nothing: gc's planner, the spec module and the catalog readers stay unloaded.
    time.sleep(RACY_SECONDS + 0.2)
    imported("status", "--json", config=site["config"])  # stores every family
    proc, names = imported("status", "--json", config=site["config"])
    result = json_of(proc)["result"]
    assert result["cached_families"] == len(result["families"]) > 0
    assert among(names, NOT_FOR_CACHED_STATUS) == [], among(names, NOT_FOR_CACHED_STATUS)


# What issue 14's start-up work removed from commands that do not need it (docs/benchmarks.md,
# "CLI start-up"): pydantic (typer >= 0.29 coerces options through it; _internal._typer),
# rich (no text is printed under --json), filelock (asyncio), ruamel (no YAML to read).
NOT_FOR_JSON_STATUS = ("pydantic", "rich", "filelock", "ruamel", "asyncio", "packaging", "click")
NOT_FOR_CACHED_STATUS = ("envmgr.gc", "envmgr.catalog.governing", "envmgr.catalog.inventory",
                         "envmgr.define", "envmgr.ops.usage", "envmgr.ops.advisories")
# An unchanged nightly solves and syncs kernels; it writes no lock, SBOM or pip lock.
NOT_FOR_UNCHANGED = ("pydantic", "rich", "filelock", "conda_lock", "jupyter_client", "cyclonedx",
                     "packageurl", "packaging", "envmgr.lock.pip", "envmgr.catalog.sbom",
                     "envmgr.build.advisory_gate", "envmgr.build.pycache", "envmgr.define.policy")


def test_status_json_on_an_empty_root_imports_only_the_cli_framework(tmp_path) -> None:
    proc, names = imported("--root", str(tmp_path / "empty"), "status", "--json")
    assert proc.returncode == 0 and json_of(proc)["ok"] is True
    assert "typer" in names and "envmgr.ops.status" in names
    assert among(names, NOT_FOR_JSON_STATUS) == []
    proc, names = imported("--root", str(tmp_path / "empty"), "status")  # text: rich, still no pydantic
    assert proc.returncode == 0 and "rich.console" in names and among(names, ("pydantic",)) == []


@pytest.mark.slow
def test_an_unchanged_nightly_loads_no_lock_writer_sbom_or_pip_locker(site, envmgr_cli) -> None:
    spec = built_quick(site, envmgr_cli)
    proc, names = imported("build", "--json", str(spec), config=site["config"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json_of(proc)["result"]["builds"][0]["status"] == "unchanged"
    assert "rattler" in names and "envmgr.kernels.sync" in names  # it did solve and sync
    assert among(names, NOT_FOR_UNCHANGED) == [], among(names, NOT_FOR_UNCHANGED)


def test_plain_option_coercion_still_rejects_bad_values(tmp_path) -> None:
    """_internal._typer converts plain options without pydantic; a bad value is still exit 2."""
    proc = subprocess.run([sys.executable, "-m", "envmgr", "--root", str(tmp_path), "serve", "--port",
                           "eighty"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "'eighty' is not a valid integer" in proc.stderr, proc.stderr


def test_plain_coercion_matches_typers_own() -> None:
    """Same values as typer's pydantic coercion for every plain kind (typer >= 0.29 only)."""
    from pathlib import Path

    from envmgr._internal import _typer

    typer_coercion = pytest.importorskip("typer._coercion")
    import typer
    from typer.models import OptionInfo

    assert _typer.install()
    cases = [(str, "x y"), (Path, "/a/b"), (int, "42"), (float, "1.5"), (bool, "true"), (bool, "0"),
             (list[str], ("a", "b")), (list[Path], ("/a", "b"))]
    for annotation, value in cases:
        descriptor = typer_coercion.resolve_type_descriptor(annotation, OptionInfo())
        ours = typer.core.build_runtime_param(descriptor)
        theirs = typer_coercion.build_runtime_param(descriptor)
        assert type(ours).__name__ == "PlainRuntimeParam"
        assert ours._coerce_value(value, None, None) == theirs._coerce_value(value, None, None), annotation


def test_the_topic_map_names_the_module_of_every_command() -> None:
    """_topics.COMMAND_TOPIC must match what each topic module registers (else a command vanishes)."""
    import typer

    from envmgr.cli import _topics, app, load_all

    load_all()
    owners: dict[str, str] = {}
    for info in app.registered_commands:
        owners[info.name or info.callback.__name__] = info.callback.__module__
    for group in app.registered_groups:
        callbacks = [c.callback for c in group.typer_instance.registered_commands]
        owners[group.name] = callbacks[0].__module__
    assert {name: f"envmgr.cli.{topic}" for name, topic in _topics.COMMAND_TOPIC.items()} == owners
    assert set(typer.main.get_command(app).commands) == set(owners)


@pytest.mark.parametrize("argv, word", [(["--root", "/r", "status", "--json"], "status"),
                                        (["-q", "--config=/c", "build", "--all"], "build"),
                                        (["--config", "/c"], None), (["-h"], None)])
def test_command_word_skips_global_options(argv, word) -> None:
    from envmgr.cli._topics import command_word

    assert command_word(argv) == word


def topics_after(*args: str) -> tuple[int, str, set[str]]:
    """Exit code, stdout and the envmgr.cli modules a real run imported (sys.modules)."""
    code = ("import json, sys; from envmgr.cli import run; code = run(sys.argv[1:]); sys.stdout.flush();"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('envmgr.cli.'))), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_a_run_imports_only_its_topic_and_help_lists_every_command(tmp_path) -> None:
    code, _, modules = topics_after("--root", str(tmp_path / "empty"), "status", "--json")
    assert code == 0 and "envmgr.cli.ops_cmds" in modules and "envmgr.cli.stable_cmds" not in modules
    code, _, modules = topics_after("--help")
    assert code == 0 and "envmgr.cli.stable_cmds" in modules
    proc, _ = imported("--help")
    for command in ("build", "status", "stable", "notebooks", "sbom", "serve", "restore"):
        assert command in proc.stdout
    proc, _ = imported("stabel")  # a typo still gets click's suggestion from the full list
    assert proc.returncode == 2 and "stable" in proc.stderr
