"""Library entry of ``llara adapt``: LLaRA post-hoc adaptation (EBAE + EBAR) on unlabeled text, on the HF Trainer.

One process, ``torchrun --nproc_per_node N`` (DDP) or ``accelerate launch`` (DDP, DeepSpeed ZeRO, FSDP) run the
same code: the Trainer/Accelerate set up the processes, the data stream is the same whatever their number
(see :mod:`llara_cli.data.adaptation` and :mod:`llara_cli.training.adaptation_dataset`), and only the main process
writes files.

Layout of a run writing ``out_dir``::

    <out_dir>.partial/          while training (the run directory; ``--resume`` continues from here)
        adapt_config.json       the settings; a resume with different ones is refused
        train_log.jsonl         one JSON record per logged step (loss, ebae_loss, ebar_loss, lr, tokens/s...)
        checkpoint-<step>/      a loadable llara model dir + optimizer/scheduler/RNG state; complete once
                                its llara_checkpoint.json marker exists
    <out_dir>/                  at the end, renamed into place in one step: the adapted model (safetensors,
                                tokenizer with added tokens, llara_config.json with stage "adapted" and
                                max_length as its passage length), plus train_log.jsonl, adapt_config.json
                                and, with keep_checkpoints, checkpoints/

So ``out_dir`` either does not exist or holds a complete model; the run directory is removed on success. Then
the main process chooses the prompt the model's queries get (``query_prompt``: measured on the corpus's own
pseudo-queries for ``auto``, :mod:`llara_cli.training.query_prompt_choice`) and rewrites ``llara_config.json``
(atomically: until then the model has the paper's query prompt).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llara_cli.core.prompts import PromptFamily, check_max_length, parse_family
from llara_cli.errors import UsageError
from llara_cli.training.run_config import TrainingRunConfig, training_arguments
from llara_cli.training.run_directory import (
    check_destination,
    finished_training,
    fresh_final_dir,
    publish_checkpoint,
    publish_final_dir,
    resumed_step,
    run_directory,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llara_cli.data.adaptation import DataFormat
    from llara_cli.model.llara_model import ModelSource
    from llara_cli.training.query_prompt_choice import QueryPromptChoice

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
PAPER_LEARNING_RATE = 1e-5
# The released code's recipe (BAAI's LLARA-* checkpoints): better than the paper's form on all three collections
# here after 100 steps and more, worse at 10 (docs/adapt.md, "Defaults"); the paper's is --prompt-family paper
# --objective paper
DEFAULT_PROMPT_FAMILY = PromptFamily.FLAGEMBEDDING
DEFAULT_OBJECTIVE = "released"
# Settings that change the trained weights: a resume must match them exactly.
FINGERPRINT_FIELDS = (
    "model", "data_format", "prompt_family", "joint", "max_length", "max_input_tokens", "max_examples",
    "shuffle_buffer", "max_steps", "batch_size", "grad_accum", "learning_rate", "warmup_ratio", "scheduler",
    "weight_decay", "max_grad_norm", "optim", "bf16", "precision", "lora", "lora_r", "lora_alpha", "lora_dropout",
    "objective", "seed", "attn_implementation",
)  # plus the resolved objective settings (core.objective.ObjectiveSettings) and the prompt layout


@dataclass(kw_only=True)
class AdaptConfig(TrainingRunConfig):
    """Everything an adaptation run needs; the CLI fills it from its options.

    The Trainer settings (batch, schedule, checkpoints, resume) are :class:`TrainingRunConfig`'s.
    ``max_input_tokens`` (the span length) defaults to all the text that fits in ``max_length`` beside the
    joint prompt. ``prompt_family`` ``None`` keeps the model's saved family (else the one its tokenizer implies,
    else ``flagembedding``). ``objective`` names a preset (:mod:`llara_cli.training.objective_presets`); the four
    objective switches
    below override it when set (``None``: the preset's value). ``query_prompt`` (``auto``, ``ebar``, ``ebae``) is
    decided after training and does not change the weights.
    """

    FINGERPRINT_FIELDS: ClassVar[tuple[str, ...]] = FINGERPRINT_FIELDS
    RUN_CONFIG_FILE: ClassVar[str] = "adapt_config.json"

    corpus: Path
    model: str = DEFAULT_MODEL
    data_format: str = "auto"
    prompt_family: PromptFamily | None = None
    joint: bool = True
    max_length: int = 512
    max_input_tokens: int | None = None
    max_examples: int | None = None
    shuffle_buffer: int = 10_000
    max_steps: int = 1000
    learning_rate: float = PAPER_LEARNING_RATE
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    objective: str = DEFAULT_OBJECTIVE
    lm_loss_weight: float | None = None
    bow_scale: float | None = None
    exclude_special_targets: bool | None = None
    remove_stop_words: bool | None = None
    deepspeed: Path | None = None
    query_prompt: str = "auto"  # training.query_prompt_choice.QueryPromptSetting: chosen after training

    def __post_init__(self) -> None:
        super().__post_init__()
        self.corpus = Path(self.corpus)
        self.prompt_family = parse_family(self.prompt_family) if self.prompt_family else None
        self.deepspeed = Path(self.deepspeed) if self.deepspeed else None

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_ratio * self.max_steps)

    def objective_settings(self):
        """The preset with this run's overrides."""
        from llara_cli.training.objective_presets import objective_settings

        return objective_settings(self.objective, lm_loss_weight=self.lm_loss_weight, bow_scale=self.bow_scale,
                                  exclude_special_targets=self.exclude_special_targets,
                                  remove_stop_words=self.remove_stop_words)

    def validate(self) -> None:
        self.validate_run_settings()
        check_max_length(self.max_length, "--max-length")
        for name in ("max_steps", "lora_r", "max_input_tokens", "max_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        self.objective_settings()  # UsageError for an unknown preset or a weight out of range
        from llara_cli.training.query_prompt_choice import parse_query_prompt_setting

        parse_query_prompt_setting(self.query_prompt)
        if self.deepspeed is not None and not self.deepspeed.is_file():
            raise UsageError(f"{self.deepspeed}: no such DeepSpeed config file")



@dataclass(frozen=True)
class AdaptResult:
    out_dir: Path
    steps: int
    resumed_from_step: int | None
    train_loss: float | None
    log_path: Path
    query_prompt: QueryPromptChoice | None = None  # None on the processes other than the main one


def corpus_identity(path: Path) -> dict[str, Any]:
    """The corpus as a resume sees it: absolute path and size (a BEIR directory by its corpus file)."""
    target = path
    if path.is_dir():
        candidates = [path / "corpus.jsonl", path / "corpus.jsonl.gz"]
        target = next((candidate for candidate in candidates if candidate.is_file()), path)
    size = target.stat().st_size if target.is_file() else None
    return {"corpus": str(path.resolve()), "corpus_bytes": size}


# ------------------------------------------------------------------------------------------------------ the run


def run_adaptation(config: AdaptConfig, on_log: Callable[[dict[str, Any]], None] | None = None) -> AdaptResult:
    """Adapt ``config.model`` on ``config.corpus`` and write the adapted model to ``config.out_dir``.

    ``on_log`` receives, on the main process, every record written to ``train_log.jsonl``: ``{"event":
    "start", "step", "max_steps"}`` once, ``{"event": "step", "step", "loss", "ebae_loss", "ebar_loss",
    "learning_rate", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"}`` every ``logging_steps`` steps, and
    ``{"event": "end", ...}``. Errors: UsageError (bad settings or data, a resume with other settings),
    LlaraError (model absent, unwritable output).
    """
    config.validate()
    check_destination(config)
    plan = _prepare(config)  # cheap checks first: nothing is written and no weights are loaded yet

    args = _training_arguments(config)  # initialises the process group under torchrun / accelerate launch
    from accelerate import PartialState

    state = PartialState()
    memory = _plan_memory(config, plan.source, distributed=args.world_size > 1, device=args.device.type)
    if on_log is not None and state.is_main_process:
        on_log({"event": "plan", "lines": [memory.describe(), *memory.notes]})
    fingerprint = config.fingerprint(prompt_family=plan.source.config.prompt_family.value,
                                     prompt_layout=plan.source.config.prompt_layout,
                                     **config.objective_settings().to_dict(),
                                     world_size=args.world_size, **corpus_identity(config.corpus))
    with run_directory(config, fingerprint, is_main=state.is_main_process,
                       barrier=state.wait_for_everyone) as resume_from:
        trainer = _build_trainer(config, plan, args, fingerprint, on_log)
        start_step = resumed_step(resume_from)
        if finished_training(resume_from):  # interrupted while publishing: the checkpoint is the model
            publish_checkpoint(config, trainer, resume_from, state, merge_lora=True)
            steps, train_loss = start_step, None
        else:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            _save_final_model(config, trainer, state)
            steps, train_loss = int(output.global_step), output.training_loss
    del trainer  # the query prompt choice loads the published model: the training copy goes first
    choice = None
    if state.is_main_process:
        from llara_cli.training.query_prompt_choice import record_query_prompt

        choice = record_query_prompt(config.out_dir, config.query_prompt, config.corpus, plan.data_format,
                                     device=args.device.type, seed=config.seed)
    return AdaptResult(config.out_dir, steps, start_step, train_loss, config.out_dir / "train_log.jsonl", choice)


@dataclass(frozen=True)
class _Plan:
    source: ModelSource  # the model, resolved once per run
    data_format: DataFormat
    span_tokens: int


def _prepare(config: AdaptConfig) -> _Plan:
    """Fail fast: corpus format, model presence, prompt length and at least one example, before any loading."""
    from llara_cli.data.adaptation import AdaptationStream, detect_format
    from llara_cli.model.llara_model import ModelSource

    data_format = detect_format(config.corpus, config.data_format)
    source = ModelSource.resolve(config.model, prompt_family=config.prompt_family,
                                 trust_remote_code=config.trust_remote_code, default_family=DEFAULT_PROMPT_FAMILY)
    budget = source.prompt_format.text_budget(config.max_length, joint=True)
    if config.max_input_tokens is not None and config.max_input_tokens > budget:
        raise UsageError(
            f"--max-input-tokens {config.max_input_tokens} does not fit in --max-length {config.max_length} "
            f"with the {source.config.prompt_family.value} prompt ({budget} text tokens at most)"
        )
    span_tokens = config.max_input_tokens or budget
    AdaptationStream(config.corpus, source.tokenizer, span_tokens=span_tokens,
                     data_format=data_format).check_not_empty()
    return _Plan(source, data_format, span_tokens)


def _plan_memory(config: AdaptConfig, source: ModelSource, *, distributed: bool, device: str):
    """Refuse a CPU run whose estimated peak exceeds the machine's memory (before any weight is loaded); a GPU
    run or one of several processes is not estimated."""
    from llara_cli.training.memory_plan import not_estimated, plan_adapt_memory, source_shape

    if device != "cpu" or distributed:
        return not_estimated(f"training on {device}" if device != "cpu" else "several processes")
    plan = plan_adapt_memory(config, source_shape(source))
    logger.info("%s", plan.describe())
    return plan


def _training_arguments(config: AdaptConfig):
    # The stream is sharded by Accelerate (see llara_cli.data.adaptation), hence no dataloader workers.
    return training_arguments(config, max_steps=config.max_steps, warmup_steps=config.warmup_steps,
                              deepspeed=str(config.deepspeed) if config.deepspeed else None)


def _build_trainer(config: AdaptConfig, plan: _Plan, args, fingerprint: dict[str, Any],
                   on_log: Callable[[dict[str, Any]], None] | None):
    from transformers import PrinterCallback, set_seed

    from llara_cli.model.adapters import LoraSettings
    from llara_cli.model.config import Stage
    from llara_cli.model.llara_model import LlaraModel
    from llara_cli.training._trainer import AdaptationTrainer, RunCallback
    from llara_cli.training.adaptation_dataset import AdaptationDataset
    from llara_cli.training.trainer_utils import TRAIN_LOG_FILE, JsonlLog

    if config.lora and _zero3_enabled():
        raise UsageError("--lora does not combine with DeepSpeed ZeRO-3 (the adapters are merged at the end); "
                         "LoRA fits without sharding: use DDP (torchrun) or ZeRO-2")
    set_seed(config.seed)  # the embeddings of added marker tokens and LoRA weights are drawn at random
    lora = LoraSettings(config.lora_r, config.lora_alpha, config.lora_dropout) if config.lora else None
    model = LlaraModel.build(plan.source, trust_remote_code=config.trust_remote_code,
                             attn_implementation=config.attn_implementation,
                             gradient_checkpointing=config.gradient_checkpointing, lora=lora)
    tokenizer = model.tokenizer
    settings = config.objective_settings()
    objective = adaptation_objective(model.causal_lm, tokenizer, model.config, settings)
    if _zero3_enabled():
        # The BoW loss reads the LM-head matrix directly (never calls the head module), so ZeRO-3 must be
        # told to gather it for the wrapper's forward.
        import deepspeed

        deepspeed.zero.register_external_parameter(objective, model.causal_lm.get_output_embeddings().weight)
    dataset = AdaptationDataset(
        config.corpus, tokenizer, span_tokens=plan.span_tokens, data_format=plan.data_format, seed=config.seed,
        shuffle_buffer=config.shuffle_buffer, max_examples=config.max_examples,
        round_size=config.batch_size * args.world_size,
    )
    collator = adaptation_collator(model.prompt_format, tokenizer, settings, config.max_length, joint=config.joint)
    adapted_config = dataclasses.replace(  # --max-length becomes the model's passage length for encoding
        model.config, stage=Stage.ADAPTED, passage_max_length=config.max_length,
        base_model=model.config.base_model or config.model,
    )
    callback = RunCallback(JsonlLog(config.run_dir / TRAIN_LOG_FILE), fingerprint, config.save_total_limit, on_log)
    trainer = AdaptationTrainer(model=objective, args=args, train_dataset=dataset, data_collator=collator,
                                callbacks=[callback], llara_tokenizer=tokenizer, llara_config=adapted_config)
    trainer.remove_callback(PrinterCallback)  # progress is reported through on_log
    return trainer


def adaptation_objective(causal_lm, tokenizer, llara_config, settings):
    """The :class:`~llara_cli.training.adaptation_objective.LlaraAdaptationModel` for ``settings`` (core.objective)."""
    from llara_cli.model.config import FAMILY_BOW_LOGITS
    from llara_cli.model.llara_model import prompt_format_of
    from llara_cli.training.adaptation_objective import LlaraAdaptationModel

    return LlaraAdaptationModel(
        causal_lm, prompt_format_of(llara_config, tokenizer), bow_logits=FAMILY_BOW_LOGITS[llara_config.prompt_family],
        excluded_target_ids=tokenizer.all_special_ids if settings.exclude_special_targets else (),
        lm_loss_weight=settings.lm_loss_weight, bow_scale=settings.bow_scale,
    )


def adaptation_collator(prompt_format, tokenizer, settings, max_length: int, *,
                        joint: bool = True):
    """The batch collator; with ``settings.remove_stop_words`` the BoW targets lose their stop words."""
    from llara_cli.core.batching import AdaptationCollator
    from llara_cli.data.stopwords import StopWordTargets

    target_filter = StopWordTargets(tokenizer) if settings.remove_stop_words else None
    return AdaptationCollator(prompt_format, tokenizer.pad_token_id, max_length, joint=joint,
                              target_filter=target_filter)


def _zero3_enabled() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


def _save_final_model(config: AdaptConfig, trainer, state) -> None:
    """Write the model into ``<run_dir>/final.tmp``, then publish it as ``out_dir`` (main process)."""
    from llara_cli.model.llara_model import save_model_dir
    from llara_cli.training._trainer import is_peft_model

    final_dir = fresh_final_dir(config, state)
    causal_lm = trainer.accelerator.unwrap_model(trainer.model).causal_lm
    if is_peft_model(causal_lm):
        if state.is_main_process:
            save_model_dir(final_dir, causal_lm.merge_and_unload(), trainer.llara_tokenizer, trainer.llara_config)
    else:
        trainer.save_model(str(final_dir))  # gathers DeepSpeed/FSDP shards; writes on the main process
    state.wait_for_everyone()
    publish_final_dir(config, final_dir, state)
