from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from llara_cli.encode.embedding_store import (
    EMBEDDINGS_FILE,
    IDS_FILE,
    META_FILE,
    EmbeddingMeta,
    check_compatible,
    load_embedding_meta,
    load_embeddings,
    save_embeddings,
)
from llara_cli.errors import UsageError

DIM = 8
COUNT = 5


def make_meta(**overrides) -> EmbeddingMeta:
    fields = dict(
        model="models/tiny", prompt_family="paper", pooling="last8", side="passage", dim=DIM, max_length=64,
        normalize=True, count=COUNT, source_sha256="abc123",
    )
    return EmbeddingMeta(**{**fields, **overrides})


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((COUNT, DIM)).astype(np.float32)


@pytest.fixture
def ids() -> list[str]:
    return [f"doc{index}" for index in range(COUNT)]


def test_round_trip_is_bit_identical(tmp_path, ids, vectors):
    written = save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    loaded = load_embeddings(tmp_path / "emb")
    assert loaded.ids == ids
    assert loaded.vectors.dtype == np.float32 and loaded.vectors.tobytes() == vectors.tobytes()
    assert isinstance(loaded.vectors, np.memmap)
    assert loaded.meta == written == make_meta()
    assert not isinstance(load_embeddings(tmp_path / "emb", mmap=False).vectors, np.memmap)
    assert np.load(tmp_path / "emb" / EMBEDDINGS_FILE, allow_pickle=False).shape == (COUNT, DIM)


def test_meta_json_has_the_documented_fields_and_keeps_unknown_ones(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors, make_meta(extra={"model_dtype": "bfloat16"}))
    payload = json.loads((tmp_path / "emb" / META_FILE).read_text())
    assert {
        "model", "prompt_family", "pooling", "side", "dim", "max_length", "dtype", "normalize", "count",
        "source_sha256", "shard_id", "shard_num", "llara_version",
    } <= set(payload)
    assert payload["dtype"] == "float32" and payload["model_dtype"] == "bfloat16"
    assert load_embedding_meta(tmp_path / "emb").to_dict() == payload


def test_float64_vectors_are_stored_as_float32(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors.astype(np.float64), make_meta())
    assert load_embeddings(tmp_path / "emb").vectors.dtype == np.float32


def test_directory_without_meta_is_reported_incomplete(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    (tmp_path / "emb" / META_FILE).unlink()
    with pytest.raises(UsageError, match=r"emb: incomplete .*interrupted encode"):
        load_embeddings(tmp_path / "emb")


def test_ids_and_rows_must_agree(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    (tmp_path / "emb" / IDS_FILE).write_text("".join(f"{doc_id}\n" for doc_id in ids[:-1]))
    with pytest.raises(UsageError, match=f"emb: {IDS_FILE} has {COUNT - 1} ids but {EMBEDDINGS_FILE} has {COUNT} rows"):
        load_embeddings(tmp_path / "emb")


def test_meta_dim_must_match_the_array(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    payload = json.loads((tmp_path / "emb" / META_FILE).read_text())
    (tmp_path / "emb" / META_FILE).write_text(json.dumps({**payload, "dim": DIM * 2}))
    with pytest.raises(UsageError, match=f"says dim {DIM * 2} but {EMBEDDINGS_FILE} has dim {DIM}"):
        load_embeddings(tmp_path / "emb")


def test_missing_meta_field_is_named(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    payload = json.loads((tmp_path / "emb" / META_FILE).read_text())
    del payload["pooling"]
    (tmp_path / "emb" / META_FILE).write_text(json.dumps(payload))
    with pytest.raises(UsageError, match="missing field.* pooling"):
        load_embeddings(tmp_path / "emb")


@pytest.mark.parametrize(
    ("ids", "message"),
    [(["a", "b", "a", "c", "d"], "duplicate id.* a"), (["a", "b c", "d", "e", "f"], "whitespace")],
)
def test_bad_ids_are_refused(tmp_path, vectors, ids, message):
    with pytest.raises(UsageError, match=message):
        save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    assert not (tmp_path / "emb" / META_FILE).exists()


def test_shape_and_values_are_checked_before_writing(tmp_path, ids, vectors):
    with pytest.raises(UsageError, match="meta says 5 vectors of dim 16"):
        save_embeddings(tmp_path / "emb", ids, vectors, make_meta(dim=16))
    vectors[2, 3] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    assert not (tmp_path / "emb").exists() or not any((tmp_path / "emb").iterdir())


def test_complete_set_is_not_overwritten_without_the_flag(tmp_path, ids, vectors):
    save_embeddings(tmp_path / "emb", ids, vectors, make_meta())
    with pytest.raises(UsageError, match="already holds a complete embedding set"):
        save_embeddings(tmp_path / "emb", ids, vectors * 2, make_meta())
    save_embeddings(tmp_path / "emb", ids, vectors * 2, make_meta(), overwrite=True)
    assert np.array_equal(load_embeddings(tmp_path / "emb").vectors, vectors * 2)
    assert sorted(path.name for path in (tmp_path / "emb").iterdir()) == sorted([EMBEDDINGS_FILE, IDS_FILE, META_FILE])


@pytest.mark.parametrize(
    ("override", "field"),
    [({"model": "other"}, "model"), ({"prompt_family": "plain"}, "prompt_family"), ({"pooling": "mean"}, "pooling"),
     ({"dim": 16}, "dim"), ({"normalize": False}, "normalize"), ({"side": "query"}, "side"),
     ({"source_sha256": "fff"}, "source_sha256")],
)
def test_check_compatible_names_the_differing_field_and_both_dirs(override, field):
    first, second = make_meta(shard_num=2), make_meta(shard_num=2, shard_id=1, **override)
    with pytest.raises(UsageError, match=rf"cannot combine shard-a and shard-b: {field} .* vs "):
        check_compatible({"shard-a": first, "shard-b": second})


def test_check_compatible_refuses_duplicate_and_missing_shards():
    check_compatible({"a": make_meta(shard_num=2), "b": make_meta(shard_num=2, shard_id=1)})
    with pytest.raises(UsageError, match="a and b are both shard 0 of 2"):
        check_compatible({"a": make_meta(shard_num=2), "b": make_meta(shard_num=2)})
    with pytest.raises(UsageError, match="shard.* 1 of 3 missing"):
        check_compatible({"a": make_meta(shard_num=3), "c": make_meta(shard_num=3, shard_id=2)})


def test_meta_validates_side_and_shard_range():
    with pytest.raises(UsageError, match="side"):
        make_meta(side="document")
    with pytest.raises(UsageError, match="shard_id 2"):
        make_meta(shard_id=2, shard_num=2)
    assert dataclasses.replace(make_meta(), count=0).count == 0
