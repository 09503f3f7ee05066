"""Spec validation: every error class names file:line:column and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from envmgr.define.spec import SpecError, load_spec, load_specs, parse_spec_text
from envmgr.units import parse_size

from .conftest import REPO, run_envmgr

GOOD = """\
name: good
display_name: Good
group: Team
channels: [demo]
dependencies:
  - python 3.*
  - ipykernel >=6
"""


def problems_of(text: str, name: str = "s.yaml") -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, Path(name))
    return [str(p) for p in info.value.problems]


def test_good_spec_parses_with_defaults() -> None:
    spec = parse_spec_text(GOOD, Path("good.yaml"))
    assert spec.name == "good" and spec.platforms == ("linux-64",) and spec.kernel == "python"
    assert spec.dependencies == ("python 3.*", "ipykernel >=6")


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("dependencies:", "dependancies:"),
     "s.yaml:5:1: dependancies: unknown key; did you mean 'dependencies'?"),
    (GOOD.replace("name: good", "name: Bad_Name"), "s.yaml:1:7: name: 'Bad_Name' does not match"),
    (GOOD.replace("name: good\n", ""), "dependencies"),  # placeholder replaced below
    (GOOD + "platforms: [linux-65]\n", "s.yaml:8:13: platforms[0]: 'linux-65' is not one of"),
    (GOOD + "env:\n  1BAD: x\n", "s.yaml:9:3: env.1BAD: is not a valid environment variable name"),
    (GOOD + "smoke_test:\n  imports: ['not a module']\n",
     "s.yaml:9:13: smoke_test.imports[0]: 'not a module' is not a dotted module name"),
    (GOOD + "smoke_test:\n  improts: [os]\n", "s.yaml:9:3: smoke_test.improts: unknown key"),
    (GOOD + "stable:\n  - release: '2026.1'\n    build: nope\n",
     "s.yaml:10:12: stable[0].build: 'nope' does not match"),
    (GOOD + "stable:\n  - release: '2026.1'\n    build: 20261122T021340Z-abcdef\n    until: soon\n",
     "s.yaml:11:12: stable[0].until: 'soon' is not a date"),
    (GOOD + "limits:\n  memory: lots\n", "s.yaml:9:11: limits.memory: 'lots' is not a size"),
    (GOOD + "retention:\n  keep_previous: -1\n",
     "s.yaml:9:18: retention.keep_previous: must be a whole number >= 0"),
    (GOOD.replace("  - ipykernel >=6", "  - ipykernel >=>6"), "s.yaml:7:5: dependencies[1]:"),
    (GOOD.replace("channels: [demo]", "channels: []"), "s.yaml:4:11: channels: must not be empty"),
    (GOOD + "name: again\n", "s.yaml:8:1: (yaml): found duplicate key \"name\""),
    ("name: [unclosed\n", "s.yaml:2:1: (yaml):"),
])
def test_each_error_names_file_line_column_and_key(text: str, expected: str) -> None:
    if expected == "dependencies":  # a missing required key points at the document start
        found = problems_of(text)
        assert any(p.startswith("s.yaml:1:1: name: is required") for p in found), found
        return
    found = problems_of(text)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_of_a_file_are_reported_together() -> None:
    text = GOOD.replace("name: good", "name: BAD").replace("group:", "gruop:") + "kernal: python\n"
    found = problems_of(text)
    assert len(found) == 3, found
    assert [p.split(":")[1] for p in found] == sorted([p.split(":")[1] for p in found], key=int)


def test_duplicate_family_names_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(SpecError) as info:
        load_specs([tmp_path])
    assert "also defined in" in str(info.value)


def test_content_hash_ignores_labels_and_dependency_order() -> None:
    a = parse_spec_text(GOOD, Path("a.yaml"))
    b = parse_spec_text(GOOD.replace("Good", "Other label").replace(
        "  - python 3.*\n  - ipykernel >=6", "  - ipykernel   >=6\n  - python 3.*"), Path("b.yaml"))
    c = parse_spec_text(GOOD.replace(">=6", ">=7"), Path("c.yaml"))
    assert a.content_hash == b.content_hash != c.content_hash


def test_sizes() -> None:
    assert parse_size("16G") == 16 * 1024**3
    assert parse_size("512MiB") == 512 * 1024**2
    with pytest.raises(ValueError):
        parse_size("many")


def test_repository_specs_are_valid() -> None:
    specs = load_specs([REPO / "specs"])
    assert {s.name for s in specs} >= {"example"}


def test_cli_spec_check_misspelled_key_exits_nonzero_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("dependencies:", "dependancies:"))
    proc = run_envmgr("spec", "check", bad)
    assert proc.returncode == 2
    assert f"{bad}:5:1: dependancies: unknown key" in proc.stdout


def test_cli_spec_check_json_and_directory(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text(GOOD)
    proc = run_envmgr("spec", "check", "--json", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    doc = json.loads(proc.stdout)
    assert doc["envmgr"] == 1 and doc["ok"] is True
    assert doc["result"]["specs"][0]["name"] == "good"


def test_missing_spec_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_envmgr("spec", "check", tmp_path / "nope.yaml")
    assert proc.returncode == 2 and "no such spec file" in proc.stderr
    from envmgr.errors import UsageError

    with pytest.raises(UsageError):
        load_spec(tmp_path / "nope.yaml")
