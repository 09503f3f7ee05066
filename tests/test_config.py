"""Configuration precedence: flag > environment > file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from envmgr.config import ConfigFileError, load_config

from .conftest import write_config


def test_defaults_give_a_per_user_root(tmp_path: Path) -> None:
    cfg = load_config(environ={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert cfg.root == tmp_path / "xdg" / "envmgr" and cfg.root_source == "default"
    assert cfg.pkgs_dir == cfg.root / "pkgs"
    assert cfg.kernels_dir.name == "kernels"  # the user's Jupyter data dir: visible right away


def test_precedence_flag_over_environment_over_file(tmp_path: Path) -> None:
    cfg_file = write_config(tmp_path / "c.yaml", root=tmp_path / "from-file")
    env = {"ENVMGR_CONFIG": str(cfg_file)}
    assert load_config(environ=env).root == tmp_path / "from-file"
    env["ENVMGR_ROOT"] = str(tmp_path / "from-env")
    assert load_config(environ=env).root == tmp_path / "from-env"
    cfg = load_config(root=tmp_path / "from-flag", environ=env)
    assert cfg.root == tmp_path / "from-flag" and cfg.root_source == "flag"
    # An explicit root puts kernels under the root, not in the user's own directory.
    assert cfg.kernels_dir == tmp_path / "from-flag" / "share" / "jupyter" / "kernels"


def test_config_flag_beats_environment_variable(tmp_path: Path) -> None:
    a = write_config(tmp_path / "a.yaml", root=tmp_path / "a")
    b = write_config(tmp_path / "b.yaml", root=tmp_path / "b")
    cfg = load_config(config_path=b, environ={"ENVMGR_CONFIG": str(a)})
    assert cfg.root == tmp_path / "b" and cfg.source == b


def test_channel_mapping(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    cfg_file = write_config(tmp_path / "c.yaml", root=tmp_path / "r",
                            channels={"conda-forge": str(mirror), "internal": "https://conda.example/x"})
    cfg = load_config(environ={"ENVMGR_CONFIG": str(cfg_file)})
    assert cfg.resolve_channel("conda-forge") == mirror.as_uri()
    assert cfg.resolve_channel("internal") == "https://conda.example/x"
    assert cfg.resolve_channel("demo") == (tmp_path / "r" / "channels" / "demo").as_uri()
    assert cfg.resolve_channel("bioconda") == "https://conda.anaconda.org/bioconda"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg_file = write_config(tmp_path / "c.yaml", root="rel-root", channels={"x": "mirror"})
    cfg = load_config(config_path=cfg_file, environ={})
    assert cfg.root == tmp_path / "rel-root"
    assert cfg.resolve_channel("x") == (tmp_path / "mirror").as_uri()


def test_bad_config_names_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("root: /srv/envmgr\nretention:\n  keep_prevous: 2\nsolver: mamba\nmin_free_space: lots\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(config_path=path, environ={})
    text = info.value.message
    assert f"{path}:3:3: retention.keep_prevous: unknown key; did you mean 'keep_previous'?" in text
    assert f"{path}:4:9: solver: must be 'rattler' or 'conda-lock'" in text
    assert f"{path}:5:17: min_free_space: 'lots' is not a size" in text


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    from envmgr.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        load_config(config_path=tmp_path / "none.yaml", environ={})


def test_conda_lock_solver_requires_the_conda_executable(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("solver: conda-lock\n")
    with pytest.raises(ConfigFileError, match="conda_lock_command: solver: conda-lock needs"):
        load_config(config_path=path, environ={})
    path.write_text("solver: conda-lock\nconda_lock_command: [conda-lock, --conda, /opt/conda/bin/mamba]\n")
    cfg = load_config(config_path=path, environ={})
    assert cfg.solver == "conda-lock" and cfg.conda_lock_command[1:] == ("--conda", "/opt/conda/bin/mamba")


# -- the per-user parse cache (envmgr.yamlcache) -------------------------------------------------


def _cached_run(config: Path, cache: Path) -> dict:
    """``load_config`` in a fresh interpreter: its root, and whether ruamel was imported."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from pathlib import Path; from envmgr.config import load_config\n"
            "c = load_config(config_path=Path(sys.argv[1]))\n"
            "print(json.dumps({'root': str(c.root), 'ruamel': 'ruamel.yaml' in sys.modules}))")
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("ENVMGR_NO_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", code, str(config)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout)


def test_unchanged_config_is_not_parsed_again_and_an_edit_is(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = write_config(tmp_path / "config.yaml", root=tmp_path / "one")
    assert _cached_run(config, cache) == {"root": str(tmp_path / "one"), "ruamel": True}
    assert (cache / "envmgr" / "config-docs.json").is_file()
    assert _cached_run(config, cache) == {"root": str(tmp_path / "one"), "ruamel": False}
    write_config(config, root=tmp_path / "two")  # an edit: new size/mtime/ctime
    assert _cached_run(config, cache) == {"root": str(tmp_path / "two"), "ruamel": True}


def test_a_cached_document_is_validated_and_a_problem_parses_the_file_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache skips parsing, never validation: a cached document with a problem sends
    envmgr back to the file (for real line numbers), and a file with a problem is never cached."""
    from envmgr import yamlcache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ENVMGR_NO_CACHE", raising=False)
    good = write_config(tmp_path / "good.yaml", root=tmp_path / "root")
    yamlcache.store_doc(good, {"root": str(tmp_path / "elsewhere"), "bogus_key": 1})
    assert load_config(config_path=good).root == tmp_path / "root"  # the file, parsed again
    assert yamlcache.cached_doc(good) == (True, {"root": str(tmp_path / "root")})

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"root: {tmp_path / 'root'}\n\nbogus_key: 1\n")
    for _ in range(2):
        with pytest.raises(ConfigFileError) as info:
            load_config(config_path=bad)
        assert "bad.yaml:3:" in str(info.value.message), info.value.message
    assert yamlcache.cached_doc(bad) == (False, None)


def test_a_cache_another_user_may_write_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sudo envmgr`` may keep a user's HOME: a writable-by-others cache must not steer it."""
    from envmgr import yamlcache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ENVMGR_NO_CACHE", raising=False)
    config = write_config(tmp_path / "config.yaml", root=tmp_path / "root")
    load_config(config_path=config)
    store = tmp_path / "cache" / "envmgr" / "config-docs.json"
    assert store.stat().st_mode & 0o777 == 0o600 and yamlcache.cached_doc(config)[0]
    for path in (store, store.parent):
        path.chmod(path.stat().st_mode | 0o002)
        assert yamlcache.cached_doc(config) == (False, None)
        path.chmod(path.stat().st_mode & ~0o002)
    assert yamlcache.cached_doc(config)[0]
