"""Lock files, so two processes never write the same output: one inside an output directory, or one beside
an output that is renamed into place as a whole."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from llara_cli.errors import LlaraError

LOCK_FILE = ".llara.lock"
SIBLING_LOCK_TEMPLATE = ".{name}.llara.lock"


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine."""
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
def _hold(lock: Path, target: Path) -> Iterator[None]:
    """Hold ``lock`` for ``target``; a live holder is refused, a dead one's lock is taken over."""
    for _attempt in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            owner = _read_owner(lock)
            if owner is not None and owner != os.getpid() and process_alive(owner):
                raise LlaraError(f"{target} is being written by another llara process (pid {owner})") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
        except OSError as error:
            raise LlaraError(f"cannot write in {lock.parent}: {error.strerror or error}") from None
    else:
        raise LlaraError(f"could not lock {target}")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LlaraError(f"cannot create {directory}: {error.strerror or error}") from None


@contextlib.contextmanager
def output_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``directory/.llara.lock`` while writing into ``directory`` (created if missing)."""
    directory = Path(directory)
    _make_directory(directory)
    with _hold(directory / LOCK_FILE, directory):
        yield


@contextlib.contextmanager
def sibling_lock(target: str | Path) -> Iterator[None]:
    """Hold ``.<name>.llara.lock`` beside ``target``, for outputs built elsewhere and renamed onto ``target``."""
    target = Path(target)
    _make_directory(target.parent)
    with _hold(target.parent / SIBLING_LOCK_TEMPLATE.format(name=target.name), target):
        yield
