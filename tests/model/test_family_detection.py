"""Which prompt family a model gets: its saved config, else its tokenizer's markers, else the request or paper."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app
from llara_cli.core.prompts import FLAG_MARKER_TOKENS, PromptFamily, detect_family, family_for
from llara_cli.errors import UsageError
from llara_cli.model.config import LlaraConfig, Stage
from llara_cli.model.config import resolve_config as choose_config
from tests.conftest import build_tiny_model, build_tiny_tokenizer

FLAG, PAPER = PromptFamily.FLAGEMBEDDING, PromptFamily.PAPER
PLAIN_VOCABULARY = {"the": 0, "cell": 1}
MARKER_VOCABULARY = {**PLAIN_VOCABULARY, **{marker: 2 + index for index, marker in enumerate(FLAG_MARKER_TOKENS)}}


def test_all_sixteen_markers_make_a_flagembedding_tokenizer():
    assert detect_family(MARKER_VOCABULARY) is FLAG
    assert detect_family(PLAIN_VOCABULARY) is None
    assert detect_family({marker: 0 for marker in FLAG_MARKER_TOKENS[:15]}) is None  # not the released set


def test_the_models_own_family_wins_and_a_contradiction_is_refused():
    assert family_for(None, FLAG, model="m", own_source="x") is FLAG
    assert family_for(FLAG, None, model="m", own_source="x") is FLAG
    assert family_for(None, None, model="m", own_source="x") is PAPER
    with pytest.raises(UsageError, match="m is a flagembedding-family model .*--prompt-family paper"):
        family_for(PAPER, FLAG, model="m", own_source="x")


def test_a_plain_model_takes_the_callers_default_family_only_when_it_has_none():
    assert family_for(None, None, model="m", own_source="x", default=FLAG) is FLAG  # llara adapt's default
    assert family_for(PAPER, None, model="m", own_source="x", default=FLAG) is PAPER
    assert choose_config(None, None, "plain", PLAIN_VOCABULARY, default_family=FLAG).prompt_family is FLAG


def test_plain_model_with_markers_is_flagembedding_and_the_choice_is_logged(caplog):
    with caplog.at_level("INFO", logger="llara_cli.model.config"):
        config = choose_config(None, None, "BAAI/LLARA-passage", MARKER_VOCABULARY)
    assert config.prompt_family is FLAG and config.prompt_layout == 2
    assert "BAAI/LLARA-passage" in caplog.text and "markers" in caplog.text
    assert choose_config(None, None, "plain", PLAIN_VOCABULARY).prompt_family is PAPER
    assert choose_config(None, "flagembedding", "plain", PLAIN_VOCABULARY).prompt_family is FLAG


@pytest.mark.parametrize("saved_stage", [Stage.ADAPTED, Stage.FINETUNED])
def test_an_explicit_family_contradicting_the_saved_config_is_refused(saved_stage):
    saved = LlaraConfig(prompt_family=FLAG, stage=saved_stage, prompt_layout=1)
    assert choose_config(saved, "flagembedding", "m", PLAIN_VOCABULARY) is saved
    with pytest.raises(UsageError, match=f"was {saved_stage.value} with the flagembedding prompt family"):
        choose_config(saved, "paper", "m", PLAIN_VOCABULARY)
    with pytest.raises(UsageError, match="tokenizer has the <s1>..<s16> markers"):
        choose_config(None, "paper", "m", MARKER_VOCABULARY)


def test_encode_with_a_contradicting_family_is_one_line_and_exit_two(tmp_path):
    model_dir = tmp_path / "marker-model"
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens(list(FLAG_MARKER_TOKENS), special_tokens=True)
    build_tiny_model(len(tokenizer)).save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "the cell"}) + "\n")
    result = CliRunner().invoke(app, ["encode", str(corpus), "--model", str(model_dir), "--out", str(tmp_path / "emb"),
                                      "--prompt-family", "paper"])
    assert result.exit_code == 2, result.output
    assert "flagembedding-family model" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "emb").exists()


def test_an_unknown_prompt_layout_is_refused(tmp_path):
    (tmp_path / "llara_config.json").write_text(json.dumps({"prompt_family": "paper", "prompt_layout": 9}))
    with pytest.raises(UsageError, match="unknown prompt_layout 9"):
        LlaraConfig.load(tmp_path)
