"""The adaptation objective's settings -- which losses, how weighted, which BoW targets -- and its two presets.

``paper``     arXiv 2312.15503 eqs. 6-7: the mean of the EBAE and EBAR bag-of-words losses, nothing else.
``released``  the authors' released pretraining (FlagEmbedding ``research/LLARA``): ``pretrain/modeling.py``
              returns ``ar_loss + bow_loss`` where each side's BoW loss is divided by 10 and target ids
              ``<= 2`` (Llama-2's ``<unk> <s> </s>``: here the tokenizer's special token ids) are dropped;
              ``pretrain/data.py`` removes English stop words from the targets with ``--remove_stop_words``,
              which the README's pretrain command turns on.

Each switch can also be set on its own (``llara adapt --lm-loss-weight/--bow-scale/--remove-stop-words``);
the preset fills the ones left unset.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

from llara_cli.core.prompts import parse_choice
from llara_cli.errors import UsageError

RELEASED_LM_LOSS_WEIGHT = 1.0  # pretrain/modeling.py: loss = ar_loss + bow_loss
RELEASED_BOW_SCALE = 0.1  # pretrain/modeling.py: bow_summarize_loss /= 10, bow_predict_loss /= 10


class ObjectivePreset(str, Enum):
    PAPER = "paper"
    RELEASED = "released"


@dataclass(frozen=True)
class ObjectiveSettings:
    """``loss = bow_scale * mean(BoW losses of the sides with targets) + lm_loss_weight * next-token loss``."""

    lm_loss_weight: float = 0.0
    bow_scale: float = 1.0
    exclude_special_targets: bool = True  # special token ids are never BoW targets
    remove_stop_words: bool = False  # BoW targets re-tokenized from the text without English stop words

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS = {
    ObjectivePreset.PAPER: ObjectiveSettings(),
    ObjectivePreset.RELEASED: ObjectiveSettings(lm_loss_weight=RELEASED_LM_LOSS_WEIGHT, bow_scale=RELEASED_BOW_SCALE,
                                                exclude_special_targets=True, remove_stop_words=True),
}


def parse_preset(name: str | ObjectivePreset) -> ObjectivePreset:
    return parse_choice(ObjectivePreset, name, "--objective")


def objective_settings(preset: str | ObjectivePreset, **overrides: Any) -> ObjectiveSettings:
    """The preset with the ``overrides`` that are not None; a weight out of range is a UsageError."""
    settings = dataclasses.replace(PRESETS[parse_preset(preset)],
                                   **{name: value for name, value in overrides.items() if value is not None})
    if settings.lm_loss_weight < 0:
        raise UsageError(f"--lm-loss-weight cannot be negative, got {settings.lm_loss_weight}")
    if settings.bow_scale <= 0:
        raise UsageError(f"--bow-scale must be positive, got {settings.bow_scale}")
    return settings
