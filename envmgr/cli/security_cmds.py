"""`envmgr sbom` and `envmgr advisories check` (docs/security.md), and how advisories are shown."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Text

from ..errors import UsageError
from ._app import JSON_OPTION, app, state

if TYPE_CHECKING:
    from envmgr.ops.advisories import AdvisoryReport, BuildFinding

advisories_app = typer.Typer(help="Vulnerability advisories (OSV format, offline).", no_args_is_help=True)
app.add_typer(advisories_app, name="advisories")


@app.command("sbom")
def sbom_cmd(
    ctx: typer.Context,
    family: str = typer.Argument(..., help="The family."),
    build: str = typer.Argument(None, help="Build id or stable release (default: latest); "
                                "tombstones of deleted builds too."),
    fmt: str = typer.Option("cyclonedx-json", "--format", help="cyclonedx-json (CycloneDX 1.6) "
                            "or spdx-json (SPDX 2.3)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print a build's software bill of materials (made from its lock when it has none yet)."""
    from envmgr.catalog.sbom import build_sbom

    obj = state(ctx, command="sbom")
    result = build_sbom(obj.config(), family, build, fmt, progress=obj.progress)
    if output is not None:
        try:
            output.write_text(result.text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
        obj.progress(f"wrote {output}")
        return
    obj.out.file.write(result.text if result.text.endswith("\n") else result.text + "\n")
    obj.out.file.flush()


@advisories_app.command("check")
def advisories_check(
    ctx: typer.Context,
    db: Path = typer.Option(None, "--db", help="Directory of OSV records (*.json, or osv.dev's "
                            "<ECOSYSTEM>/all.zip); default: advisories_dir from the site config."),
    include_all: bool = typer.Option(False, "--all", help="Every recorded build, tombstones and "
                                     "unused old builds too (not stored for status)."),
    notify: bool = typer.Option(False, "--notify", help="Send the findings to notify_command "
                                "(event \"advisories\"; the nightly uses this)."),
    if_configured: bool = typer.Option(False, "--if-configured", help="Exit 0 quietly when no "
                                       "database is configured (the nightly uses this)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Which builds kernels run on contain a package an advisory names: exit 0 clean, 3 affected."""
    from envmgr.ops.advisories import check_site, notify_findings

    obj = state(ctx, command="advisories check", as_json=as_json)
    config = obj.config()
    if if_configured and db is None and config.advisories_dir is None:
        obj.progress("advisories: no advisories_dir configured; nothing checked")
        return
    report = check_site(config, db, include_all=include_all, progress=obj.progress)
    if notify:
        warning = notify_findings(config, report)
        if warning:
            report.notes.append(f"warning: {warning}")
    obj.emit(report, render_advisory_report, as_json=as_json)


# -- rendering --------------------------------------------------------------------------------

def render_advisory_report(report: AdvisoryReport) -> Iterable[Any]:
    db = report.db
    yield Text(f"{len(db.advisories)} PyPI/conda advisories in {db.files} files under {db.directory}; "
               f"{report.checked} builds checked", style="dim")
    for warning in db.warnings:
        yield Text(f"  warning: {warning}", style="yellow")
    for f in report.findings:
        yield Text.assemble(("AFFECTED ", "bold red"), (f"{f.family} {f.build_id}", "bold"), f"  {_roles_text(f)}")
        yield Text(f"  kernels: {', '.join(f.kernels) or '(none)'}; in use now: {_in_use_text(f)}; "
                   f"since {f.since or '?'}")
        for m in f.matches:
            fixed = f"fixed in {m.fixed}" if m.fixed else "no fixed version"
            alias = f" ({', '.join(m.advisory.aliases)})" if m.advisory.aliases else ""
            summary = f" — {m.advisory.summary}" if m.advisory.summary else ""
            yield Text(f"    {m.advisory.id}{alias} [{m.severity}] {m.package} {m.version} ({m.manager}): "
                       f"{fixed}{summary}")
    for note in report.notes:
        yield Text(note, style="dim")
    if report.findings:
        yield Text(f"{len(report.findings)} build(s) affected", style="bold red")
    else:
        yield Text("no build is affected", style="green")


def _roles_text(f: BuildFinding) -> str:
    parts = []
    for role in f.roles:
        if role == "stable":
            parts += [f"stable {r['release']} until {r['until']}" for r in f.releases if not r["expired"]]
        else:
            parts.append(role)
    return ", ".join(parts)


def _in_use_text(f: BuildFinding) -> str:
    if f.in_use is None:
        return "unknown (leases not readable; run as the service account)"
    if f.in_use:
        return "yes" + (f" (pid {', '.join(map(str, f.pids))} on this host)" if f.pids else " (another host)")
    return "no"


def render_build_advisories(found: list[dict[str, Any]]) -> Iterable[Text]:
    """Advisories a build introduced (build.advisory_gate), under its diff."""
    for adv in found:
        fixed = f"fixed in {adv['fixed']}" if adv.get("fixed") else "no fixed version"
        yield Text(f"  advisory {adv['advisory']} [{adv['severity']}]: {adv['package']} {adv['version']} "
                   f"({adv['manager']}) introduced by this build; {fixed}", style="bold yellow")


def render_diff_advisories(found: dict[str, Any] | None) -> Iterable[Text]:
    """`envmgr diff A B`: advisories B introduces or resolves."""
    for kind, style in (("introduced", "bold yellow"), ("resolved", "green")):
        for adv in (found or {}).get(kind, []):
            yield Text(f"advisory {adv['advisory']} [{adv['severity']}] {adv['package']} "
                       f"{adv['version']}: {kind}", style=style)
