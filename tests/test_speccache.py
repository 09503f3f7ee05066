"""One parsed-spec cache for everyone: keyed on each file's path, size and mtime."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from envmgr.layout import Layout
from envmgr.define.spec import TOP_KEYS, SpecError, load_spec
from envmgr.define.speccache import SpecCache, for_root, spec_from_doc, spec_to_doc

FULL = """\
name: full
display_name: Full
group: Team
description: every key
channels: [demo]
dependencies: [python 3.*, ipykernel]
pip: [beam-tool==1.0]
platforms: [linux-64]
kernel: python
env: {DATA: /data}
smoke_test: {imports: [ipykernel], script: "print(1)"}
stable:
  - {release: "2026.1", build: 20261122T021340Z-ab12cd, until: 2029-11-22}
limits: {memory: 1G}
retention: {keep_previous: 1, grace_days: 2, pinned: [20260101T000000Z-abcdef]}
pyc: {compile: noarch, exclude: ["*/tests/*"]}
"""


def test_round_trip_of_every_key(tmp_path) -> None:
    path = tmp_path / "full.yaml"
    path.write_text(FULL)
    spec = load_spec(path)
    assert spec_from_doc(spec_to_doc(spec)) == spec
    # A key added to specs later must be added here (and to the cache's JSON) too.
    assert set(TOP_KEYS) == {line.split(":", 1)[0] for line in FULL.splitlines() if line[:1].isalpha()}


def test_each_version_is_parsed_once_across_processes(tmp_path) -> None:
    store = tmp_path / "logs" / "spec-cache.json"
    store.parent.mkdir()
    good, bad = tmp_path / "full.yaml", tmp_path / "bad.yaml"
    good.write_text(FULL)
    bad.write_text(FULL.replace("name: full", "name: Bad Name"))
    first = SpecCache(store)
    assert first.load(good).name == "full"
    with pytest.raises(SpecError) as err:
        first.load(bad)
    first.load(good)
    assert first.parsed == 2
    first.save()

    second = SpecCache(store)  # another process: reads the shared file, parses nothing
    assert second.load(good) == load_spec(good)
    with pytest.raises(SpecError) as again:
        second.load(bad)
    assert again.value.problems == err.value.problems and second.parsed == 0

    good.write_text(FULL.replace("Full", "Fuller"))  # an edit changes the size (and mtime)
    assert second.load(good).display_name == "Fuller" and second.parsed == 1
    os.utime(good, ns=(1, 1))  # same size, another mtime: parsed again
    assert second.load(good).display_name == "Fuller" and second.parsed == 2


def test_never_creates_a_root(tmp_path) -> None:
    spec = tmp_path / "full.yaml"
    spec.write_text(FULL)
    layout = Layout(tmp_path / "no-root")
    cache = for_root(layout)
    assert cache.load(spec).name == "full"
    cache.save()
    assert not layout.root.exists()
    assert for_root(layout) is cache  # one per root and process


def test_missing_file_is_load_specs_error(tmp_path) -> None:
    from envmgr.errors import UsageError

    with pytest.raises(UsageError, match="not found"):
        SpecCache(None).load(Path(tmp_path / "nope.yaml"))
