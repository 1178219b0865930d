"""Exact search over index shards: the merged run is the run of one flat index over all vectors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llara_cli.data.runs import format_run_lines
from llara_cli.encode.embedding_store import META_FILE, EmbeddingMeta, save_embeddings
from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import build_index, load_index, load_index_meta
from llara_cli.search.faiss_search import search_index
from llara_cli.search.sharded import resolve_index_shards, search_index_shards

DIM = 24
SHARD_BOUNDS = (0, 130, 700, 1500)  # three uneven shards; the first smaller than k
N_QUERIES = 40
K = 200


def unit_vectors(count, seed):
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write_shards(root, vectors, ids, bounds=SHARD_BOUNDS, **overrides):
    shard_num = len(bounds) - 1
    directories = []
    for shard_id, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        meta = EmbeddingMeta(**{**dict(model="tiny", prompt_family="paper", pooling="last", side="passage", dim=DIM,
                                       max_length=64, normalize=True, count=stop - start, source_sha256="abc",
                                       shard_id=shard_id, shard_num=shard_num), **overrides})
        save_embeddings(root / f"shard-{shard_id:03d}", ids[start:stop], vectors[start:stop], meta)
        directories.append(root / f"shard-{shard_id:03d}")
    return directories


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    ids = [f"doc{index:05d}" for index in range(SHARD_BOUNDS[-1])]
    vectors = unit_vectors(len(ids), seed=0)
    embedding_dirs = write_shards(root / "emb", vectors, ids)
    build_index(embedding_dirs, root / "flat")
    for directory in embedding_dirs:
        build_index([directory], root / "shards" / directory.name, partial=True)
    queries = unit_vectors(N_QUERIES, seed=1)
    return root, ids, vectors, [f"q{index}" for index in range(N_QUERIES)], queries


def run_lines(results):
    return "".join(format_run_lines(results, "tag")).splitlines()


def test_sharded_search_writes_the_same_run_as_one_flat_index(layout):
    root, _ids, _vectors, query_ids, queries = layout
    flat = run_lines(search_index(load_index(root / "flat"), queries, query_ids, k=K))
    directories, _metas = resolve_index_shards([root / "shards"])  # a directory of shards
    assert [directory.name for directory in directories] == ["shard-000", "shard-001", "shard-002"]
    sharded = run_lines(search_index_shards(directories, queries, query_ids, k=K))
    assert sharded == flat and len(flat) == N_QUERIES * K


def test_shards_given_one_by_one_in_any_order_merge_the_same(layout):
    root, _ids, _vectors, query_ids, queries = layout
    shard_dirs = sorted((root / "shards").iterdir(), reverse=True)
    directories, _metas = resolve_index_shards(shard_dirs)
    flat = run_lines(search_index(load_index(root / "flat"), queries, query_ids, k=7))
    assert run_lines(search_index_shards(directories, queries, query_ids, k=7)) == flat


def test_tied_scores_at_the_cut_are_broken_by_doc_id(tmp_path):
    vectors = np.tile(unit_vectors(1, seed=3), (6, 1))  # six identical documents: every score ties
    ids = ["f", "b", "e", "a", "d", "c"]
    for directory in write_shards(tmp_path / "emb", vectors, ids, bounds=(0, 3, 6)):
        build_index([directory], tmp_path / "shards" / directory.name, partial=True)
    directories, _metas = resolve_index_shards([tmp_path / "shards"])
    results = search_index_shards(directories, vectors[:1], ["q"], k=4)
    assert [doc_id for doc_id, _score in results["q"]] == ["a", "b", "c", "d"]


def test_partial_index_records_which_embedding_shards_it_holds(layout):
    root = layout[0]
    meta = load_index_meta(root / "shards" / "shard-001")
    assert meta.covered_shards() == ((1,), 3)
    assert json.loads((root / "shards" / "shard-001" / META_FILE).read_text())["corpus_shards"] == [1]
    assert load_index_meta(root / "flat").covered_shards() == ((0,), 1)


def test_a_missing_index_shard_is_refused(layout):
    root = layout[0]
    with pytest.raises(UsageError, match=r"miss embedding shard\(s\) 2 of 3"):
        resolve_index_shards([root / "shards" / "shard-000", root / "shards" / "shard-001"])


def test_a_whole_index_with_one_of_its_shards_is_refused(layout):
    root = layout[0]
    with pytest.raises(UsageError, match="holds the whole corpus"):
        resolve_index_shards([root / "flat", root / "shards" / "shard-001"])


def test_two_index_shards_holding_the_same_embedding_shard_are_refused(layout, tmp_path):
    root = layout[0]
    build_index([root / "emb" / "shard-001"], tmp_path / "again", partial=True)
    with pytest.raises(UsageError, match="both hold embedding shard 1 of 3"):
        resolve_index_shards([*sorted((root / "shards").iterdir()), tmp_path / "again"])


def test_shards_of_another_model_are_refused(layout, tmp_path):
    root, ids, vectors, _query_ids, _queries = layout
    other = write_shards(tmp_path / "emb", vectors, ids, model="other")
    build_index([other[2]], tmp_path / "other-2", partial=True)
    with pytest.raises(UsageError, match="model 'tiny' vs 'other'"):
        resolve_index_shards([root / "shards" / "shard-000", root / "shards" / "shard-001", tmp_path / "other-2"])


def test_a_partial_index_needs_the_partial_flag(layout, tmp_path):
    root = layout[0]
    with pytest.raises(UsageError, match="missing"):
        build_index([root / "emb" / "shard-000"], tmp_path / "index")


def test_index_accepts_a_directory_of_embedding_shards(layout, tmp_path):
    root, _ids, _vectors, query_ids, queries = layout
    build_index([root / "emb"], tmp_path / "flat")
    expected = run_lines(search_index(load_index(root / "flat"), queries, query_ids, k=5))
    assert run_lines(search_index(load_index(tmp_path / "flat"), queries, query_ids, k=5)) == expected


def test_searching_one_partial_index_alone_warns_that_documents_are_missing(layout, caplog):
    root = layout[0]
    with caplog.at_level("WARNING", logger="llara_cli.search.sharded"):
        directories, _metas = resolve_index_shards([root / "shards" / "shard-002"])
    assert directories == [root / "shards" / "shard-002"]
    assert "partial index (embedding shard(s) 2 of 3)" in caplog.text
