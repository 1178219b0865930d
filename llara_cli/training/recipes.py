"""Training defaults that belong to the model: a *recipe* (learning rate, steps, lengths, batch, family, objective)
for ``llara adapt`` and ``llara finetune``, and where each value of a run came from.

A run's settings come, in this order, from: a flag the user gave; the model's own ``llara_config.json`` when
llara trained it (the lengths and prompt family it was trained with), together with the recipe of the model it
was trained from (its ``base_model``); the alias registry's recipe for a known model (:data:`MODEL_RECIPES`: the
embedded ``smollm2-135m`` gets the setting measured best on it, docs/results.md); the paper's recipe for
7B-class models (a known 7B alias, or any model of at least :data:`LARGE_MODEL_PARAMETERS` parameters); else
llara's built-in defaults (the config classes' own). :func:`apply_recipe` returns the config with those values
and one :class:`RecipeChoice` per setting, which ``adapt``/``finetune`` print before training.
No torch is imported here.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["MODEL_RECIPES", "PAPER_RECIPE", "SMOLLM2_RECIPE", "ModelRecipe", "RecipeChoice", "RecipeSource",
           "apply_recipe", "describe_choices", "recipe_for_model"]

logger = logging.getLogger(__name__)

LARGE_MODEL_PARAMETERS = 1_000_000_000  # from here on a model gets the paper's (7B) recipe
ADAPT = "adapt"
FINETUNE = "finetune"
# Tokens per query, prompt included: RepLLaMA's 32 was for a 3-token prompt; the flagembedding query prompt alone
# takes 19 (SmolLM2's tokenizer), so 32 cut 72-79% of the Cranfield, CACM and SciFact test queries to 13 tokens and
# cost the corpus-pairs model 0.07 nDCG@10 on Cranfield (docs/results.md). 64 cuts 1% / 23% / 0.2% of them, and it
# is the length an adapted model encodes queries with.
QUERY_MAX_LENGTH = 64
# The settings a recipe may set, per command (config field names), in the order they are printed.
RECIPE_FIELDS = {
    ADAPT: ("learning_rate", "max_steps", "batch_size", "max_length", "prompt_family", "objective"),
    FINETUNE: ("learning_rate", "max_steps", "batch_size", "group_size", "query_max_length", "passage_max_length",
               "temperature"),
}


class RecipeSource(str, Enum):
    """Where a run's setting came from."""

    FLAG = "flag"
    MODEL = "the model's llara_config.json"
    ALIAS = "alias registry"
    PAPER = "paper recipe (7B-class)"
    BUILTIN = "llara default"


@dataclass(frozen=True)
class ModelRecipe:
    """The defaults of ``adapt`` and ``finetune`` for one model (config field name -> value)."""

    name: str
    source: RecipeSource
    adapt: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def settings(self, command: str) -> dict[str, Any]:
        return self.adapt if command == ADAPT else self.finetune


# The headline setting of benchmarks/quality.py (docs/results.md, "Quality work on the embedded model"): the
# released code's form, 200 steps of 8 x 128 tokens at lr 1e-4 (10x the paper's, measured best on this model; the
# gain is mostly there at 100 steps); finetuning: LoRA at 1e-4, 8 queries x group 2, 64/128 tokens, t 0.01.
SMOLLM2_RECIPE = ModelRecipe(
    name="smollm2-135m", source=RecipeSource.ALIAS,
    adapt={"learning_rate": 1e-4, "max_steps": 200, "batch_size": 8, "max_length": 128,
           "prompt_family": "flagembedding", "objective": "released"},
    finetune={"learning_rate": 1e-4, "batch_size": 8, "group_size": 2, "query_max_length": QUERY_MAX_LENGTH,
              "passage_max_length": 128, "temperature": 0.01},
    note="measured best on the embedded model (benchmarks/quality.py headline)",
)
# The paper's learning rate (Llama-2-7B: lr 1e-5; 10k steps of global batch 256 at 1024 tokens there) at llara's
# single-machine step count and length; finetuning: 64 query tokens, RepLLaMA's 196 passage tokens, LoRA at 1e-4.
PAPER_RECIPE = ModelRecipe(
    name="paper (7B-class)", source=RecipeSource.PAPER,
    adapt={"learning_rate": 1e-5, "max_steps": 1000, "batch_size": 8, "max_length": 512,
           "prompt_family": "flagembedding", "objective": "released"},
    finetune={"learning_rate": 1e-4, "batch_size": 8, "query_max_length": QUERY_MAX_LENGTH, "passage_max_length": 196,
              "temperature": 0.01},
    note="LLaRA paper / RepLLaMA",
)
MODEL_RECIPES: dict[str, ModelRecipe] = {
    "smollm2-135m": SMOLLM2_RECIPE,
    "llama-2-7b": PAPER_RECIPE,
    "mistral-7b": PAPER_RECIPE,
    "llama-3-8b": PAPER_RECIPE,
}
BUILTIN_RECIPE = ModelRecipe(name="built-in", source=RecipeSource.BUILTIN)


