"""Shared fixtures: a tiny random Llama model and an offline word-level tokenizer, built once per session."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

WORDS = (
    "the a an of to in on for with and or is are was were be by as at it this that from which "
    "original next sentence summarize above passage within eight words predict following "
    "protein cell gene cancer patient study results effect treatment disease risk increase "
    "model data method system retrieval query document search index dense vector language "
    "river mountain city music film history war king queen science paper water energy light "
    "computer program network learning neural training test time year first new high low "
    "red blue green small large fast slow good bad old young human animal plant food health"
).split()
PUNCTUATION = [".", ",", ":", '"', '",', "?", "!", "(", ")", "-", "'"]
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tiny_tokenizer():
    """A Llama-like offline tokenizer: word-level, ``<s>`` prepended, pad/unk/eos set, right padding."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS + PUNCTUATION)}
    for capitalised in ("The", "A", "This"):
        vocabulary[capitalised] = len(vocabulary)
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocabulary["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        padding_side="right",
    )


def build_tiny_model(vocab_size: int, attn_implementation: str = "sdpa", seed: int = 0, tied: bool = False):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=vocab_size, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3,
        tie_word_embeddings=tied,
    )
    config._attn_implementation = attn_implementation
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved HF model directory (random tiny Llama + tokenizer), as a user would pass to ``--model``."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_model(len(tiny_tokenizer)).save_pretrained(directory, safe_serialization=True)
    tiny_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared test collections are not at {SHARED_DATA} (a fresh clone without ../shared)")
    return SHARED_DATA


# ------------------------------------------------------------------------------ collections several packages share


def write_beir_collection(directory: Path, docs: dict[str, str], queries: dict[str, str], qrels, *,
                          split: str = "test") -> Path:
    """A BEIR directory: ``corpus.jsonl`` (empty titles), ``queries.jsonl`` and ``qrels/<split>.tsv`` of
    ``(query_id, doc_id, relevance)`` rows."""
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    (directory / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n" for doc_id, text in docs.items()))
    (directory / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": query_id, "text": text}) + "\n" for query_id, text in queries.items()))
    (directory / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels))
    return directory


@pytest.fixture
def beir_dir(tmp_path):
    """The pipeline tests' BEIR directory: six documents, three judged queries."""
    from tests.cli.test_pipeline_cli import DOCS, QRELS, QUERIES

    return write_beir_collection(tmp_path / "collection", DOCS, QUERIES, QRELS)


@pytest.fixture
def collection(tmp_path):
    """A BEIR directory: corpus.jsonl, queries.jsonl, qrels/test.tsv (the hardened-I/O tests' three documents)."""
    from tests.cli.test_hardened_io import DOCS as HARDENED_DOCS
    from tests.cli.test_hardened_io import QUERIES as HARDENED_QUERIES
    from tests.cli.test_hardened_io import write_jsonl

    directory = tmp_path / "collection"
    (directory / "qrels").mkdir(parents=True)
    write_jsonl(directory / "corpus.jsonl", [{"_id": d, "title": "", "text": t} for d, t in HARDENED_DOCS.items()])
    write_jsonl(directory / "queries.jsonl", [{"_id": q, "text": t} for q, t in HARDENED_QUERIES.items()])
    (directory / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    return directory


@pytest.fixture
def run_file(tmp_path):
    from tests.cli.test_hardened_io import RUN_LINES

    path = tmp_path / "a.trec"
    path.write_text("\n".join(RUN_LINES) + "\n")
    return path


@pytest.fixture(scope="session")
def served_collection(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """A tiny served collection: the pipeline tests' six documents, a faiss index of the tiny model and BM25."""
    from tests.cli.conftest import invoke
    from tests.cli.test_pipeline_cli import DOCS, QRELS
    from tests.search.service.conftest import ALL_QUERIES, MORE_QUERIES

    root = tmp_path_factory.mktemp("served")
    collection = write_beir_collection(root / "collection", DOCS, ALL_QUERIES,
                                       [*QRELS, *((query_id, "d1", 0) for query_id in MORE_QUERIES)])
    result = invoke("encode", collection, "--model", tiny_model_dir, "--out", root / "emb", "--dtype", "fp32")
    assert result.exit_code == 0, result.output
    result = invoke("index", root / "emb", "--out", root / "index")
    assert result.exit_code == 0, result.output
    return {"collection": collection, "corpus": collection / "corpus.jsonl", "emb": root / "emb",
            "index": root / "index", "root": root}


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    """The finetuning tests' training file: ``{query, pos, neg}`` groups over the tiny vocabulary."""
    from llara_cli.data.finetune import write_training_file
    from tests.training.test_finetune import make_examples

    path = tmp_path_factory.mktemp("finetune-data") / "train.jsonl"
    write_training_file(path, make_examples())
    return path
