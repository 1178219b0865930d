"""Library entry of ``llara finetune``: RepLLaMA-style contrastive finetuning (LoRA or full) with hard negatives.

Each training step takes ``batch_size`` queries per process and, for each, a group of ``group_size`` passages:
one positive and ``group_size - 1`` hard negatives sampled from the example's lists (deterministically from
``(seed, epoch, example)``). Queries go through the query (EBAR) prompt, passages through the passage (EBAE)
prompt of the model's own prompt family, pooled as at inference (:class:`llara_cli.core.modeling.LlaraEncoder`);
the loss is InfoNCE over cosine similarities / ``temperature`` with in-batch negatives, gathered across
processes under DDP (:mod:`llara_cli.core.contrastive`).

The run lifecycle is ``llara adapt``'s (:mod:`llara_cli.training.adapt`): checkpoints and ``train_log.jsonl``
in ``<out_dir>.partial`` until the end, ``--resume`` refused when settings differ, the final directory renamed
into place in one step. The output is, with LoRA (the default), an *adapter directory* -- ``adapter_config.json``
(its ``base_model_name_or_path`` is the input model), ``adapter_model.safetensors``, the tokenizer,
``llara_config.json`` (stage ``finetuned``) -- loaded by :func:`llara_cli.core.adapters.load_adapter_model`;
with ``merge`` or full finetuning, an ordinary llara model directory. Both also hold ``train_log.jsonl`` and
``finetune_config.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PrinterCallback, TrainerCallback

from llara_cli.core.batching import POOL_MASK_KEYS, collate_prompted
from llara_cli.core.contrastive import (
    DEFAULT_TEMPERATURE, contrastive_accuracy, contrastive_loss_from_embeddings, distributed_world_size,
    gather_with_grad,
)
from llara_cli.core.modeling import decoder_of, run_decoder
from llara_cli.core.pooling import masked_mean_pool, normalize
from llara_cli.core.prompts import PromptFormat, Side
from llara_cli.data.finetune import (
    DEFAULT_DEPTH, DEFAULT_MIN_RELEVANCE, DEFAULT_NUM_NEGATIVES, DEFAULT_SKIP, DEFAULT_SPLIT, MiningSettings,
    TrainingData, TrainingExample, drop_without_negatives,
)
from llara_cli.errors import UsageError
from llara_cli.training._trainer import AdaptationTrainer, count_tokens
from llara_cli.training.run_config import TrainingRunConfig, training_arguments
from llara_cli.training.run_directory import (
    check_destination, finished_training, fresh_final_dir, publish_checkpoint, publish_final_dir, resumed_step,
    run_directory,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_QUERY_MAX_LENGTH = 32  # RepLLaMA's
DEFAULT_PASSAGE_MAX_LENGTH = 196
GPU_GROUP_SIZE = 16
CPU_GROUP_SIZE = 4
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 1e-5
DEFAULT_LORA_TARGETS = ("all-linear",)  # every attention and MLP projection of the decoder (not the LM head)
FINETUNE_CONFIG_FILE = "finetune_config.json"
INPUT_KEYS = tuple(f"{side}_{key}" for side in ("query", "passage") for key in ("input_ids", "segment_ids", "pool_mask"))
# Settings that change the trained weights: a resume must match them exactly.
FINGERPRINT_FIELDS = (
    "model", "prompt_family", "split", "skip", "depth", "num_negatives", "min_relevance", "query_max_length",
    "passage_max_length", "group_size", "in_batch_negatives", "cross_device_negatives", "temperature", "batch_size",
    "grad_accum", "epochs", "max_steps", "learning_rate", "warmup_ratio", "scheduler", "weight_decay",
    "max_grad_norm", "optim", "bf16", "precision", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "seed",
    "attn_implementation",
)


@dataclass(kw_only=True)
class FinetuneConfig(TrainingRunConfig):
    """Everything a finetuning run needs; the CLI fills it from its options.

    Training data: ``train`` is a training jsonl (:mod:`llara_cli.data.finetune`), or a BEIR directory /
    collection name whose hard negatives are mined from the run ``negatives_from``; ``queries``/``qrels``/
    ``corpus`` override (or replace) the parts of a collection. ``batch_size`` (a :class:`TrainingRunConfig`
    setting, like the schedule and checkpoints) counts queries per process. ``group_size`` (1 positive + n-1
    negatives) defaults to 16 on GPU, 4 on CPU; ``learning_rate`` to 1e-4 with LoRA, 1e-5 without.
    """

    train: Path | str | None = None
    queries: Path | str | None = None
    qrels: Path | str | None = None
    corpus: Path | str | None = None
    split: str = DEFAULT_SPLIT
    negatives_from: Path | None = None
    skip: int = DEFAULT_SKIP
    depth: int = DEFAULT_DEPTH
    num_negatives: int = DEFAULT_NUM_NEGATIVES
    min_relevance: int = DEFAULT_MIN_RELEVANCE
    model: str = DEFAULT_MODEL
    prompt_family: str | None = None
    query_max_length: int = DEFAULT_QUERY_MAX_LENGTH
    passage_max_length: int = DEFAULT_PASSAGE_MAX_LENGTH
    group_size: int | None = None
    in_batch_negatives: bool = True
    cross_device_negatives: bool = True
    temperature: float = DEFAULT_TEMPERATURE
    epochs: float = 1.0
    max_steps: int | None = None
    lora: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    merge: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.negatives_from = Path(self.negatives_from) if self.negatives_from else None
        self.lora_targets = tuple(self.lora_targets)
        if self.group_size is None:
            self.group_size = GPU_GROUP_SIZE if torch.cuda.is_available() else CPU_GROUP_SIZE
        if self.learning_rate is None:
            self.learning_rate = LORA_LEARNING_RATE if self.lora else FULL_LEARNING_RATE

    @property
    def mining(self) -> MiningSettings:
        return MiningSettings(skip=self.skip, depth=self.depth, num_negatives=self.num_negatives, seed=self.seed,
                              min_relevance=self.min_relevance)

    def validate(self) -> None:
        self.validate_run_settings()
        for name in ("group_size", "lora_r"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("query_max_length", "passage_max_length"):
            if getattr(self, name) < 8:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 8, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.epochs <= 0:
            raise UsageError(f"--epochs must be positive, got {self.epochs}")
        if self.temperature <= 0:
            raise UsageError(f"--temperature must be positive, got {self.temperature}")
        if not 0 <= self.lora_dropout < 1:
            raise UsageError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.merge and not self.lora:
            raise UsageError("--merge applies to LoRA finetuning; full finetuning already writes whole weights")
        if not self.lora_targets or not all(target.strip() for target in self.lora_targets):
            raise UsageError("--lora-targets needs at least one module name (or all-linear)")
        self.mining.validate()

    def fingerprint(self, **extra: Any) -> dict[str, Any]:
        """The settings a resume must match, plus ``extra`` (world size, resolved family, data identity)."""
        values = {name: getattr(self, name) for name in FINGERPRINT_FIELDS}
        values["lora_targets"] = list(self.lora_targets)
        return {**values, **extra}


@dataclass(frozen=True)
class FinetuneResult:
    out_dir: Path
    steps: int
    resumed_from_step: int | None
    train_loss: float | None
    log_path: Path
    examples: int
    dropped_without_negatives: int
    adapter: bool  # the output is an adapter directory (LoRA without --merge)


# ---------------------------------------------------------------------------------------------- data and batches


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


class ContrastiveCollator:
    """Tokenizes and lays out a list of groups: ``query_*`` tensors ``(n, ...)`` and ``passage_*`` tensors
    ``(n * group_size, ...)`` (group by group, positive first), each with ``input_ids``, ``segment_ids`` and
    ``pool_mask`` for its side."""

    def __init__(self, tokenizer, prompt_format: PromptFormat, query_max_length: int,  # noqa: ANN001
                 passage_max_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_format = prompt_format
        self.max_lengths = {Side.QUERY: query_max_length, Side.PASSAGE: passage_max_length}

    def _side(self, texts: list[str], side: Side) -> dict[str, torch.Tensor]:
        text_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        sequences = [self.prompt_format.single(list(ids), side, self.max_lengths[side]) for ids in text_ids]
        batch = collate_prompted(sequences, self.tokenizer.pad_token_id)
        return {f"{side.value}_input_ids": batch["input_ids"], f"{side.value}_segment_ids": batch["segment_ids"],
                f"{side.value}_pool_mask": batch[POOL_MASK_KEYS[side]]}

    def __call__(self, groups: Sequence[tuple[str, list[str]]]) -> dict[str, torch.Tensor]:
        queries = [query for query, _ in groups]
        passages = [passage for _, group in groups for passage in group]
        return {**self._side(queries, Side.QUERY), **self._side(passages, Side.PASSAGE)}


# --------------------------------------------------------------------------------------------------- the model


def embed_prompted(causal_lm: nn.Module, input_ids: torch.Tensor, segment_ids: torch.Tensor,
                   pool_mask: torch.Tensor, *, normalized: bool) -> torch.Tensor:
    """Embeddings ``(batch, dim)`` of laid-out prompts with gradients: what ``LlaraEncoder`` computes at inference."""
    hidden = run_decoder(decoder_of(causal_lm), input_ids, segment_ids, joint=False)  # (batch, seq, dim)
    embeddings = masked_mean_pool(hidden, pool_mask).float()  # (batch, dim)
    return normalize(embeddings) if normalized else embeddings


class ContrastiveModel(nn.Module):
    """The finetuning objective around a causal LM (plain or peft): ``forward(**batch) -> {"loss", "accuracy"}``."""

    accepts_loss_kwargs = False  # the HF Trainer divides the loss by the accumulation steps itself

    def __init__(self, causal_lm: nn.Module, *, group_size: int, temperature: float = DEFAULT_TEMPERATURE,
                 normalized: bool = True, in_batch: bool = True, cross_device: bool = True) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        self.group_size = group_size
        self.temperature = temperature
        self.normalized = normalized
        self.in_batch = in_batch
        self.cross_device = cross_device

    @property
    def config(self):  # noqa: ANN201 - HF Trainer reads model.config
        return self.causal_lm.config

    def embed(self, batch: dict[str, torch.Tensor], side: Side) -> torch.Tensor:
        prefix = f"{side.value}_"
        return embed_prompted(self.causal_lm, batch[prefix + "input_ids"], batch[prefix + "segment_ids"],
                              batch[prefix + "pool_mask"], normalized=self.normalized)

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        query_embeddings = self.embed(batch, Side.QUERY)  # (n_queries, dim)
        passage_embeddings = self.embed(batch, Side.PASSAGE)  # (n_queries * group_size, dim)
        if self.cross_device and self.in_batch and distributed_world_size() > 1:
            query_embeddings = gather_with_grad(query_embeddings)  # (world * n_queries, dim)
            passage_embeddings = gather_with_grad(passage_embeddings)  # (world * n_queries * group_size, dim)
        loss = contrastive_loss_from_embeddings(query_embeddings, passage_embeddings, self.temperature,
                                                group_size=self.group_size, in_batch=self.in_batch)
        accuracy = contrastive_accuracy(query_embeddings, passage_embeddings, group_size=self.group_size,
                                        in_batch=self.in_batch)
        return {"loss": loss, "accuracy": accuracy}


def freeze_unused_head(causal_lm: nn.Module) -> None:
    """Retrieval never runs the LM head: freeze it unless it is tied to the input embeddings (which are used).

    Besides saving its optimizer state, this keeps DDP correct: a trainable parameter without a gradient
    leaves its gradient bucket unreduced (``find_unused_parameters`` is off, as it should be).
    """
    head = causal_lm.get_output_embeddings()
    if head is not None and head.weight is not causal_lm.get_input_embeddings().weight:
        head.requires_grad_(False)


def add_lora(causal_lm: nn.Module, tokenizer, prompt_family, config: FinetuneConfig, base_reference: str):  # noqa: ANN001, ANN201
    """Wrap in LoRA adapters (``config.lora_*``); marker tokens of the prompt family get trainable embeddings.

    ``base_reference`` is written as the adapter's ``base_model_name_or_path`` (how it is loaded again).
    """
    from peft import LoraConfig, get_peft_model

    from llara_cli.core.prompts import TEMPLATES

    markers = TEMPLATES[prompt_family].added_tokens
    marker_ids = [int(token_id) for token_id in tokenizer.convert_tokens_to_ids(list(markers))] if markers else None
    targets = config.lora_targets[0] if config.lora_targets == ("all-linear",) else list(config.lora_targets)
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules=targets,
        task_type="CAUSAL_LM", trainable_token_indices=marker_ids,
    )
    try:
        with warnings.catch_warnings():  # peft 0.21 still calls transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = get_peft_model(causal_lm, lora)
    except ValueError as error:
        raise UsageError(f"--lora-targets {','.join(config.lora_targets)}: {str(error).splitlines()[0]}") from None
    for adapter_config in model.peft_config.values():
        adapter_config.base_model_name_or_path = base_reference
    return model


class FinetuneTrainer(AdaptationTrainer):
    """``llara adapt``'s Trainer (logs, llara-model checkpoints, resume) logging the contrastive accuracy."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        outputs = model(**inputs)
        accuracy = outputs["accuracy"].detach().float()
        self._component_sums["accuracy"] = self._component_sums.get("accuracy", 0.0) + accuracy
        self._micro_batches += 1
        self._interval_tokens = self._interval_tokens.to(accuracy.device) + count_tokens(inputs)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        with warnings.catch_warnings():  # peft looks for a config.json at an alias such as "smollm2-135m"
            warnings.filterwarnings("ignore", message="Could not find a config file in")
            warnings.filterwarnings("ignore", message="Setting `save_embedding_layers` to `True`")  # marker rows added
            super()._save(output_dir, state_dict)


