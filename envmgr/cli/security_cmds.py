"""`envmgr sbom` and `envmgr advisories check` (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UsageError
from ._app import JSON_OPTION, app, state

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
    from ..commands.sbom_cmd import build_sbom

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
    """Which builds that kernels run on contain a package an advisory names: exit 0 clean, 3 affected."""
    from ..advisory_check import check_site
    from ..commands.sbom_cmd import notify_findings

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
    obj.emit(report, as_json=as_json)
