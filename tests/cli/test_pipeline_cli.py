"""The retrieval pipeline through the CLI: encode -> index -> search -> evaluate, on the tiny model."""
from __future__ import annotations

import json

from llara_cli.data.runs import read_run
from tests.cli.conftest import invoke

DOCS = {
    "d1": "the protein cell gene cancer", "d2": "river city music film history", "d3": "a model for dense retrieval",
    "d4": "water energy light", "d5": "king queen war history", "d6": "computer program network learning",
}
QUERIES = {"q1": "protein gene", "q2": "dense retrieval model", "q3": "queen war"}
QRELS = [("q1", "d1", 1), ("q2", "d3", 1), ("q3", "d5", 2)]




def test_encode_index_search_evaluate_round_trip(beir_dir, tiny_model_dir, tmp_path):
    result = invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb", "--batch-size", 4)
    assert result.exit_code == 0, result.output
    result = invoke("index", tmp_path / "emb", "--out", tmp_path / "index")
    assert result.exit_code == 0, result.output
    result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "dense.trec",
                    "--k", 4)
    assert result.exit_code == 0, result.output
    run = read_run(tmp_path / "dense.trec")
    assert {scored.query_id for scored in run} == set(QUERIES)
    assert all(sum(scored.query_id == query_id for scored in run) == 4 for query_id in QUERIES)
    result = invoke("evaluate", tmp_path / "dense.trec", "--qrels", beir_dir, "--json")
    assert result.exit_code == 0, result.output
    assert "dense" in json.loads(result.stdout)["runs"]


def test_search_refuses_a_model_other_than_the_indexes(beir_dir, tiny_model_dir, tmp_path):
    assert invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb").exit_code == 0
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    other = tmp_path / "other-model"
    other.mkdir()
    for item in tiny_model_dir.iterdir():
        (other / item.name).write_bytes(item.read_bytes())
    result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "x.trec",
                    "--model", other)
    assert result.exit_code == 2
    assert "the index was built with model" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.trec").exists()


def test_search_needs_exactly_one_mode(tmp_path):
    result = invoke("search", "--out", tmp_path / "run.trec")
    assert result.exit_code == 2 and "choose exactly one of" in result.output


def test_unknown_model_alias_is_one_line_and_exit_two(beir_dir, tmp_path):
    result = invoke("encode", beir_dir, "--model", "no-such-model", "--out", tmp_path / "emb")
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in result.output and "Traceback" not in result.output


def test_malformed_corpus_line_names_file_and_line(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n')
    result = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "emb")
    assert result.exit_code == 2
    assert f"{corpus}:2: malformed JSON" in result.output


def test_search_refuses_another_prompt_family_than_the_indexes(beir_dir, tiny_model_dir, tmp_path):
    assert invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb").exit_code == 0
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--out", tmp_path / "x.trec",
                    "--prompt-family", "flagembedding")
    assert result.exit_code == 2
    assert "built with the paper prompt family, not flagembedding" in result.output


def test_search_over_index_shards_writes_the_run_of_one_flat_index(beir_dir, tiny_model_dir, tmp_path):
    for shard_id in range(2):
        assert invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb" / f"shard-{shard_id}",
                      "--shard-id", shard_id, "--shard-num", 2, "--store-dtype", "fp16").exit_code == 0
        result = invoke("index", tmp_path / "emb" / f"shard-{shard_id}", "--partial",
                        "--out", tmp_path / "shards" / f"shard-{shard_id}")
        assert result.exit_code == 0, result.output
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "whole").exit_code == 0  # a directory of shards
    search = ("search", "--queries", beir_dir, "--model", tiny_model_dir, "--k", 5)
    assert invoke(*search, "--index", tmp_path / "whole", "--out", tmp_path / "whole.trec").exit_code == 0
    result = invoke(*search, "--index", tmp_path / "shards" / "shard-1", "--index", tmp_path / "shards" / "shard-0",
                    "--out", tmp_path / "sharded.trec")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sharded.trec").read_text() == (tmp_path / "whole.trec").read_text()
    result = invoke(*search, "--index", tmp_path / "shards" / "shard-0", "--out", tmp_path / "half.trec")
    assert result.exit_code == 0  # one partial index alone is an ordinary index (of half the corpus)
    missing = invoke(*search, "--index", tmp_path / "shards" / "shard-0", "--index", tmp_path / "whole",
                     "--out", tmp_path / "bad.trec")
    assert missing.exit_code == 2 and "holds the whole corpus" in missing.output


def test_query_prompt_ebae_searches_with_queries_encoded_as_passages(beir_dir, tiny_model_dir, tmp_path):
    from llara_cli.encode.embedding_store import load_embeddings

    assert invoke("encode", beir_dir, "--model", tiny_model_dir, "--out", tmp_path / "emb").exit_code == 0
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    for prompt in ("ebar", "ebae"):
        result = invoke("search", "--index", tmp_path / "index", "--queries", beir_dir, "--query-prompt", prompt,
                        "--out", tmp_path / f"{prompt}.trec", "--k", 6)
        assert result.exit_code == 0, result.output
    queries = beir_dir / "queries.jsonl"
    result = invoke("encode", queries, "--queries", "--query-prompt", "ebae", "--model", tiny_model_dir,
                    "--out", tmp_path / "q-ebae", "--max-length", 64)
    assert result.exit_code == 0, result.output
    as_queries = load_embeddings(tmp_path / "q-ebae")
    assert as_queries.meta.extra["query_prompt"] == "ebae"
    assert invoke("encode", queries, "--model", tiny_model_dir, "--out", tmp_path / "q-passages",
                  "--max-length", 64).exit_code == 0
    assert (as_queries.vectors == load_embeddings(tmp_path / "q-passages").vectors).all()
    ebae_run = {(s.query_id, s.doc_id): s.score for s in read_run(tmp_path / "ebae.trec")}
    passages = load_embeddings(tmp_path / "emb")
    rows = {doc_id: row for row, doc_id in enumerate(passages.ids)}
    for row, query_id in enumerate(as_queries.ids):  # the ebae run scores are the passage-prompt query vectors'
        for doc_id, row_doc in rows.items():
            expected = float(as_queries.vectors[row] @ passages.vectors[row_doc])
            assert abs(ebae_run[(query_id, doc_id)] - expected) < 1e-4
    assert read_run(tmp_path / "ebar.trec") != read_run(tmp_path / "ebae.trec")


def test_an_unknown_query_prompt_and_one_for_passages_are_refused_in_one_line(beir_dir, tiny_model_dir, tmp_path):
    result = invoke("encode", beir_dir, "--query-prompt", "ebae", "--model", tiny_model_dir, "--out", tmp_path / "e")
    assert result.exit_code == 2 and "--query-prompt applies to queries" in result.stderr
    result = invoke("encode", beir_dir / "queries.jsonl", "--queries", "--query-prompt", "both",
                    "--model", tiny_model_dir, "--out", tmp_path / "q")
    assert result.exit_code == 2 and "unknown query prompt 'both'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
