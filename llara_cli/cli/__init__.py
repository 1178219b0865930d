"""The ``llara`` command line: a root Typer app and one thin module per command over the library."""
