"""A cached contrastive loss (GradCache, Gao et al. 2021): the full batch's InfoNCE in bounded memory.

The plain objective (:class:`~llara_cli.training.contrastive_objective.ContrastiveModel`) keeps the activations of
every query and passage of the batch for the backward pass: ``batch x group`` passages of ``passage_max_length``
tokens at once. :class:`CachedContrastiveModel` computes the same loss and the same gradients in three stages:

1. embed the queries and the passages in chunks of ``chunk_size`` texts *without* an autograd graph, saving each
   chunk's RNG state (LoRA dropout draws the same mask again in stage 3);
2. compute the InfoNCE of the whole batch on those embeddings (in-batch negatives included) and its gradient with
   respect to every embedding -- a ``(texts, dim)`` tensor, tiny;
3. when the Trainer calls ``backward`` on the returned loss, re-embed chunk by chunk *with* a graph, under the
   autocast and RNG state of stage 1, and back-propagate each chunk's cached embedding gradient (times the
   gradient the loss received: the Trainer divides it by the accumulation steps).

Only one chunk's activations exist at any time, so memory no longer grows with ``batch x group``, at the price
of one more forward pass. The parameter gradients equal the unchunked loss's within float tolerance (tested,
full and LoRA). Single process only: DDP's reducer expects one backward per step, and stage 3 runs several.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import torch

from llara_cli.core.batching import side_key
from llara_cli.core.contrastive import contrastive_accuracy, distributed_world_size
from llara_cli.core.prompts import Side
from llara_cli.errors import UsageError
from llara_cli.runtime.memory import release_free_memory
from llara_cli.training.contrastive_objective import ContrastiveModel

__all__ = ["CachedContrastiveModel", "chunk_side_batch"]

logger = logging.getLogger(__name__)

SIDE_KEYS = ("input_ids", "segment_ids", "pool_mask")


def chunk_side_batch(batch: dict[str, torch.Tensor], side: Side, chunk_size: int) -> list[dict[str, torch.Tensor]]:
    """One side of a batch cut into row chunks of at most ``chunk_size`` texts (same padding as the batch)."""
    keys = [side_key(side, key) for key in SIDE_KEYS]
    rows = batch[keys[0]].shape[0]
    return [{key: batch[key][start:start + chunk_size] for key in keys} for start in range(0, rows, chunk_size)]


class _RandomState:
    """The CPU (and CUDA) RNG state at one moment, to replay a forward pass with the same dropout masks."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda_device = device if device.type == "cuda" else None
        self.cuda = torch.cuda.get_rng_state(device) if self.cuda_device is not None else None

    @contextlib.contextmanager
    def replayed(self) -> Iterator[None]:
        devices = [self.cuda_device] if self.cuda_device is not None else []
        with torch.random.fork_rng(devices=devices, enabled=True):
            torch.set_rng_state(self.cpu)
            if self.cuda_device is not None:
                torch.cuda.set_rng_state(self.cuda, self.cuda_device)
            yield


class _AutocastState:
    """Whether autocast was on (and in which dtype) for the forward pass, to run the re-forward alike."""

    def __init__(self, device_type: str) -> None:
        self.device_type = device_type
        self.enabled = torch.is_autocast_enabled(device_type)
        self.dtype = torch.get_autocast_dtype(device_type)

    def context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)


class CachedContrastiveModel(ContrastiveModel):
    """:class:`ContrastiveModel` with the GradCache loss: ``chunk_size`` texts per forward/backward pass."""

    def __init__(self, causal_lm: torch.nn.Module, *, chunk_size: int, **settings) -> None:
        super().__init__(causal_lm, **settings)
        if chunk_size < 1:
            raise UsageError(f"--chunk-size must be at least 1, got {chunk_size}")
        self.chunk_size = chunk_size

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.is_grad_enabled():  # evaluation: nothing to cache
            return super().forward(**batch)
        if distributed_world_size() > 1:
            raise UsageError("--chunk-size (the cached contrastive loss) runs in one process; drop it under torchrun")
        device = batch[side_key(Side.QUERY, "input_ids")].device
        autocast = _AutocastState(device.type)
        chunks = {side: chunk_side_batch(batch, side, self.chunk_size) for side in Side}
        states: dict[Side, list[_RandomState]] = {side: [] for side in Side}
        embeddings: dict[Side, torch.Tensor] = {}
        with torch.no_grad():
            for side in (Side.QUERY, Side.PASSAGE):
                parts = []
                for chunk in chunks[side]:
                    states[side].append(_RandomState(device))
                    parts.append(self.embed(chunk, side))  # (chunk, dim)
                embeddings[side] = torch.cat(parts).requires_grad_()  # (texts, dim)
        with torch.enable_grad():
            loss = self.loss(embeddings[Side.QUERY], embeddings[Side.PASSAGE])  # InfoNCE, or Matryoshka's sum
            gradients = torch.autograd.grad(loss, [embeddings[Side.QUERY], embeddings[Side.PASSAGE]])
        accuracy = contrastive_accuracy(embeddings[Side.QUERY].detach(), embeddings[Side.PASSAGE].detach(),
                                        group_size=self.group_size, in_batch=self.in_batch)
        cached = loss.detach().requires_grad_()  # a leaf: its backward hook runs stage 3
        cached.register_hook(functools.partial(
            self._backward_chunks, chunks=chunks, states=states, autocast=autocast,
            gradients=dict(zip((Side.QUERY, Side.PASSAGE), gradients, strict=True))))
        return {"loss": cached, "accuracy": accuracy}

    def _backward_chunks(self, loss_gradient: torch.Tensor, *, chunks: dict[Side, list[dict[str, torch.Tensor]]],
                         states: dict[Side, list[_RandomState]], autocast: _AutocastState,
                         gradients: dict[Side, torch.Tensor]) -> None:
        """Re-embed each chunk with a graph and back-propagate its share of the cached embedding gradient."""
        for side in (Side.QUERY, Side.PASSAGE):
            side_gradient = gradients[side] * loss_gradient  # (texts, dim): dLoss/dEmbedding x the outer scale
            start = 0
            for chunk, state in zip(chunks[side], states[side], strict=True):
                rows = chunk[side_key(side, "input_ids")].shape[0]
                with torch.enable_grad(), state.replayed(), autocast.context():
                    chunk_embeddings = self.embed(chunk, side)  # (rows, dim)
                torch.autograd.backward(chunk_embeddings, side_gradient[start:start + rows])
                del chunk_embeddings
                if side_gradient.device.type == "cpu":
                    release_free_memory()  # the chunk's freed activations: back to the OS, not kept resident
                start += rows