@dataclass(frozen=True)
class RecipeChoice:
    """One setting of a run: its value and where it came from."""

    name: str
    value: Any
    source: RecipeSource
    detail: str = ""

    def describe(self) -> str:
        value = self.value.value if isinstance(self.value, Enum) else self.value
        value = "the model's own, else flagembedding" if value is None and self.name == "prompt_family" else value
        value = "one epoch" if value is None and self.name == "max_steps" else value
        where = f"{self.source.value}: {self.detail}" if self.detail else self.source.value
        return f"{self.name} {value} ({where})"


def recipe_for_model(model: str, _depth: int = 0) -> tuple[ModelRecipe, dict[str, Any]]:
    """The recipe of ``model`` and the settings its own ``llara_config.json`` fixes (a model llara trained).

    The second value maps config field names (the lengths, the prompt family) to the values the model was
    trained with; empty for a model llara has not trained.
    """
    text = str(model).strip()
    recipe = MODEL_RECIPES.get(text.lower())
    if recipe is not None:
        return recipe, {}
    path = Path(text).expanduser()
    if not path.is_dir():
        return BUILTIN_RECIPE, {}
    own = _trained_settings(path)
    base = _base_model(path)
    if base is not None and _depth < 4 and base != text:
        recipe, _ = recipe_for_model(base, _depth + 1)
        return recipe, own
    if _parameters(path) >= LARGE_MODEL_PARAMETERS:
        return PAPER_RECIPE, own
    return BUILTIN_RECIPE, own


def _trained_settings(model_dir: Path) -> dict[str, Any]:
    from llara_cli.model.config import LLARA_CONFIG_FILE, LlaraConfig, Stage

    if not (model_dir / LLARA_CONFIG_FILE).is_file():
        return {}
    config = LlaraConfig.load(model_dir)
    if config.stage is Stage.BASE:
        return {}
    settings = {"prompt_family": config.prompt_family.value, "passage_max_length": config.passage_max_length}
    if config.stage is Stage.FINETUNED:  # adaptation trains passages only: its query length is the default
        settings["query_max_length"] = config.query_max_length
    return settings


def _base_model(model_dir: Path) -> str | None:
    from llara_cli.model.config import LLARA_CONFIG_FILE, LlaraConfig

    if (model_dir / LLARA_CONFIG_FILE).is_file():
        base = LlaraConfig.load(model_dir).base_model
        if base:
            return base
    if (model_dir / "adapter_config.json").is_file():
        from llara_cli.model.adapters import adapter_base_model

        return adapter_base_model(model_dir)
    return None


def _parameters(model_dir: Path) -> int:
    from llara_cli.training.memory_plan import model_shape

    try:
        return model_shape(model_dir).parameters
    except (OSError, KeyError, ValueError, TypeError):
        return 0


Config = TypeVar("Config")


def apply_recipe(config: Config, command: str, explicit: Collection[str] = ()) -> tuple[Config, list[RecipeChoice]]:
    """``config`` with every recipe setting not in ``explicit`` (field names the user set) taken from the
    model's recipe, and where each value came from.

    ``command`` is ``"adapt"`` or ``"finetune"``. The model's ``llara_config.json`` wins over its recipe for the
    settings it fixes (lengths, family) when llara trained it; a setting no recipe names keeps the config's value
    (llara's default).
    """
    recipe, own = recipe_for_model(config.model)
    recipe_settings = recipe.settings(command)
    changes: dict[str, Any] = {}
    choices = []
    for name in RECIPE_FIELDS[command]:
        if not hasattr(config, name):
            continue
        if name in explicit:
            choices.append(RecipeChoice(name, getattr(config, name), RecipeSource.FLAG))
        elif name in own and name in _MODEL_FIXED[command]:
            changes[name] = own[name]
            choices.append(RecipeChoice(name, own[name], RecipeSource.MODEL))
        elif name == "learning_rate" and command == FINETUNE and not config.lora:
            choices.append(RecipeChoice(name, getattr(config, name), RecipeSource.BUILTIN, "full finetuning"))
        elif name in recipe_settings:
            changes[name] = recipe_settings[name]
            choices.append(RecipeChoice(name, recipe_settings[name], recipe.source, recipe.name))
        else:
            choices.append(RecipeChoice(name, getattr(config, name), RecipeSource.BUILTIN))
    updated = dataclasses.replace(config, **changes) if changes else config
    return updated, [dataclasses.replace(choice, value=getattr(updated, choice.name)) for choice in choices]


# What a trained model's llara_config.json fixes for the next run: finetuning keeps the lengths it will be used
# at; adapting again keeps the family (the markers are in its vocabulary).
_MODEL_FIXED = {ADAPT: ("prompt_family",), FINETUNE: ("query_max_length", "passage_max_length")}


def describe_choices(model: str, choices: list[RecipeChoice]) -> list[str]:
    """Lines for the start of a run: the model's recipe, then each setting and where it came from."""
    recipe, _ = recipe_for_model(model)
    note = f" -- {recipe.note}" if recipe.note else ""
    return [f"settings for {model} (recipe: {recipe.name}{note}):",
            *(f"  {choice.describe()}" for choice in choices)]
