"""A small judged known-item collection built offline from the Python standard library's own docstrings.

Every public module, class and function docstring of the stdlib *source* (parsed with :mod:`ast`, never
imported, so nothing runs, prints or hangs) becomes a document: ``_id`` = dotted qualified name
(``json.dumps``), ``title`` = ``""``, ``text`` = the docstring without its summary sentence. A seeded sample
of the summary sentences become the queries, each judged relevant (score 1) to the rest of its own docstring;
the other docstrings are distractors. The output is a BEIR directory, byte-identical across runs on the same
Python version::

    python -m llara_cli.demo.collection data/stdlib --max-documents 3000 --queries 300
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import platform
import random
import re
import shutil
import sys
import sysconfig
import tempfile
import tokenize
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llara_cli.data.corpus import BEIR_CORPUS_FILE, BEIR_QUERIES_FILE
from llara_cli.storage.files import atomic_write, read_json, write_json
from llara_cli.data.qrels import DEFAULT_BEIR_SPLIT
from llara_cli.errors import LlaraError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_MAX_DOCUMENTS = 3000
DEFAULT_N_QUERIES = 300
DEFAULT_SEED = 13

MIN_SUMMARY_WORDS = 3  # shorter summaries ("Constructor.") do not identify a docstring
MAX_SUMMARY_WORDS = 32  # a longer "summary" is a paragraph, not a query
MIN_SUMMARY_PROSE_FRACTION = 0.5  # "FileInput([files[, inplace]], *, mode=None)" is a signature, not a query
MIN_BODY_WORDS = 10  # shorter bodies are too thin to be a document
MAX_CODE_LINE_FRACTION = 0.5  # bodies that are mostly doctest sessions are dropped
RELEVANCE = 1

# Top-level modules that are GUIs, demos, test suites, easter eggs or bundled third-party tools.
EXCLUDED_MODULES = frozenset({
    "antigravity", "ensurepip", "idlelib", "lib2to3", "test", "this", "tkinter", "turtle", "turtledemo",
})
# Sub-packages holding test suites (``ctypes/test``, ``unittest/test``, ``idlelib/idle_test``...).
EXCLUDED_SUBPACKAGES = frozenset({"test", "tests", "idle_test"})
DOCTEST_PROMPT = ">>>"
SENTENCE_END = re.compile(r"[.!?]\s+")
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "no.", "resp."})
NON_WORD = re.compile(r"[^a-z0-9]+")
PROSE_WORD = re.compile(r"[A-Za-z][a-z'-]*[.,;:!?]?")

QRELS_DIR = "qrels"
QRELS_HEADER = "query-id\tcorpus-id\tscore\n"
STATS_FILE = "collection.json"
README_FILE = "README.md"
COLLECTION_KIND = "llara-stdlib-docstrings"
QUERY_ID_PREFIX = "q"
DIRECTORY_MODE = 0o755

PACKAGE_INIT = "__init__.py"
SOURCE_SUFFIX = ".py"
DEFINITION_NODES = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class Docstring:
    """One docstring split into its summary sentence and its body (the document text)."""

    doc_id: str
    summary: str  # whitespace-normalised
    body: str  # whitespace-normalised, summary removed
    code_line_fraction: float


@dataclass(frozen=True)
class CollectionStats:
    """What :func:`build_stdlib_collection` wrote; saved as ``collection.json``."""

    kind: str
    python_version: str
    split: str
    seed: int
    max_documents: int
    n_queries_requested: int
    n_documents: int
    n_queries: int
    n_qrels: int
    n_source_files: int
    n_unparsable_files: int
    n_docstrings: int
    n_pool_documents: int
    n_query_candidates: int
    dropped: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# Walking the stdlib source


def stdlib_source_dir() -> Path:
    """The directory holding the pure-Python standard library of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def iter_stdlib_sources(root: Path, modules: Sequence[str] | None = None) -> Iterator[tuple[str, Path]]:
    """Yield ``(dotted_module_name, source_path)`` for public stdlib modules, in sorted order.

    Only names in ``sys.stdlib_module_names`` are considered (so ``site-packages`` never leaks in); modules
    implemented in C have no source and are skipped. ``modules`` restricts the walk to those top-level names.
    """
    names = sorted(sys.stdlib_module_names if modules is None else set(modules))
    for name in names:
        if not _is_public(name) or name in EXCLUDED_MODULES:
            continue
        module_file = root / f"{name}{SOURCE_SUFFIX}"
        package_dir = root / name
        if module_file.is_file():
            yield name, module_file
        elif (package_dir / PACKAGE_INIT).is_file():
            yield from _iter_package(name, package_dir)


