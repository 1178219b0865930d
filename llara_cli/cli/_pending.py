"""Commands whose implementation has not landed yet say so plainly and exit non-zero."""
from __future__ import annotations

from llara_cli.errors import LlaraError


def not_yet_available(command: str, issue: int) -> None:
    raise LlaraError(f"`llara {command}` is not implemented yet (tracked in issue #{issue})")
