"""Issue 17: an SBOM per build, and offline OSV advisories checked where people look.

Real builds from the demo channel, a real kernel holding a lease, the real CLI and
nightly script; advisories are hand-written OSV records in a directory (and a zip,
as osv.dev's bulk export ships them).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from envmgr.catalog.advisories import AdvisoryDBError, load_db, match_packages
from envmgr.layout import Layout

from .conftest import json_of, run_envmgr, write_spec
from .test_launcher import Kernel

ADVISORY = {
    "schema_version": "1.6.0", "id": "ENVMGR-TEST-0001", "modified": "2026-11-30T00:00:00Z",
    "aliases": ["CVE-2026-99999"], "summary": "envmgr-demo-b before 1.1 is vulnerable",
    "database_specific": {"severity": "HIGH"},
    "affected": [{"package": {"ecosystem": "PyPI", "name": "envmgr_demo_b"},  # normalised to the conda name
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}],
}
PINNED = """\
name: fam
display_name: Fam
group: Team
channels: [demo]
dependencies:
  - python 3.*
  - ipykernel
  - envmgr-demo-b 1.0.*
smoke_test:
  imports: [envmgr_demo_b]
"""


# -- the database and version ordering (no builds) ---------------------------------------------

def _db(tmp_path: Path, *records: dict, name: str = "db") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    for i, rec in enumerate(records):
        (directory / f"{i}.json").write_text(json.dumps(rec, indent=1))
    return directory


def _adv(eco: str, name: str, events: list[dict] | None = None, versions: list[str] | None = None,
         rid: str = "A-1", **extra: object) -> dict:
    affected: dict = {"package": {"ecosystem": eco, "name": name}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
    if versions is not None:
        affected["versions"] = versions
    return {"id": rid, "affected": [affected], **extra}


def test_ranges_use_pep440_for_pypi_and_conda_ordering_for_conda(tmp_path: Path) -> None:
    db = load_db(_db(tmp_path,
                     _adv("PyPI", "Demo.Pkg", [{"introduced": "1.0"}, {"fixed": "2.0"}], rid="PY"),
                     _adv("conda", "libfoo", [{"introduced": "0"}, {"last_affected": "1.2"}],
                          versions=["3.0"], rid="CONDA"),
                     _adv("PyPI", "limited", [{"introduced": "0"}, {"limit": "5"}], rid="LIMIT"),
                     _adv("PyPI", "gone", [{"introduced": "0"}], rid="WITHDRAWN", withdrawn="2026-01-01"),
                     _adv("npm", "demo-pkg", [{"introduced": "0"}], rid="NPM")))
    assert db.skipped == 2 and len(db.advisories) == 3

    def hits(manager: str, name: str, version: str) -> list[tuple[str, str | None]]:
        return [(m.advisory.id, m.fixed) for m in match_packages(db, [(manager, name, version)])]

    # PEP 440: 2.0rc1 < 2.0, so a release candidate of the fix is still affected; 1.0.dev0 < 1.0.
    assert hits("conda", "demo-pkg", "2.0rc1") == [("PY", "2.0")]
    assert hits("pip", "demo_pkg", "1.5") == [("PY", "2.0")]
    assert hits("conda", "demo-pkg", "1.0.dev0") == [] and hits("conda", "demo-pkg", "2.0") == []
    # conda: 1.2 == 1.2.0, 1.2a < 1.2 (affected), 1.2.1 > 1.2; exact versions; a pip package is not conda's
    assert hits("conda", "libfoo", "1.2.0") == [("CONDA", None)]
    assert hits("conda", "libfoo", "1.2a") == [("CONDA", None)]
    assert hits("conda", "libfoo", "1.2.1") == [] and hits("conda", "libfoo", "3.0") == [("CONDA", None)]
    assert hits("pip", "libfoo", "1.0") == []
    assert hits("pip", "limited", "4.9") == [("LIMIT", None)] and hits("pip", "limited", "5") == []
    assert hits("pip", "gone", "1") == [] and hits("pip", "demo-pkg", "1.0") == [("PY", "2.0")]


def test_osv_bulk_zip_is_read_and_bad_files_are_named_with_their_line(tmp_path: Path) -> None:
    directory = tmp_path / "osv" / "PyPI"
    directory.mkdir(parents=True)
    with zipfile.ZipFile(directory / "all.zip", "w") as zf:
        zf.writestr("ENVMGR-TEST-0001.json", json.dumps(ADVISORY))
    db = load_db(tmp_path / "osv")
    assert [a.id for a in db.advisories] == ["ENVMGR-TEST-0001"]
    assert db.advisories[0].source.endswith("all.zip:ENVMGR-TEST-0001.json")

    (directory / "broken.json").write_text('{"id": "X",\n  "affected": [,]\n}')
    with pytest.raises(AdvisoryDBError) as bad_json:
        load_db(tmp_path / "osv")
    assert f"{directory / 'broken.json'}:2:" in bad_json.value.message
    (directory / "broken.json").write_text(json.dumps(_adv("PyPI", "a", []), indent=1).replace(
        '"events": []', '"events": {"introduced": "0"}'))
    with pytest.raises(AdvisoryDBError) as bad_shape:
        load_db(tmp_path / "osv")
    message = bad_shape.value.message
    assert "broken.json:" in message and "affected[0].ranges[0].events must be a list" in message
    assert int(message.split("broken.json:")[1].split(":")[0]) > 1, "the line of the offending key"

    proc = run_envmgr("--root", tmp_path / "root", "advisories", "check", "--db", tmp_path / "osv")
    assert proc.returncode == 2 and "broken.json" in proc.stderr and "Traceback" not in proc.stderr
    missing = run_envmgr("--root", tmp_path / "root", "advisories", "check")
    assert missing.returncode == 2 and "advisories_dir" in missing.stderr


# -- builds, kernels, status, the nightly ---------------------------------------------------------

def _cli(config: Path, *args: object, env: dict[str, str] | None = None):
    return run_envmgr(*args, config=config, env=env)


def _sbom(config: Path, *args: str) -> dict:
    proc = _cli(config, "sbom", "fam", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_sbom_and_advisories_through_a_family_life(site: dict[str, Path], tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    layout = Layout(site["root"])
    db = _db(tmp_path, ADVISORY, name="osv")
    notified = tmp_path / "notified.jsonl"
    notifier = tmp_path / "notify.py"
    notifier.write_text(f"import sys\nopen({str(notified)!r}, 'a').write(sys.stdin.read().replace('\\n', ' ') + '\\n')\n")
    config = site["config"]
    with config.open("a") as handle:
        handle.write(f"advisories_dir: {db}\nnotify_command: [{sys.executable}, {notifier}]\n")

    # 1. A build with envmgr-demo-b 1.0: built (warn), the advisory reported in its output and diff.
    write_spec(site["specs"], "fam", text=PINNED)
    first = _cli(config, "build", "fam", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    built = json_of(first)["result"]["builds"][0]
    build_a = built["build_id"]
    assert [(a["advisory"], a["package"], a["version"], a["fixed"]) for a in built["advisories"]] == \
        [("ENVMGR-TEST-0001", "envmgr-demo-b", "1.0", "1.1")]
    assert built["diff"]["advisories"] == built["advisories"]
    assert "ENVMGR-TEST-0001" in notified.read_text(), "the notify command receives them"

    # The SBOM: valid CycloneDX 1.6, one component per conda-meta record, purls that parse.
    text = (layout.record_dir("fam", build_a) / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = _sbom(config)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc)) is None
    meta = {json.loads(p.read_text())["name"]: json.loads(p.read_text())
            for p in (layout.prefix("fam", build_a) / "conda-meta").glob("*.json")}
    components = {c["name"]: c for c in doc["components"]}
    assert sorted(components) == sorted(meta) and len(doc["components"]) == len(meta)
    for name, c in components.items():
        purl = PackageURL.from_string(c["purl"])
        assert (purl.type, purl.name, purl.version) == ("conda", name, meta[name]["version"])
        assert purl.qualifiers["build"] == meta[name]["build"] and purl.qualifiers["subdir"] == meta[name]["subdir"]
        assert purl.qualifiers["channel"] == "demo"
        assert {"alg": "SHA-256", "content": meta[name]["sha256"]} in c["hashes"]
    assert components["python_abi"]["licenses"] == [{"license": {"id": "BSD-3-Clause"}}]
    root = doc["metadata"]["component"]
    props = {p["name"]: p["value"] for p in root["properties"]}
    assert (root["name"], root["version"], props["envmgr:family"], props["envmgr:build_id"]) == \
        ("fam", build_a, "fam", build_a)
    assert props["envmgr:lock_digest"] == json.loads(
        (layout.record_dir("fam", build_a) / "build.json").read_text())["lock_digest"]

    # SPDX 2.3 of the same content, valid for the SPDX project's own validator.
    spdx = _cli(config, "sbom", "fam", build_a, "--format", "spdx-json")
    assert spdx.returncode == 0, spdx.stderr
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    (tmp_path / "fam.spdx.json").write_text(spdx.stdout)
    assert validate_full_spdx_document(parse_file(str(tmp_path / "fam.spdx.json"))) == []
    assert len(json.loads(spdx.stdout)["packages"]) == len(meta) + 1

    # 2. Promote it; a kernel runs on it. The check names the build, its kernels, in use.
    assert _cli(config, "promote", "fam", "--release", "2026a", "--no-export").returncode == 0
    kernel = Kernel(site["kernels"], "fam-2026a")
    try:
        check = _cli(config, "advisories", "check", "--json")
        assert check.returncode == 3, check.stdout + check.stderr
        (finding,) = json_of(check)["result"]["findings"]
        assert finding["build_id"] == build_a and finding["roles"] == ["latest", "stable"]
        assert sorted(finding["kernels"]) == ["fam-2026a", "fam-latest"] and finding["in_use"] is True
        assert finding["stable"][0]["release"] == "2026a"
        assert finding["advisories"][0]["severity"] == "HIGH"
        text_out = _cli(config, "advisories", "check")
        assert text_out.returncode == 3 and "ENVMGR-TEST-0001" in text_out.stdout and "in use now: yes" in text_out.stdout

        # 3. A build with 1.1 becomes latest: only the stable release still holding 1.0 is reported.
        write_spec(site["specs"], "fam")
        second = _cli(config, "build", "fam", "--json")
        assert second.returncode == 0, second.stdout + second.stderr
        build_b = json_of(second)["result"]["builds"][0]["build_id"]
        assert json_of(second)["result"]["builds"][0]["advisories"] == []
        diffed = json_of(_cli(config, "diff", f"fam/{build_a}", f"fam/{build_b}", "--json"))["result"]
        assert [a["advisory"] for a in diffed["advisories"]["resolved"]] == ["ENVMGR-TEST-0001"]
        assert diffed["advisories"]["introduced"] == []
        nightly = _nightly(site, config)
        assert nightly.returncode == 7, nightly.stdout + nightly.stderr
        assert "envmgr advisories check exited 3" in nightly.stdout
        stored = json.loads((site["root"] / "advisories" / "last-check.json").read_text())
        (finding,) = stored["findings"]
        assert (finding["build_id"], finding["roles"], finding["kernels"], finding["in_use"]) == \
            (build_a, ["stable"], ["fam-2026a"], True)
        assert json.loads(notified.read_text().splitlines()[-1])["event"] == "advisories"
    finally:
        kernel.close()

    # status and doctor warn about the stable build; the staff page lists it for its badge.
    status = json_of(_cli(config, "status", "--json", "--no-disk"))["result"]
    warnings = [w for w in status["warnings"] if w["kind"] == "advisory"]
    assert len(warnings) == 1 and "stable 2026a" in warnings[0]["message"] and build_a in warnings[0]["message"]
    doctor = json_of(_cli(config, "doctor", "--json", "--no-kernels"))["result"]
    (adv_check,) = [c for c in doctor["checks"] if c["name"] == "advisories"]
    assert adv_check["status"] == "warn" and "ENVMGR-TEST-0001" in adv_check["detail"]
    from envmgr.config import load_config
    from envmgr.hubservice.jobs import JobStore
    from envmgr.hubservice.pagedata import page_state

    cfg = load_config(config_path=config)
    state = page_state(cfg, JobStore(cfg))
    (family,) = [f for g in state["groups"] for f in g["families"] if f["family"] == "fam"]
    assert [(a["advisory"], a["roles"]) for a in family["advisories"]] == [("ENVMGR-TEST-0001", ["stable 2026a"])]

    # An older build without an SBOM gets one from its lock on request (by release name).
    (layout.record_dir("fam", build_a) / "sbom.cdx.json").unlink()
    again = _sbom(config, "2026a")
    assert sorted(c["purl"] for c in again["components"]) == sorted(c["purl"] for c in doc["components"])
    assert (layout.record_dir("fam", build_a) / "sbom.cdx.json").is_file()

    # A tombstone keeps its SBOM: retire the release, let gc delete the build, ask again.
    assert _cli(config, "retire", "fam", "2026a").returncode == 0
    with config.open("a") as handle:
        handle.write("retention: {keep_previous: 0, grace_days: 0}\n")
    collected = _cli(config, "gc")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert not layout.prefix("fam", build_a).exists()
    tomb = _cli(config, "sbom", "fam", build_a)
    assert tomb.returncode == 0 and "tombstone" in tomb.stderr
    assert sorted(c["purl"] for c in json.loads(tomb.stdout)["components"]) == \
        sorted(c["purl"] for c in doc["components"])

    # 4. advisories: block — a build bringing 1.0 back is refused, latest stays on build B.
    with config.open("a") as handle:
        handle.write("advisories: block\n")
    write_spec(site["specs"], "fam", text=PINNED)
    before = sorted(p.name for p in layout.family_dir("fam").iterdir())
    records_before = sorted(p.name for p in (layout.records_dir / "fam").iterdir())
    refused = _cli(config, "build", "fam", "--json")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    outcome = json_of(refused)["result"]["builds"][0]
    assert outcome["status"] == "failed" and "envmgr-demo-b 1.0 (ENVMGR-TEST-0001)" in outcome["error"]
    assert layout.latest_build("fam") == build_b
    assert sorted(p.name for p in layout.family_dir("fam").iterdir()) == before, "nothing staged"
    assert sorted(p.name for p in (layout.records_dir / "fam").iterdir()) == records_before


def _nightly(site: dict[str, Path], config: Path):
    import subprocess

    from .test_ops import SCRIPTS

    env = {**os.environ, "ENVMGR_CONFIG": str(config), "ENVMGR": str(Path(sys.executable).parent / "envmgr"),
           "ENVMGR_NIGHTLY_LOCK": str(site["tmp"] / "nightly.lock"), "ENVMGR_NIGHTLY_GC": "0"}
    return subprocess.run(["bash", str(SCRIPTS / "nightly")], capture_output=True, text=True, env=env,
                          timeout=900)


def test_sbom_urls_never_carry_credentials() -> None:
    from envmgr.catalog.sbom import SbomPackage, channel_of, public_url

    url = "https://user:s3cret@mirror.example.org:8443/t/tok-123/conda-forge/noarch/x-1.0-py_0.conda"
    assert public_url(url) == "https://mirror.example.org:8443/conda-forge/noarch/x-1.0-py_0.conda"
    assert channel_of(url) == "https://mirror.example.org:8443/conda-forge"
    pkg = SbomPackage("conda", "x", "1.0", build="py_0", subdir="noarch", channel=channel_of(url), url=url)
    assert "s3cret" not in pkg.purl and "tok-123" not in pkg.purl and "type=conda" in pkg.purl
    assert SbomPackage("pip", "Foo_Bar", "2.0").purl == "pkg:pypi/foo-bar@2.0"


def test_advisories_settings_are_checked_and_locked_by_the_site_file(tmp_path: Path) -> None:
    from envmgr.config import ConfigError, load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("root: /tmp/x\nadvisories: maybe\n")
    with pytest.raises(ConfigError) as exc:
        load_config(config_path=bad, environ={})
    assert "bad.yaml:2" in exc.value.message and "'warn' or 'block'" in exc.value.message
    site = tmp_path / "site.yaml"
    site.write_text(f"root: {tmp_path / 'root'}\nadvisories_dir: osv\nadvisories: block\n")
    config = load_config(site_config=site, environ={})
    assert (config.advisories_dir, config.advisories_mode) == (tmp_path / "osv", "block")
    mine = tmp_path / "mine.yaml"
    mine.write_text("advisories: warn\n")
    with pytest.raises(ConfigError) as locked:
        load_config(config_path=mine, site_config=site, environ={})
    assert "advisories" in locked.value.message and "cannot be overridden" in locked.value.message
