"""`llara finetune` and `llara mine` through the CLI: help, a tiny run, mining, one-line errors."""
from __future__ import annotations

import json
import random

import pytest

from llara_cli.data.finetune import read_training_file
from tests.cli.conftest import invoke
from tests.conftest import WORDS

TINY_RUN = ["--group-size", "2", "--batch-size", "2", "--max-steps", "2", "--query-max-length", "16",
            "--passage-max-length", "24", "--lora-r", "4", "--lora-alpha", "8", "--lora-targets", "q_proj,v_proj"]




@pytest.fixture()
def collection(tmp_path):
    """A BEIR directory (8 documents, 4 train queries) and a run over it."""
    rng = random.Random(0)
    directory = tmp_path / "beir"
    (directory / "qrels").mkdir(parents=True)
    documents = {f"d{index}": " ".join(rng.choice(WORDS) for _ in range(10)) for index in range(8)}
    (directory / "corpus.jsonl").write_text("".join(json.dumps({"_id": doc_id, "text": text}) + "\n"
                                                    for doc_id, text in documents.items()))
    (directory / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{index}", "text": documents[f"d{index}"][:20]})
                                                     + "\n" for index in range(4)))
    (directory / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{index}\td{index}\t1\n" for index in range(4)))
    run = tmp_path / "run.trec"
    run.write_text("".join(f"q{query} Q0 d{doc} {rank} {10 - rank}.0 bm25\n" for query in range(4)
                           for rank, doc in enumerate(range(8), start=1)))
    return directory, run


def test_help_shows_examples():
    for command in ("finetune", "mine"):
        result = invoke(command, "--help")
        assert result.exit_code == 0, result.output
        assert "Examples" in result.output and f"llara {command}" in result.output


def test_mine_writes_a_deterministic_training_file(collection, tmp_path):
    directory, run = collection
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (first, second):
        result = invoke("mine", "--train", directory, "--run", run, "--out", out, "--skip", "1", "--depth", "6",
                        "--num-negatives", "3", "--seed", "5")
        assert result.exit_code == 0, result.output
    assert "4 queries, 12 negatives" in result.output
    assert first.read_bytes() == second.read_bytes()
    examples = read_training_file(first)
    assert all(len(example.negatives) == 3 and example.positives[0].doc_id == f"d{index}"
               for index, example in enumerate(examples))
    result = invoke("mine", "--train", directory, "--run", run, "--out", first)
    assert result.exit_code == 2 and "already exists" in result.output


def test_finetune_from_a_collection_and_a_run(tiny_model_dir, collection, tmp_path):
    directory, run = collection
    out = tmp_path / "ft"
    result = invoke("finetune", "--train", directory, "--negatives-from", run, "--model", tiny_model_dir,
                    "--out", out, *TINY_RUN)
    assert result.exit_code == 0, result.output
    assert "finetuned on 4 queries for 2 steps" in result.output and "LoRA adapter" in result.output
    assert (out / "adapter_model.safetensors").is_file()
    settings = json.loads((out / "finetune_config.json").read_text())["settings"]
    assert settings["lora_targets"] == ["q_proj", "v_proj"] and settings["group_size"] == 2


def test_a_finetuned_model_encodes_and_searches_at_the_lengths_it_was_trained_with(tiny_model_dir, collection, tmp_path):
    directory, run = collection
    out = tmp_path / "ft"
    result = invoke("finetune", "--train", directory, "--negatives-from", run, "--model", tiny_model_dir,
                    "--out", out, *TINY_RUN)  # queries at 16 tokens, passages at 24
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "llara_config.json").read_text())
    assert (saved["query_max_length"], saved["passage_max_length"]) == (16, 24)
    assert invoke("encode", directory, "--model", out, "--out", tmp_path / "emb").exit_code == 0
    assert json.loads((tmp_path / "emb" / "meta.json").read_text())["max_length"] == 24
    assert invoke("index", tmp_path / "emb", "--out", tmp_path / "index").exit_code == 0
    rng = random.Random(1)
    queries = tmp_path / "long-queries.jsonl"  # 30 words: cut at 16 tokens, not at 64
    queries.write_text("".join(json.dumps({"_id": f"q{index}", "text": " ".join(rng.choice(WORDS) for _ in range(30))})
                               + "\n" for index in range(3)))
    runs = {}
    for name, extra in (("default", []), ("trained", ["--max-length", "16"]), ("longer", ["--max-length", "64"])):
        result = invoke("search", "--index", tmp_path / "index", "--queries", queries, "--out",
                        tmp_path / f"{name}.trec", *extra)
        assert result.exit_code == 0, result.output
        runs[name] = (tmp_path / f"{name}.trec").read_text()
    assert runs["default"] == runs["trained"] and runs["default"] != runs["longer"]


