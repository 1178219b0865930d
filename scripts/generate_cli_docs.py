"""Write docs/cli.md from the Typer app's own --help texts (tests/docs/test_cli_reference.py keeps it in sync).

    python scripts/generate_cli_docs.py          # rewrite docs/cli.md
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

CLI_REFERENCE = REPO_ROOT / "docs" / "cli.md"
HELP_WIDTH = "100"
HEADER = """# CLI reference

Generated from the `llara` Typer app by `python scripts/generate_cli_docs.py`; a test fails when it is stale.
"""


def help_text(*args: str) -> str:
    from typer.testing import CliRunner

    from llara_cli.cli.app import app

    # COLUMNS, not TERMINAL_WIDTH: typer reads TERMINAL_WIDTH once, when typer.rich_utils is first imported, so
    # setting it here froze every later --help in the same process at this width (the docs-run test's examples
    # wrapped when this ran first).
    environment = {"COLUMNS": HELP_WIDTH, "NO_COLOR": "1",
                   "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    result = CliRunner().invoke(app, [*args, "--help"], env=environment, color=False)
    if result.exit_code != 0:
        raise RuntimeError(f"llara {' '.join(args)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


def render_cli_reference() -> str:
    from llara_cli.cli.app import app

    sections = [HEADER, "## llara\n", f"```\n{help_text()}\n```\n"]
    for command in app.registered_commands:
        name = command.name
        sections += [f"## llara {name}\n", f"```\n{help_text(name)}\n```\n"]
    return "\n".join(sections)


def main() -> None:
    CLI_REFERENCE.write_text(render_cli_reference())
    print(f"wrote {CLI_REFERENCE}")


if __name__ == "__main__":
    main()
