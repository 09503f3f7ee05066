"""`envmgr quickstart`, `envmgr channel build`, `envmgr config show`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from ..commands.quickstart import quickstart
from ..config import Config
from ._app import JSON_OPTION, app, state

channel_app = typer.Typer(help="Local conda channels (demo, air-gapped mirrors).", no_args_is_help=True)
app.add_typer(channel_app, name="channel")
config_app = typer.Typer(help="Site configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command("quickstart")
def quickstart_cmd(
    ctx: typer.Context,
    spec: Path = typer.Option(None, "--spec", help="Spec to build (default: the example spec)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Build the demo channel and the example spec, register its kernel (no conda needed)."""
    obj = state(ctx, command="quickstart", as_json=as_json)
    obj.emit(quickstart(obj.config(), spec, obj.progress), as_json=as_json)


@channel_app.command("build")
def channel_build(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="Where the channel goes (published by rename)."),
    wheels: list[Path] = typer.Option(None, "--wheel", help="Wheel file to convert (repeatable)."),
    dists: list[str] = typer.Option(None, "--dist", help="Installed distribution to repack, with "
                                    "its dependencies (repeatable; default: ipykernel and pip)."),
    no_demo: bool = typer.Option(False, "--no-demo", help="Leave out the envmgr-demo-* packages."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a file:// conda channel from installed Python distributions and wheels."""
    from ..channel import build_channel_command

    obj = state(ctx, command="channel build", as_json=as_json)
    result = build_channel_command(directory, wheels=wheels or [], dists=dists or [],
                                   demo=not no_demo, progress=obj.progress)
    obj.emit(ChannelBuildResult(result), as_json=as_json)


@dataclass
class ChannelBuildResult:
    result: Any  # envmgr.channel.ChannelResult
    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return self.result.to_json()

    def render(self) -> Iterable[Any]:
        r = self.result
        how = "already up to date" if r.cached else f"built in {r.seconds:.1f} s"
        yield Text(f"channel {r.url}: {len(r.packages)} packages, {how}", style="green")
        for warning in r.warnings:
            yield Text(f"  warning: {warning}", style="yellow")


@dataclass
class ConfigResult:
    config: Config
    exit_code = 0

    def to_json(self) -> dict[str, Any]:
        return self.config.to_json()

    def render(self) -> Iterable[Any]:
        """YAML, the config file's own language: the output can be pasted back into one."""
        import io

        from ruamel.yaml import YAML

        yaml = YAML()  # round-trip dumper: keys stay in to_json's order
        buffer = io.StringIO()
        yaml.dump(self.config.to_json(), buffer)
        yield Text(buffer.getvalue().rstrip("\n"))


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The effective configuration and where its root came from."""
    obj = state(ctx, command="config show", as_json=as_json)
    obj.emit(ConfigResult(obj.config()), as_json=as_json)