@pytest.mark.parametrize(("extra", "message"), [
    ([], "--negatives-from"),
    (["--full", "--merge"], "--merge"),
    (["--negatives-from", "missing.trec", "--depth", "2", "--skip", "2"], "--depth"),
    (["--lora-targets", " , "], "--lora-targets"),
])
def test_bad_usage_is_one_line_with_exit_2(tiny_model_dir, collection, tmp_path, extra, message):
    directory, _ = collection
    result = invoke("finetune", "--train", directory, "--model", tiny_model_dir, "--out", tmp_path / "o", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_mrl_finetuning_records_its_dims_and_encodes_a_prefix_without_warning(tiny_model_dir, collection, tmp_path,
                                                                               caplog):
    import logging

    directory, run = collection
    out = tmp_path / "mrl"
    result = invoke("finetune", "--train", directory, "--negatives-from", run, "--model", tiny_model_dir,
                    "--out", out, *TINY_RUN, "--mrl-dims", "32,16", "--mrl-weights", "1,0.5,0.5")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "llara_config.json").read_text())["mrl_dims"] == [64, 32, 16]
    fingerprint = json.loads((out / "finetune_config.json").read_text())["settings"]
    assert fingerprint["mrl_dims"] == [32, 16] and fingerprint["mrl_weights"] == [1.0, 0.5, 0.5]
    with caplog.at_level(logging.WARNING):
        assert invoke("encode", directory, "--model", out, "--out", tmp_path / "emb16", "--dim", 16).exit_code == 0
    assert not [record for record in caplog.records if "was not trained for" in record.getMessage()]


@pytest.mark.parametrize(("extra", "message"), [
    (["--mrl-dims", "32,x"], "--mrl-dims must be comma-separated ints"),
    (["--mrl-weights", "1,1"], "--mrl-weights needs --mrl-dims"),
    (["--mrl-dims", "32,32"], "distinct positive dims"),
])
def test_bad_mrl_options_are_one_line_with_exit_2(tiny_model_dir, collection, tmp_path, extra, message):
    directory, run = collection
    result = invoke("finetune", "--train", directory, "--negatives-from", run, "--model", tiny_model_dir,
                    "--out", tmp_path / "o", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_finetune_prints_its_settings_and_memory_plan(tiny_model_dir, collection, tmp_path):
    directory, run = collection
    result = invoke("finetune", "--train", directory, "--negatives-from", run, "--model", tiny_model_dir,
                    "--out", tmp_path / "ft", *TINY_RUN, "--chunk-size", "3")
    assert result.exit_code == 0, result.output
    assert "group_size 2 (flag)" in result.output and "temperature 0.01 (llara default)" in result.output
    assert "memory: estimated peak" in result.output and "cached loss, 3 texts a pass" in result.output
    assert json.loads((tmp_path / "ft" / "finetune_config.json").read_text())["settings"]["chunk_size"] == 3


def test_a_run_that_cannot_fit_is_refused_before_loading_weights(tiny_model_dir, collection, tmp_path, monkeypatch):
    import llara_cli.training.memory_plan as memory_plan

    monkeypatch.setattr(memory_plan, "available_memory_bytes", lambda: 1024 ** 2)  # a 1 MiB machine
    directory, run = collection
    result = invoke("finetune", "--train", directory, "--negatives-from", run, "--model", tiny_model_dir,
                    "--out", tmp_path / "ft", *TINY_RUN, "--chunk-size", "0")
    assert result.exit_code == 2 and "--chunk-size" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ft").exists() and not (tmp_path / "ft.partial").exists()
