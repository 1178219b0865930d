"""Lock files, so two processes never write the same output: one inside an output directory, or one beside
an output that is renamed into place as a whole.

The lock is the kernel's ``fcntl.flock`` on the file (exclusive, non-blocking), not the file's existence: two
processes can never both hold it, and a dead writer's lock is released by the kernel. The file holds the
holder's pid only to name it in the refusal."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from llara_cli.errors import LlaraError

LOCK_FILE = ".llara.lock"
SIBLING_LOCK_TEMPLATE = ".{name}.llara.lock"
LOCK_FILE_MODE = 0o644


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


def _is_current(descriptor: int, lock: Path) -> bool:
    """Whether the open lock file is still the one at ``lock`` (a releasing holder unlinks it)."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(lock))
    except FileNotFoundError:
        return False


def _acquire(lock: Path, target: Path) -> int:
    """An open descriptor of ``lock`` holding its exclusive ``flock``; a live holder is refused."""
    while True:
        try:
            # never through a symlink (a planted link would have the pid written over its target), never a FIFO
            descriptor = os.open(lock, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, LOCK_FILE_MODE)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise LlaraError(f"{lock} is a symbolic link, not llara's lock file: remove it") from None
            raise LlaraError(f"cannot write in {lock.parent}: {error.strerror or error}") from None
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise LlaraError(f"{lock} is not a regular file, not llara's lock file: remove it")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            owner = _read_owner(lock)
            whose = f"pid {owner}" if owner is not None else "a process starting up"
            raise LlaraError(f"{target} is being written by another llara process ({whose}, holding {lock}); "
                             "wait for it to finish or stop it: the lock ends with its process") from None
        except OSError as error:
            os.close(descriptor)
            raise LlaraError(f"cannot lock {lock}: {error.strerror or error}") from None
        if _is_current(descriptor, lock):
            return descriptor
        os.close(descriptor)  # the previous holder removed this file as we opened it: take the new one


@contextlib.contextmanager
def _hold(lock: Path, target: Path) -> Iterator[None]:
    """Hold ``lock`` for ``target`` with ``fcntl.flock``: the kernel admits one holder, and the lock ends with
    its process (a killed writer leaves a file, never a held lock; a recycled pid is never mistaken for it)."""
    descriptor = _acquire(lock, target)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())  # whose lock it is, for the message above
        yield
    finally:
        if _is_current(descriptor, lock):
            lock.unlink(missing_ok=True)  # still holding it: nobody else can have replaced the file
        os.close(descriptor)


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
