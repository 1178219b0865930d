"""What the CLI tests share: ``invoke`` runs ``llara ARGS...`` in process through Typer's ``CliRunner``."""
from __future__ import annotations

from typer.testing import CliRunner, Result

from llara_cli.cli.app import app


def invoke(*args: object, **kwargs: object) -> Result:
    """``llara ARGS...`` (each argument ``str()``-ed); ``kwargs`` go to ``CliRunner.invoke`` (``input=...``)."""
    return CliRunner().invoke(app, [str(arg) for arg in args], **kwargs)
