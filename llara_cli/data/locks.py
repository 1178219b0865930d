"""A lock file per output directory, so two processes never write the same output."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from llara_cli.errors import LlaraError

LOCK_FILE = ".llara.lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def output_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``directory/.llara.lock`` while writing; a live holder is refused, a dead one's lock is taken over."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LlaraError(f"cannot create {directory}: {error.strerror or error}") from None
    lock = directory / LOCK_FILE
    for _attempt in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _read_owner(lock)
            if owner is not None and owner != os.getpid() and _process_alive(owner):
                raise LlaraError(f"{directory} is being written by another llara process (pid {owner})") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
        except OSError as error:
            raise LlaraError(f"cannot write in {directory}: {error.strerror or error}") from None
    else:
        raise LlaraError(f"could not lock {directory}")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
