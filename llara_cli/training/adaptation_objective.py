"""The LLaRA adaptation objective (EBAE + EBAR, arXiv 2312.15503) around a causal LM.

The stock Hugging Face decoder runs unchanged: the joint pass only changes the attention mask and position ids
it is given (:mod:`llara_cli.core.masks`); the two-pass ablation runs each side like inference does
(:func:`llara_cli.model.embedding_pass.side_hidden_states`). Pooling is the inference pooling
(:func:`llara_cli.core.pooling.masked_mean_pool`), before normalisation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llara_cli.core.batching import POOL_MASK_KEYS
from llara_cli.core.losses import IGNORE_INDEX, bow_loss, marker_max_bow_loss, mean_of_present, target_set_mask
from llara_cli.core.pooling import gather_positions, masked_mean_pool
from llara_cli.core.prompts import PromptFormat, Side
from llara_cli.model.config import BowLogits
from llara_cli.model.embedding_pass import decoder_of, run_decoder, side_hidden_states


def head_bias(head) -> torch.Tensor | None:
    """The LM head's bias, if any: peft's ``TrainableTokensWrapper`` (the head of a tied-embedding model whose
    added marker tokens train under ``--lora``) exposes the merged ``weight`` only."""
    return getattr(head, "bias", None)


class LlaraAdaptationModel(nn.Module):
    """The LLaRA adaptation objective around a causal LM.

    ``forward`` takes a joint batch (``input_ids``, ``segment_ids`` with both suffixes, pool masks) or a
    two-pass batch (``passage_*`` and ``query_*`` tensors), plus ``passage_targets`` (the input's tokens, EBAE)
    and ``query_targets`` (the next span's tokens, EBAR), and returns ``bow_scale`` times the mean of the BoW
    losses of the sides that have targets, plus ``lm_loss_weight`` times the next-token loss on the text when
    that weight is positive (:mod:`llara_cli.training.objective_presets`).
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
    def config(self):
        return self.causal_lm.config

    def side_hidden_states(self, batch: dict[str, torch.Tensor]) -> dict[Side, tuple[torch.Tensor, torch.Tensor]]:
        """``{side: (hidden_states, pool_mask)}`` from one joint pass or two separate passes."""
        if "input_ids" in batch:
            hidden = run_decoder(decoder_of(self.causal_lm), batch["input_ids"], batch["segment_ids"], joint=True)
            return {side: (hidden, batch[POOL_MASK_KEYS[side]]) for side in Side}
        return {side: (side_hidden_states(self.causal_lm, batch, side), batch[POOL_MASK_KEYS[side]]) for side in Side}

    def side_bow_loss(self, hidden: torch.Tensor, pool_mask: torch.Tensor,
                      targets: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The side's BoW loss, and whether any example of the batch had targets for it."""
        head = self.causal_lm.get_output_embeddings()
        target_mask = target_set_mask(targets, head.weight.shape[0], self.excluded_target_ids)  # (batch, vocab)
        present = bool(target_mask.any())
        if self.bow_logits is BowLogits.MARKER_MAX:
            count = int(pool_mask[0].sum())
            states = gather_positions(hidden, pool_mask, count)  # (batch, markers, dim)
            return marker_max_bow_loss(states, head.weight, target_mask, head_bias(head)), present
        return bow_loss(masked_mean_pool(hidden, pool_mask), head.weight, target_mask, head_bias(head)), present

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
