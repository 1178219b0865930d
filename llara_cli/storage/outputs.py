"""The output guard every command uses: never overwrite an input, never replace a file or foreign directory
without being asked."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from llara_cli.errors import UsageError

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"  # atomic_write's temp files: ``.<name>.<random>.tmp``
# What is read from an input directory: BEIR files, a faiss index, an embedding set, a BM25 manifest.
FILES_READ_FROM_DIRECTORIES = (
    "corpus.jsonl", "corpus.jsonl.gz", "queries.jsonl", "queries.jsonl.gz", "qrels/*.tsv",
    "index", "docid", "meta.json", "embeddings.npy", "ids.txt", "llara_bm25.json",
)
ENTRIES_SHOWN = 5


def _same_path(first: Path, second: Path) -> bool:
    try:
        if first.exists() and second.exists():
            return first.samefile(second)
    except OSError:
        pass
    return first.expanduser().resolve() == second.expanduser().resolve()


def _input_files(given: Path) -> list[Path]:
    """The files an input path stands for: itself, or for a directory the files read from it."""
    if not given.is_dir():
        return [given]
    return [path for pattern in FILES_READ_FROM_DIRECTORIES for path in given.glob(pattern)]


def check_output_file(out: str | Path, inputs: Iterable[str | Path | None], overwrite: bool) -> None:
    """Refuse an output file that is one of ``inputs`` or a file read from an input directory (even with
    ``overwrite``), a directory, or an existing file unless ``overwrite``."""
    out = Path(out)
    for given in inputs:
        if given is None:
            continue
        for input_file in _input_files(Path(given)):
            if _same_path(out, input_file):
                raise UsageError(f"output {out} is also an input ({input_file}): write it elsewhere")
    if out.is_dir():
        raise UsageError(f"output {out} is a directory: give a file name")
    if out.exists() and not overwrite:
        raise UsageError(f"{out} already exists (pass --overwrite to replace it)")


def check_own_directory(directory: str | Path, own_names: Iterable[str], what: str) -> None:
    """Refuse writing into an existing directory holding entries that ``what`` does not write itself.

    ``own_names`` are the names the writer creates; hidden temp files (``.*.tmp``) count as its own.
    """
    directory = Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    own = set(own_names)
    foreign = sorted(
        entry.name for entry in directory.iterdir()
        if entry.name not in own and not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX))
    )
    if foreign:
        shown = ", ".join(foreign[:ENTRIES_SHOWN]) + (", ..." if len(foreign) > ENTRIES_SHOWN else "")
        raise UsageError(f"{directory} is not empty and is not {what} (holds {shown}): choose another output directory")


def remove_leftovers(directory: str | Path, pattern: str) -> None:
    """Delete what killed writers left (temp files or directories matching ``pattern`` in ``directory``).

    Call it only while holding the output's lock: then no live writer owns any of them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return
    for leftover in directory.glob(pattern):
        logger.info("removing %s, left by an interrupted write", leftover)
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
