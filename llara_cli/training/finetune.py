"""Library entry of ``llara finetune``: RepLLaMA-style contrastive finetuning (LoRA or full) with hard negatives.

Each training step takes ``batch_size`` queries per process and, for each, a group of ``group_size`` passages:
one positive and ``group_size - 1`` hard negatives sampled from the example's lists (deterministically from
``(seed, epoch, example)``). Queries go through the model's query prompt (EBAR, or EBAE for a ``query_prompt``
``ebae`` model), passages through the passage (EBAE) prompt of the model's own prompt family, embedded as at
inference; the objective is
:mod:`llara_cli.training.contrastive_objective`, the settings :mod:`llara_cli.training.finetune_config`.

The run lifecycle is ``llara adapt``'s (:mod:`llara_cli.training.adapt`): checkpoints and ``train_log.jsonl``
in ``<out_dir>.partial`` until the end, ``--resume`` refused when settings differ, the final directory renamed
into place in one step. The output is, with LoRA (the default), an *adapter directory* -- ``adapter_config.json``
(its ``base_model_name_or_path`` is the input model), ``adapter_model.safetensors``, the tokenizer,
``llara_config.json`` (stage ``finetuned``, with the query/passage lengths trained with) -- loaded by
:meth:`llara_cli.model.llara_model.LlaraModel.load`; with ``merge`` or full finetuning, an ordinary llara model
directory. Both also hold ``train_log.jsonl`` and ``finetune_config.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PrinterCallback

from llara_cli.data.finetune import TrainingData, TrainingExample, drop_without_negatives
from llara_cli.errors import UsageError
from llara_cli.training._trainer import AdaptationTrainer, count_tokens
from llara_cli.training.finetune_config import (
    FINETUNE_CONFIG_FILE,
    FinetuneConfig,
    FinetuneResult,
    matryoshka_dims,
)
from llara_cli.training.run_config import training_arguments
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
    from llara_cli.model.llara_model import ModelSource

__all__ = ["FinetuneConfig", "FinetuneResult", "run_finetuning"]

logger = logging.getLogger(__name__)


class FinetuneTrainer(AdaptationTrainer):
    """``llara adapt``'s Trainer (logs, llara-model checkpoints, resume) logging the contrastive accuracy."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
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


# ------------------------------------------------------------------------------------------------------ the run


def data_identity(config: FinetuneConfig) -> dict[str, Any]:
    """The training inputs as a resume sees them: absolute paths and sizes."""
    identity: dict[str, Any] = {}
    for name in ("train", "queries", "qrels", "corpus", "negatives_from"):  # (pairs: the corpus is train's)
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
    """The training data ``config`` names: a training jsonl, a collection with negatives mined from a run, or
    (``pairs_from="corpus"``) the corpus's own pairs with negatives from a run or from the model's own run."""
    from llara_cli.data.finetune import load_training_data

    if config.pairs_from:
        return load_corpus_pairs(config)
    return load_training_data(config.train, queries=config.queries, qrels=config.qrels, corpus=config.corpus,
                              split=config.split, negatives_from=config.negatives_from, mining=config.mining)


def load_corpus_pairs(config: FinetuneConfig) -> TrainingData:
    """Unsupervised pairs of the corpus (title -> body, or two crops); with a group, hard negatives mined from
    ``negatives_from`` (a run of the pseudo-queries, whose ids are the documents') or else from the model's own
    dense run (:mod:`llara_cli.training.own_run`)."""
    from llara_cli.data.collections import resolve_corpus
    from llara_cli.data.corpus_pairs import corpus_pairs

    source = config.corpus or config.train
    if source is None:
        raise UsageError("--pairs-from corpus needs the corpus: --train DIR (a BEIR directory or collection name) "
                         "or --corpus FILE")
    corpus = resolve_corpus(source)
    data = corpus_pairs(corpus, source=config.pair_source, seed=config.seed, max_pairs=config.max_pairs)
    if config.group_size == 1:
        return data
    if config.negatives_from is not None:
        return _mine_pairs_from_run(data, corpus, config)
    from llara_cli.training.own_run import mine_from_own_run

    return mine_from_own_run(data, config.model, corpus, config.mining, query_max_length=config.query_max_length,
                             passage_max_length=config.passage_max_length,
                             trust_remote_code=config.trust_remote_code, on_progress=logger.warning)


