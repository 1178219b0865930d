"""``llara_config.json``: what a saved llara model needs besides its HF files (prompt family, pooling...)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from llara_cli import __version__
from llara_cli.core.prompts import CURRENT_LAYOUT, LEGACY_LAYOUT, PromptFamily, parse_family, parse_layout
from llara_cli.data.files import read_json, write_json
from llara_cli.errors import UsageError

LLARA_CONFIG_FILE = "llara_config.json"
DEFAULT_PASSAGE_MAX_LENGTH = 512
DEFAULT_QUERY_MAX_LENGTH = 64


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
    prompt_family: PromptFamily = PromptFamily.PAPER
    normalize: bool = True
    passage_max_length: int = DEFAULT_PASSAGE_MAX_LENGTH
    query_max_length: int = DEFAULT_QUERY_MAX_LENGTH
    base_model: str | None = None
    stage: str = "base"  # base | adapted | finetuned
    llara_version: str = __version__
    prompt_layout: int = int(CURRENT_LAYOUT)  # core.prompts.PromptLayout; absent from a file: LEGACY_LAYOUT

    @property
    def pooling(self) -> Pooling:
        return FAMILY_POOLING[self.prompt_family]

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["prompt_family"] = self.prompt_family.value
        payload["pooling"] = self.pooling.value
        return payload

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> LlaraConfig:
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in payload.items() if key in known}
        if "prompt_family" in values:
            values["prompt_family"] = parse_family(values["prompt_family"])
        values["prompt_layout"] = int(parse_layout(values.get("prompt_layout", LEGACY_LAYOUT)))
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
