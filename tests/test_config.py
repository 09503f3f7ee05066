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
