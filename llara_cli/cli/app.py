"""The root Typer app: registers one thin module per command and formats library errors in one line."""
from __future__ import annotations

import logging
import sys
from typing import Annotated

import click
import typer
import typer.core
from rich.console import Console

from llara_cli import __version__
from llara_cli.errors import EXIT_INTERRUPTED, EXIT_RUNTIME_FAILURE, LlaraError


def _click_exception_modules() -> list:
    """``click.exceptions`` and, for newer typer (0.29 here), the copy of it that typer bundles (``typer._click``).

    Older typer raises the installed click's exceptions; newer typer raises its bundled copy's, which are
    not the installed click's, so both are caught (the copy is found from ``typer.BadParameter``).
    """
    bundled = sys.modules.get(typer.BadParameter.__module__, click.exceptions)
    return [click.exceptions] if bundled is click.exceptions else [click.exceptions, bundled]


def _exception_types(name: str) -> tuple[type[Exception], ...]:
    return tuple(getattr(module, name) for module in _click_exception_modules() if hasattr(module, name))


_CLICK_EXCEPTIONS = _exception_types("ClickException")  # usage errors and the like: click prints them, exit 2
_HELP_EXCEPTIONS = _exception_types("NoArgsIsHelpError")  # click >= 8.2: typer prints its rich help for it
_EXITS = (typer.Exit, typer.Abort, *_exception_types("Exit"), *_exception_types("Abort"))


class _LlaraGroup(typer.core.TyperGroup):
    """Formats library errors once, for every command: one line, exit code from the error, no traceback."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _HELP_EXCEPTIONS:
            raise
        except _CLICK_EXCEPTIONS as error:  # a usage error in the root options: the same plain message
            error.show()
            raise typer.Exit(error.exit_code) from None

    def invoke(self, ctx):
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
        except _HELP_EXCEPTIONS:
            raise
        except _CLICK_EXCEPTIONS as error:  # click's own plain message: usage, then one 'Error: ...' line
            error.show()
            ctx.exit(error.exit_code)
        except _EXITS:
            raise
        except Exception as error:
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
        bool | None, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """LLaRA: LLM adapted for dense retrieval."""
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from llara_cli.runtime.threads import configure_threads

    configure_threads()  # once per command, before torch, faiss or tokenizers start their pools


def _register_commands() -> None:
    from llara_cli.cli import adapt, demo, encode, env, evaluate, export, finetune, index, mine, search, serve

    for module in (adapt, finetune, mine, encode, index, search, serve, evaluate, export, demo, env):
        module.register(app)


_register_commands()


def main() -> None:
    """Console entry point."""
    app()
