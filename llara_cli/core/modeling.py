"""LLaRA models: the encoder used for retrieval, and the adaptation objective (EBAE + EBAR) used for training.

Both run the stock Hugging Face decoder; the joint pass only changes the attention mask and position ids
it is given (built in :mod:`llara_cli.core.masks`), never the model code.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from llara_cli.core.batching import POOL_MASK_KEYS, collate_prompted
from llara_cli.core.config import BowLogits, LlaraConfig
from llara_cli.core.losses import IGNORE_INDEX, bow_loss, marker_max_bow_loss, mean_of_present, target_set_mask
from llara_cli.core.masks import joint_attention_inputs, padded_position_ids
from llara_cli.core.pooling import gather_positions, masked_mean_pool, normalize
from llara_cli.core.prompts import TEMPLATES, PromptFormat, Segment, Side

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16


def decoder_of(causal_lm: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (no LM head), also through a peft wrapper."""
    return causal_lm.get_decoder()


def run_decoder(decoder: nn.Module, input_ids: torch.Tensor, segment_ids: torch.Tensor, *, joint: bool) -> torch.Tensor:
    """Last hidden states ``(batch, seq, dim)``.

    ``joint`` builds the 4D mask that hides the passage suffix from the query suffix; otherwise the ordinary
    2D padding mask is used (the model's own causal attention, faster), with padding-aware position ids.
    """
    if joint:
        dtype = decoder.get_input_embeddings().weight.dtype
        attention_mask, position_ids = joint_attention_inputs(segment_ids, dtype)
    else:
        attention_mask = (segment_ids != Segment.PAD).long()  # (batch, seq)
        position_ids = padded_position_ids(attention_mask)
    outputs = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return outputs.last_hidden_state


def prompt_format_for(tokenizer, config: LlaraConfig) -> PromptFormat:  # noqa: ANN001 - HF tokenizer
    return PromptFormat.from_tokenizer(TEMPLATES[config.prompt_family], tokenizer, config.prompt_layout)


