"""HTTP(S) channels and a pip index behind a token: the demo channel and a PEP 503 index
served on 127.0.0.1; credentials only in the service account's file, never in anything written."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from .conftest import json_of, write_config
from .pypi_index import make_wheel, publish, serve

SPEC = """\
name: web
channels: [demo]
dependencies: [python 3.*, envmgr-demo-b]
pip: [beam-helper]
smoke_test:
  imports: [envmgr_demo_b, beam_helper]
"""


def configure(site: dict[str, Path], channel_url: str, index_url: str, creds: Path | None) -> None:
    values = YAML().load(site["config"].read_text())
    values["channels"] = {"demo": channel_url}
    values["pip"] = {"index_url": index_url}
    values["pkgs_dir"] = str(site["tmp"] / "pkgs")  # downloads go through the server, with the token
    values.pop("credentials_file", None)
    if creds is not None:
        values["credentials_file"] = str(creds)
    write_config(site["config"], **values)


def credentials(path: Path, host_token: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text(json.dumps({host: {"BearerToken": tok} for host, tok in host_token.items()}))
    os.chmod(path, mode)
    return path


@pytest.mark.slow
def test_token_protected_channel_and_index_build_and_the_token_is_never_written(site, envmgr_cli, tmp_path):
    token = f"tok-{secrets.token_hex(12)}"
    index = tmp_path / "simple"
    publish(index, make_wheel(tmp_path / "w", "beam-helper", "1.0"))
    (site["specs"] / "web.yaml").write_text(SPEC)
    with serve(site["channel"], token=token) as channel_url, serve(index, token=token) as index_url:
        good = credentials(tmp_path / "creds.json", {"127.0.0.1": token})

        # Without credentials: exit 5, naming the channel; nothing built.
        configure(site, channel_url, f"{index_url}/", None)
        proc = envmgr_cli("build", "web")
        assert proc.returncode == 5, proc.stdout + proc.stderr
        assert f"channel {channel_url}" in proc.stdout + proc.stderr and "401" in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        doctor = json_of(envmgr_cli("doctor", "--no-kernels", "--json"))
        checks = {c["name"]: c for c in doctor["result"]["checks"]}
        assert checks["channels"]["status"] == "fail" and "'demo'" in checks["channels"]["detail"]

        # A wrong token: exit 5 as well, and the message does not quote it.
        wrong = credentials(tmp_path / "wrong.json", {"127.0.0.1": "not-the-token"})
        configure(site, channel_url, f"{index_url}/", wrong)
        proc = envmgr_cli("build", "web")
        assert proc.returncode == 5 and "not-the-token" not in proc.stdout + proc.stderr, proc.stderr

        # A credentials file other users can read is refused before use.
        configure(site, channel_url, f"{index_url}/", credentials(tmp_path / "open.json",
                                                                  {"127.0.0.1": token}, 0o644))
        proc = envmgr_cli("build", "web")
        assert proc.returncode == 2 and "readable by other users" in proc.stdout, proc.stdout

        # With the token: the channel, the package downloads and the pip index all authenticate.
        configure(site, channel_url, f"{index_url}/", good)
        built = envmgr_cli("build", "web", "--json")
        assert built.returncode == 0, built.stdout + built.stderr
        assert json_of(built)["result"]["builds"][0]["status"] == "built"
        doctor = json_of(envmgr_cli("doctor", "--no-kernels", "--json"))
        checks = {c["name"]: c for c in doctor["result"]["checks"]}
        assert checks["channels"]["status"] == "ok", checks["channels"]
        status = envmgr_cli("status", "--json")
        assert status.returncode == 0 and token not in status.stdout

    found = subprocess.run(["grep", "-r", "-l", token, str(site["root"]), str(site["kernels"])],
                           capture_output=True, text=True)
    assert found.stdout == "", f"the token was written to: {found.stdout}"


def test_credentials_in_urls_are_refused_where_they_are_written(tmp_path: Path) -> None:
    from envmgr.config import load_config
    from envmgr.errors import ConfigError
    from envmgr.define.spec import SpecError, parse_spec_text

    with pytest.raises(SpecError) as info:
        parse_spec_text("name: x\nchannels: ['https://u:hunter2@conda.example.org/c']\ndependencies: [python]\n"
                        "pip: ['tool @ https://u:hunter2@pypi.example.org/tool-1.0-py3-none-any.whl']\n",
                        tmp_path / "x.yaml")
    assert {p.key for p in info.value.problems} == {"channels[0]", "pip[0]"}
    assert "hunter2" not in str(info.value)
    config = tmp_path / "config.yaml"
    config.write_text("channels:\n  cf: https://u:hunter2@conda.example.org/c\n"
                      "pip:\n  index_url: https://u:hunter2@pypi.example.org/simple\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_path=config, site_config=tmp_path / "none.yaml")
    assert "credentials_file" in str(info.value) and "channels.cf" in str(info.value)
    assert "pip.index_url" in str(info.value) and "hunter2" not in str(info.value)
