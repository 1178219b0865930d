"""The Python standard library's docstrings, read from its *source* (parsed with :mod:`ast`, never imported, so
nothing runs, prints or hangs): walking the modules, splitting each docstring into its summary sentence and
body, and keeping the ones that make a usable document. :mod:`llara_cli.demo.collection` turns them into a
judged collection."""
from __future__ import annotations

import ast
import logging
import re
import sys
import sysconfig
import tokenize
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MIN_SUMMARY_WORDS = 3  # shorter summaries ("Constructor.") do not identify a docstring
MAX_SUMMARY_WORDS = 32  # a longer "summary" is a paragraph, not a query
MIN_SUMMARY_PROSE_FRACTION = 0.5  # "FileInput([files[, inplace]], *, mode=None)" is a signature, not a query
MIN_BODY_WORDS = 10  # shorter bodies are too thin to be a document
MAX_CODE_LINE_FRACTION = 0.5  # bodies that are mostly doctest sessions are dropped
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


def is_query_candidate(docstring: Docstring) -> bool:
    """A usable summary: a short prose sentence (not a signature) that its own body does not repeat."""
    words = docstring.summary.split()
    n_prose = sum(1 for word in words if PROSE_WORD.fullmatch(word))
    return (MIN_SUMMARY_WORDS <= len(words) <= MAX_SUMMARY_WORDS
            and n_prose >= MIN_SUMMARY_WORDS
            and n_prose >= MIN_SUMMARY_PROSE_FRACTION * len(words)
            and match_key(docstring.summary) not in match_key(docstring.body))


@dataclass
class DocstringPool:
    """The usable docstrings of one walk, with the counts of what was read and dropped."""

    documents: list[Docstring]
    summary_counts: Counter[str]
    n_source_files: int = 0
    n_unparsable_files: int = 0
    n_docstrings: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def collect_docstrings(root: Path, modules: Sequence[str] | None = None) -> DocstringPool:
    """Parse the stdlib and keep every docstring that makes a usable document (sorted, deterministic)."""
    pool = DocstringPool(documents=[], summary_counts=Counter())
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
