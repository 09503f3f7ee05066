"""The typer application, its global options, and error rendering.

The CLI only parses arguments and prints results: every command calls a core
function with explicit paths and renders the typed result it returns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from .. import __version__
from .._internal import _click, _typer
from ..config import Config, load_config
from ..errors import EnvmgrError
from ..osfault import problem, refused
from ..results import Result, envelope
from . import _failures, _topics
from ._failures import write_json

if TYPE_CHECKING:  # rich is imported by the first text output: --json and --quiet runs skip it
    from rich.console import Console

_typer.install()  # plain options without pydantic under typer >= 0.29 (start-up: _internal._typer)

app = typer.Typer(
    name="envmgr",
    help="Conda environment and Jupyter kernel lifecycle manager for shared JupyterHubs.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (docs/admin-guide.md)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON_OPTION = typer.Option(False, "--json", help="Print a versioned JSON document instead of text.")

R = TypeVar("R", bound=Result)
Renderer = Callable[[R], Iterable[Any]]  # a result as rich renderables (text for people)


def emit(console: Callable[[], Console], command: str, result: R, render: Renderer[R], *,
         as_json: bool) -> None:
    """The one place a result is shown: the JSON envelope on stdout, or its renderer's text."""
    if as_json:
        write_json(sys.stdout, envelope(command, result=result.to_json(), ok=result.exit_code == 0))
        return
    out = console()
    for renderable in render(result):
        out.print(renderable)


def _console(*, stderr: bool) -> Console:
    """Piped output (cron mails, logs) is not cut to 80 columns: build ids must stay whole."""
    from rich.console import Console

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
    _out: Console | None = None  # made on first use (rich costs ~50 ms of start-up)
    _err: Console | None = None
    _config: Config | None = None
    command: str = ""
    as_json: bool = False

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(stderr=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

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
        emit(lambda: self.out, self.command, result, render, as_json=as_json)
        code = result.exit_code
        if code:
            raise typer.Exit(code)


def state(ctx: typer.Context, *, command: str, as_json: bool = False) -> CliState:
    obj: CliState = ctx.ensure_object(CliState)
    obj.command = command
    obj.as_json = as_json
    return obj


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"envmgr {__version__}")
        raise typer.Exit()


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
    _version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                  help="Print envmgr's version and exit."),
) -> None:
    # Fill in the object run() passed (not a new one): run() renders errors with it, as JSON
    # under --json.
    obj = ctx.ensure_object(CliState)
    obj.config_path, obj.root, obj.quiet, obj.user = config, root, quiet, user


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (never raises, never a traceback for user errors).

    Failures are reported by ``_failures``: text on stderr and, with ``--json``
    anywhere on the command line, a JSON envelope on stdout.
    """
    args = list(argv if argv is not None else sys.argv[1:])
    _topics.load(args)  # the commands this run may need (all of them for help or a typo)
    command = typer.main.get_command(app)
    obj = CliState()
    obj.as_json = _failures.wants_json(args)
    try:
        result: Any = command.main(args=args, prog_name=_failures.PROG_NAME, standalone_mode=False,
                                   obj=obj)
    except EnvmgrError as exc:
        return _failures.envmgr_error(obj.err, obj.out, obj.command, exc, as_json=obj.as_json)
    except _click.EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _click.USAGE_ERRORS as exc:
        return _failures.usage_error(obj.err, obj.out, exc, command, as_json=obj.as_json)
    except _click.CLICK_EXCEPTIONS as exc:
        getattr(exc, "show")()
        return int(getattr(exc, "exit_code", 0) or 2)
    except (KeyboardInterrupt, *_click.ABORTS):
        return _failures.interrupted(obj.err, obj.out, obj.command, as_json=obj.as_json)
    except OSError as exc:
        if refused(exc):  # the machine refused in a step no layer below named: still exit 5
            return _failures.envmgr_error(obj.err, obj.out, obj.command,
                                          problem(exc, obj.command or "envmgr"), as_json=obj.as_json)
        return _failures.internal_error(obj.err, obj.out, obj.command, exc, as_json=obj.as_json)
    except Exception as exc:  # noqa: BLE001 - a bug: show it, exit 1, never a silent success
        return _failures.internal_error(obj.err, obj.out, obj.command, exc, as_json=obj.as_json)
    return result if isinstance(result, int) else 0