class EpochCallback(TrainerCallback):
    """Tells the dataset the epoch, so each epoch samples other groups (and a resume samples the same again)."""

    def __init__(self, dataset: ContrastiveDataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN201
        self.dataset.set_epoch(math.floor(state.epoch or 0))


# ------------------------------------------------------------------------------------------------------ the run


def model_reference(model: str) -> str:
    """How the input model is recorded: an absolute path for a directory, else the alias or hub id as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def load_input_model(model: str, *, prompt_family: str | None, trust_remote_code: bool,
                     attn_implementation: str):  # noqa: ANN201 - (causal_lm, tokenizer, LlaraConfig)
    """A plain/llara model directory or alias, or an adapter directory (merged: finetuning continues on it)."""
    from llara_cli.core.models import is_peft_adapter_dir

    if is_peft_adapter_dir(model):
        from llara_cli.core.adapters import load_adapter_model

        return load_adapter_model(model, dtype="fp32", prompt_family=prompt_family,
                                  trust_remote_code=trust_remote_code, attn_implementation=attn_implementation)
    from llara_cli.core.loading import load_llara_model

    return load_llara_model(model, dtype="fp32", prompt_family=prompt_family, trust_remote_code=trust_remote_code,
                            attn_implementation=attn_implementation)


def data_identity(config: FinetuneConfig) -> dict[str, Any]:
    """The training inputs as a resume sees them: absolute paths and sizes."""
    identity: dict[str, Any] = {}
    for name in ("train", "queries", "qrels", "corpus", "negatives_from"):
        value = getattr(config, name)
        if value is None:
            continue
        path = Path(value)
        identity[name] = str(path.resolve()) if path.exists() else str(value)
        identity[f"{name}_bytes"] = path.stat().st_size if path.is_file() else None
    return identity


def examples_digest(examples: Sequence[TrainingExample]) -> str:
    """sha256 of the examples' texts and ids: a resume must train on the very same data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def load_examples(config: FinetuneConfig) -> TrainingData:
    """The training data ``config`` names: a training jsonl, or a collection with negatives mined from a run."""
    from llara_cli.data.finetune import load_training_data

    return load_training_data(config.train, queries=config.queries, qrels=config.qrels, corpus=config.corpus,
                              split=config.split, negatives_from=config.negatives_from, mining=config.mining)


def usable_examples(data: TrainingData, group_size: int) -> tuple[list[TrainingExample], int]:
    """The examples to train on -- minus those without negatives when the group needs them -- and how many went."""
    if group_size == 1:
        return list(data.examples), 0
    examples, dropped = drop_without_negatives(data.examples)
    if dropped:
        logger.warning("skipping %d queries without hard negatives (group size %d needs them)", dropped, group_size)
    if not examples:
        raise UsageError(f"{data.source}: no training query has a hard negative; mine some (llara mine), "
                         "or use --group-size 1 for in-batch negatives only")
    return examples, dropped


def run_finetuning(config: FinetuneConfig, on_log: Callable[[dict[str, Any]], None] | None = None,
                   data: TrainingData | None = None) -> FinetuneResult:
    """Finetune ``config.model`` contrastively and write the result to ``config.out_dir``.

    ``data`` (already loaded examples) replaces reading ``config.train``. ``on_log`` receives, on the main
    process, every record of ``train_log.jsonl``: ``{"event": "start", "step", "max_steps"}``, then
    ``{"event": "step", "step", "loss", "accuracy", "learning_rate", "grad_norm", "tokens", "tokens_per_s",
    "elapsed_s"}`` every ``logging_steps`` steps, and ``{"event": "end", ...}``.
    Errors: UsageError (bad settings or data, a resume with other settings), LlaraError (model absent,
    unwritable output).
    """
    config.validate()
    check_destination(config)
    examples, dropped = usable_examples(data if data is not None else load_examples(config), config.group_size)
    family = _check_model(config)  # cheap checks first: no weights are loaded yet

    args = _training_arguments(config)  # initialises the process group under torchrun / accelerate launch
    from accelerate import PartialState

    state = PartialState()
    per_step = config.batch_size * args.world_size
    if len(examples) < per_step:
        raise UsageError(f"{len(examples)} training queries do not fill one batch of {config.batch_size} x "
                         f"{args.world_size} processes; lower --batch-size")
    fingerprint = config.fingerprint(prompt_family=family, world_size=args.world_size, examples=len(examples),
                                     examples_sha256=examples_digest(examples),
                                     **data_identity(config))
    with run_directory(config, fingerprint, is_main=state.is_main_process,
                       barrier=state.wait_for_everyone) as resume_from:
        trainer = _build_trainer(config, family, examples, args, fingerprint, on_log)
        start_step = resumed_step(resume_from)  # before training: publishing removes the checkpoint
        if finished_training(resume_from):  # interrupted while publishing: the checkpoint is the model
            publish_checkpoint(config, trainer, resume_from, state, merge_lora=config.merge,
                               saved_config_name=FINETUNE_CONFIG_FILE)
            steps, train_loss = start_step, None
        else:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            _save_final_model(config, trainer, state)
            steps, train_loss = int(output.global_step), output.training_loss
    return FinetuneResult(config.out_dir, steps, start_step, train_loss, config.out_dir / "train_log.jsonl",
                          len(examples), dropped, adapter=config.lora and not config.merge)


def _check_model(config: FinetuneConfig) -> str:
    """The prompt family to train with; fails fast on a missing model or lengths too short for the prompt."""
    from llara_cli.core.config import LlaraConfig
    from llara_cli.core.loading import choose_config
    from llara_cli.core.models import is_peft_adapter_dir, load_tokenizer, resolve_model
    from llara_cli.core.prompts import TEMPLATES

    if is_peft_adapter_dir(config.model):
        from llara_cli.core.adapters import adapter_base_model

        base = adapter_base_model(config.model)
        if not is_peft_adapter_dir(base):
            resolve_model(base)
        saved, tokenizer_dir = LlaraConfig.load(config.model), Path(config.model)
    else:
        tokenizer_dir = resolve_model(config.model)  # LlaraError when e.g. the 7B weights are not here
        saved = LlaraConfig.load(tokenizer_dir)
    llara_config = choose_config(saved, config.prompt_family, config.model)
    template = TEMPLATES[llara_config.prompt_family]
    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code=config.trust_remote_code)
    missing = [token for token in template.added_tokens if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    prompt_format = PromptFormat.from_tokenizer(template, tokenizer)
    prompt_format.text_budget(config.query_max_length, joint=False)  # UsageError when no text would fit
    prompt_format.text_budget(config.passage_max_length, joint=False)
    return llara_config.prompt_family.value


def _training_arguments(config: FinetuneConfig):  # noqa: ANN202 - transformers.TrainingArguments
    return training_arguments(
        config, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        warmup_steps=config.warmup_ratio,  # < 1: a fraction of the training steps
        dataloader_drop_last=True,  # every process gathers equally many embeddings
        data_seed=config.seed,
    )


def _build_trainer(config: FinetuneConfig, family: str, examples: Sequence[TrainingExample], args,  # noqa: ANN001
                   fingerprint: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None):  # noqa: ANN202
    from transformers import set_seed

    from llara_cli.core.modeling import prompt_format_for
    from llara_cli.training._trainer import RunCallback, enable_gradient_checkpointing
    from llara_cli.training.trainer_utils import TRAIN_LOG_FILE, JsonlLog

    set_seed(config.seed)  # the LoRA weights (and added marker embeddings) are drawn at random
    causal_lm, tokenizer, llara_config = load_input_model(
        config.model, prompt_family=family, trust_remote_code=config.trust_remote_code,
        attn_implementation=config.attn_implementation,
    )
    causal_lm.config.use_cache = False
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(causal_lm)
    if not config.lora:
        freeze_unused_head(causal_lm)
    if config.lora:
        causal_lm = add_lora(causal_lm, tokenizer, llara_config.prompt_family, config, model_reference(config.model))
    objective = ContrastiveModel(causal_lm, group_size=config.group_size, temperature=config.temperature,
                                 normalized=llara_config.normalize, in_batch=config.in_batch_negatives,
                                 cross_device=config.cross_device_negatives)
    dataset = ContrastiveDataset(examples, config.group_size, config.seed)
    collator = ContrastiveCollator(tokenizer, prompt_format_for(tokenizer, llara_config), config.query_max_length,
                                   config.passage_max_length)
    finetuned_config = dataclasses.replace(llara_config, stage="finetuned",
                                           base_model=llara_config.base_model or config.model)
    callbacks = [RunCallback(JsonlLog(config.run_dir / TRAIN_LOG_FILE), fingerprint, config.save_total_limit, on_log),
                 EpochCallback(dataset)]
    trainer = FinetuneTrainer(model=objective, args=args, train_dataset=dataset, data_collator=collator,
                              callbacks=callbacks, llara_tokenizer=tokenizer, llara_config=finetuned_config)
    trainer.remove_callback(PrinterCallback)  # logs go to train_log.jsonl and on_log, not to stdout
    return trainer


def _save_final_model(config: FinetuneConfig, trainer, state) -> None:  # noqa: ANN001
    """Write the model into ``<run_dir>/final.tmp``, then rename it to ``out_dir`` in one step (main process).

    LoRA: the adapter directory, or merged weights with ``merge``; full finetuning: the whole model.
    """
    from llara_cli.core.loading import save_llara_model
    from llara_cli.training._trainer import is_peft_model

    final_dir = fresh_final_dir(config, state)
    causal_lm = trainer.accelerator.unwrap_model(trainer.model).causal_lm
    if is_peft_model(causal_lm):
        if state.is_main_process:
            if config.merge:
                save_llara_model(final_dir, causal_lm.merge_and_unload(), trainer.llara_tokenizer,
                                 trainer.llara_config)
            else:
                trainer._save(str(final_dir))  # the adapter, tokenizer and llara_config.json
    else:
        trainer.save_model(str(final_dir))  # gathers sharded weights; writes on the main process
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    (final_dir / "README.md").unlink(missing_ok=True)  # peft's model-card stub says nothing about llara
    publish_final_dir(config, final_dir, state, saved_config_name=FINETUNE_CONFIG_FILE)
