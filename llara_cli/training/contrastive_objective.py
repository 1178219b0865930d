"""The finetuning objective: groups of one query and its passages, and InfoNCE over their embeddings.

Each training item is a query and a *group* of ``group_size`` passages, its positive and ``group_size - 1`` hard
negatives drawn deterministically from ``(seed, epoch, example)`` (:class:`ContrastiveDataset`). Queries and
passages are embedded exactly as at inference (:func:`llara_cli.model.embedding_pass.embed_side`); the loss is InfoNCE
over cosine similarities / ``temperature`` with in-batch negatives, gathered across processes under DDP
(:mod:`llara_cli.core.contrastive`).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from torch import nn
from transformers import TrainerCallback

from llara_cli.core.contrastive import (
    contrastive_accuracy,
    contrastive_loss_from_embeddings,
    distributed_world_size,
    gather_with_grad,
    matryoshka_contrastive_loss,
)
from llara_cli.core.prompts import Side
from llara_cli.data.finetune import TrainingExample
from llara_cli.errors import UsageError
from llara_cli.model.embedding_pass import embed_side
from llara_cli.training.finetune_config import DEFAULT_TEMPERATURE


class ContrastiveDataset(torch.utils.data.Dataset):
    """Map-style: item ``i`` is ``(query, [positive, negative, ...])`` texts, ``group_size`` passages.

    The positive and the negatives are drawn by a generator seeded with ``(seed, epoch, i)``: the same item is
    the same group on every process and after a resume, and changes from one epoch to the next. When an example
    has fewer negatives than needed, all of them are used and the rest drawn again (with replacement).
    """

    def __init__(self, examples: Sequence[TrainingExample], group_size: int, seed: int) -> None:
        if group_size > 1:
            missing = sum(1 for example in examples if not example.negatives)
            if missing:
                raise UsageError(f"{missing} training examples have no negatives (group size {group_size} needs them)")
        self.examples = list(examples)
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[str, list[str]]:
        example = self.examples[index]
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
        positive = rng.choice(example.positives)
        wanted = self.group_size - 1
        negatives = list(example.negatives)
        if wanted == 0:
            chosen = []
        elif len(negatives) >= wanted:
            chosen = rng.sample(negatives, wanted)
        else:
            rng.shuffle(negatives)
            chosen = negatives + rng.choices(negatives, k=wanted - len(negatives))
        return example.query, [positive.text, *(negative.text for negative in chosen)]


class ContrastiveModel(nn.Module):
    """The finetuning objective around a causal LM (plain or peft): ``forward(**batch) -> {"loss", "accuracy"}``."""

    accepts_loss_kwargs = False  # the HF Trainer divides the loss by the accumulation steps itself

    def __init__(self, causal_lm: nn.Module, *, group_size: int, temperature: float = DEFAULT_TEMPERATURE,
                 normalized: bool = True, in_batch: bool = True, cross_device: bool = True,
                 mrl_dims: Sequence[int] | None = None, mrl_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.group_size = group_size
        self.temperature = temperature
        self.normalized = normalized
        self.in_batch = in_batch
        self.cross_device = cross_device
        self.mrl_dims = tuple(mrl_dims) if mrl_dims else None  # Matryoshka: full dim first, then the prefixes
        self.mrl_weights = tuple(mrl_weights) if mrl_weights else None

    @property
    def config(self):
        return self.causal_lm.config

    def embed(self, batch: dict[str, torch.Tensor], side: Side) -> torch.Tensor:
        """One side's embeddings ``(batch, dim)``, with gradients: the inference embedding."""
        return embed_side(self.causal_lm, batch, side, normalized=self.normalized)

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        query_embeddings = self.embed(batch, Side.QUERY)  # (n_queries, dim)
        passage_embeddings = self.embed(batch, Side.PASSAGE)  # (n_queries * group_size, dim)
        if self.cross_device and self.in_batch and distributed_world_size() > 1:
            query_embeddings = gather_with_grad(query_embeddings)  # (world * n_queries, dim)
            passage_embeddings = gather_with_grad(passage_embeddings)  # (world * n_queries * group_size, dim)
        loss = self.loss(query_embeddings, passage_embeddings)
        accuracy = contrastive_accuracy(query_embeddings, passage_embeddings, group_size=self.group_size,
                                        in_batch=self.in_batch)
        return {"loss": loss, "accuracy": accuracy}


    def loss(self, query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor) -> torch.Tensor:
        """InfoNCE of the embeddings, or its weighted sum over the Matryoshka prefixes (``mrl_dims``)."""
        if self.mrl_dims is None:
            return contrastive_loss_from_embeddings(query_embeddings, passage_embeddings, self.temperature,
                                                    group_size=self.group_size, in_batch=self.in_batch)
        return matryoshka_contrastive_loss(query_embeddings, passage_embeddings, self.temperature, self.mrl_dims,
                                           self.mrl_weights, group_size=self.group_size, in_batch=self.in_batch,
                                           normalize=self.normalized)


def freeze_unused_head(causal_lm: nn.Module) -> None:
    """Retrieval never runs the LM head: freeze it unless it is tied to the input embeddings (which are used).

    Besides saving its optimizer state, this keeps DDP correct: a trainable parameter without a gradient
    leaves its gradient bucket unreduced (``find_unused_parameters`` is off, as it should be).
    """
    head = causal_lm.get_output_embeddings()
    if head is not None and head.weight is not causal_lm.get_input_embeddings().weight:
        head.requires_grad_(False)


class EpochCallback(TrainerCallback):
    """Tells the dataset the epoch, so each epoch samples other groups (and a resume samples the same again)."""

    def __init__(self, dataset: ContrastiveDataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch or 0))
