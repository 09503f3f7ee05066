"""The typer application, its global options, and error rendering.

The CLI only parses arguments and prints results: every command calls a core
function with explicit paths and renders the typed result it returns.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
import typer
from rich.console import Console

from ..config import Config, load_config
from ..errors import EXIT_FAILURE, EXIT_USAGE, EnvmgrError
from ..results import Result, envelope

app = typer.Typer(
    name="envmgr",
    help="Conda environment and Jupyter kernel lifecycle manager for shared JupyterHubs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON_OPTION = typer.Option(False, "--json", help="Print a versioned JSON document instead of text.")

R = TypeVar("R", bound=Result)
Renderer = Callable[[R], Iterable[Any]]  # a result as rich renderables (text for people)


def write_json(console: Console, document: dict[str, Any]) -> None:
    """Plain JSON on the console's stream: no colour, no wrapping, one document."""
    console.file.write(json.dumps(document, indent=2, default=str) + "\n")
    console.file.flush()


def emit(console: Console, command: str, result: R, render: Renderer[R], *, as_json: bool) -> None:
    """The one place a result is shown: the JSON envelope, or its renderer's text."""
    if as_json:
        write_json(console, envelope(command, result=result.to_json(), ok=result.exit_code == 0))
        return
    for renderable in render(result):
        console.print(renderable)


def _console(*, stderr: bool) -> Console:
    """Piped output (cron mails, logs) is not cut to 80 columns: build ids must stay whole."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, soft_wrap=True, width=width)


@dataclass
class CliState:
    """Global options, parsed once; the configuration is loaded on first use."""

    config_path: Path | None = None
    root: Path | None = None
    quiet: bool = False
    user: bool = False
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))
    _config: Config | None = None
    command: str = ""
    as_json: bool = False

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(config_path=self.config_path, root=self.root,
                                       user=self.user)
        return self._config

    def progress(self, message: str) -> None:
        """Progress for people goes to stderr, so stdout stays parseable."""
        if not self.quiet and not self.as_json:
            self.err.print(f"[dim]·[/dim] {message}", highlight=False)

    def emit(self, result: R, render: Renderer[R], *, as_json: bool) -> None:
        emit(self.out, self.command, result, render, as_json=as_json)
        code = result.exit_code
        if code:
            raise typer.Exit(code)


def state(ctx: typer.Context, *, command: str, as_json: bool = False) -> CliState:
    obj: CliState = ctx.ensure_object(CliState)
    obj.command = command
    obj.as_json = as_json
    return obj


@app.callback()
def _global_options(
    ctx: typer.Context,
    root: Path = typer.Option(None, "--root", help="envmgr root directory (default: ENVMGR_ROOT, "
                              "the config file's root, or ~/.local/share/envmgr)."),
    config: Path = typer.Option(None, "--config", help="Site configuration file "
                                "(default: ENVMGR_CONFIG or /etc/envmgr/config.yaml)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (for cron)."),
    user: bool = typer.Option(False, "--user", help="Personal environments: your own root and "
                              "Jupyter kernels, under the site's channels and package policy."),
) -> None:
    ctx.obj = CliState(config_path=config, root=root, quiet=quiet, user=user)


def _render_error(obj: CliState | None, exc: EnvmgrError) -> int:
    if obj is not None and obj.as_json:
        write_json(obj.out, envelope(obj.command, error=exc.to_json()))
    else:
        err = obj.err if obj is not None else Console(stderr=True)
        err.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/yellow] {exc.hint}", highlight=False)
    return exc.exit_code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (never raises for user errors)."""
    command = typer.main.get_command(app)
    obj = CliState()
    try:
        result: Any = command.main(args=argv if argv is not None else sys.argv[1:],
                                   prog_name="envmgr", standalone_mode=False, obj=obj)
    except EnvmgrError as exc:
        return _render_error(obj, exc)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.exceptions.Abort:
        Console(stderr=True).print("aborted")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130
    except Exception:  # noqa: BLE001 - a bug: show it, exit 1, never a silent success
        Console(stderr=True).print(f"[bold red]internal error[/bold red] (please report):\n"
                                   f"{traceback.format_exc()}", highlight=False, markup=True)
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0
