"""`envmgr advisories check`, and what status, doctor and the staff page show of it.

The check answers a security officer's question: which kernels contain the vulnerable
version of X, who uses them, since when. It reads every family's builds that kernels
can start on (latest, supported stable releases) or still run on (a lease is held),
takes each build's package list from its SBOM (``catalog.sbom``, generated from the
record for older builds) and matches it against an OSV directory (``catalog.advisories``).

The result is stored as ``ROOT/advisories/last-check.json`` when the caller may write
there (the nightly runs the check as the service account): ``status``, ``doctor`` and
the staff page read that file instead of parsing a whole OSV dump on every refresh.
Builds published after the check were checked by the build itself
(``build.advisory_gate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envmgr.catalog import records
from envmgr.catalog.inventory import BuildInfo, FamilyView, family_view
from envmgr.clock import iso, parse_iso, utcnow
from envmgr.config import Config
from envmgr.errors import EXIT_BUILD_FAILED, EXIT_OK, EnvironmentProblem, EnvmgrError, UsageError
from envmgr.fsutil import atomic_write_json, read_json
from envmgr.layout import LATEST, Layout
from envmgr.results import Progress, no_progress

if TYPE_CHECKING:  # the OSV reader (packaging, zipfile) loads for a check, not for status
    from envmgr.catalog.advisories import AdvisoryDB, Match


def database_dir(config: Config, given: Path | None) -> Path:
    """``--db`` wins, else the site's ``advisories_dir``; neither is a usage error."""
    chosen = given or config.advisories_dir
    if chosen is None:
        raise UsageError("no advisories database: pass --db DIR or set advisories_dir in the site config",
                         hint="docs/security.md explains how to mirror an OSV dump")
    return Path(chosen)


# -- which builds, and what about them ----------------------------------------------------------

@dataclass
class BuildFinding:
    family: str
    build_id: str
    roles: list[str]  # latest | stable | running | previous | tombstone
    releases: list[dict[str, Any]]  # {release, until, expired}
    kernels: list[str]
    in_use: bool | None  # None: the lease could not be probed (not the service account)
    pids: list[int]
    published: bool
    since: str | None  # published (latest since) or finished
    matches: list[Match] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "build_id": self.build_id, "roles": self.roles,
                "latest": LATEST in self.roles, "stable": self.releases, "kernels": self.kernels,
                "in_use": self.in_use, "pids": self.pids, "published": self.published,
                "since": self.since, "advisories": [m.to_json() for m in self.matches]}


def _kernel_names(family: str, suffixes: Iterable[str]) -> list[str]:
    from envmgr.kernels.kernelspecs import kernel_name

    names = []
    for suffix in suffixes:
        try:
            names.append(kernel_name(family, suffix))
        except EnvmgrError:
            continue
    return names


def _usage(layout: Layout, family: str, build_id: str) -> tuple[bool | None, list[int]]:
    from envmgr.kernels.lease import holders, probe

    lease = layout.lease_file(family, build_id)
    try:
        held = probe(lease)
    except EnvironmentProblem:
        return None, []
    pids = list(holders(lease).pids) if held else []
    return held, pids


def _describe(layout: Layout, view: FamilyView, info: BuildInfo) -> BuildFinding:
    releases = [r for r in view.releases if r.build_id == info.build_id]
    supported = [r for r in releases if not r.expired()]
    roles = ([LATEST] if info.latest else []) + (["stable"] if supported else [])
    in_use, pids = _usage(layout, view.family, info.build_id) if info.published else (False, [])
    if not roles:
        roles = ["tombstone"] if info.record.deleted else ["running"] if in_use else ["previous"]
    kernels = _kernel_names(view.family, ([LATEST] if info.latest else []) + [r.release for r in supported])
    return BuildFinding(view.family, info.build_id, roles,
                        [{"release": r.release, "until": r.until.isoformat(), "expired": r.expired()}
                         for r in releases], kernels, in_use, pids, info.published,
                        info.record.latest_since or info.record.finished)


def _selected(finding: BuildFinding, include_all: bool) -> bool:
    return include_all or bool({LATEST, "stable", "running"} & set(finding.roles))


# -- the report ---------------------------------------------------------------------------------

@dataclass
class AdvisoryReport:
    db: AdvisoryDB
    checked: int
    findings: list[BuildFinding]
    generated: str
    stored: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_BUILD_FAILED if self.findings else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"generated": self.generated, "database": self.db.summary(), "checked_builds": self.checked,
                "affected_builds": len(self.findings), "findings": [f.to_json() for f in self.findings],
                "stored": self.stored, "notes": self.notes}

def check_site(config: Config, db_dir: Path | None = None, *, include_all: bool = False,
               store: bool = True, progress: Progress = no_progress) -> AdvisoryReport:
    """Match every relevant build of every family against the OSV directory."""
    from envmgr.catalog.advisories import build_packages, cached_db, match_packages
    from envmgr.catalog.governing import family_spec, spec_index

    directory = database_dir(config, db_dir)
    progress(f"reading advisories under {directory}")
    db = cached_db(directory)
    layout = config.layout
    index = spec_index(config)
    findings, checked = [], 0
    for family in layout.families():
        view = family_view(config, family, family_spec(config, family, index).spec)
        for info in view.builds:
            if info.record.status != records.OK and not include_all:
                continue
            finding = _describe(layout, view, info)
            if not _selected(finding, include_all):
                continue
            try:
                packages = build_packages(layout, info.record)
            except EnvmgrError:
                continue  # no package list (failed before locking)
            checked += 1
            finding.matches = match_packages(db, packages)
            if finding.matches:
                findings.append(finding)
    report = AdvisoryReport(db, checked, findings, iso(utcnow()) or "")
    if store and not include_all:
        report.stored = _store(layout, report)
        if report.stored is None:
            report.notes.append(f"not stored (cannot write {layout.advisories_check}); status shows the last stored check")
    return report


