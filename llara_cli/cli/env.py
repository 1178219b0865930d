"""`llara env`: the machine and installation report to paste into an issue (like `transformers env`)."""
from __future__ import annotations

import json
from typing import Annotated

import typer


def env(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (schema: docs/environment.md).")] = False,
    probe: Annotated[bool, typer.Option(
        "--probe", help="Also measure bf16 vs fp32 matmul speed (cached per machine under $LLARA_HOME).")] = False,
) -> None:
    """Print versions, devices, CPU capability, the dtype [bold]--dtype auto[/] picks, threads and the model cache.

    Examples:

      [cyan]llara env[/]

      [cyan]llara env --json > machine.json[/]
    """
    from llara_cli.environment import collect_environment, format_environment

    info = collect_environment(probe=probe)
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    typer.echo("\n".join(format_environment(info)))


def register(app: typer.Typer) -> None:
    app.command("env")(env)
