"""``--mrl-dims``/``--mrl-weights``: which dims the Matryoshka loss trains, and with which weights."""
from __future__ import annotations

import pytest

from llara_cli.errors import UsageError
from llara_cli.training.finetune_config import matryoshka_dims


def test_the_full_dim_is_trained_first_and_added_when_absent():
    assert matryoshka_dims((64, 288, 144), None, 576) == ((576, 288, 144, 64), (1.0, 1.0, 1.0, 1.0))
    assert matryoshka_dims((576, 288), (1.0, 0.5), 576) == ((576, 288), (1.0, 0.5))


def test_weights_follow_their_dims_or_the_trained_order():
    assert matryoshka_dims((144, 576), (0.5, 2.0), 576) == ((576, 144), (2.0, 0.5))
    assert matryoshka_dims((288, 144), (1.0, 0.3, 0.2), 576) == ((576, 288, 144), (1.0, 0.3, 0.2))


def test_without_mrl_dims_nothing_changes():
    assert matryoshka_dims(None, None, 576) == (None, None)


@pytest.mark.parametrize(("dims", "weights", "message"), [
    ((1024,), None, "larger than the model's 576-dim"),
    ((288, 144), (1.0,), "1 weights for the 3 trained dims"),
])
def test_bad_dims_are_one_line_errors(dims, weights, message):
    with pytest.raises(UsageError, match=message):
        matryoshka_dims(dims, weights, 576)