def _store(layout: Layout, report: AdvisoryReport) -> str | None:
    path = layout.advisories_check
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, report.to_json())
    except OSError:
        return None
    return str(path)


# -- what status, doctor and the staff page show -----------------------------------------------

_LAST_CHECK: dict[str, tuple[tuple[int, int, int], dict[str, Any] | None]] = {}


def last_check(layout: Layout) -> dict[str, Any] | None:
    """The stored check; read again only when the file changed (status asks once per family)."""
    path = layout.advisories_check
    try:
        st = path.stat()
    except OSError:
        return None
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _LAST_CHECK.get(str(path))
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    _LAST_CHECK[str(path)] = (key, data)
    return data


def advisory_counts(layout: Layout) -> dict[tuple[str, str], int] | None:
    """Advisories per (family, build) in the stored check; None when no check was ever stored."""
    check = last_check(layout)
    if check is None:
        return None
    return {(f["family"], f["build_id"]): len(f.get("advisories", []))
            for f in check.get("findings", [])}


def family_advisories(layout: Layout, family: str, latest: str | None,
                      stable: dict[str, list[str]], check: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The stored check's advisories on ``family``'s current latest and supported stable builds.

    ``stable`` maps build id -> release names (supported ones). Builds that are no
    longer latest or stable since the check are left out.
    """
    check = last_check(layout) if check is None else check
    out = []
    for f in (check or {}).get("findings", []):
        if f.get("family") != family:
            continue
        roles = ([LATEST] if f.get("build_id") == latest else []) + \
            [f"stable {r}" for r in stable.get(f.get("build_id", ""), [])]
        if not roles:
            continue
        for adv in f.get("advisories", []):
            out.append({**adv, "build_id": f["build_id"], "roles": roles, "in_use": f.get("in_use"),
                        "kernels": f.get("kernels", []), "checked": check.get("generated") if check else None})
    return out


def warning_text(family: str, adv: dict[str, Any]) -> str:
    fixed = f"fixed in {adv['fixed']}" if adv.get("fixed") else "no fixed version yet"
    return (f"{family} {' and '.join(adv['roles'])} (build {adv['build_id']}): {adv['advisory']} "
            f"[{adv.get('severity') or 'unknown'}] affects {adv['package']} {adv['version']} ({fixed}); "
            f"checked {adv.get('checked')}")


def status_advisories(layout: Layout, family: str, latest: dict[str, Any] | None,
                      stable: list[dict[str, Any]], check: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``family_advisories`` from ``envmgr status``'s own latest and stable entries."""
    supported: dict[str, list[str]] = {}
    for rel in stable:
        if not rel.get("expired"):
            supported.setdefault(rel["build_id"], []).append(rel["release"])
    return family_advisories(layout, family, (latest or {}).get("build_id"), supported, check)


STALE_CHECK_HOURS = 48


def doctor_summary(config: Config) -> tuple[str, str, str]:
    """(ok|warn|fail, detail, fix) for `envmgr doctor`: configured, recent, latest/stable clean."""
    if config.advisories_dir is None:
        return "ok", "no advisories_dir configured: builds are not checked against advisories", \
            "optional: mirror an OSV dump and set advisories_dir (docs/security.md)"
    if not Path(config.advisories_dir).is_dir():
        return "fail", f"advisories_dir {config.advisories_dir} does not exist", \
            "create it and mirror an OSV dump into it (docs/security.md)"
    check = last_check(config.layout)
    when = parse_iso((check or {}).get("generated"))
    if check is None or when is None:
        return "warn", "advisories have never been checked on this root", \
            "run `envmgr advisories check` (the nightly runs it after building)"
    problems = []
    for family in config.layout.families():
        view = family_view(config, family)
        stable: dict[str, list[str]] = {}
        for r in view.releases:
            if not r.expired():
                stable.setdefault(r.build_id, []).append(r.release)
        problems += [warning_text(family, adv)
                     for adv in family_advisories(config.layout, family, view.latest, stable, check)]
    age_hours = (utcnow() - when).total_seconds() / 3600
    stale = f"; the last check is {age_hours:.0f} h old" if age_hours > STALE_CHECK_HOURS else ""
    if problems:
        return "warn", "; ".join(problems[:10]) + (f"; ... and {len(problems) - 10} more"
                                                   if len(problems) > 10 else "") + stale, \
            "build the families again once a fixed version is in the channel; " \
            "`envmgr advisories check` lists kernels and who uses them"
    if stale:
        return "warn", f"no advisory affects a latest or stable build{stale}", \
            "is the nightly running? it runs `envmgr advisories check`"
    return "ok", f"no advisory affects a latest or stable build (checked {check.get('generated')}, " \
        f"{(check.get('database') or {}).get('advisories', 0)} advisories)", ""


def notify_findings(config: Config, report: AdvisoryReport) -> str | None:
    """Send the check's findings to ``notify_command`` (event "advisories"); a warning or None.

    Sent only when some build is affected: a clean nightly is not news.
    """
    import socket

    from envmgr.build.notify import run_notify

    if not config.notify_command or not report.findings:
        return None
    document = {"envmgr": 1, "event": "advisories", "family": None, "status": "affected",
                "build_id": None, "findings": [f.to_json() for f in report.findings],
                "database": report.db.summary(), "host": socket.gethostname(),
                "time": iso(utcnow()), "root": str(config.root)}
    try:
        return run_notify(config.notify_command, document)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the check
        return f"notification failed: {type(exc).__name__}: {exc}"
