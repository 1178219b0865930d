"""The one error type of the library: a message meant for the user, printed in one line by the CLI."""
from __future__ import annotations

EXIT_RUNTIME_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class LlaraError(Exception):
    """A failure the user can act on (missing model, Java absent, mismatched index...).

    The message is complete on its own: the CLI prints it as one line, without a traceback.
    """

    exit_code = EXIT_RUNTIME_FAILURE


class UsageError(LlaraError):
    """Bad input or bad usage: malformed file, unknown id, conflicting options."""

    exit_code = EXIT_BAD_INPUT
