"""Collection names for ``--qrels``, ``--queries`` and ``--corpus``: resolved to local files, never downloaded.

An existing path always wins. Otherwise a name is looked up under the data roots, in order:
``$LLARA_DATA`` (when set), then ``~/.cache/llara/data``. Expected layout under a data root::

    msmarco-passage/qrels.dev.small.tsv        names: msmarco, msmarco-passage, msmarco-passage-dev
    msmarco-passage/queries.dev.small.tsv      (MS MARCO passage ranking, dev "small" set: 6,980 queries)
    msmarco-passage/collection.tsv             pid<TAB>passage
    msmarco-doc/msmarco-docdev-qrels.tsv       names: msmarco-doc, msmarco-doc-dev
    msmarco-doc/msmarco-docdev-queries.tsv
    msmarco-doc/msmarco-docs.tsv               docid<TAB>url<TAB>title<TAB>body
    beir/<name>/qrels/<split>.tsv              names: beir/<name> (an unzipped BEIR dataset; beir/cqadupstack/android)
    beir/<name>/queries.jsonl
    beir/<name>/corpus.jsonl
    <name>/qrels/<split>.tsv                   names: scifact, cacm, cranfield (the bundled collections,
    <name>/queries.jsonl                       same layout as BEIR)
    <name>/corpus.jsonl

Each file may also be gzipped (``<file>.gz``). ``split`` selects the qrels of BEIR-layout collections; the
MS MARCO names always mean the dev set.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from llara_cli.data.corpus import BEIR_CORPUS_FILE, BEIR_QUERIES_FILE
from llara_cli.data.qrels import DEFAULT_BEIR_SPLIT, resolve_qrels_file
from llara_cli.errors import UsageError
from llara_cli.storage.files import GZIP_SUFFIX

DATA_ENV = "LLARA_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/llara/data")
BEIR_PREFIX = "beir/"
BEIR_DIR = "beir"
BUNDLED_COLLECTIONS = ("scifact", "cacm", "cranfield")
BEIR_QRELS_TEMPLATE = "qrels/{split}.tsv"


class Part(str, Enum):
    QRELS = "qrels"
    QUERIES = "queries"
    CORPUS = "corpus"


@dataclass(frozen=True)
class MsMarcoLayout:
    directory: str
    source: str
    files: dict[Part, str]


MSMARCO_PASSAGE = MsMarcoLayout(
    directory="msmarco-passage",
    source="the MS MARCO passage ranking dev set",
    files={
        Part.QRELS: "qrels.dev.small.tsv",
        Part.QUERIES: "queries.dev.small.tsv",
        Part.CORPUS: "collection.tsv",
    },
)
MSMARCO_DOC = MsMarcoLayout(
    directory="msmarco-doc",
    source="the MS MARCO document ranking dev set",
    files={
        Part.QRELS: "msmarco-docdev-qrels.tsv",
        Part.QUERIES: "msmarco-docdev-queries.tsv",
        Part.CORPUS: "msmarco-docs.tsv",
    },
)
MSMARCO_NAMES = {
    "msmarco": MSMARCO_PASSAGE,
    "msmarco-passage": MSMARCO_PASSAGE,
    "msmarco-passage-dev": MSMARCO_PASSAGE,
    "msmarco-doc": MSMARCO_DOC,
    "msmarco-doc-dev": MSMARCO_DOC,
}
KNOWN_NAMES = (*MSMARCO_NAMES, *BUNDLED_COLLECTIONS, "beir/<name>")


def data_roots() -> list[Path]:
    """Where collection names are looked up, in order: ``$LLARA_DATA`` (if set), ``~/.cache/llara/data``."""
    roots = []
    configured = os.environ.get(DATA_ENV, "").strip()
    if configured:
        roots.append(Path(configured).expanduser())
    roots.append(DEFAULT_DATA_ROOT.expanduser())
    return roots


def _relative_file(name: str, part: Part, split: str) -> tuple[str, str] | None:
    """``(path relative to a data root, what to put there)`` for a known name, None for an unknown one."""
    key = name.lower()
    if key in MSMARCO_NAMES:
        layout = MSMARCO_NAMES[key]
        file_name = layout.files[part]
        return f"{layout.directory}/{file_name}", f"{file_name} (from {layout.source})"
    if key.startswith(BEIR_PREFIX) and name[len(BEIR_PREFIX):].strip("/"):
        dataset = name[len(BEIR_PREFIX):].strip("/")
        directory, source = f"{BEIR_DIR}/{dataset}", f"the unzipped BEIR dataset '{dataset}'"
    elif key in BUNDLED_COLLECTIONS:
        directory, source = key, f"the '{key}' collection in BEIR layout"
    else:
        return None
    file_name = {
        Part.QRELS: BEIR_QRELS_TEMPLATE.format(split=split),
        Part.QUERIES: BEIR_QUERIES_FILE,
        Part.CORPUS: BEIR_CORPUS_FILE,
    }[part]
    return f"{directory}/{file_name}", f"{file_name} (from {source})"


def _find(relative: str) -> Path | None:
    for root in data_roots():
        for candidate in (root / relative, root / f"{relative}{GZIP_SUFFIX}"):
            if candidate.is_file():
                return candidate
    return None


def resolve_collection_file(name_or_path: str | Path, part: Part | str, split: str = DEFAULT_BEIR_SPLIT) -> Path:
    """The file behind ``name_or_path`` for ``part`` (qrels, queries or corpus); see the module docstring.

    An existing path is returned as is (a BEIR directory stays a directory for the readers, except for qrels,
    which become ``qrels/<split>.tsv``). A known name whose file is missing, or an unknown name, raises
    UsageError saying which file to put where.
    """
    part = Part(part)
    path = Path(name_or_path).expanduser()
    if path.exists():
        return resolve_qrels_file(path, split) if part is Part.QRELS else path
    name = str(name_or_path).strip()
    located = _relative_file(name, part, split)
    if located is None:
        raise UsageError(
            f"{part.value} {name!r}: no such file or directory, and not a known collection name "
            f"(known: {', '.join(KNOWN_NAMES)})"
        )
    relative, what = located
    found = _find(relative)
    if found is not None:
        return found
    roots = data_roots()
    hint = "" if os.environ.get(DATA_ENV, "").strip() else f" or set {DATA_ENV} to a directory holding {relative}"
    raise UsageError(f"{part.value} {name!r} not found: put {what} at {roots[0] / relative}{hint}")


def resolve_qrels(name_or_path: str | Path, split: str = DEFAULT_BEIR_SPLIT) -> Path:
    """The qrels file for a path or a collection name (``msmarco``, ``beir/nfcorpus``, ``cranfield``, ...)."""
    return resolve_collection_file(name_or_path, Part.QRELS, split)


def resolve_queries(name_or_path: str | Path) -> Path:
    """The queries file (or BEIR directory) for a path or a collection name."""
    return resolve_collection_file(name_or_path, Part.QUERIES)


def resolve_corpus(name_or_path: str | Path) -> Path:
    """The corpus file (or BEIR directory) for a path or a collection name."""
    return resolve_collection_file(name_or_path, Part.CORPUS)
