"""A llara model as sentence-transformers modules: the prompt layout + decoder, and the llara pooling.

``SentenceTransformer(DIR, trust_remote_code=True)`` loads a directory written by
:func:`llara_cli.model.export.export_model` with these classes, imported from the installed ``llara_cli`` package
(sentence-transformers >= 6 asks for ``trust_remote_code`` for any module class outside its own namespace, also
an installed one; the exported directory holds no Python file, so nothing from the directory runs).

* :class:`LlaraTransformer` lays out each text exactly as ``llara encode`` does
  (:meth:`llara_cli.core.prompts.PromptFormat.single`): the family's prefix, the text truncated to the side's
  budget, then the suffix prompt and its eos or markers, token for token -- the suffix is never cut, and no chat
  template is applied (its only modality is plain text). ``encode_query`` (``task="query"``) takes the EBAR
  side, ``encode_document`` (``task="document"``) and a plain ``encode`` the EBAE side.
* :class:`LlaraPooling` is the llara pooling: the state at the eos (``paper``) or the mean of the eight marker
  states (``flagembedding``), located by the pool mask the layout made; a stock ``Normalize`` follows when the
  model normalises.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule, Module

from llara_cli.core.batching import POOL_MASK_KEYS, collate_side, side_key
from llara_cli.core.pooling import masked_mean_pool
from llara_cli.core.prompts import Segment, Side
from llara_cli.model.embedding_pass import decoder_of, run_decoder

logger = logging.getLogger(__name__)

QUERY_TASKS = frozenset({"query"})
PASSAGE_TASKS = frozenset({"document", "passage", "corpus"})
MODULE_CONFIG_FILE = "llara_sentence_transformers.json"


def side_for_task(task: str | None, default: Side = Side.PASSAGE) -> Side:
    """The llara side a sentence-transformers ``task`` asks for: ``query`` -> EBAR, documents -> EBAE."""
    if task is None:
        return default
    if task in QUERY_TASKS:
        return Side.QUERY
    if task in PASSAGE_TASKS:
        return Side.PASSAGE
    raise ValueError(f"llara models encode queries or documents, not task {task!r}")


def _dtype_name(model_kwargs: dict[str, Any] | None) -> str:
    """The llara dtype name for sentence-transformers' ``model_kwargs`` (``dtype``/``torch_dtype``); fp32 if unset."""
    value = (model_kwargs or {}).get("dtype", (model_kwargs or {}).get("torch_dtype"))
    if value is None or value == "auto":
        return "fp32"
    names = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}
    key = str(value).removeprefix("torch.")
    if key not in names:
        raise ValueError(f"unsupported dtype {value!r} for a llara model: use float32, bfloat16 or float16")
    return names[key]


class LlaraTransformer(InputModule):
    """The decoder of a llara model with its prompt layout; saved as the llara model directory itself."""

    config_file_name = MODULE_CONFIG_FILE
    config_keys = ["query_max_length", "passage_max_length", "default_side"]
    save_in_root = True

    def __init__(self, llara_model, *, query_max_length: int | None = None,
                 passage_max_length: int | None = None, default_side: str = Side.PASSAGE.value) -> None:
        super().__init__()
        self.llara_model = llara_model
        self.causal_lm = llara_model.causal_lm  # registered as a submodule: .to(device), .eval(), parameters
        self.tokenizer = llara_model.tokenizer
        self.query_max_length = int(query_max_length or llara_model.max_length(Side.QUERY))
        self.passage_max_length = int(passage_max_length or llara_model.max_length(Side.PASSAGE))
        self.default_side = Side(default_side).value

    @property
    def modalities(self) -> list[str]:
        return ["text"]  # plain text only: the chat template the tokenizer may keep is never applied

    @property
    def max_seq_length(self) -> int:
        return self.passage_max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.passage_max_length = int(value)

    def max_length(self, side: Side) -> int:
        return self.query_max_length if side is Side.QUERY else self.passage_max_length

    def get_embedding_dimension(self) -> int:
        return self.llara_model.dim

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, task: str | None = None,
                   max_length: int | None = None, **kwargs) -> dict[str, torch.Tensor]:
        """Lay out each text as ``llara encode`` does for the side ``task`` names (input ids, segments, pool mask)."""
        if prompt:
            raise ValueError("a llara model builds its own (suffix) prompts; encode without prompt/prompt_name")
        texts = list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("a llara model encodes plain text strings only")
        side = side_for_task(task, Side(self.default_side))
        length = int(max_length or self.max_length(side))
        text_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        sequences = [self.llara_model.prompt_format.single(list(ids), side, length) for ids in text_ids]
        batch = collate_side(sequences, self.tokenizer.pad_token_id, side)
        segment_ids = batch[side_key(side, "segment_ids")]  # (batch, seq)
        return {
            "input_ids": batch[side_key(side, "input_ids")],  # (batch, seq)
            "segment_ids": segment_ids,
            "attention_mask": (segment_ids != Segment.PAD).long(),  # (batch, seq)
            "pool_mask": batch[POOL_MASK_KEYS[side]],  # (batch, seq)
        }

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        hidden_states = run_decoder(decoder_of(self.causal_lm), features["input_ids"], features["segment_ids"],
                                    joint=False)  # (batch, seq, dim)
        features["token_embeddings"] = hidden_states
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        """The llara model directory (HF weights, tokenizer, ``llara_config.json``) and this module's lengths."""
        from llara_cli.model.llara_model import save_model_dir

        save_model_dir(output_path, self.causal_lm, self.tokenizer, self.llara_model.config)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             trust_remote_code: bool = False, model_kwargs: dict[str, Any] | None = None,
             **kwargs) -> LlaraTransformer:
        from llara_cli.model.llara_model import LlaraModel

        hub = {"token": token, "cache_folder": cache_folder, "revision": revision, "local_files_only": local_files_only}
        directory = cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub)
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub)
        # the model's own code (transformers' trust_remote_code) is a separate question from this module's class
        model = LlaraModel.load(str(Path(directory)), dtype=_dtype_name(model_kwargs),
                                trust_remote_code=bool((model_kwargs or {}).get("trust_remote_code", False)))
        return cls(model, **config)


class LlaraPooling(Module):
    """The llara pooling: mean of the states where the pool mask is set (the eos, or the eight markers)."""

    config_keys = ["embedding_dimension", "pooling"]

    def __init__(self, embedding_dimension: int, pooling: str) -> None:
        super().__init__()
        self.embedding_dimension = int(embedding_dimension)
        self.pooling = str(pooling)  # llara_cli.model.config.Pooling value, recorded for readers of the config

    def forward(self, features: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        embeddings = masked_mean_pool(features["token_embeddings"], features["pool_mask"]).float()  # (batch, dim)
        features["sentence_embedding"] = embeddings
        return features

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
