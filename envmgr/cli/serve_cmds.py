"""`envmgr serve`: the staff web page as a JupyterHub service (docs/hub-service.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import EnvironmentProblem
from ._app import app, state


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    ip: str = typer.Option(None, "--ip", help="Address to listen on (default: the host of "
                           "JUPYTERHUB_SERVICE_URL, else 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port (default: the port of JUPYTERHUB_SERVICE_URL, "
                             "else 10101)."),
    build_scope: str = typer.Option("custom:envmgr:build", "--build-scope",
                                    help="Hub scope that allows Build now and Roll back."),
    cookie_secret_file: Path = typer.Option(
        None, "--cookie-secret-file",
        help="Where the service keeps its cookie secret (default: ROOT/locks/hubservice-cookie-secret)."),
) -> None:
    """Run the staff page (build now, watch the log, roll back) as a JupyterHub service."""
    try:
        from ..hubservice.app import serve, settings_from_environ
    except ImportError as exc:
        raise EnvironmentProblem(f"envmgr serve needs JupyterHub's service library: {exc}",
                                 hint="pip install 'envmgr[hub]'") from None
    obj = state(ctx, command="serve")
    settings = settings_from_environ(obj.config(), os.environ, ip=ip, port=port, build_scope=build_scope,
                                     cookie_secret_file=cookie_secret_file)
    raise typer.Exit(serve(settings, obj.progress))
