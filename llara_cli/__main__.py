"""``python -m llara_cli`` runs the CLI (the same as the ``llara`` console script)."""
from llara_cli.cli.app import main

main()
