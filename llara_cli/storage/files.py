"""Reading (plain or gzip) and writing files safely: every write goes to a temp file and is renamed into place."""
from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from llara_cli.errors import LlaraError, UsageError

GZIP_SUFFIX = ".gz"
DEFAULT_FILE_MODE = 0o666  # like open(): the umask decides, not mkstemp's private 0600
BYTE_ORDER_MARK = "\ufeff"  # some editors start UTF-8 files with it; every reader drops it
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SYSTEM_ROOTS = (Path("/dev"), Path("/proc"), Path("/sys"))  # devices and kernel files: never an output
SHARED_MEMORY = Path("/dev/shm")  # a tmpfs: an ordinary place for files
SHORT_WRITE_WORDS = ("requested and", "written")  # numpy's tofile() message for a short write (disk full)


HASH_BLOCK_BYTES = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in ``HASH_BLOCK_BYTES`` blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently gunzipping ``*.gz``; missing file -> UsageError."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        return gzip.open(path, "rb") if path.suffix == GZIP_SUFFIX else open(path, "rb")
    except OSError as error:
        raise UsageError(f"{path}: cannot read ({error.strerror or error})") from None


def open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file for reading (gzip aware); a leading byte-order mark is dropped."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", newline="")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, line ending stripped); undecodable bytes name the line.

    A byte-order mark at the start of the file is dropped, so it never sticks to the first id.
    """
    path = Path(path)
    with open_binary(path) as handle:
        line_number = 0
        try:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise UsageError(f"{path}:{line_number}: not valid UTF-8 ({error.reason})") from None
                if line_number == 1:
                    line = line.removeprefix(BYTE_ORDER_MARK)
                yield line_number, line.rstrip("\r\n")
        except (OSError, EOFError) as error:
            raise UsageError(f"{path}:{line_number + 1}: unreadable ({error})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each line; empty or malformed lines raise naming file and line."""
    for line_number, line in iter_lines(path):
        if not line.strip():
            raise UsageError(f"{path}:{line_number}: empty line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{line_number}: malformed JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
        yield line_number, record


def check_regular_target(out: str | Path) -> None:
    """Refuse an output that is not, or would not be, a regular file: a device, a FIFO, a socket, a link to one
    (``/dev/stdout``), any path under ``/dev`` (but ``/dev/shm``), ``/proc`` or ``/sys``. Replacing one by a file
    would destroy it (as root, ``/dev/null`` itself)."""
    out = Path(out)
    for path in (out.absolute(), out.resolve()):
        if any(path == root or root in path.parents for root in SYSTEM_ROOTS) and not (
                path == SHARED_MEMORY or SHARED_MEMORY in path.parents):
            raise UsageError(f"{out} is under {path.parts[0]}{path.parts[1]}: llara writes its outputs as regular "
                             "files, not into device or process paths")
    try:
        mode = out.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        return  # reported by the caller, which knows whether it writes a file or a directory
    if not stat.S_ISREG(mode):
        kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise UsageError(f"{out} is {kind}, not a regular file: llara writes its outputs as regular files only")


def write_error(path: str | Path, error: OSError) -> LlaraError:
    """The one-line error for a failed write; a full disk (or quota) says so and names the directory."""
    path = Path(path)
    message = str(error)
    if error.errno in SPACE_ERRNOS or all(word in message for word in SHORT_WRITE_WORDS):
        return LlaraError(f"no space left on {path.parent} while writing {path.name} ({error.strerror or message})")
    return LlaraError(f"cannot write {path}: {error.strerror or error}")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Write ``path`` through a temp file in the same directory, renamed into place only on success.

    An interrupted or failed write leaves any previous file untouched and no partial file behind.
    ``mode`` is ``"w"`` (UTF-8 text) or ``"wb"``; a ``.gz`` target is gzip-compressed.
    """
    path = Path(path)
    check_regular_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    temp_path = Path(temp_name)
    try:
        os.chmod(temp_path, DEFAULT_FILE_MODE & ~_current_umask())
        with os.fdopen(descriptor, "wb") as raw:
            target: IO = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if path.suffix == GZIP_SUFFIX else raw
            handle = io.TextIOWrapper(target, encoding="utf-8", newline="\n") if "b" not in mode else target
            yield handle
            handle.flush()
            if handle is not target:
                handle.detach()  # the raw file is closed below, not by the wrapper's finaliser
            if target is not raw:
                target.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp_path, path)
    except OSError as error:
        temp_path.unlink(missing_ok=True)
        raise write_error(path, error) from None
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, payload: Any) -> None:
    """Atomically write ``payload`` as pretty JSON."""
    with atomic_write(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a malformed one raises a UsageError naming it."""
    with open_text(path) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{error.lineno}: malformed JSON ({error.msg})") from None
