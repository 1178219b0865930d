"""``llara_config.json``: what a saved llara model needs besides its HF files.

The prompt family, pooling and normalisation it embeds with, and the query/passage lengths it was trained with
(``llara encode`` and ``llara search`` use those by default), its training stage and base model, and the
embedding prefix dims it was trained for (``mrl_dims``, ``llara finetune --mrl-dims``; see
:mod:`llara_cli.encode.truncation`), and the prompt its queries are embedded with (``query_prompt``: ``ebar``, the
paper's, unless ``llara adapt`` chose ``ebae``, see :mod:`llara_cli.training.query_prompt_choice`).
"""
from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from llara_cli import __version__
from llara_cli.core.prompts import (
    CURRENT_LAYOUT,
    LEGACY_LAYOUT,
    PromptFamily,
    QueryPrompt,
    Side,
    detect_family,
    family_for,
    parse_family,
    parse_layout,
    parse_query_prompt,
)
from llara_cli.errors import UsageError
from llara_cli.storage.files import read_json, write_json

logger = logging.getLogger(__name__)

LLARA_CONFIG_FILE = "llara_config.json"
DEFAULT_PASSAGE_MAX_LENGTH = 512
DEFAULT_QUERY_MAX_LENGTH = 64


class Stage(str, Enum):
    """How far a saved model has been trained by llara."""

    BASE = "base"
    ADAPTED = "adapted"  # llara adapt (EBAE + EBAR)
    FINETUNED = "finetuned"  # llara finetune (contrastive)


class Pooling(str, Enum):
    EOS = "eos"  # the last hidden state at the eos that ends the paper prompt
    MARKER_MEAN = "marker_mean"  # mean of the last hidden states of the eight marker tokens


class BowLogits(str, Enum):
    """How the BoW loss turns hidden states into vocabulary logits."""

    EMBEDDING = "embedding"  # paper eq. 6: the pooled embedding through the LM head
    MARKER_MAX = "marker-max"  # released code: each marker through the LM head, max over markers


FAMILY_POOLING = {PromptFamily.PAPER: Pooling.EOS, PromptFamily.FLAGEMBEDDING: Pooling.MARKER_MEAN}
FAMILY_BOW_LOGITS = {PromptFamily.PAPER: BowLogits.EMBEDDING, PromptFamily.FLAGEMBEDDING: BowLogits.MARKER_MAX}


@dataclass(frozen=True)
class LlaraConfig:
    """How a llara model embeds: prompt family (hence pooling), normalisation, and the token lengths per side.

    ``query_max_length``/``passage_max_length`` are the lengths the model was trained with (``llara finetune``
    and ``llara adapt`` write them); for a model llara has not trained they are the defaults, 64 and 512.
    """

    prompt_family: PromptFamily = PromptFamily.PAPER
    normalize: bool = True
    passage_max_length: int = DEFAULT_PASSAGE_MAX_LENGTH
    query_max_length: int = DEFAULT_QUERY_MAX_LENGTH
    base_model: str | None = None
    stage: Stage = Stage.BASE
    llara_version: str = __version__
    prompt_layout: int = int(CURRENT_LAYOUT)  # core.prompts.PromptLayout; absent from a file: LEGACY_LAYOUT
    mrl_dims: tuple[int, ...] | None = None  # Matryoshka: the prefix dims finetuning trained, full dim first
    query_prompt: QueryPrompt = QueryPrompt.EBAR  # core.prompts.QueryPrompt: the prompt queries are laid out with

    @property
    def pooling(self) -> Pooling:
        return FAMILY_POOLING[self.prompt_family]

    def max_length(self, side: Side) -> int:
        """Tokens per text, prompt included, for one side (the default of ``llara encode``/``llara search``)."""
        return self.passage_max_length if side is Side.PASSAGE else self.query_max_length

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["prompt_family"] = self.prompt_family.value
        payload["stage"] = self.stage.value
        payload["pooling"] = self.pooling.value
        if self.query_prompt is QueryPrompt.EBAR:
            payload.pop("query_prompt")  # the paper's: files of models without the choice stay as they were
        else:
            payload["query_prompt"] = self.query_prompt.value
        if self.mrl_dims is None:
            payload.pop("mrl_dims")  # files of models trained without it stay as they were
        else:
            payload["mrl_dims"] = list(self.mrl_dims)
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> LlaraConfig:
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in payload.items() if key in known}
        if "prompt_family" in values:
            values["prompt_family"] = parse_family(values["prompt_family"])
        if "stage" in values:
            values["stage"] = _parse_stage(values["stage"])
        values["prompt_layout"] = int(parse_layout(values.get("prompt_layout", LEGACY_LAYOUT)))
        if "query_prompt" in values:
            try:
                values["query_prompt"] = parse_query_prompt(values["query_prompt"])
            except UsageError as error:
                raise UsageError(f"{LLARA_CONFIG_FILE}: {error}") from None
        if values.get("mrl_dims") is not None:
            dims = values["mrl_dims"]
            if not isinstance(dims, list) or not all(isinstance(dim, int) and dim > 0 for dim in dims):
                raise UsageError(f"{LLARA_CONFIG_FILE}: mrl_dims must be a list of positive integers, got {dims!r}")
            values["mrl_dims"] = tuple(dims)
        return cls(**values)

    def save(self, model_dir: str | Path) -> None:
        write_json(Path(model_dir) / LLARA_CONFIG_FILE, self.to_dict())

    @classmethod
    def load(cls, model_dir: str | Path) -> LlaraConfig | None:
        """The saved config, or None for a plain HF model that llara has not touched."""
        path = Path(model_dir) / LLARA_CONFIG_FILE
        if not path.is_file():
            return None
        payload = read_json(path)
        if not isinstance(payload, dict):
            raise UsageError(f"{path}: expected a JSON object")
        return cls.from_dict(payload)


def _parse_stage(name: str) -> Stage:
    try:
        return Stage(name)
    except ValueError:
        known = ", ".join(stage.value for stage in Stage)
        raise UsageError(f"{LLARA_CONFIG_FILE}: unknown stage {name!r}: expected one of {known}") from None


def resolve_config(saved: LlaraConfig | None, requested_family: str | PromptFamily | None, model: str,
                   vocabulary: Collection[str] = (), *,
                   default_family: PromptFamily = PromptFamily.PAPER) -> LlaraConfig:
    """The config to use ``model`` with: its saved one wins; a different prompt family for a trained model is refused.

    A plain HF model (``saved`` None) whose tokenizer ``vocabulary`` has the sixteen markers is ``flagembedding``
    (logged; an explicit ``paper`` is refused, :func:`core.prompts.family_for`); else the requested family, else
    ``default_family``.
    """
    family = parse_family(requested_family) if requested_family else None
    if saved is None:
        detected = detect_family(vocabulary)
        chosen = family_for(family, detected, model=model, own_source="its tokenizer has the <s1>..<s16> markers",
                            default=default_family)
        if detected is not None:
            logger.info("model %s: its tokenizer has the <s1>..<s16> markers: the %s prompt family",
                        model, detected.value)
        return LlaraConfig(prompt_family=chosen, base_model=model)
    if family is not None and family is not saved.prompt_family and saved.stage is not Stage.BASE:
        raise UsageError(
            f"model {model} was {saved.stage.value} with the {saved.prompt_family.value} prompt family; "
            f"it cannot be used with --prompt-family {family.value}"
        )
    if family is not None and family is not saved.prompt_family:
        return replace(saved, prompt_family=family)
    return saved
