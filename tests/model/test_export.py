"""`export_model`: a llara model as a sentence-transformers directory that gives `llara encode`'s vectors.

Parity is checked for both prompt families, full models and LoRA adapters (merged on export), with the real
sentence-transformers loading the exported directory from disk.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from llara_cli.core.prompts import QueryPrompt, Side
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.errors import UsageError
from llara_cli.model.adapters import LoraSettings
from llara_cli.model.config import LlaraConfig, Stage
from llara_cli.model.export import ExportFormat, export_model
from llara_cli.model.llara_model import LlaraModel

pytest.importorskip("sentence_transformers")

TEXTS = [
    "the protein cell gene increase risk",
    "river city",
    "the study results . treatment effect on the patient , cancer risk",
    " ".join(["water energy light"] * 60),  # longer than the query length: only the text is cut
]
FAMILIES = ("paper", "flagembedding")
CHAT_TEMPLATE = "{% for message in messages %}<s> {{ message['content'] }} </s>{% endfor %}"


def _finetuned_full(base: Path, family: str, out: Path) -> Path:
    model = LlaraModel.load(str(base), prompt_family=family)
    model.causal_lm.model.norm.weight.data.mul_(1.5)  # weights that differ from the base
    model.tokenizer.chat_template = CHAT_TEMPLATE  # as SmolLM2-Instruct's directories keep: must not be applied
    config = dataclasses.replace(model.config, stage=Stage.FINETUNED, query_max_length=24, passage_max_length=48)
    model.save(out, config)
    return out


def _finetuned_adapter(base: Path, family: str, out: Path) -> Path:
    torch.manual_seed(1)
    model = LlaraModel.build(str(base), prompt_family=family, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
                             base_reference=str(base))
    with torch.no_grad():
        for name, parameter in model.causal_lm.named_parameters():
            if "lora_B" in name:  # zero at init: give the adapter something to merge
                parameter.normal_(std=0.05)
    config = dataclasses.replace(model.config, stage=Stage.FINETUNED, query_max_length=24, passage_max_length=48)
    model.save(out, config)
    return out


@pytest.fixture(scope="module", params=[(family, kind) for family in FAMILIES for kind in ("full", "lora")],
                ids=lambda param: f"{param[0]}-{param[1]}")
def trained_model(request, tiny_model_dir, tmp_path_factory) -> Path:
    family, kind = request.param
    out = tmp_path_factory.mktemp(f"{family}-{kind}") / "model"
    build = _finetuned_full if kind == "full" else _finetuned_adapter
    return build(tiny_model_dir, family, out)


def _cosines(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    first = first / np.linalg.norm(first, axis=1, keepdims=True)
    second = second / np.linalg.norm(second, axis=1, keepdims=True)
    return (first * second).sum(axis=1)


def test_the_exported_model_gives_llara_encode_vectors_on_both_sides(trained_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    result = export_model(str(trained_model), tmp_path / "st")
    assert result.format is ExportFormat.SENTENCE_TRANSFORMERS
    assert result.merged_adapter == (trained_model / "adapter_config.json").is_file()
    assert not list((tmp_path / "st").rglob("*.py"))  # no code travels with the directory
    model = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    encoder = LlaraEncoder.load(str(trained_model))
    queries = model.encode_query(TEXTS, batch_size=3)  # (n, dim)
    passages = model.encode_document(TEXTS, batch_size=3)  # (n, dim)
    assert queries.shape == (len(TEXTS), encoder.dim)
    assert _cosines(queries, encoder.encode_queries(TEXTS)).min() >= 0.9999
    assert _cosines(passages, encoder.encode_passages(TEXTS)).min() >= 0.9999
    assert _cosines(queries, passages).min() < 0.9999  # the two sides are two prompts, not one


def test_an_ebae_model_exports_its_queries_laid_out_with_the_passage_prompt(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    trained = _finetuned_full(tiny_model_dir, "flagembedding", tmp_path / "model")
    config = LlaraConfig.load(trained)
    dataclasses.replace(config, query_prompt=QueryPrompt.EBAE).save(trained)
    export_model(str(trained), tmp_path / "st")
    model = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    encoder = LlaraEncoder.load(str(trained))
    queries = model.encode_query(TEXTS, batch_size=3)  # (n, dim)
    assert _cosines(queries, encoder.encode_queries(TEXTS)).min() >= 0.9999
    as_passages = encoder.encode(TEXTS, Side.PASSAGE, max_length=encoder.max_length(Side.QUERY))
    assert _cosines(queries, as_passages).min() >= 0.9999  # the passage prompt, at the query length
    card = (tmp_path / "st" / "README.md").read_text()
    assert "queries (the passage prompt: this model is symmetric)" in card


def test_the_suffix_prompt_survives_truncation_and_no_chat_template_is_applied(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    trained = _finetuned_full(tiny_model_dir, "paper", tmp_path / "model")
    export_model(str(trained), tmp_path / "st")
    model = SentenceTransformer(str(tmp_path / "st"), trust_remote_code=True, device="cpu")
    features = model.preprocess([TEXTS[-1], TEXTS[1]], task="query")
    eos_id = model.tokenizer.eos_token_id
    assert features["input_ids"].shape[1] == 24  # the query length, prompt included
    assert features["input_ids"][0, -1].item() == eos_id  # the suffix and its eos were kept
    assert features["pool_mask"][0].nonzero().flatten().tolist() == [23]
    first_row = model.tokenizer.convert_ids_to_tokens(features["input_ids"][1].tolist())
    assert first_row[:3] == ["<s>", "river", "city"]  # the text itself, not a chat turn


def test_the_model_card_and_configs_say_how_it_embeds(trained_model, tmp_path):
    export_model(str(trained_model), tmp_path / "st")
    card = (tmp_path / "st" / "README.md").read_text()
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    assert [module["type"].rsplit(".", 1)[-1] for module in modules] == ["LlaraTransformer", "LlaraPooling", "Normalize"]
    assert "stage: `finetuned`" in card and "queries 24, passages 48" in card
    assert ("The original sentence: </s>" in card) or ("summarize the above passage within eight words: <s1>" in card)


def test_hf_export_loads_in_plain_transformers(trained_model, tmp_path):
    from transformers import AutoModelForCausalLM

    export_model(str(trained_model), tmp_path / "hf", to="hf")
    causal_lm = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    encoder = LlaraEncoder.load(str(tmp_path / "hf"))
    assert causal_lm.get_input_embeddings().weight.shape[0] == len(encoder.tokenizer)
    reference = LlaraEncoder.load(str(trained_model)).encode_passages(TEXTS)
    assert _cosines(encoder.encode_passages(TEXTS), reference).min() >= 0.9999
    assert "library_name: transformers" in (tmp_path / "hf" / "README.md").read_text()


def test_export_refuses_a_non_empty_output_and_an_unknown_format(tiny_model_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        export_model(str(tiny_model_dir), tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="unknown export format"):
        export_model(str(tiny_model_dir), tmp_path / "out", to="onnx")
    assert not list(tmp_path.glob(".out.*"))



def test_the_card_reads_the_training_recipe_from_the_run_config(tiny_model_dir, tmp_path):
    trained = _finetuned_full(tiny_model_dir, "paper", tmp_path / "model")
    (trained / "finetune_config.json").write_text(json.dumps(
        {"model": "smollm2-135m", "learning_rate": 0.0001, "temperature": 0.01, "seed": 7, "unrelated": 1}))
    export_model(str(trained), tmp_path / "st")
    card = (tmp_path / "st" / "README.md").read_text()
    assert '"learning_rate": 0.0001' in card and '"temperature": 0.01' in card and "unrelated" not in card
    assert (tmp_path / "st" / "finetune_config.json").is_file()  # the full settings travel with the model
