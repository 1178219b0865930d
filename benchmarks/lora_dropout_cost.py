"""What LoRA dropout costs a finetuning step on this machine: the same contrastive batch, forward + backward,
with ``llara finetune``'s default LoRA dropout and with none.

    python benchmarks/lora_dropout_cost.py            # embedded default model (smollm2-135m), quality.py's shape
    python benchmarks/lora_dropout_cost.py --tiny     # tiny random model, a few seconds

peft applies dropout to the input of every adapted projection (7 per decoder layer with ``all-linear``), one
fresh mask per module and step; on a CPU the masks' random numbers are a visible share of the step. Both models
start from the same weights and adapters; repetitions are interleaved (dropout, none, dropout, ...) so drift in
machine load hits both alike. Training precision as ``llara finetune --precision auto`` picks it (bf16 autocast
where the CPU has native bf16). Prints one JSON line with ``speedup`` (step time with dropout / without).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import best_dtype, save_result
from llara_cli.core.batching import ContrastiveCollator
from llara_cli.model.adapters import LoraSettings
from llara_cli.training.contrastive_objective import ContrastiveModel
from llara_cli.training.finetune_config import FinetuneConfig

DEFAULTS = FinetuneConfig(out_dir=Path("unused"), train=Path("unused"))


def build(tiny: bool, dropout: float):
    torch.manual_seed(0)  # the same base weights, marker embeddings and adapters for both models
    lora = LoraSettings(DEFAULTS.lora_r, DEFAULTS.lora_alpha, dropout, DEFAULTS.lora_targets)
    if tiny:
        from llara_cli.core.prompts import TEMPLATES, PromptFamily, PromptFormat, add_marker_tokens
        from llara_cli.model.adapters import add_lora
        from tests.conftest import build_tiny_model, build_tiny_tokenizer

        family = PromptFamily.FLAGEMBEDDING
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_model(len(tokenizer))
        add_marker_tokens(tokenizer, model, TEMPLATES[family])
        return (ContrastiveModel(add_lora(model, tokenizer, family, lora), group_size=2), tokenizer,
                PromptFormat.from_tokenizer(TEMPLATES[family], tokenizer))
    from llara_cli.model.llara_model import LlaraModel

    model = LlaraModel.build("smollm2-135m", lora=lora)
    model.causal_lm.config.use_cache = False
    return ContrastiveModel(model.causal_lm, group_size=2), model.tokenizer, model.prompt_format


def random_groups(count: int, group_size: int, query_words: int, passage_words: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    words = ["retrieval", "protein", "cell", "model", "dense", "index", "query", "signal", "flow", "theory",
             "energy", "gene", "network", "pressure", "vector", "layer", "surface", "data", "method", "result"]
    text = lambda n: " ".join(words[i] for i in torch.randint(len(words), (n,), generator=generator).tolist())  # noqa: E731
    return [(text(query_words), [text(passage_words) for _ in range(group_size)]) for _ in range(count)]


def step(model: ContrastiveModel, batch: dict, autocast) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    with autocast():
        loss = model(**batch)["loss"]
    loss.backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model instead of smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8, help="queries per step")
    parser.add_argument("--group-size", type=int, default=2, help="passages per query")
    parser.add_argument("--query-max-length", type=int, default=32)
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--name", help="result file name (default: lora_dropout_cost[_tiny])")
    arguments = parser.parse_args()

    precision = best_dtype()
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext
    models = {dropout: build(arguments.tiny, dropout) for dropout in (DEFAULTS.lora_dropout, 0.0)}
    # as many random words as tokens allowed: at least one token each, so every text is cut at its length limit
    groups = random_groups(arguments.batch_size, arguments.group_size, arguments.query_max_length,
                           arguments.passage_max_length, seed=0)
    batches = {}
    for dropout, (model, tokenizer, prompt_format) in models.items():
        model.group_size = arguments.group_size
        model.train()
        collator = ContrastiveCollator(tokenizer, prompt_format, arguments.query_max_length,
                                       arguments.passage_max_length)
        batches[dropout] = collator(groups)
    for dropout, (model, _, _) in models.items():  # warm-up
        step(model, batches[dropout], autocast)
    times = {dropout: [] for dropout in models}
    for _ in range(arguments.repetitions):
        for dropout, (model, _, _) in models.items():
            times[dropout].append(step(model, batches[dropout], autocast))
    with_dropout, without = (statistics.median(times[dropout]) for dropout in models)
    save_result(arguments.name or "lora_dropout_cost" + ("_tiny" if arguments.tiny else ""), {
        "benchmark": "lora_dropout_cost",
        "model": "tiny-random-llama" if arguments.tiny else "smollm2-135m",
        "precision": precision, "lora_r": DEFAULTS.lora_r, "lora_targets": list(DEFAULTS.lora_targets),
        "lora_dropout": DEFAULTS.lora_dropout, "batch_size": arguments.batch_size, "group_size": arguments.group_size,
        "query_tokens": int(batches[0.0]["query_input_ids"].shape[1]),
        "passage_tokens": int(batches[0.0]["passage_input_ids"].shape[1]),
        "step_seconds_with_dropout": round(with_dropout, 4), "step_seconds_without": round(without, 4),
        "speedup": round(with_dropout / without, 3), "dropout_share_of_step": round(1 - without / with_dropout, 3),
        "repetitions": arguments.repetitions,
    })


if __name__ == "__main__":
    main()
