"""Real-world wheel METADATA: non-ASCII and multi-line fields (matplotlib's and
jupyterlab_widgets' License crashed the converter with an email Header object)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from envmgr._internal import _rattler
from envmgr.channel._interp import interpreter_info
from envmgr.channel._pydists import file_sha256, from_wheel, to_conda
from envmgr.channel.build import build_channel
from tests.test_channel import repodata

SUMMARY = "Widgets für Jupyter — a summary\n        folded over two lines"
LICENSE = ("Copyright (c) 2015 Projekt Jüpyter Contributors\n        All rights reserved.\n"
           "        \n        Redistribution and use in source and binary forms … are permitted.")


def unicode_wheel(directory: Path) -> Path:
    """A wheel whose METADATA (UTF-8, as PEP 566 says) has a whole non-ASCII license text
    pasted into License and a folded Summary, as setuptools writes them."""
    dist_info = "envmgr_unicode_wheel-1.0.dist-info"
    metadata = ("Metadata-Version: 2.1\nName: envmgr-unicode-wheel\nVersion: 1.0\n"
                f"Summary: {SUMMARY}\nHome-page: https://example.org/ü\nAuthor: Jörg Übermann\n"
                f"License: {LICENSE}\n"
                "Classifier: License :: OSI Approved :: BSD License\n"
                "Requires-Dist: envmgr-demo-a>=1.0\n\nLong description: ça marche.\n")
    members = {
        "envmgr_unicode_wheel/__init__.py": "GREETING = 'grüß dich'\n",
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/RECORD": "",
    }
    path = directory / "envmgr_unicode_wheel-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(member, text.encode("utf-8"))
    return path


def test_wheel_with_non_ascii_and_multi_line_metadata_converts_and_solves(tmp_path: Path) -> None:
    wheel = unicode_wheel(tmp_path)
    result = build_channel(tmp_path / "channel", distributions=(), wheels=[wheel])
    [record] = [r for r in repodata(result.path).values() if r["name"] == "envmgr-unicode-wheel"]
    assert record["license"] == "BSD License", "a pasted license text falls back to the classifier"
    records = _rattler.solve(["envmgr-unicode-wheel"], [result.url])
    assert {r.name.normalized for r in records} >= {"envmgr-unicode-wheel", "envmgr-demo-a"}


def test_metadata_fields_are_text() -> None:
    """Every field the converter reads is a str, the folded Summary one line."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        wheel = unicode_wheel(Path(tmp))
        interp = interpreter_info()
        dist, _ = from_wheel(wheel, file_sha256(wheel), interp)
        package, _ = to_conda(dist, interp)
    assert package.summary == "Widgets für Jupyter — a summary folded over two lines"
    assert package.home == "https://example.org/ü"
    assert all(isinstance(dist.metadata.get(k), str) for k in ("License", "Summary", "Author"))


def test_cli_converts_the_wheel_with_json_output(tmp_path: Path) -> None:
    wheel = unicode_wheel(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "envmgr", "channel", "build", str(tmp_path / "ch"),
                           "--wheel", str(wheel), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    assert "envmgr-unicode-wheel" in {p["name"] for p in doc["result"]["packages"]}
    index = next((tmp_path / "ch" / "noarch").glob("envmgr-unicode-wheel-*"))
    assert index.stat().st_size > 0
