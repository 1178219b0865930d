"""The compact document ids of an open index: the same ids as the strict reader, far fewer bytes, strict on faults."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from llara_cli.encode.embedding_store import read_ids
from llara_cli.errors import UsageError
from llara_cli.index.doc_ids import DocIds, read_doc_ids


def write(tmp_path, content: bytes):
    path = tmp_path / "docid"
    path.write_bytes(content)
    return path


def test_compact_ids_read_as_the_strict_reader_does(tmp_path):
    ids = [f"doc{row}" for row in range(1000)] + ["MED-10", "x"]
    path = write(tmp_path, "".join(f"{doc_id}\n" for doc_id in ids).encode())
    compact = read_doc_ids(path)
    assert compact == read_ids(path) == ids and list(compact) == ids and len(compact) == len(ids)
    assert compact[0] == "doc0" and compact[-1] == "x" and compact[1000] == "MED-10" and compact[2:4] == ids[2:4]
    with pytest.raises(IndexError):
        compact[len(ids)]


def test_non_ascii_ids_take_the_strict_path_and_keep_their_text(tmp_path):
    ids = ["café", "naïve-2", "文档"]
    compact = read_doc_ids(write(tmp_path, "".join(f"{doc_id}\n" for doc_id in ids).encode()))
    assert list(compact) == ids and compact[2] == "文档"


@pytest.mark.parametrize(("content", "message"), [
    (b"a\n\nb\n", ":2"),  # a blank line
    (b"a\nb c\n", ":2"),  # whitespace inside an id
    (b"a\nb\x07\n", ":2"),  # a control character
    (b"a\nb\na\n", ":3: id a repeats line 1"),  # a repeated id
    (b"ab\nb\nab\n", ":3: id ab repeats line 1"),  # ... of another length than its neighbours
])
def test_a_faulty_docid_file_is_named_with_its_line(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(UsageError, match=message):
        read_doc_ids(path)


def test_ids_of_very_uneven_length_are_read_by_the_strict_path(tmp_path):
    ids = ["a" * 500, *map(str, range(100))]
    assert list(read_doc_ids(write(tmp_path, "".join(f"{doc_id}\n" for doc_id in ids).encode()))) == ids


def test_a_file_without_a_final_newline_still_reads(tmp_path):
    assert list(read_doc_ids(write(tmp_path, b"a\nb"))) == ["a", "b"]


def test_compact_ids_hold_a_fraction_of_a_lists_bytes():
    ids = [str(7_000_000 + row) for row in range(100_000)]  # MS MARCO-like numeric ids
    compact = DocIds.from_strings(ids)
    list_bytes = sys.getsizeof(ids) + sum(sys.getsizeof(doc_id) for doc_id in ids)
    assert compact.nbytes * 4 < list_bytes
    assert compact._starts.dtype == np.int32 and compact[12_345] == ids[12_345]