class LlaraEncoder:
    """Encodes queries (EBAR side) and passages (EBAE side) into float32 arrays. The CLI uses this same class."""

    def __init__(self, model: nn.Module, tokenizer, config: LlaraConfig, *, name: str = "",  # noqa: ANN001
                 device: str | torch.device | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model.to(self.device)
        self.prompt_format = prompt_format_for(tokenizer, config)
        self.truncated_texts = 0  # texts cut to fit max_length so far (reported by callers)

    @classmethod
    def load(cls, model: str, *, dtype: str = "fp32", prompt_family: str | None = None,
             trust_remote_code: bool = False, attn_implementation: str = "sdpa",
             device: str | None = None) -> LlaraEncoder:
        """Load a llara model directory, a plain HF model directory, or an alias (see :mod:`core.models`)."""
        from llara_cli.core.loading import load_llara_model

        causal_lm, tokenizer, config = load_llara_model(
            model, dtype=dtype, prompt_family=prompt_family, trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation,
        )
        name = str(Path(model).resolve()) if Path(model).is_dir() else model  # recorded with embeddings/indexes
        return cls(causal_lm, tokenizer, config, name=name, device=device)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def max_length(self, side: Side) -> int:
        return self.config.passage_max_length if side is Side.PASSAGE else self.config.query_max_length

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    @torch.inference_mode()
    def embed_token_ids(self, text_ids: Sequence[list[int]], side: Side, max_length: int | None = None) -> torch.Tensor:
        """Embeddings ``(batch, dim)`` of one batch of tokenized texts (float32, normalised if configured)."""
        max_length = max_length or self.max_length(side)
        sequences = [self.prompt_format.single(ids, side, max_length) for ids in text_ids]
        self.truncated_texts += sum(sequence.truncated for sequence in sequences)
        batch = collate_prompted(sequences, self.tokenizer.pad_token_id)
        hidden = run_decoder(decoder_of(self.model), batch["input_ids"].to(self.device),
                             batch["segment_ids"].to(self.device), joint=False)
        embeddings = masked_mean_pool(hidden, batch[POOL_MASK_KEYS[side]].to(self.device)).float()  # (batch, dim)
        return normalize(embeddings) if self.config.normalize else embeddings

    def encode(self, texts: Sequence[str], side: Side, *, batch_size: int = DEFAULT_BATCH_SIZE,
               max_length: int | None = None, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode texts in length-sorted batches (longest first) and return ``(n, dim)`` float32 in input order."""
        text_ids = self.tokenize(texts)
        order = sorted(range(len(text_ids)), key=lambda index: -len(text_ids[index]))  # stable: ties keep input order
        output = np.empty((len(text_ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            output[indices] = self.embed_token_ids([text_ids[index] for index in indices], side, max_length).cpu().numpy()
            if on_batch is not None:
                on_batch(len(indices))
        return output

    def encode_passages(self, texts: Sequence[str], **kwargs) -> np.ndarray:  # noqa: ANN003
        return self.encode(texts, Side.PASSAGE, **kwargs)

    def encode_queries(self, texts: Sequence[str], **kwargs) -> np.ndarray:  # noqa: ANN003
        return self.encode(texts, Side.QUERY, **kwargs)


class LlaraAdaptationModel(nn.Module):
    """The LLaRA adaptation objective around a causal LM.

    ``forward`` takes a joint batch (``input_ids``, ``segment_ids`` with both suffixes, pool masks) or a
    two-pass batch (``passage_*`` and ``query_*`` tensors), plus ``passage_targets`` (the input's tokens, EBAE)
    and ``query_targets`` (the next span's tokens, EBAR), and returns ``bow_scale`` times the mean of the BoW
    losses of the sides that have targets, plus ``lm_loss_weight`` times the next-token loss on the text when
    that weight is positive (:mod:`core.objective`).
    """

    def __init__(self, causal_lm: nn.Module, prompt_format: PromptFormat, *, bow_logits: BowLogits,
                 excluded_target_ids: Sequence[int] = (), lm_loss_weight: float = 0.0, bow_scale: float = 1.0) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.prompt_format = prompt_format
        self.bow_logits = bow_logits
        self.excluded_target_ids = tuple(excluded_target_ids)
        self.lm_loss_weight = lm_loss_weight
        self.bow_scale = bow_scale

    @property
    def config(self):  # noqa: ANN201 - HF Trainer reads model.config
        return self.causal_lm.config

    def side_hidden_states(self, batch: dict[str, torch.Tensor]) -> dict[Side, tuple[torch.Tensor, torch.Tensor]]:
        """``{side: (hidden_states, pool_mask)}`` from one joint pass or two separate passes."""
        decoder = decoder_of(self.causal_lm)
        if "input_ids" in batch:
            hidden = run_decoder(decoder, batch["input_ids"], batch["segment_ids"], joint=True)
            return {side: (hidden, batch[POOL_MASK_KEYS[side]]) for side in Side}
        states = {}
        for side in Side:
            prefix = f"{side.value}_"
            hidden = run_decoder(decoder, batch[prefix + "input_ids"], batch[prefix + "segment_ids"], joint=False)
            states[side] = (hidden, batch[POOL_MASK_KEYS[side]])
        return states

    def side_bow_loss(self, hidden: torch.Tensor, pool_mask: torch.Tensor,
                      targets: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The side's BoW loss, and whether any example of the batch had targets for it."""
        head = self.causal_lm.get_output_embeddings()
        target_mask = target_set_mask(targets, head.weight.shape[0], self.excluded_target_ids)  # (batch, vocab)
        present = bool(target_mask.any())
        if self.bow_logits is BowLogits.MARKER_MAX:
            count = int(pool_mask[0].sum())
            states = gather_positions(hidden, pool_mask, count)  # (batch, markers, dim)
            return marker_max_bow_loss(states, head.weight, target_mask, head.bias), present
        return bow_loss(masked_mean_pool(hidden, pool_mask), head.weight, target_mask, head.bias), present

    def next_token_loss(self, hidden: torch.Tensor, lm_labels: torch.Tensor) -> torch.Tensor:
        """Ordinary next-token cross-entropy over the text tokens only (LM head applied to those rows alone)."""
        labels = lm_labels[:, 1:]  # (batch, seq - 1)
        selected = labels != IGNORE_INDEX  # (batch, seq - 1)
        head = self.causal_lm.get_output_embeddings()
        logits = head(hidden[:, :-1][selected]).float()  # (n_text_tokens, vocab)
        return nn.functional.cross_entropy(logits, labels[selected])

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        states = self.side_hidden_states(batch)
        ebae_loss, ebae_present = self.side_bow_loss(*states[Side.PASSAGE], batch["passage_targets"])
        ebar_loss, ebar_present = self.side_bow_loss(*states[Side.QUERY], batch["query_targets"])
        loss = self.bow_scale * mean_of_present((ebae_loss, ebar_loss), (ebae_present, ebar_present))
        outputs = {"ebae_loss": ebae_loss.detach(), "ebar_loss": ebar_loss.detach()}
        if self.lm_loss_weight > 0:
            hidden, _ = states[Side.PASSAGE]
            labels = batch["lm_labels"] if "input_ids" in batch else batch["passage_lm_labels"]
            lm_loss = self.next_token_loss(hidden, labels)
            loss = loss + self.lm_loss_weight * lm_loss
            outputs["lm_loss"] = lm_loss.detach()
        outputs["loss"] = loss
        return outputs
