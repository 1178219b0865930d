"""The HF ``Trainer`` of both runs, and their callbacks: adaptation uses it as it is, finetuning subclasses it.

The Trainer's model is the objective around the causal LM
(:class:`~llara_cli.training.adaptation_objective.LlaraAdaptationModel`
or :class:`~llara_cli.training.contrastive_objective.ContrastiveModel`), so DDP/DeepSpeed/FSDP wrap the whole
objective and gradients are synchronised by the ordinary forward; checkpoints and the final model are written
from the causal LM inside it: every ``checkpoint-<step>`` is itself a loadable llara model directory (``save_pretrained``
safetensors, tokenizer with its added tokens, ``llara_config.json``), plus the optimizer/scheduler/RNG state.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from llara_cli.errors import LlaraError
from llara_cli.model.config import LlaraConfig
from llara_cli.model.trust import is_refused_pickle, refuse_unsafe_pickle
from llara_cli.storage.files import read_json
from llara_cli.training.trainer_utils import JsonlLog, mark_checkpoint_complete, rotate_checkpoints

logger = logging.getLogger(__name__)

CAUSAL_LM_PREFIX = "causal_lm."  # parameter names of the causal LM inside the objective
COMPONENT_LOSSES = ("ebae_loss", "ebar_loss", "lm_loss")
SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def is_peft_model(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def count_tokens(inputs: Mapping[str, Any]) -> torch.Tensor:
    """Non-padding tokens of a joint or two-pass batch (prompt included: what the model actually ran)."""
    counts = [(value != 0).sum() for key, value in inputs.items() if key.endswith("segment_ids")]
    return torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.long)


def load_checkpoint_weights(causal_lm: torch.nn.Module, checkpoint_dir: Path) -> None:
    """Load the weights a checkpoint's ``save_pretrained`` wrote back into ``causal_lm`` (adapters for LoRA)."""
    from safetensors.torch import load_file

    if is_peft_model(causal_lm):
        from peft import set_peft_model_state_dict

        adapter = checkpoint_dir / ADAPTER_WEIGHTS
        if not adapter.is_file():
            raise LlaraError(f"{checkpoint_dir}: no {ADAPTER_WEIGHTS} to resume the LoRA run from")
        set_peft_model_state_dict(causal_lm, load_file(str(adapter)))
        return
    index = checkpoint_dir / SAFE_WEIGHTS_INDEX
    files = sorted(set(read_json(index)["weight_map"].values())) if index.is_file() else [SAFE_WEIGHTS]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (checkpoint_dir / name).is_file():
            raise LlaraError(f"{checkpoint_dir}: {name} is missing; the checkpoint cannot be resumed")
        state.update(load_file(str(checkpoint_dir / name)))
    result = causal_lm.load_state_dict(state, strict=False)
    current = causal_lm.state_dict()
    loaded_storage = {current[key].data_ptr() for key in state if key in current}
    missing = [key for key in result.missing_keys if current[key].data_ptr() not in loaded_storage]  # tied: fine
    if missing or result.unexpected_keys:
        problems = ", ".join([*missing[:3], *result.unexpected_keys[:3]])
        raise LlaraError(f"{checkpoint_dir}: the weights do not match the model ({problems})")


