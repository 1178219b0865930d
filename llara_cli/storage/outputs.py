"""The output guard every command uses: never overwrite an input, never replace a file or foreign directory
without being asked."""
from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from llara_cli.errors import UsageError
from llara_cli.storage.files import check_regular_target
from llara_cli.storage.locks import sibling_lock

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


def check_parent_is_directory(out: Path) -> None:
    """Refuse an output whose parent path runs through a regular file (``afile/x.trec``), naming that file."""
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"cannot write {out}: {parent} is not a directory")
            return


def check_output_file(out: str | Path, inputs: Iterable[str | Path | None], overwrite: bool) -> None:
    """Refuse an output file that is one of ``inputs`` or a file read from an input directory (even with
    ``overwrite``), a directory, a special file (device, FIFO, socket), an output under a regular file, or an
    existing file unless ``overwrite``."""
    out = Path(out)
    check_parent_is_directory(out)
    check_regular_target(out)
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


class OutputKind(str, Enum):
    """The kinds of directory llara writes; ``--overwrite`` replaces a directory only of the same kind."""

    EMBEDDINGS = "embeddings"
    FAISS_INDEX = "faiss-index"
    BM25_INDEX = "bm25-index"
    MODEL = "model"


@dataclass(frozen=True)
class _KindRule:
    what: str  # "an llara faiss index", as messages say it
    marker: str  # the file llara writes into every such directory
    marker_keys: tuple[str, ...]  # fields the marker (JSON) must hold
    entries: tuple[str, ...]  # the names (glob patterns) such a directory may hold; anything else is foreign


MODEL_ENTRIES = (
    "config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer*",
    "special_tokens_map.json", "added_tokens.json", "chat_template*", "vocab*", "merges.txt", "*.model",
    "llara_config.json", "adapt_config.json", "finetune_config.json", "adapter_config.json", "train_log.jsonl",
    "README.md", "checkpoints",
    "query_prompt_choice.json",  # training.query_prompt_choice.CHOICE_FILE (llara adapt)
)
KIND_RULES = {
    OutputKind.EMBEDDINGS: _KindRule("an llara embedding directory", "meta.json", ("side", "dim"),
                                     ("meta.json", "embeddings.npy", "ids.txt", "chunks", "progress.json",
                                      "shard-*", ".llara.lock")),
    OutputKind.FAISS_INDEX: _KindRule("an llara faiss index", "meta.json", ("index_type", "index_params"),
                                      ("index", "docid", "meta.json", "whitening*", "pca",
                                       "binary_thresholds.npy",  # index.quantized: a binary index's sign thresholds
                                       "vectors.npy")),  # index.rescore_store: the float copy for rescoring
    OutputKind.BM25_INDEX: _KindRule("an llara BM25 index", "llara_bm25.json", ("kind", "corpus"), ("*",)),
    OutputKind.MODEL: _KindRule("an llara model", "llara_config.json", (), MODEL_ENTRIES),
}


def _marker_holds(path: Path, keys: tuple[str, ...]) -> bool:
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(payload, dict) and all(key in payload for key in keys)


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith((TEMP_SUFFIX, ".lock"))


def _contains(outer: Path, inner: Path) -> bool:
    outer, inner = outer.expanduser().resolve(), inner.expanduser().resolve()
    return outer == inner or outer in inner.parents


def check_output_directory(out: str | Path, kind: OutputKind, inputs: Iterable[str | Path | None],
                           overwrite: bool) -> None:
    """The one rule for every command that writes a directory.

    ``out`` may be missing or empty. An existing one is replaced only with ``overwrite``, and only when llara
    wrote it for the same kind of output (its marker file, nothing foreign beside it). It is never one of
    ``inputs`` or a directory holding one of them, even with ``overwrite``; a special file is refused.
    """
    out = Path(out)
    rule = KIND_RULES[OutputKind(kind)]
    check_parent_is_directory(out)
    for given in inputs:
        if given is not None and str(given) and Path(given).exists() and _contains(out, Path(given)):
            raise UsageError(f"output {out} would replace the input {given}: write it elsewhere")
    if out.is_symlink():  # replacing it would replace the link, not what it points to: say so
        raise UsageError(f"{out} is a symbolic link (to {os.readlink(out)}): give the directory itself")
    if out.exists() and not out.is_dir():
        check_regular_target(out)
        raise UsageError(f"{out}: exists and is not a directory")
    if not out.exists():
        return
    entries = sorted(entry.name for entry in out.iterdir() if not _is_temp(entry.name))
    if not entries:
        return
    if not overwrite:
        raise UsageError(f"{out}: already exists (pass --overwrite to replace it)")
    foreign = [name for name in entries if not any(fnmatch.fnmatch(name, pattern) for pattern in rule.entries)]
    if not (out / rule.marker).is_file() or not _marker_holds(out / rule.marker, rule.marker_keys) or foreign:
        listed = foreign or entries
        shown = ", ".join(listed[:ENTRIES_SHOWN]) + (", ..." if len(listed) > ENTRIES_SHOWN else "")
        raise UsageError(f"{out} is not {rule.what} (holds {shown}): --overwrite replaces only what llara wrote "
                         "for this command; remove it yourself or choose another output")


@contextlib.contextmanager
def writing_output_file(out: str | Path) -> Iterator[None]:
    """Hold the lock beside the output file ``out`` and remove the temp files that killed writers of the same
    output left (``.<name>.*.tmp``): a run killed while writing never leaves its temp file behind for good."""
    out = Path(out)
    with sibling_lock(out):
        remove_leftovers(out.parent, f".{glob_escape(out.name)}.*{TEMP_SUFFIX}")
        yield


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in name)
