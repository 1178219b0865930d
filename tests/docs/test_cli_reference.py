from __future__ import annotations

import importlib.util

from tests.conftest import REPO_ROOT


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_cli_docs", REPO_ROOT / "scripts" / "generate_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_app():
    generator = load_generator()
    assert generator.CLI_REFERENCE.read_text() == generator.render_cli_reference(), (
        "docs/cli.md is stale: run `python scripts/generate_cli_docs.py`"
    )


def test_every_command_help_has_an_example():
    generator = load_generator()
    from llara_cli.cli.app import app

    for command in app.registered_commands:
        description = generator.help_text(command.name).split("Usage:", 1)[1].split("\n", 1)[1]
        assert "Example" in description and f"llara {command.name}" in description, command.name