class AdaptationTrainer(Trainer):
    """``Trainer`` that logs the EBAE/EBAR parts and tokens/s, and saves the causal LM as a llara model dir."""

    def __init__(self, *args: Any, llara_tokenizer, llara_config: LlaraConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.llara_tokenizer = llara_tokenizer
        self.llara_config = llara_config
        self.tokens_seen = 0
        self._reset_interval()

    def _reset_interval(self) -> None:
        self._component_sums: dict[str, torch.Tensor] = {}
        self._micro_batches = 0
        self._interval_tokens = torch.zeros((), dtype=torch.long)
        self._interval_start = time.perf_counter()

    def train(self, *args: Any, **kwargs: Any):
        self._reset_interval()  # tokens/s counts from here, not from construction
        try:
            return super().train(*args, **kwargs)
        except Exception as error:
            checkpoint = kwargs.get("resume_from_checkpoint")
            if checkpoint and is_refused_pickle(error):  # a poisoned optimizer / rng / trainer state
                raise refuse_unsafe_pickle(checkpoint, error) from None
            raise

    # ---------------------------------------------------------------------------------------------- loss, logs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        for key in COMPONENT_LOSSES:
            if key in outputs:
                value = outputs[key].detach().float()
                self._component_sums[key] = self._component_sums.get(key, 0.0) + value
        self._micro_batches += 1
        self._interval_tokens = self._interval_tokens.to(inputs["query_targets"].device) + count_tokens(inputs)
        loss = outputs["loss"]
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._micro_batches:
            keys = sorted(self._component_sums)
            local = torch.stack([self._component_sums[key] / self._micro_batches for key in keys]
                                + [self._interval_tokens.float()]).to(self.args.device)  # (n_keys + 1,)
            total = self.accelerator.reduce(local, reduction="sum").cpu()  # summed over processes
            world = max(1, self.args.world_size)
            logs.update({key: float(total[index]) / world for index, key in enumerate(keys)})
            tokens = int(total[-1])
            self.tokens_seen += tokens
            elapsed = max(time.perf_counter() - self._interval_start, 1e-9)
            logs["tokens"] = self.tokens_seen
            logs["tokens_per_s"] = tokens / elapsed
            self._reset_interval()
        super().log(logs, start_time)

    # ---------------------------------------------------------------------------------------------- save, load

    def _causal_lm(self, model: torch.nn.Module | None = None) -> torch.nn.Module:
        return self.accelerator.unwrap_model(model if model is not None else self.model).causal_lm

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write a llara model directory from the causal LM (adapters only for LoRA checkpoints)."""
        if not self.args.should_save:
            return
        output_dir = Path(output_dir or self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if state_dict is not None:  # DeepSpeed / FSDP gathered the wrapper's full state dict
            state_dict = {key.removeprefix(CAUSAL_LM_PREFIX): value for key, value in state_dict.items()}
        self._causal_lm().save_pretrained(str(output_dir), state_dict=state_dict)
        self.llara_tokenizer.save_pretrained(str(output_dir))
        self.llara_config.save(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:  # their own sharded checkpoints
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        load_checkpoint_weights(self._causal_lm(model), Path(resume_from_checkpoint))


class RunCallback(TrainerCallback):
    """Rank 0: the jsonl log, the user's ``on_log``; all ranks: the completion marker of each checkpoint."""

    def __init__(self, log: JsonlLog, fingerprint: Mapping[str, Any], keep_checkpoints: int | None,
                 on_log: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.log = log
        self.fingerprint = dict(fingerprint)
        self.keep_checkpoints = keep_checkpoints
        self.on_log_callback = on_log
        self.started = time.perf_counter()

    def _emit(self, record: dict[str, Any]) -> None:
        record["elapsed_s"] = round(time.perf_counter() - self.started, 3)
        self.log.append(record)
        if self.on_log_callback is not None:
            self.on_log_callback(record)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        if state.is_world_process_zero:
            self._emit({"event": "start", "step": state.global_step, "max_steps": state.max_steps})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            record = {"event": "step", "step": state.global_step, "max_steps": state.max_steps}
            record.update({key: value for key, value in logs.items() if key != "epoch"})
            self._emit(record)
        elif "train_runtime" in logs:
            self._emit({"event": "end", "step": state.global_step, "max_steps": state.max_steps,
                        "train_loss": logs.get("train_loss"), "train_runtime": logs.get("train_runtime")})

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # every rank's files (RNG state, shards) are written
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            mark_checkpoint_complete(checkpoint, state.global_step, self.fingerprint)
            rotate_checkpoints(args.output_dir, self.keep_checkpoints)
