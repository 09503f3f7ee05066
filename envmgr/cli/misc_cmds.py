"""`envmgr quickstart`, `envmgr channel build`, `envmgr config show`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ._rich import Text

from envmgr.config import ConfigResult
from ._app import JSON_OPTION, app, state

if TYPE_CHECKING:
    from envmgr.build.quickstart import QuickstartResult
    from envmgr.channel.build import ChannelResult

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
    from envmgr.build.quickstart import quickstart  # the pipeline: only when running it

    obj = state(ctx, command="quickstart", as_json=as_json)
    obj.emit(quickstart(obj.config(), spec, obj.progress), render_quickstart, as_json=as_json)


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
    from envmgr.channel.build import build_channel_command

    obj = state(ctx, command="channel build", as_json=as_json)
    result = build_channel_command(directory, wheels=wheels or [], dists=dists or [],
                                   demo=not no_demo, progress=obj.progress)
    obj.emit(result, render_channel_build, as_json=as_json)


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The effective configuration and where its root came from."""
    obj = state(ctx, command="config show", as_json=as_json)
    obj.emit(ConfigResult(obj.config()), render_config, as_json=as_json)


def render_quickstart(result: QuickstartResult) -> Iterable[Any]:
    from envmgr.build.quickstart import SOURCE_EXAMPLE

    o, cfg = result.outcome, result.config
    if o.status == "failed":
        yield Text(f"quickstart failed: {o.error}", style="bold red")
        if o.hint:
            yield Text(f"hint: {o.hint}", style="yellow")
        return
    latest = cfg.layout.latest_link(o.family)
    yield Text(f"✓ {o.family}: {o.message}", style="green")
    yield Text(f"  root:        {cfg.root}")
    yield Text(f"  prefix:      {o.prefix}  ({o.package_count} packages)")
    yield Text(f"  latest:      {latest} -> {o.build_id}")
    yield Text(f"  kernels:     {', '.join(o.kernels) or '(none)'} in {cfg.kernels_dir}")
    yield Text("Try:", style="bold")
    yield Text(f"  {o.prefix}/bin/python -c 'import ipykernel, sys; print(sys.prefix)'")
    yield Text("  jupyter kernelspec list          # shows " + ", ".join(o.kernels))
    yield Text(f"  envmgr builds {o.family}            # history, with package counts")
    yield Text(f"  envmgr build {SOURCE_EXAMPLE if SOURCE_EXAMPLE.exists() else 'SPEC'}  "
               "# again: 'unchanged', nothing built")


def render_channel_build(r: ChannelResult) -> Iterable[Any]:
    how = "already up to date" if r.cached else f"built in {r.seconds:.1f} s"
    yield Text(f"channel {r.url}: {len(r.packages)} packages, {how}", style="green")
    for warning in r.warnings:
        yield Text(f"  warning: {warning}", style="yellow")


def render_config(result: ConfigResult) -> Iterable[Any]:
    """YAML, the config file's own language: the output can be pasted back into one."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip dumper: keys stay in to_json's order
    buffer = io.StringIO()
    yaml.dump(result.config.to_json(), buffer)
    yield Text(buffer.getvalue().rstrip("\n"))
