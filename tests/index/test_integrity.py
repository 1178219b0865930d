"""Issue #28, index integrity: Fortran-order arrays, repeated ids, a damaged or edited index file and a model
retrained in place are refused, naming the culprit (docs/reliability.md)."""
from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest

from llara_cli.errors import UsageError
from llara_cli.index.faiss_index import DOCID_FILE, INDEX_FILE, build_index, load_index
from tests.cli.conftest import invoke
from tests.cli.test_hardened_io import (
    assert_one_line_error,
    write_embeddings,
)
from tests.conftest import build_tiny_model


def test_a_fortran_order_embeddings_file_is_refused(tmp_path):
    embeddings = write_embeddings(tmp_path / "emb")
    vectors = np.load(embeddings / "embeddings.npy")
    np.save(embeddings / "embeddings.npy", np.asfortranarray(vectors))  # same values, column-major bytes
    with pytest.raises(UsageError, match="embeddings.npy: stored in Fortran"):
        build_index([embeddings], tmp_path / "index")
    assert not (tmp_path / "index").exists()


def test_a_repeated_id_in_the_docid_file_names_its_line(tmp_path):
    index = tmp_path / "index"
    build_index([write_embeddings(tmp_path / "emb")], index)
    ids = (index / DOCID_FILE).read_text().splitlines()
    (index / DOCID_FILE).write_text("\n".join([ids[0], ids[1], ids[0], *ids[3:]]) + "\n")
    with pytest.raises(UsageError, match=rf"{index / DOCID_FILE}:3: id {ids[0]} repeats line 1"):
        load_index(index)


def test_an_index_file_edited_in_place_is_refused_by_its_checksum(tmp_path):
    index = tmp_path / "index"
    build_index([write_embeddings(tmp_path / "emb")], index)
    loaded = faiss.read_index(str(index / INDEX_FILE))
    vectors = loaded.reconstruct_n(0, loaded.ntotal)  # (n, dim)
    vectors[1] = np.nan  # a non-finite vector: it would hide its document
    tampered = faiss.IndexFlatIP(loaded.d)
    tampered.add(vectors)
    faiss.write_index(tampered, str(index / INDEX_FILE))  # same size, readable, different content
    with pytest.raises(UsageError, match=rf"{index / INDEX_FILE}: its content differs"):
        load_index(index)


def test_a_corrupted_faiss_file_of_the_same_length_is_refused(tmp_path):
    index = tmp_path / "index"
    build_index([write_embeddings(tmp_path / "emb")], index)
    data = bytearray((index / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (index / INDEX_FILE).write_bytes(bytes(data))
    with pytest.raises(UsageError, match=rf"{index / INDEX_FILE}: its content differs"):
        load_index(index)


def test_a_model_retrained_in_place_is_refused_naming_both_fingerprints(tiny_model_dir, collection, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert invoke("encode", collection, "--model", model, "--out", tmp_path / "emb").exit_code == 0
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    first = invoke("search", "--index", tmp_path / "index", "--queries", collection, "--out", tmp_path / "a.trec")
    assert first.exit_code == 0, first.output
    vocab_size = json.loads((model / "config.json").read_text())["vocab_size"]
    build_tiny_model(vocab_size, seed=1).save_pretrained(model)  # retrained at the same path
    result = invoke("search", "--index", tmp_path / "index", "--queries", collection, "--out", tmp_path / "b.trec")
    assert_one_line_error(result, f"the weights of {model} changed", "retrained in place")
    assert not (tmp_path / "b.trec").exists()


def test_shards_encoded_with_different_weights_are_not_merged(tmp_path):
    from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings

    for shard, fingerprint in ((0, "aaaa"), (1, "bbbb")):
        vectors = np.eye(4, 8, k=shard, dtype=np.float32)  # (4, dim)
        meta = EmbeddingMeta(model="m", prompt_family="paper", pooling="last8", side="passage", dim=8, max_length=64,
                             normalize=True, count=4, source_sha256="abc", shard_id=shard, shard_num=2,
                             extra={"weights_fingerprint": fingerprint})
        save_embeddings(tmp_path / f"shard-{shard}", [f"d{shard}-{row}" for row in range(4)], vectors, meta)
    with pytest.raises(UsageError, match="weights_fingerprint 'aaaa' vs 'bbbb'"):
        build_index([tmp_path / "shard-0", tmp_path / "shard-1"], tmp_path / "index")


def test_a_large_index_file_is_checked_by_a_sampled_digest_that_still_catches_truncation(tmp_path, monkeypatch):
    import llara_cli.index.integrity as integrity

    monkeypatch.setattr(integrity, "FULL_HASH_MAX_BYTES", 1024)
    big = tmp_path / "index"
    big.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: sampled, not hashed whole
    recorded = integrity.file_checksums(tmp_path, ["index"])
    assert recorded["index"].startswith(integrity.SAMPLED_PREFIX)
    integrity.check_checksums(tmp_path, {integrity.CHECKSUMS_KEY: recorded})  # unchanged: accepted
    big.write_bytes(big.read_bytes()[:-1])
    with pytest.raises(UsageError, match="differs from what `llara index` wrote"):
        integrity.check_checksums(tmp_path, {integrity.CHECKSUMS_KEY: recorded})
