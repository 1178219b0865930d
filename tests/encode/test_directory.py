from __future__ import annotations

import numpy as np
import pytest

from llara_cli.core.prompts import Side
from llara_cli.encode.directory import CHUNKS_DIR, EncodeJob, encode_to_directory, shard_range
from llara_cli.encode.embedding_store import load_embeddings
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.errors import UsageError

TEXTS = [
    "the protein cell gene", "river city music film history", "a model for dense retrieval",
    "water energy light", "king queen war", "computer program network learning neural training",
    "red blue green", "fast slow good bad old young human animal plant food health", "test time year",
]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return LlaraEncoder.load(str(tiny_model_dir))


def test_encoded_directory_holds_the_encoders_vectors_in_corpus_order(encoder, corpus, tmp_path):
    meta = encode_to_directory(EncodeJob(corpus, tmp_path / "emb", Side.PASSAGE, batch_size=4, chunk_size=4), encoder)
    loaded = load_embeddings(tmp_path / "emb")
    assert loaded.ids == [f"d{index}" for index in range(len(TEXTS))]
    assert np.allclose(loaded.vectors, encoder.encode_passages(TEXTS), atol=1e-6)
    assert meta.prompt_family == "paper" and meta.side == "passage" and meta.count == len(TEXTS)
    assert not (tmp_path / "emb" / CHUNKS_DIR).exists()


def test_interrupted_encode_resumes_to_a_bit_identical_result(encoder, corpus, tmp_path, monkeypatch):
    encode_to_directory(EncodeJob(corpus, tmp_path / "clean", Side.PASSAGE, batch_size=2, chunk_size=4), encoder)
    calls = {"count": 0}
    original = encoder.encode

    def interrupt_on_second_chunk(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    job = EncodeJob(corpus, tmp_path / "resumed", Side.PASSAGE, batch_size=2, chunk_size=4)
    monkeypatch.setattr(encoder, "encode", interrupt_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        encode_to_directory(job, encoder)
    assert len(list((tmp_path / "resumed" / CHUNKS_DIR).glob("*.npy"))) == 1
    assert not (tmp_path / "resumed" / "meta.json").exists()  # nothing looks finished
    monkeypatch.setattr(encoder, "encode", original)
    encode_to_directory(job, encoder)
    clean, resumed = load_embeddings(tmp_path / "clean"), load_embeddings(tmp_path / "resumed")
    assert resumed.ids == clean.ids
    assert np.array_equal(np.asarray(resumed.vectors), np.asarray(clean.vectors))


def test_resuming_with_other_settings_is_refused(encoder, corpus, tmp_path, monkeypatch):
    job = EncodeJob(corpus, tmp_path / "emb", Side.PASSAGE, batch_size=2, chunk_size=4)
    monkeypatch.setattr(encoder, "encode", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        encode_to_directory(job, encoder)
    monkeypatch.undo()
    with pytest.raises(UsageError, match="max_length"):
        encode_to_directory(EncodeJob(corpus, tmp_path / "emb", Side.PASSAGE, batch_size=2, chunk_size=4,
                                      max_length=32), encoder)


def test_finished_output_is_not_overwritten_without_the_flag(encoder, corpus, tmp_path):
    job = EncodeJob(corpus, tmp_path / "emb", Side.PASSAGE, batch_size=4)
    encode_to_directory(job, encoder)
    with pytest.raises(UsageError, match="--overwrite"):
        encode_to_directory(job, encoder)
    encode_to_directory(EncodeJob(corpus, tmp_path / "emb", Side.PASSAGE, batch_size=4, overwrite=True), encoder)


def test_shards_cover_the_corpus_once_and_concatenate_to_the_unsharded_result(encoder, corpus, tmp_path):
    encode_to_directory(EncodeJob(corpus, tmp_path / "full", Side.PASSAGE, batch_size=3), encoder)
    shards = []
    for shard_id in range(3):
        out = tmp_path / f"shard{shard_id}"
        encode_to_directory(EncodeJob(corpus, out, Side.PASSAGE, batch_size=3, shard_id=shard_id, shard_num=3), encoder)
        shards.append(load_embeddings(out))
    full = load_embeddings(tmp_path / "full")
    assert sum((shard.ids for shard in shards), []) == full.ids
    assert np.allclose(np.concatenate([shard.vectors for shard in shards]), full.vectors, atol=1e-5)


def test_shard_ranges_partition_the_records():
    ranges = [shard_range(10, shard_id, 3) for shard_id in range(3)]
    assert [index for selected in ranges for index in selected] == list(range(10))
    with pytest.raises(UsageError, match="--shard-id"):
        shard_range(10, 3, 3)


def test_queries_are_encoded_with_the_ebar_prompt(encoder, tmp_path):
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tthe protein cell\nq2\triver city\n")
    encode_to_directory(EncodeJob(queries, tmp_path / "q", Side.QUERY, batch_size=2), encoder)
    loaded = load_embeddings(tmp_path / "q")
    assert loaded.meta.side == "query"
    assert np.allclose(loaded.vectors, encoder.encode_queries(["the protein cell", "river city"]), atol=1e-6)


def test_over_long_texts_are_truncated_with_one_warning_that_counts_them(encoder, corpus, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="llara_cli.encode.directory"):
        encode_to_directory(EncodeJob(corpus, tmp_path / "emb", Side.PASSAGE, batch_size=4, max_length=12), encoder)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    long_texts = sum(len(ids) > encoder.prompt_format.text_budget(12, joint=False) for ids in encoder.tokenize(TEXTS))
    assert warnings == [f"{long_texts} texts were longer than --max-length 12 and were truncated"]
