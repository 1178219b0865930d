"""Padding laid-out prompt sequences into the tensors the models take."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from llara_cli.core.losses import IGNORE_INDEX
from llara_cli.core.prompts import PromptedSequence, Segment, Side

POOL_MASK_KEYS = {Side.PASSAGE: "passage_pool_mask", Side.QUERY: "query_pool_mask"}
PADDING_SIDES = ("right", "left")


def collate_prompted(sequences: Sequence[PromptedSequence], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad sequences to one length: ``input_ids``, ``segment_ids`` (PAD where padded), a pool mask per side,
    and ``lm_labels`` (the text tokens, ``IGNORE_INDEX`` elsewhere) for the optional next-token loss."""
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be one of {PADDING_SIDES}, got {padding_side!r}")
    width = max(len(sequence.input_ids) for sequence in sequences)
    batch = len(sequences)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)  # (batch, seq)
    segment_ids = torch.full((batch, width), int(Segment.PAD), dtype=torch.long)  # (batch, seq)
    lm_labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)  # (batch, seq)
    pool_masks = {side: torch.zeros(batch, width, dtype=torch.bool) for side in Side}  # (batch, seq) each
    for row, sequence in enumerate(sequences):
        length = len(sequence.input_ids)
        offset = 0 if padding_side == "right" else width - length
        input_ids[row, offset:offset + length] = torch.tensor(sequence.input_ids)
        segment_ids[row, offset:offset + length] = torch.tensor([int(segment) for segment in sequence.segment_ids])
        text_start, text_end = sequence.text_span
        lm_labels[row, offset + text_start:offset + text_end] = torch.tensor(sequence.input_ids[text_start:text_end])
        for side, positions in sequence.pool_positions.items():
            pool_masks[side][row, [offset + position for position in positions]] = True
    collated = {"input_ids": input_ids, "segment_ids": segment_ids, "lm_labels": lm_labels}
    collated.update({POOL_MASK_KEYS[side]: mask for side, mask in pool_masks.items()})
    return collated


def pad_targets(target_lists: Sequence[Sequence[int]]) -> torch.Tensor:
    """``(batch, longest)`` target ids padded with ``IGNORE_INDEX`` (at least one column)."""
    width = max([1, *(len(targets) for targets in target_lists)])
    padded = torch.full((len(target_lists), width), IGNORE_INDEX, dtype=torch.long)
    for row, targets in enumerate(target_lists):
        if targets:
            padded[row, :len(targets)] = torch.tensor(list(targets))
    return padded


def collate_adaptation(examples: Sequence[tuple[Sequence[int], Sequence[int]]], prompt_format, pad_id: int,  # noqa: ANN001
                       max_length: int, *, joint: bool = True, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Batch ``(text_ids, next_ids)`` examples for :class:`LlaraAdaptationModel`.

    EBAE targets are the text tokens the model actually sees (after truncation); EBAR targets are the next
    span's tokens. ``joint`` lays out one sequence per example with both suffixes; otherwise each side gets
    its own sequence (``passage_*`` / ``query_*`` keys) for the two-pass ablation.
    """
    budget = prompt_format.text_budget(max_length, joint=True)  # both modes see the same text
    examples = [(list(text_ids)[:budget], list(next_ids)) for text_ids, next_ids in examples]
    if joint:
        sequences = [prompt_format.joint(text_ids, max_length) for text_ids, _ in examples]
        batch = collate_prompted(sequences, pad_id, padding_side)
    else:
        batch = {}
        for side in Side:
            sequences = [prompt_format.single(text_ids, side, max_length) for text_ids, _ in examples]
            side_batch = collate_prompted(sequences, pad_id, padding_side)
            batch.update({f"{side.value}_{key}": side_batch[key] for key in ("input_ids", "segment_ids", "lm_labels")})
            batch[POOL_MASK_KEYS[side]] = side_batch[POOL_MASK_KEYS[side]]
    seen_text = [sequence.input_ids[slice(*sequence.text_span)] for sequence in sequences]
    batch["passage_targets"] = pad_targets(seen_text)
    batch["query_targets"] = pad_targets([next_ids for _, next_ids in examples])
    return batch
