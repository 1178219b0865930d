"""LlaraModel: resolved once, embeds like the encoder, saves its trained lengths, refuses a mismatched family."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from llara_cli.core.batching import collate_side
from llara_cli.core.prompts import FLAG_MARKER_TOKENS, PromptFamily, QueryPrompt, Side
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.errors import UsageError
from llara_cli.model.adapters import LoraSettings
from llara_cli.model.config import LlaraConfig, Stage
from llara_cli.model.llara_model import LlaraModel, ModelSource

TEXTS = ["the protein cell gene increase risk", "river city"]


def side_batch(model: LlaraModel, side: Side, max_length: int = 64) -> dict:
    text_ids = model.tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    sequences = [model.prompt_format.single(ids, side, max_length) for ids in text_ids]
    return collate_side(sequences, model.tokenizer.pad_token_id, side)


def test_a_source_adds_the_marker_tokens_before_any_weights_and_the_load_sizes_the_embeddings(tiny_model_dir):
    source = ModelSource.resolve(str(tiny_model_dir), prompt_family="flagembedding")
    assert source.config.prompt_family is PromptFamily.FLAGEMBEDDING and source.added_markers == 16
    assert set(FLAG_MARKER_TOKENS) <= set(source.tokenizer.get_vocab())
    source.prompt_format.text_budget(64, joint=True)  # the prompt lays out: every marker is one token
    model = LlaraModel.load(source)
    assert model.causal_lm.get_input_embeddings().weight.shape[0] == len(source.tokenizer)
    assert model.name == str(tiny_model_dir.resolve())


def test_embed_is_what_the_encoder_returns(tiny_model_dir):
    model = LlaraModel.load(str(tiny_model_dir))
    with torch.inference_mode():
        embeddings = model.embed(side_batch(model, Side.QUERY), Side.QUERY)  # (2, dim)
    assert embeddings.shape == (2, model.dim) and embeddings.dtype == torch.float32
    encoded = LlaraEncoder(model).encode_queries(TEXTS, batch_size=2, max_length=64)
    assert torch.equal(embeddings, torch.from_numpy(encoded))


def test_save_and_load_keep_the_weights_and_the_trained_lengths(tiny_model_dir, tmp_path):
    model = LlaraModel.load(str(tiny_model_dir), prompt_family="flagembedding")
    trained = dataclasses.replace(model.config, stage=Stage.FINETUNED, query_max_length=24, passage_max_length=40)
    model.save(tmp_path / "saved", trained)
    again = LlaraModel.load(str(tmp_path / "saved"))
    assert LlaraConfig.load(tmp_path / "saved") == again.config == trained
    assert (again.max_length(Side.QUERY), again.max_length(Side.PASSAGE)) == (24, 40)
    with torch.inference_mode():
        before = model.embed(side_batch(model, Side.PASSAGE), Side.PASSAGE)
        after = again.embed(side_batch(again, Side.PASSAGE), Side.PASSAGE)
    assert torch.equal(before, after)


def test_a_saved_ebae_query_prompt_makes_the_model_embed_queries_as_passages(tiny_model_dir, tmp_path):
    model = LlaraModel.load(str(tiny_model_dir), prompt_family="flagembedding")
    model.save(tmp_path / "symmetric", dataclasses.replace(model.config, stage=Stage.ADAPTED,
                                                          query_prompt=QueryPrompt.EBAE))
    saved = json.loads((tmp_path / "symmetric" / "llara_config.json").read_text())
    assert saved["query_prompt"] == "ebae"
    encoder = LlaraEncoder.load(str(tmp_path / "symmetric"))
    assert encoder.config.query_prompt is QueryPrompt.EBAE
    queries = encoder.encode_queries(TEXTS, max_length=64)
    assert (queries == encoder.encode_passages(TEXTS, max_length=64)).all()
    paper_default = LlaraEncoder(model).encode_queries(TEXTS, max_length=64)
    assert not (paper_default == queries).all()


def test_the_papers_query_prompt_is_not_written_so_older_files_stay_as_they_were(tiny_model_dir, tmp_path):
    LlaraModel.load(str(tiny_model_dir)).save(tmp_path / "plain")
    saved = json.loads((tmp_path / "plain" / "llara_config.json").read_text())
    assert "query_prompt" not in saved
    assert LlaraConfig.from_dict(saved).query_prompt is QueryPrompt.EBAR


def test_an_unknown_saved_query_prompt_names_the_config_file():
    with pytest.raises(UsageError, match="llara_config.json: unknown query prompt 'both'"):
        LlaraConfig.from_dict({"query_prompt": "both"})


def test_a_trained_model_refuses_another_prompt_family(tiny_model_dir, tmp_path):
    model = LlaraModel.load(str(tiny_model_dir))
    model.save(tmp_path / "adapted", dataclasses.replace(model.config, stage=Stage.ADAPTED))
    with pytest.raises(UsageError, match="was adapted with the paper prompt family"):
        ModelSource.resolve(str(tmp_path / "adapted"), prompt_family="flagembedding")


def test_build_wraps_lora_adapters_that_train_only_adapters_and_marker_rows(tiny_model_dir):
    torch.manual_seed(0)
    model = LlaraModel.build(str(tiny_model_dir), prompt_family="flagembedding",
                             lora=LoraSettings(r=4, alpha=8, dropout=0.0), base_reference="base")
    trainable = [name for name, parameter in model.causal_lm.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name or "trainable_tokens" in name for name in trainable)
    assert model.causal_lm.peft_config["default"].base_model_name_or_path == "base"


def test_an_adapter_from_the_embedded_alias_records_a_base_plain_peft_loads(tiny_model_dir, tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llara_cli.model import resolve
    from llara_cli.model.llara_model import adapter_base_reference

    monkeypatch.setattr(resolve, "ensure_embedded_smollm2", lambda: tiny_model_dir)  # the converted directory
    assert adapter_base_reference("smollm2-135m") == str(tiny_model_dir.resolve())
    assert adapter_base_reference("llama-2-7b") == "meta-llama/Llama-2-7b-hf"
    assert adapter_base_reference(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    torch.manual_seed(2)
    model = LlaraModel.build("smollm2-135m", lora=LoraSettings(r=4, alpha=8, dropout=0.0),
                             base_reference=adapter_base_reference("smollm2-135m"))
    model.save(tmp_path / "adapter")
    recorded = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(recorded), tmp_path / "adapter")
    assert plain.peft_config["default"].r == 4
