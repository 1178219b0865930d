"""``LlaraEncoder``: texts in, float32 embedding arrays out, through :meth:`LlaraModel.embed`.

Queries use the EBAR prompt (or the passage prompt, for a model whose ``query_prompt`` is ``ebae``), passages the
EBAE prompt of the model's family; texts are tokenized once, batched longest first (less padding), and returned in
input order. ``llara encode`` and ``llara search`` use this class.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from llara_cli.core.batching import check_batch_size, collate_side
from llara_cli.core.prompts import PromptFamily, QueryPrompt, Side, check_max_length
from llara_cli.model.llara_model import DEFAULT_ATTENTION, DEFAULT_DTYPE, LlaraModel

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16


class LlaraEncoder:
    """Encodes queries (EBAR side) and passages (EBAE side) with a :class:`LlaraModel` (in eval mode)."""

    def __init__(self, model: LlaraModel | torch.nn.Module, tokenizer=None, config=None, *,
                 device: str | torch.device | None = None) -> None:
        """``model`` is a :class:`LlaraModel`, or a causal LM given with its tokenizer and ``LlaraConfig``."""
        self.model = model if isinstance(model, LlaraModel) else LlaraModel(model, tokenizer, config)
        self.model.causal_lm.eval()
        self.device = torch.device(device) if device else self.model.device
        self.model.causal_lm.to(self.device)
        self.truncated_texts = 0  # texts cut to fit max_length so far (reported by callers)

    @classmethod
    def load(cls, model: str, *, dtype: str = DEFAULT_DTYPE, prompt_family: PromptFamily | str | None = None,
             trust_remote_code: bool = False, attn_implementation: str = DEFAULT_ATTENTION,
             device: str | None = None, query_prompt: QueryPrompt | str | None = None) -> LlaraEncoder:
        """Load a llara model directory, a plain HF model directory, an adapter directory or an alias
        (``query_prompt``: instead of the model's own)."""
        return cls(LlaraModel.load(model, dtype=dtype, prompt_family=prompt_family,
                                   trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
                                   query_prompt=query_prompt),
                   device=device)

    @property
    def config(self):
        return self.model.config

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def prompt_format(self):
        return self.model.prompt_format

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def dim(self) -> int:
        return self.model.dim

    def max_length(self, side: Side) -> int:
        return self.model.max_length(side)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    @torch.inference_mode()
    def embed_token_ids(self, text_ids: Sequence[list[int]], side: Side, max_length: int | None = None) -> torch.Tensor:
        """Embeddings ``(batch, dim)`` of one batch of tokenized texts (float32, normalised if configured)."""
        max_length = max_length or self.max_length(side)
        sequences = [self.model.prompt_format.single(ids, side, max_length) for ids in text_ids]
        self.truncated_texts += sum(sequence.truncated for sequence in sequences)
        batch = {key: tensor.to(self.device)
                 for key, tensor in collate_side(sequences, self.tokenizer.pad_token_id, side).items()}
        return self.model.embed(batch, side)  # (batch, dim)

    def encode(self, texts: Sequence[str], side: Side, *, batch_size: int = DEFAULT_BATCH_SIZE,
               max_length: int | None = None, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode texts in length-sorted batches (longest first) and return ``(n, dim)`` float32 in input order."""
        check_max_length(max_length, "max_length")
        check_batch_size(batch_size)
        text_ids = self.tokenize(texts)
        order = sorted(range(len(text_ids)), key=lambda index: -len(text_ids[index]))  # stable: ties keep input order
        output = np.empty((len(text_ids), self.dim), dtype=np.float32)  # (n, dim)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            output[indices] = self.embed_token_ids([text_ids[index] for index in indices], side, max_length).cpu().numpy()
            if on_batch is not None:
                on_batch(len(indices))
        return output

    def encode_passages(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return self.encode(texts, Side.PASSAGE, **kwargs)

    def encode_queries(self, texts: Sequence[str], **kwargs) -> np.ndarray:
        return self.encode(texts, Side.QUERY, **kwargs)
