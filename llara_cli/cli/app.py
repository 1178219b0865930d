"""The root Typer app: registers one thin module per command and formats library errors in one line."""
from __future__ import annotations

import logging
from typing import Annotated, Optional

import click
import typer
import typer.core
from rich.console import Console

from llara_cli import __version__
from llara_cli.errors import EXIT_RUNTIME_FAILURE, LlaraError

EXIT_INTERRUPTED = 130



class _LlaraGroup(typer.core.TyperGroup):
    """Formats library errors once, for every command: one line, exit code from the error, no traceback."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except LlaraError as error:
            if _state["verbose"]:
                _stderr.print_exception()
            _stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            _stderr.print("[yellow]interrupted[/]: finished work is kept; run the same command again to resume.")
            ctx.exit(EXIT_INTERRUPTED)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except Exception as error:  # noqa: BLE001 - last resort: one line unless --verbose
            if _state["verbose"]:
                raise
            _stderr.print(
                f"[bold red]internal error:[/] {type(error).__name__}: {error} (rerun with --verbose for details)",
                highlight=False, soft_wrap=True,
            )
            ctx.exit(EXIT_RUNTIME_FAILURE)


app = typer.Typer(
    name="llara",
    help="LLaRA dense retrieval: [bold]adapt[/] an LLM, [bold]finetune[/] it, [bold]encode[/], [bold]index[/], "
    "[bold]search[/] and [bold]evaluate[/].\n\nExample: [cyan]llara search --bm25 --corpus data/ --queries data/ --out bm25.trec[/]",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_LlaraGroup,
)
_state = {"verbose": False}
_stderr = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"llara {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """LLaRA: LLM adapted for dense retrieval."""
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from llara_cli.core.threads import configure_threads

    configure_threads()  # once per command, before torch, faiss or tokenizers start their pools


def _register_commands() -> None:
    from llara_cli.cli import adapt, encode, env, evaluate, finetune, index, mine, search

    for module in (adapt, finetune, mine, encode, index, search, evaluate, env):
        module.register(app)


_register_commands()


def main() -> None:
    """Console entry point."""
    app()
