"""The package policy: parsing, rattler version matching, dependency chains, and refusals
by `envmgr spec check --policy`, `lock`, `build` and `build --from-lock` on real locks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envmgr.lockfile import LockedPackage, PackageSet
from envmgr.define.policy import (
    PolicyFileError,
    check_package_set,
    dependency_chains,
    load_policy,
    parse_policy_text,
)

from .conftest import json_of, run_envmgr, write_config, write_spec

CHAIN = ("requested envmgr-demo-b → envmgr-demo-b 1.1 → envmgr-demo-a 2.0 "
         "(not allowed: allowed versions <2)")


def channel_names(channel: Path) -> list[str]:
    """Every package name in a local channel (what a site would vet)."""
    names: set[str] = set()
    for sub in ("noarch", "linux-64"):
        repodata = json.loads((channel / sub / "repodata.json").read_text())
        for key in ("packages", "packages.conda"):
            names.update(r["name"] for r in repodata.get(key, {}).values())
    return sorted(names)


def write_policy(path: Path, channel: Path, versions: dict[str, str] | None = None,
                 denied: str = "") -> Path:
    """Allow every package of ``channel`` (with ``versions`` as version specs), plus ``denied``."""
    versions = {"envmgr-demo-a": "<2"} if versions is None else versions
    lines = ["# vetted packages; changed by pull request", "allowed:"]
    lines += [f'  {n}: "{versions[n]}"' if n in versions else f"  {n}:" for n in channel_names(channel)]
    path.write_text("\n".join(lines) + "\n" + denied)
    return path


def pkg(name: str, version: str, *depends: str) -> LockedPackage:
    return LockedPackage(name=name, version=version, build="0", subdir="noarch",
                         url=f"file:///c/noarch/{name}-{version}-0.conda", sha256="0" * 64,
                         depends=depends)


# -- the policy file ---------------------------------------------------------------------

def test_policy_file_problems_are_all_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = ("allowed:\n"
            "  numpy: '>>1'\n"          # 2: bad version spec
            "  NumPy:\n"                # 3: not a conda name
            "  scipy: 1.10\n"           # 4: YAML number, would read as 1.1
            "  pandas: {version: '>=2', note: x}\n"  # 5: unknown key
            "denied: {}\n"              # 6: empty section
            "alowed: {}\n")             # 7: typo
    with pytest.raises(PolicyFileError) as info:
        parse_policy_text(text, path)
    found = {(p.line, p.column, p.key) for p in info.value.problems}
    assert found == {(2, 10, "allowed.numpy"), (3, 3, "allowed.NumPy"), (4, 10, "allowed.scipy"),
                     (5, 28, "allowed.pandas.note"), (6, 9, "denied"), (7, 1, "alowed")}
    message = info.value.message
    assert f"{path}:2:10: allowed.numpy: '>>1' is not a conda version spec" in message
    assert "write the version spec in quotes ('1.1')" in message
    assert "did you mean 'allowed'?" in message
    assert info.value.exit_code == 2


def test_versions_match_with_conda_semantics() -> None:
    policy = parse_policy_text(
        "allowed:\n  python: '3.11.*|3.12.*'\n  numpy: '>=1.26,<2.10'\n  tzdata:\n"
        "  openssl: '*'\n"
        "denied:\n  openssl: {version: '<3', reason: CVE-2023-0286}\n", Path("p.yaml"))
    assert policy.refusal("python", "3.12.4") is None
    assert policy.refusal("python", "3.13.0") == ("not allowed: allowed versions 3.11.*|3.12.*",
                                                  "3.11.*|3.12.*")
    assert policy.refusal("numpy", "2.9.1") is None  # conda order: 2.9 < 2.10 (not a string compare)
    assert policy.refusal("numpy", "2.10.0")[0] == "not allowed: allowed versions >=1.26,<2.10"
    assert policy.refusal("numpy", "1.26.0rc1")[0].startswith("not allowed")  # rc sorts before
    assert policy.refusal("tzdata", "2024a") is None
    assert policy.refusal("openssl", "1.1.1w") == ("denied (versions <3): CVE-2023-0286", None)
    assert policy.refusal("openssl", "3.0.13") is None
    assert policy.refusal("curl", "8.0") == ("not allowed: not in the allowed list", None)
    deny_only = parse_policy_text("denied:\n  curl:\n", Path("p.yaml"))
    assert deny_only.refusal("anything", "1") is None and deny_only.refusal("curl", "8")[0] == "denied"


def test_an_edited_policy_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("allowed:\n  numpy: '<2'\n")
    assert load_policy(path).refusal("numpy", "2.1") is not None
    assert load_policy(path) is load_policy(path)  # parsed once per version of the file
    path.write_text("allowed:\n  numpy: '>=2'\n")  # a merged pull request
    assert load_policy(path).refusal("numpy", "2.1") is None
    path.write_text("allowed:\n  numpy: '>>2'\n")
    with pytest.raises(PolicyFileError):
        load_policy(path)


def test_dependency_chain_is_the_shortest_and_ties_go_to_the_first_requested() -> None:
    pkgs = PackageSet.of("linux-64", [
        pkg("app", "1.0", "lib >=1", "python >=3.10", "__glibc >=2.17", "common"),
        pkg("lib", "1.0", "bad 2.*"),
        pkg("tool", "0.5", "bad", "common"),
        pkg("bad", "2.0"),
        pkg("common", "1.0"),
        pkg("python", "3.12.1"),
        pkg("orphan", "1.0"),
    ])
    chains = dependency_chains(pkgs, ["app >=1", "tool"])
    assert chains["bad"] == ("tool", ("tool 0.5", "bad 2.0"))  # 2 steps beat app's 3
    assert chains["common"] == ("app >=1", ("app 1.0", "common 1.0"))  # a tie: app is first
    assert chains["tool"] == ("tool", ("tool 0.5",))
    assert "orphan" not in chains
    policy = parse_policy_text("denied:\n  bad: {reason: unvetted}\n  orphan:\n  tool: '<1'\n",
                               Path("p.yaml"))
    lines = [v.line() for v in check_package_set(policy, pkgs, ["app >=1", "tool"])]
    assert lines == [
        "requested tool → tool 0.5 → bad 2.0 (denied: unvetted)",
        "orphan 1.0 (denied; not reached from any requested package)",
        "requested tool → tool 0.5 (denied (versions <1))",
    ]


# -- refusals on real locks ----------------------------------------------------------------

def policy_config(site: dict[str, Path], policy: Path, name: str = "policy-config.yaml",
                  applies_to: str = "all") -> Path:
    return write_config(site["tmp"] / name, root=site["root"], pkgs_dir=site["tmp"] / "pkgs-unused",
                        specs_dir=site["specs"], kernels_dir=site["kernels"],
                        channels={"demo": site["channel"].as_uri()}, min_free_space="10M",
                        compile_pyc=False, policy={"file": str(policy), "applies_to": applies_to})


def test_spec_check_policy_explains_each_refusal(site, envmgr_cli) -> None:
    policy = write_policy(site["specs"] / "policy.yaml", site["channel"])
    write_spec(site["specs"], "fam")
    ok = write_spec(site["specs"], "ok", text=(site["specs"] / "fam.yaml").read_text()
                    .replace("name: fam", "name: ok")
                    .replace("- envmgr-demo-b", "- envmgr-demo-b\n  - envmgr-demo-a <2"))
    # policy.yaml sits among the specs (the specs repository) and is not read as a spec.
    assert envmgr_cli("spec", "check", site["specs"]).returncode == 0

    proc = envmgr_cli("spec", "check", "--policy", policy, site["specs"])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert CHAIN in proc.stdout
    assert "ok  ok  (" in proc.stdout and "refused  fam: 1 of" in proc.stdout

    strict = write_policy(site["tmp"] / "strict.yaml", site["channel"], denied=(
        "denied:\n  envmgr-demo-a: {reason: withdrawn upstream}\n  tzdata: {reason: not vetted}\n"))
    doc = json_of(envmgr_cli("spec", "check", "--json", "--policy", strict, ok))
    (fam,) = doc["result"]["families"]
    assert doc["ok"] is False and fam["family"] == "ok"
    found = {v["name"]: v for v in fam["violations"]}
    assert sorted(found) == ["envmgr-demo-a", "tzdata"]  # every offender, not just the first
    demo_a = found["envmgr-demo-a"]
    assert (demo_a["version"], demo_a["reason"]) == ("1.1", "denied: withdrawn upstream")
    # Requested directly too: that is the shortest explanation.
    assert (demo_a["requested"], demo_a["chain"]) == ("envmgr-demo-a <2", ["envmgr-demo-a 1.1"])
    tz = found["tzdata"]
    assert tz["chain"][0].startswith("ipykernel ") and tz["chain"][-1].startswith("tzdata ")
    assert tz["explanation"].startswith("requested ipykernel → ipykernel ")

    broken = site["tmp"] / "broken.yaml"
    broken.write_text("allowed:\n  envmgr-demo-a: '<<2'\n")
    bad = envmgr_cli("spec", "check", "--policy", broken, ok)
    assert bad.returncode == 2 and f"{broken}:2:18: allowed.envmgr-demo-a" in bad.stdout


def test_lock_and_build_refuse_a_disallowed_dependency_and_build_nothing(site, envmgr_cli) -> None:
    spec = write_spec(site["specs"], "fam")
    policy = write_policy(site["tmp"] / "policy.yaml", site["channel"])
    config = policy_config(site, policy)
    lock_out = site["tmp"] / "fam.conda-lock.yml"

    refused = run_envmgr("lock", spec, "-o", lock_out, config=config)
    assert refused.returncode == 3 and CHAIN in refused.stderr and not lock_out.exists()

    built = run_envmgr("build", "--json", spec, config=config)
    assert built.returncode == 3, built.stdout + built.stderr
    (outcome,) = json_of(built)["result"]["builds"]
    assert outcome["status"] == "failed" and CHAIN in outcome["error"]
    assert "nothing built" in outcome["message"]
    assert not (site["root"] / "envs" / "fam").exists()
    assert [p.name for p in (site["root"] / "records" / "fam").iterdir()] == ["last-run.json"]
    assert not site["kernels"].exists() or not any(site["kernels"].glob("fam-*"))

    # A lock made without the policy cannot be smuggled in with --from-lock either.
    assert envmgr_cli("lock", spec, "-o", lock_out).returncode == 0
    smuggled = run_envmgr("build", "--from-lock", lock_out, spec, config=config)
    assert smuggled.returncode == 3 and CHAIN in smuggled.stdout + smuggled.stderr
    assert not (site["root"] / "envs" / "fam").exists()


def test_a_missing_mandated_policy_refuses_everything(site) -> None:
    spec = write_spec(site["specs"], "fam")
    config = policy_config(site, site["tmp"] / "gone.yaml")
    proc = run_envmgr("lock", spec, "-o", site["tmp"] / "x.yml", config=config)
    assert proc.returncode == 2 and "package policy file not found" in proc.stderr
    assert not (site["tmp"] / "x.yml").exists()