def _mine_pairs_from_run(data: TrainingData, corpus: Path, config: FinetuneConfig) -> TrainingData:
    from llara_cli.data.corpus import read_corpus
    from llara_cli.data.finetune import Passage, mine_negatives
    from llara_cli.data.runs import group_run, read_run

    run = group_run(read_run(config.negatives_from))
    positives = {example.query_id: [passage.doc_id for passage in example.positives] for example in data.examples}
    if not set(run) & set(positives):
        raise UsageError(f"{config.negatives_from}: the run has none of the pseudo-queries (their ids are the "
                         "documents' ids)")
    negatives = mine_negatives(run, positives, config.mining)
    texts = {document.doc_id: document.text for document in read_corpus(corpus)}
    examples = [example._replace(negatives=tuple(Passage(doc_id, texts[doc_id])
                                                 for doc_id in negatives.get(example.query_id, ()) if doc_id in texts))
                for example in data.examples]
    mined = TrainingData(examples, source=f"{data.source} + {config.negatives_from}")
    mined.stats = {**data.stats, "negatives": sum(len(example.negatives) for example in examples)}
    return mined


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
    source = _check_model(config)  # cheap checks first: no weights are loaded yet

    args = _training_arguments(config)  # initialises the process group under torchrun / accelerate launch
    from accelerate import PartialState

    state = PartialState()
    plan = _plan_memory(config, source, distributed=args.world_size > 1, device=args.device.type)
    if on_log is not None and state.is_main_process:
        on_log({"event": "plan", "lines": [plan.describe(), *plan.notes]})
    per_step = config.batch_size * args.world_size
    if len(examples) < per_step:
        raise UsageError(f"{len(examples)} training queries do not fill one batch of {config.batch_size} x "
                         f"{args.world_size} processes; lower --batch-size")
    fingerprint = config.fingerprint(prompt_family=source.config.prompt_family.value, world_size=args.world_size,
                                     examples=len(examples),
                                     examples_sha256=examples_digest(examples),
                                     **data_identity(config))
    with run_directory(config, fingerprint, is_main=state.is_main_process,
                       barrier=state.wait_for_everyone) as resume_from:
        trainer = _build_trainer(config, source, examples, args, fingerprint, on_log)
        start_step = resumed_step(resume_from)  # before training: publishing removes the checkpoint
        if finished_training(resume_from):  # interrupted while publishing: the checkpoint is the model
            publish_checkpoint(config, trainer, resume_from, state, merge_lora=config.merge,
                               saved_config_name=FINETUNE_CONFIG_FILE)
            steps, train_loss = start_step, None
        else:
            output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            _save_final_model(config, trainer, state)
            steps, train_loss = int(output.global_step), output.training_loss
    del trainer  # the query prompt choice loads the published model: the training copy goes first
    choice = None
    if state.is_main_process:
        from llara_cli.data.adaptation import DataFormat
        from llara_cli.training.query_prompt_choice import record_query_prompt

        choice = record_query_prompt(config.out_dir, config.query_prompt, choice_corpus(config), DataFormat.CORPUS,
                                     device=args.device.type, seed=config.seed)
    return FinetuneResult(config.out_dir, steps, start_step, train_loss, config.out_dir / "train_log.jsonl",
                          len(examples), dropped, adapter=config.lora and not config.merge, query_prompt=choice)


def choice_corpus(config: FinetuneConfig) -> Path | None:
    """The corpus the query prompt is chosen on: the pairs' corpus, ``--corpus``, or a collection's (``--train``
    a BEIR directory or name); None for a training jsonl without ``--corpus``."""
    from llara_cli.data.collections import resolve_corpus

    source = config.corpus or config.train
    if source is None or (config.corpus is None and Path(source).is_file()):
        return None
    try:
        return resolve_corpus(source)
    except UsageError:
        return None


def _check_model(config: FinetuneConfig) -> ModelSource:
    """The model, resolved once for the run; fails fast on a missing model or lengths too short for the prompt."""
    from llara_cli.model.llara_model import ModelSource

    source = ModelSource.resolve(config.model, prompt_family=config.prompt_family,
                                 trust_remote_code=config.trust_remote_code)
    prompt_format = source.prompt_format
    prompt_format.text_budget(config.query_max_length, joint=False)  # UsageError when no text would fit
    prompt_format.text_budget(config.passage_max_length, joint=False)
    return source


def _plan_memory(config: FinetuneConfig, source: ModelSource, *, distributed: bool, device: str):
    """Choose the cached loss's chunk size (when unset) and refuse a CPU run that cannot fit; sets
    ``config.chunk_size`` to the plan's (0: off). A run on a GPU is not estimated (the plan models host memory)."""
    from llara_cli.training.memory_plan import not_estimated, plan_finetune_memory, source_shape

    if distributed and config.chunk_size:
        raise UsageError("--chunk-size (the cached contrastive loss) runs in one process; drop it under torchrun")
    if device != "cpu":
        plan = not_estimated(f"training on {device}")
        config.chunk_size = config.chunk_size or 0
        return plan
    plan = plan_finetune_memory(config, source_shape(source), distributed=distributed)
    config.chunk_size = plan.chunk_size
    logger.info("%s", plan.describe())
    return plan


