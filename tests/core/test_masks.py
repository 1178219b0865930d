from __future__ import annotations

import torch

from llara_cli.core.masks import allowed_attention, joint_attention_inputs, padded_position_ids
from llara_cli.core.prompts import Segment

S, A, B, P = int(Segment.SHARED), int(Segment.FIRST_SUFFIX), int(Segment.SECOND_SUFFIX), int(Segment.PAD)


def test_joint_mask_for_a_three_token_example():
    segments = torch.tensor([[S, S, S, A, A, B, B]])
    allowed = allowed_attention(segments)[0].int()
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0, 1, 0],  # the second suffix sees the text and itself, not the first suffix
        [1, 1, 1, 0, 0, 1, 1],
    ])
    assert torch.equal(allowed, expected)


def test_second_suffix_positions_continue_from_the_text():
    _, positions = joint_attention_inputs(torch.tensor([[S, S, S, A, A, B, B]]), torch.float32)
    assert positions.tolist() == [[0, 1, 2, 3, 4, 3, 4]]


def test_left_and_right_padding_give_the_same_positions_and_pad_rows_see_only_themselves():
    right = torch.tensor([[S, S, A, B, P, P]])
    left = torch.tensor([[P, P, S, S, A, B]])
    mask_right, positions_right = joint_attention_inputs(right, torch.float32)
    mask_left, positions_left = joint_attention_inputs(left, torch.float32)
    assert positions_right[0, :4].tolist() == positions_left[0, 2:].tolist() == [0, 1, 2, 2]
    assert torch.equal(mask_right[0, 0, :4, :4], mask_left[0, 0, 2:, 2:])
    minimum = torch.finfo(torch.float32).min
    assert mask_left[0, 0, 0].tolist() == [0.0] + [minimum] * 5  # pad row attends to itself only
    assert (mask_left[0, 0, 2:, :2] == minimum).all()  # real tokens never see pads


def test_mask_is_additive_in_the_requested_dtype():
    mask, _ = joint_attention_inputs(torch.tensor([[S, A, B]]), torch.bfloat16)
    assert mask.dtype == torch.bfloat16 and mask.shape == (1, 1, 3, 3)
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(torch.bfloat16).min}


def test_padded_position_ids_count_real_tokens():
    assert padded_position_ids(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])).tolist() == [
        [0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]