def _iter_package(dotted: str, directory: Path) -> Iterator[tuple[str, Path]]:
    yield dotted, directory / PACKAGE_INIT
    entries = sorted(directory.iterdir(), key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_file() and entry.suffix == SOURCE_SUFFIX and _is_public(entry.name):
            yield f"{dotted}.{entry.stem}", entry
    for entry in entries:
        if (entry.is_dir() and _is_public(entry.name) and entry.name not in EXCLUDED_SUBPACKAGES
                and (entry / PACKAGE_INIT).is_file()):
            yield from _iter_package(f"{dotted}.{entry.name}", entry)


def parse_source(path: Path) -> ast.Module | None:
    """Parse a source file without executing it; unreadable or invalid files give ``None``."""
    try:
        with tokenize.open(path) as handle:  # honours PEP 263 encoding declarations
            source = handle.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes in old modules
            return ast.parse(source, filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as error:
        logger.debug("skipping %s: %s", path, error)
        return None


def iter_docstrings(module_name: str, tree: ast.Module) -> Iterator[tuple[str, str]]:
    """Yield ``(qualified_name, cleaned_docstring)`` for the module, its public classes and functions.

    Methods (including dunders such as ``__init__``) and nested classes are walked; functions defined
    inside functions are local helpers and are not.
    """
    docstring = ast.get_docstring(tree, clean=True)
    if docstring:
        yield module_name, docstring
    yield from _iter_definitions(module_name, tree.body)


def _iter_definitions(prefix: str, body: list[ast.stmt]) -> Iterator[tuple[str, str]]:
    for node in body:
        if not isinstance(node, DEFINITION_NODES):
            continue
        is_dunder = node.name.startswith("__") and node.name.endswith("__")
        if not _is_public(node.name) and not is_dunder:
            continue
        qualified_name = f"{prefix}.{node.name}"
        docstring = ast.get_docstring(node, clean=True)
        if docstring:
            yield qualified_name, docstring
        if isinstance(node, ast.ClassDef):
            yield from _iter_definitions(qualified_name, node.body)


# ---------------------------------------------------------------------------------------------------------
# Splitting and filtering docstrings


def normalize_space(text: str) -> str:
    return " ".join(text.split())


def match_key(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used to detect duplicates and leaks."""
    return " ".join(NON_WORD.sub(" ", text.lower()).split())


def _first_sentence_end(paragraph: str) -> int | None:
    """Index just after the first sentence of a whitespace-normalised paragraph, or None if it is one sentence."""
    for match in SENTENCE_END.finditer(paragraph):
        last_word = paragraph[:match.start() + 1].rsplit(" ", 1)[-1].lower()
        if last_word in ABBREVIATIONS:
            continue
        return match.start() + 1
    return None


def code_line_fraction(lines: Sequence[str]) -> float:
    """Share of non-blank lines inside doctest sessions: from a ``>>>`` prompt to the next blank line."""
    non_blank = 0
    in_session = False
    code = 0
    for line in lines:
        stripped = line.strip()
        if not stripped:
            in_session = False
            continue
        non_blank += 1
        if stripped.startswith(DOCTEST_PROMPT):
            in_session = True
        if in_session:
            code += 1
    return code / non_blank if non_blank else 0.0


def split_docstring(doc_id: str, docstring: str) -> Docstring:
    """Split a cleaned docstring into summary (first sentence of the first paragraph) and body (the rest)."""
    paragraphs = re.split(r"\n\s*\n", docstring.strip(), maxsplit=1)
    first = normalize_space(paragraphs[0])
    rest_lines = paragraphs[1].splitlines() if len(paragraphs) > 1 else []
    end = _first_sentence_end(first)
    if end is None:
        summary, first_rest = first, ""
    else:
        summary, first_rest = first[:end], first[end:].strip()
    body = normalize_space(" ".join([first_rest, *rest_lines]))
    return Docstring(doc_id, summary, body, code_line_fraction(rest_lines))


def _is_query_candidate(docstring: Docstring) -> bool:
    """A usable summary: a short prose sentence (not a signature) that its own body does not repeat."""
    words = docstring.summary.split()
    n_prose = sum(1 for word in words if PROSE_WORD.fullmatch(word))
    return (MIN_SUMMARY_WORDS <= len(words) <= MAX_SUMMARY_WORDS
            and n_prose >= MIN_SUMMARY_WORDS
            and n_prose >= MIN_SUMMARY_PROSE_FRACTION * len(words)
            and match_key(docstring.summary) not in match_key(docstring.body))


@dataclass
class _Pool:
    documents: list[Docstring]
    summary_counts: Counter[str]
    n_source_files: int = 0
    n_unparsable_files: int = 0
    n_docstrings: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def collect_docstrings(root: Path, modules: Sequence[str] | None = None) -> _Pool:
    """Parse the stdlib and keep every docstring that makes a usable document (sorted, deterministic)."""
    pool = _Pool(documents=[], summary_counts=Counter())
    seen_ids: set[str] = set()
    seen_bodies: set[str] = set()
    for module_name, path in iter_stdlib_sources(root, modules):
        pool.n_source_files += 1
        tree = parse_source(path)
        if tree is None:
            pool.n_unparsable_files += 1
            continue
        for doc_id, text in iter_docstrings(module_name, tree):
            pool.n_docstrings += 1
            docstring = split_docstring(doc_id, text)
            pool.summary_counts[match_key(docstring.summary)] += 1  # over all docstrings: ambiguity anywhere
            reason = _drop_reason(docstring, seen_ids, seen_bodies)
            if reason:
                pool.dropped[reason] += 1
                continue
            seen_ids.add(doc_id)
            seen_bodies.add(match_key(docstring.body))
            pool.documents.append(docstring)
    return pool


def _drop_reason(docstring: Docstring, seen_ids: set[str], seen_bodies: set[str]) -> str | None:
    if docstring.doc_id in seen_ids:
        return "duplicate_id"  # a name defined twice (``if``/``else`` branches): keep the first
    if len(docstring.body.split()) < MIN_BODY_WORDS:
        return "short_body"
    if docstring.code_line_fraction > MAX_CODE_LINE_FRACTION:
        return "mostly_doctest"
    if match_key(docstring.body) in seen_bodies:
        return "duplicate_body"  # e.g. logging.error repeats logging.critical: keep the first in sorted order
    return None


# ---------------------------------------------------------------------------------------------------------
# Sampling


def select_collection(
    pool: _Pool, max_documents: int, n_queries: int, seed: int,
) -> tuple[list[Docstring], list[Docstring], Counter[str], int]:
    """Pick the judged docstrings and the distractors with one seeded generator.

    Returns ``(documents sorted by id, judged docstrings in query order, query drop counts, n candidates)``.
    A candidate whose summary is shared by another docstring, or appears inside any other document, would have
    more than one right answer and is never a query.
    """
    rng = random.Random(seed)
    dropped: Counter[str] = Counter()
    candidates: list[Docstring] = []
    for docstring in pool.documents:
        if not _is_query_candidate(docstring):
            dropped["query_unusable_summary"] += 1
        elif pool.summary_counts[match_key(docstring.summary)] > 1:
            dropped["query_ambiguous_summary"] += 1
        else:
            candidates.append(docstring)
    # All bodies joined once (each wrapped in spaces, so matches fall on word boundaries): checking a summary
    # against every other document is then one search.
    keys = [f" {match_key(docstring.body)} " for docstring in pool.documents]
    haystack = "\n".join(keys)
    spans: dict[str, tuple[int, int]] = {}
    offset = 0
    for docstring, key in zip(pool.documents, keys):
        spans[docstring.doc_id] = (offset, offset + len(key))
        offset += len(key) + 1

    judged: list[Docstring] = []
    for docstring in rng.sample(candidates, len(candidates)):
        if len(judged) == n_queries:
            break
        if _appears_elsewhere(f" {match_key(docstring.summary)} ", haystack, spans[docstring.doc_id]):
            dropped["query_in_other_document"] += 1
            continue
        judged.append(docstring)

    judged_ids = {docstring.doc_id for docstring in judged}
    others = [docstring for docstring in pool.documents if docstring.doc_id not in judged_ids]
    n_distractors = min(len(others), max_documents - len(judged))
    distractors = rng.sample(others, n_distractors)
    documents = sorted([*judged, *distractors], key=lambda docstring: docstring.doc_id)
    return documents, judged, dropped, len(candidates)


def _appears_elsewhere(needle: str, haystack: str, own_span: tuple[int, int]) -> bool:
    own_start, own_end = own_span
    position = haystack.find(needle)
    while position != -1:
        if not own_start <= position < own_end:
            return True
        position = haystack.find(needle, position + 1)
    return False


# ---------------------------------------------------------------------------------------------------------
# Writing


def _query_ids(n_queries: int) -> list[str]:
    width = len(str(n_queries))
    return [f"{QUERY_ID_PREFIX}{index:0{width}d}" for index in range(1, n_queries + 1)]


def _write_jsonl(path: Path, records: list[dict[str, str]]) -> None:
    with atomic_write(path) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False))
            handle.write("\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _readme(stats: CollectionStats) -> str:
    return f"""# Python standard library docstrings: a known-item retrieval collection

Generated by `python -m llara_cli.demo.collection` (module `llara_cli.demo.collection`)
from the source of the Python {stats.python_version} standard library, parsed with `ast` (nothing imported).
Do not edit by hand; rebuild with the same Python version and parameters to get identical bytes.

- Parameters: max_documents={stats.max_documents}, queries={stats.n_queries_requested}, seed={stats.seed},
  split={stats.split}.
- `{BEIR_CORPUS_FILE}`: {stats.n_documents} documents. `_id` = dotted qualified name (`json.dumps`),
  `title` = "" (the name would give the answer away), `text` = the docstring without its summary sentence,
  whitespace-normalised.
- `{BEIR_QUERIES_FILE}`: {stats.n_queries} queries, each the summary sentence of one docstring.
- `{QRELS_DIR}/{stats.split}.tsv`: {stats.n_qrels} judgements, exactly one per query (score {RELEVANCE}): the
  rest of the same docstring. Every other document is an unjudged distractor.
- `{STATS_FILE}`: counts, filters applied, sha256 of every file.

Task: known-item retrieval (summary sentence -> docstring body); report MRR@10 and Recall@k.

Licence: the docstrings are part of CPython, distributed under the
Python Software Foundation License Version 2 (https://docs.python.org/3/license.html).
Copyright (c) 2001 Python Software Foundation; All Rights Reserved.
"""


def _check_parameters(max_documents: int, n_queries: int, split: str) -> None:
    if n_queries < 1:
        raise UsageError(f"number of queries must be at least 1, got {n_queries}")
    if max_documents < n_queries:
        raise UsageError(f"max_documents ({max_documents}) must be at least the number of queries ({n_queries})")
    if not split or os.sep in split or split.startswith("."):
        raise UsageError(f"split {split!r} must be a plain name such as 'test'")


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise UsageError(f"{out_dir}: directory is not empty (pass overwrite=True / --overwrite to replace it)")
    stats_path = out_dir / STATS_FILE
    previous = read_json(stats_path) if stats_path.is_file() else None
    if not isinstance(previous, dict) or previous.get("kind") != COLLECTION_KIND:
        raise UsageError(f"{out_dir}: not a collection built by this tool; refusing to replace it, remove it first")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``staging``; the old tree is only deleted once the new one is in place."""
    retired: Path | None = None
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
    try:
        os.replace(staging, out_dir)
    except OSError:
        if retired is not None:
            os.replace(retired / out_dir.name, out_dir)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def build_stdlib_collection(
    out_dir: str | Path,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
    seed: int = DEFAULT_SEED,
    split: str = DEFAULT_BEIR_SPLIT,
    n_queries: int = DEFAULT_N_QUERIES,
    *,
    overwrite: bool = False,
    modules: Sequence[str] | None = None,
) -> CollectionStats:
    """Build the stdlib docstring collection as a BEIR directory at ``out_dir`` and return its statistics.

    ``max_documents`` caps the corpus (judged documents + sampled distractors); fewer queries than asked are
    written if the stdlib has too few usable summaries. ``modules`` restricts the walk to those top-level
    modules (for quick tests). A non-empty ``out_dir`` is replaced only with ``overwrite=True`` and only if it
    holds a collection built by this function.
    """
    _check_parameters(max_documents, n_queries, split)
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)

    pool = collect_docstrings(stdlib_source_dir(), modules)
    documents, judged, query_dropped, n_candidates = select_collection(pool, max_documents, n_queries, seed)
    if not judged:
        raise LlaraError("no usable docstrings found in the standard library source; is it installed?")
    if len(judged) < n_queries:
        logger.warning("only %d usable queries (asked for %d)", len(judged), n_queries)
    query_ids = _query_ids(len(judged))

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as error:
        raise LlaraError(f"cannot write {out_dir}: {error.strerror or error}") from None
    try:
        _write_jsonl(staging / BEIR_CORPUS_FILE,
                     [{"_id": doc.doc_id, "title": "", "text": doc.body} for doc in documents])
        _write_jsonl(staging / BEIR_QUERIES_FILE,
                     [{"_id": query_id, "text": doc.summary} for query_id, doc in zip(query_ids, judged)])
        qrels_path = staging / QRELS_DIR / f"{split}.tsv"
        with atomic_write(qrels_path) as handle:
            handle.write(QRELS_HEADER)
            for query_id, doc in zip(query_ids, judged):
                handle.write(f"{query_id}\t{doc.doc_id}\t{RELEVANCE}\n")
        written = [BEIR_CORPUS_FILE, BEIR_QUERIES_FILE, f"{QRELS_DIR}/{split}.tsv"]
        stats = CollectionStats(
            kind=COLLECTION_KIND,
            python_version=platform.python_version(),
            split=split,
            seed=seed,
            max_documents=max_documents,
            n_queries_requested=n_queries,
            n_documents=len(documents),
            n_queries=len(judged),
            n_qrels=len(judged),
            n_source_files=pool.n_source_files,
            n_unparsable_files=pool.n_unparsable_files,
            n_docstrings=pool.n_docstrings,
            n_pool_documents=len(pool.documents),
            n_query_candidates=n_candidates,
            dropped=dict(sorted((pool.dropped + query_dropped).items())),
            files={name: _sha256(staging / name) for name in written},
        )
        with atomic_write(staging / README_FILE) as handle:
            handle.write(_readme(stats))
        write_json(staging / STATS_FILE, stats.to_dict())
        staging.chmod(DIRECTORY_MODE)  # mkdtemp creates it private; the collection is ordinary data
        _move_into_place(staging, out_dir)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise LlaraError(f"cannot write {out_dir}: {error.strerror or error}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote %s: %d documents, %d queries", out_dir, stats.n_documents, stats.n_queries)
    return stats


# ---------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llara_cli.demo.collection",
        description="Build a known-item retrieval collection (BEIR layout) from the stdlib's docstrings.",
        epilog="example: python -m llara_cli.demo.collection data/stdlib --max-documents 3000 --queries 300",
    )
    parser.add_argument("out_dir", type=Path, help="output directory (BEIR layout)")
    parser.add_argument("--max-documents", type=int, default=DEFAULT_MAX_DOCUMENTS, help="corpus size cap")
    parser.add_argument("--queries", type=int, default=DEFAULT_N_QUERIES, help="number of queries")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sampling seed")
    parser.add_argument("--split", default=DEFAULT_BEIR_SPLIT, help="qrels split name")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier build in OUT_DIR")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m llara_cli.demo.collection``."""
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        stats = build_stdlib_collection(
            arguments.out_dir, max_documents=arguments.max_documents, seed=arguments.seed,
            split=arguments.split, n_queries=arguments.queries, overwrite=arguments.overwrite,
        )
    except LlaraError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    print(f"{arguments.out_dir}: {stats.n_documents} documents, {stats.n_queries} queries "
          f"(Python {stats.python_version})")


if __name__ == "__main__": main()  # noqa: E701