def _training_arguments(config: FinetuneConfig):
    return training_arguments(
        config, num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        warmup_steps=config.warmup_ratio,  # < 1: a fraction of the training steps
        dataloader_drop_last=True,  # every process gathers equally many embeddings
        data_seed=config.seed,
    )


def _build_trainer(config: FinetuneConfig, source: ModelSource, examples: Sequence[TrainingExample], args,
                   fingerprint: dict[str, Any], on_log: Callable[[dict[str, Any]], None] | None):
    from transformers import set_seed

    from llara_cli.core.batching import ContrastiveCollator
    from llara_cli.model.config import Stage
    from llara_cli.model.llara_model import LlaraModel, adapter_base_reference
    from llara_cli.training._trainer import RunCallback
    from llara_cli.training.contrastive_objective import (
        ContrastiveDataset,
        ContrastiveModel,
        EpochCallback,
        freeze_unused_head,
    )
    from llara_cli.training.trainer_utils import TRAIN_LOG_FILE, JsonlLog

    set_seed(config.seed)  # the LoRA weights (and added marker embeddings) are drawn at random
    model = LlaraModel.build(source, trust_remote_code=config.trust_remote_code,
                             attn_implementation=config.attn_implementation,
                             gradient_checkpointing=config.gradient_checkpointing,
                             lora=config.lora_settings if config.lora else None,
                             base_reference=adapter_base_reference(config.model))
    model.causal_lm.config.use_cache = False
    if not config.lora:
        freeze_unused_head(model.causal_lm)
    mrl_dims, mrl_weights = matryoshka_dims(config.mrl_dims, config.mrl_weights, model.dim)
    objective_settings = dict(group_size=config.group_size, temperature=config.temperature,
                              normalized=model.config.normalize, in_batch=config.in_batch_negatives,
                              cross_device=config.cross_device_negatives, mrl_dims=mrl_dims, mrl_weights=mrl_weights)
    if config.chunk_size:  # the cached contrastive loss: bounded activation memory, the same gradients
        from llara_cli.training.cached_contrastive import CachedContrastiveModel

        objective = CachedContrastiveModel(model.causal_lm, chunk_size=config.chunk_size, **objective_settings)
    else:
        objective = ContrastiveModel(model.causal_lm, **objective_settings)
    dataset = ContrastiveDataset(examples, config.group_size, config.seed)
    collator = ContrastiveCollator(model.tokenizer, model.prompt_format, config.query_max_length,
                                   config.passage_max_length)
    finetuned_config = dataclasses.replace(  # the lengths trained with become the model's encoding defaults
        model.config, stage=Stage.FINETUNED, base_model=model.config.base_model or config.model,
        query_max_length=config.query_max_length, passage_max_length=config.passage_max_length,
        mrl_dims=mrl_dims,  # the prefix dims `llara encode --dim` may cut to without a warning
    )
    callbacks = [RunCallback(JsonlLog(config.run_dir / TRAIN_LOG_FILE), fingerprint, config.save_total_limit, on_log),
                 EpochCallback(dataset)]
    trainer = FinetuneTrainer(model=objective, args=args, train_dataset=dataset, data_collator=collator,
                              callbacks=callbacks, llara_tokenizer=model.tokenizer, llara_config=finetuned_config)
    trainer.remove_callback(PrinterCallback)  # logs go to train_log.jsonl and on_log, not to stdout
    return trainer


def _save_final_model(config: FinetuneConfig, trainer, state) -> None:
    """Write the model into ``<run_dir>/final.tmp``, then rename it to ``out_dir`` in one step (main process).

    LoRA: the adapter directory, or merged weights with ``merge``; full finetuning: the whole model.
    """
    from llara_cli.model.llara_model import save_model_dir
    from llara_cli.training._trainer import is_peft_model

    final_dir = fresh_final_dir(config, state)
    causal_lm = trainer.accelerator.unwrap_model(trainer.model).causal_lm
    if is_peft_model(causal_lm):
        if state.is_main_process:
            if config.merge:
                save_model_dir(final_dir, causal_lm.merge_and_unload(), trainer.llara_tokenizer, trainer.llara_config)
            else:
                trainer._save(str(final_dir))  # the adapter, tokenizer and llara_config.json
    else:
        trainer.save_model(str(final_dir))  # gathers sharded weights; writes on the main process
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    (final_dir / "README.md").unlink(missing_ok=True)  # peft's model-card stub says nothing about llara
    publish_final_dir(config, final_dir, state, saved_config_name=FINETUNE_CONFIG_FILE)
