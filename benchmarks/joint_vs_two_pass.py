"""Joint one-pass LLaRA step vs two separate passes (EBAE, EBAR): same batch, forward + backward.

    python benchmarks/joint_vs_two_pass.py            # embedded default model (smollm2-135m)
    python benchmarks/joint_vs_two_pass.py --tiny     # tiny random model, a few seconds

Repetitions are interleaved (joint, two-pass, joint, ...) so drift in machine load hits both alike.
Prints one JSON line with ``speedup`` (two-pass time / joint time) and ``max_abs_diff`` of the embeddings.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import best_dtype, save_result
from llara_cli.core.batching import collate_adaptation
from llara_cli.core.pooling import masked_mean_pool
from llara_cli.core.prompts import TEMPLATES, PromptFamily, PromptFormat, Side, add_marker_tokens
from llara_cli.model.config import FAMILY_BOW_LOGITS
from llara_cli.training.adaptation_objective import LlaraAdaptationModel


def load(tiny: bool, family: PromptFamily, dtype: str):
    if tiny:
        from tests.conftest import build_tiny_model, build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        model = build_tiny_model(len(tokenizer))
        add_marker_tokens(tokenizer, model, TEMPLATES[family])
        return model, tokenizer
    from llara_cli.model.llara_model import LlaraModel

    loaded = LlaraModel.load("smollm2-135m", dtype=dtype, prompt_family=family)
    return loaded.causal_lm, loaded.tokenizer


def random_examples(tokenizer, count: int, text_tokens: int, next_tokens: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    vocabulary = torch.tensor([index for index in range(len(tokenizer)) if index not in special])
    pick = lambda length: vocabulary[torch.randint(len(vocabulary), (length,), generator=generator)].tolist()  # noqa: E731
    return [(pick(text_tokens), pick(next_tokens)) for _ in range(count)]


def step(wrapper: LlaraAdaptationModel, batch: dict) -> float:
    start = time.perf_counter()
    wrapper.zero_grad(set_to_none=True)
    wrapper(**batch)["loss"].backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model instead of smollm2-135m")
    parser.add_argument("--family", default="paper", choices=[family.value for family in PromptFamily])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--text-tokens", type=int, default=256)
    parser.add_argument("--next-tokens", type=int, default=64)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                        help="model dtype (auto: the machine's best, bf16 where native, else fp32)")
    parser.add_argument("--name", help="result file name (default: joint_vs_two_pass[_tiny])")
    arguments = parser.parse_args()
    if arguments.dtype == "auto":
        arguments.dtype = best_dtype()

    family = PromptFamily(arguments.family)
    model, tokenizer = load(arguments.tiny, family, arguments.dtype)
    prompt_format = PromptFormat.from_tokenizer(TEMPLATES[family], tokenizer)
    max_length = arguments.text_tokens + prompt_format.prompt_length(joint=True)
    examples = random_examples(tokenizer, arguments.batch_size, arguments.text_tokens, arguments.next_tokens, seed=0)
    batches = {
        joint: collate_adaptation(examples, prompt_format, tokenizer.pad_token_id, max_length, joint=joint)
        for joint in (True, False)
    }
    wrapper = LlaraAdaptationModel(model.train(), prompt_format, bow_logits=FAMILY_BOW_LOGITS[family],
                                   excluded_target_ids=tokenizer.all_special_ids)

    with torch.no_grad():
        embeddings = {}
        for joint, batch in batches.items():
            states = wrapper.side_hidden_states(batch)
            embeddings[joint] = {side: masked_mean_pool(hidden, mask).float() for side, (hidden, mask) in states.items()}
    max_abs_diff = max(float((embeddings[True][side] - embeddings[False][side]).abs().max()) for side in Side)

    for joint in (True, False):  # warm-up
        step(wrapper, batches[joint])
    times = {True: [], False: []}
    for _ in range(arguments.repetitions):
        for joint in (True, False):
            times[joint].append(step(wrapper, batches[joint]))
    joint_time, two_pass_time = statistics.median(times[True]), statistics.median(times[False])
    save_result(arguments.name or "joint_vs_two_pass" + ("_tiny" if arguments.tiny else ""), {
        "benchmark": "joint_vs_two_pass",
        "model": "tiny-random-llama" if arguments.tiny else "smollm2-135m",
        "family": family.value, "dtype": arguments.dtype, "batch_size": arguments.batch_size,
        "text_tokens": arguments.text_tokens, "joint_tokens_per_example": int(batches[True]["input_ids"].shape[1]),
        "two_pass_tokens_per_example": int(sum(batches[False][f"{side.value}_input_ids"].shape[1] for side in Side)),
        "joint_step_seconds": round(joint_time, 4), "two_pass_step_seconds": round(two_pass_time, 4),
        "speedup": round(two_pass_time / joint_time, 3), "max_abs_diff": max_abs_diff,
        "repetitions": arguments.repetitions,
    })


if __name__ == "__main__":
    main()
