"""Collation, in one place: laid-out prompt sequences padded into the tensors the models take.

:func:`collate_prompted` pads sequences; :func:`collate_side` gives one side's keys (``{side}_input_ids``,
``{side}_segment_ids``, ``{side}_pool_mask``) for inference and finetuning; :func:`collate_adaptation` and
:class:`AdaptationCollator` batch adaptation examples (joint or two-pass); :class:`ContrastiveCollator` batches
finetuning groups.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from llara_cli.core.losses import IGNORE_INDEX
from llara_cli.core.prompts import PromptedSequence, PromptFormat, QueryPrompt, Segment, Side
from llara_cli.errors import UsageError

PADDING_SIDES = ("right", "left")
SIDE_INPUT_KEYS = ("input_ids", "segment_ids")  # what a side batch holds besides its pool mask


def side_key(side: Side, key: str) -> str:
    """A side batch's key: ``query_input_ids``, ``passage_pool_mask``..."""
    return f"{side.value}_{key}"


TARGET_KEYS = ("passage_targets", "query_targets")
POOL_MASK_KEYS = {side: side_key(side, "pool_mask") for side in Side}


def collate_prompted(sequences: Sequence[PromptedSequence], pad_id: int,
                     padding_side: str = "right") -> dict[str, torch.Tensor]:
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


def collate_side(sequences: Sequence[PromptedSequence], pad_id: int, side: Side) -> dict[str, torch.Tensor]:
    """One side's batch (right-padded): ``{side}_input_ids``, ``{side}_segment_ids``, ``{side}_pool_mask``."""
    batch = collate_prompted(sequences, pad_id)
    collated = {side_key(side, key): batch[key] for key in SIDE_INPUT_KEYS}
    collated[POOL_MASK_KEYS[side]] = batch[POOL_MASK_KEYS[side]]
    return collated


def pad_targets(target_lists: Sequence[Sequence[int]]) -> torch.Tensor:
    """``(batch, longest)`` target ids padded with ``IGNORE_INDEX`` (at least one column)."""
    width = max([1, *(len(targets) for targets in target_lists)])
    padded = torch.full((len(target_lists), width), IGNORE_INDEX, dtype=torch.long)
    for row, targets in enumerate(target_lists):
        if targets:
            padded[row, :len(targets)] = torch.tensor(list(targets))
    return padded


def collate_adaptation(examples: Sequence[tuple[Sequence[int], Sequence[int]]], prompt_format, pad_id: int,
                       max_length: int, *, joint: bool = True, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Batch ``(text_ids, next_ids)`` examples for :class:`LlaraAdaptationModel`.

    EBAE targets are the text tokens the model actually sees (after truncation); EBAR targets are the next
    span's tokens. ``joint`` lays out one sequence per example with both suffixes; otherwise each side gets
    its own sequence (``passage_*`` / ``query_*`` keys) for the two-pass ablation. Adaptation trains both prompts,
    so the EBAR side keeps the query prompt whatever the model's ``query_prompt``.
    """
    prompt_format = prompt_format.with_query_prompt(QueryPrompt.EBAR)
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
            batch.update({side_key(side, key): side_batch[key] for key in (*SIDE_INPUT_KEYS, "lm_labels")})
            batch[POOL_MASK_KEYS[side]] = side_batch[POOL_MASK_KEYS[side]]
    seen_text = [sequence.input_ids[slice(*sequence.text_span)] for sequence in sequences]
    batch["passage_targets"] = pad_targets(seen_text)
    batch["query_targets"] = pad_targets([next_ids for _, next_ids in examples])
    return batch


class AdaptationCollator:
    """The Trainer's ``data_collator`` for adaptation: :func:`collate_adaptation` with fixed settings."""

    def __init__(self, prompt_format, pad_id: int, max_length: int, *, joint: bool = True,
                 target_filter: Callable[[list[list[int]]], list[list[int]]] | None = None) -> None:
        self.prompt_format = prompt_format
        self.pad_id = pad_id
        self.max_length = max_length
        self.joint = joint
        self.target_filter = target_filter  # rows of BoW target ids -> rows (e.g. data.stopwords.StopWordTargets)

    def __call__(self, examples: Sequence[tuple[Sequence[int], Sequence[int]]]) -> dict[str, torch.Tensor]:
        batch = collate_adaptation(examples, self.prompt_format, self.pad_id, self.max_length, joint=self.joint)
        if self.target_filter is not None:
            for key in TARGET_KEYS:
                rows = [row[row != IGNORE_INDEX].tolist() for row in batch[key]]
                batch[key] = pad_targets(self.target_filter(rows))
        return batch


class ContrastiveCollator:
    """Tokenizes and lays out a list of groups: ``query_*`` tensors ``(n, ...)`` and ``passage_*`` tensors
    ``(n * group_size, ...)`` (group by group, positive first), each with ``input_ids``, ``segment_ids`` and
    ``pool_mask`` for its side. Queries are laid out with the query (EBAR) prompt whatever the model's
    ``query_prompt``: finetuning trains LLaRA's two sides, and which one queries use at search is chosen after
    training (:mod:`llara_cli.training.query_prompt_choice`; measured better than training queries on the passage
    prompt, docs/results.md)."""

    def __init__(self, tokenizer, prompt_format: PromptFormat, query_max_length: int,
                 passage_max_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format.with_query_prompt(QueryPrompt.EBAR)
        self.max_lengths = {Side.QUERY: query_max_length, Side.PASSAGE: passage_max_length}

    def _side(self, texts: list[str], side: Side) -> dict[str, torch.Tensor]:
        text_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        sequences = [self.prompt_format.single(list(ids), side, self.max_lengths[side]) for ids in text_ids]
        return collate_side(sequences, self.tokenizer.pad_token_id, side)

    def __call__(self, groups: Sequence[tuple[str, list[str]]]) -> dict[str, torch.Tensor]:
        queries = [query for query, _ in groups]
        passages = [passage for _, group in groups for passage in group]
        return {**self._side(queries, Side.QUERY), **self._side(passages, Side.PASSAGE)}


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a positive integer, else a UsageError (the API's rule is the CLI's ``min=1``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size
