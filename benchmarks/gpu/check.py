"""GPU check at paper scale on a randomly initialised LLaMA-2-7B-shaped model (no weights, no downloads).

    OUT=/some/dir bash benchmarks/gpu/check.sh             # one GPU, <= 8 minutes, writes $OUT/gpu_check.json
    PYTHONPATH=. python benchmarks/gpu/check.py --dry-run  # CPU, tiny config, seconds (the test suite runs this)

Needs only torch and transformers plus this working tree. Phases, each recorded in the JSON as it finishes (a
kill at the time limit keeps what was measured; ``TIME_BUDGET_S`` stops starting new phases):

1. ``model``: build the model in bf16 on the GPU (fp32 on CPU), gradient checkpointing on.
2. ``sdpa``: which scaled-dot-product kernel a 4D additive float mask of the joint layout gets (the
   dispatcher's choice, and which kernels accept it, with their time).
3. ``flex``: FlexAttention with a block mask built from the segment ids (:mod:`benchmarks.gpu.flex_mask`):
   equal to SDPA with the additive mask, and its time (compiled on CUDA, eager on CPU).
4. ``equivalence``: the joint pass's EBAE/EBAR embeddings and losses vs two separate passes, in the model dtype.
5. ``adapt_step``: forward + backward of the joint step vs the two-pass step, ``batch x tokens``, with the
   peak GPU memory of each.
6. ``encode``: tokens/s of llara's length-sorted decoder-only encoding vs a naive padded loop in corpus order
   through the full causal LM.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.gpu.flex_mask import segment_block_mask
from llara_cli.core.batching import collate_adaptation
from llara_cli.core.masks import joint_attention_inputs
from llara_cli.core.pooling import masked_mean_pool
from llara_cli.core.prompts import TEMPLATES, PromptFamily, PromptFormat, Side
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.model.config import FAMILY_BOW_LOGITS, LlaraConfig
from llara_cli.training.adaptation_objective import LlaraAdaptationModel

LLAMA_2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=512, max_position_embeddings=1024)
FULL_SETTINGS = dict(batch_size=8, tokens=1024, next_tokens=64, repetitions=3, encode_passages=512, encode_batch=32,
                     encode_min_tokens=32, encode_max_tokens=512)
DRY_SETTINGS = dict(batch_size=2, tokens=64, next_tokens=8, repetitions=1, encode_passages=12, encode_batch=4,
                    encode_min_tokens=4, encode_max_tokens=40)
TIME_BUDGET_S = 400  # no new phase starts after this; the shell wrapper kills at 480 s (8 minutes)
FLEX_MIN_REMAINING_S = 120  # compiling FlexAttention takes up to a minute or two
SDPA_REPEATS = 5
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
SEED = 0
# Agreement limits: bf16 rounds to 8 bits of mantissa; the joint and separate passes sum in other orders.
EQUIVALENCE_MIN_COSINE = {torch.bfloat16: 0.99, torch.float32: 0.99999}
EQUIVALENCE_MAX_LOSS_RELATIVE = {torch.bfloat16: 2e-2, torch.float32: 1e-5}
FLEX_MAX_ABS_DIFF = {torch.bfloat16: 2e-2, torch.float32: 1e-5}
GIB = 1 << 30
FAMILY = PromptFamily.PAPER


def build_tokenizer(vocab_size: int):
    """An offline word-level tokenizer: the prompt's words, pad/unk/bos/eos, and fillers up to ``vocab_size``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    splitter = pre_tokenizers.Whitespace()
    template = TEMPLATES[FAMILY]
    words = [piece for suffix in (template.passage_suffix, template.query_suffix)
             for piece, _span in splitter.pre_tokenize_str(suffix)]
    vocabulary: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *words):
        vocabulary.setdefault(token, len(vocabulary))
    for filler in range(vocab_size - len(vocabulary)):
        vocabulary[f"w{filler}"] = len(vocabulary)
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = splitter
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="right")


def build_model(shape: dict, tokenizer, device: torch.device, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, use_cache=False)
    config._attn_implementation = "sdpa"
    torch.manual_seed(SEED)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    from llara_cli.model.llara_model import enable_gradient_checkpointing  # both transformers names

    enable_gradient_checkpointing(model)
    return model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run: Callable[[], object]) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def peak_memory_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / GIB, 2) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def random_examples(vocab_size: int, count: int, text_tokens: int, next_tokens: int) -> list[tuple[list[int], list[int]]]:
    generator = torch.Generator().manual_seed(SEED)
    first = len(SPECIAL_TOKENS)  # never a special token inside the text
    pick = lambda length: torch.randint(first, vocab_size, (length,), generator=generator).tolist()  # noqa: E731
    return [(pick(text_tokens), pick(next_tokens)) for _ in range(count)]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def attention_inputs(segment_ids: torch.Tensor, heads: int, head_dim: int, dtype: torch.dtype):
    """Random q, k, v ``(batch, heads, seq, head_dim)`` and the joint additive mask ``(batch, 1, seq, seq)``."""
    generator = torch.Generator(device=segment_ids.device).manual_seed(SEED)
    batch, seq = segment_ids.shape
    q, k, v = (torch.randn(batch, heads, seq, head_dim, generator=generator, device=segment_ids.device, dtype=dtype)
               for _ in range(3))
    mask, _positions = joint_attention_inputs(segment_ids, dtype)
    return q, k, v, mask


def sdpa_phase(segment_ids: torch.Tensor, heads: int, head_dim: int, dtype: torch.dtype) -> dict:
    """The kernel SDPA picks for the additive mask, and each kernel's time (or why it refuses the inputs)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention

    q, k, v, mask = attention_inputs(segment_ids, heads, head_dim, dtype)
    names = {int(getattr(SDPBackend, name)): name for name in dir(SDPBackend) if name.isupper()}
    result: dict = {}
    try:
        result["chosen"] = names.get(int(torch._fused_sdp_choice(q, k, v, mask, 0.0, False)), "unknown")
    except (AttributeError, RuntimeError) as error:  # a private API: report, do not fail the check
        result["chosen"] = f"unknown ({type(error).__name__})"
    kernels = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        if not hasattr(SDPBackend, name):
            continue
        try:
            with sdpa_kernel([getattr(SDPBackend, name)]):
                scaled_dot_product_attention(q, k, v, attn_mask=mask)  # warm-up
                seconds = min(timed(q.device, lambda: scaled_dot_product_attention(q, k, v, attn_mask=mask))
                              for _ in range(SDPA_REPEATS))
            kernels[name] = {"ok": True, "ms": round(seconds * 1e3, 3)}
        except RuntimeError as error:
            kernels[name] = {"ok": False, "reason": str(error).strip().splitlines()[0][:200]}
    result["kernels"] = kernels
    result["is_math_path"] = result["chosen"] == "MATH"
    return result


def flex_phase(segment_ids: torch.Tensor, heads: int, head_dim: int, dtype: torch.dtype) -> dict:
    """FlexAttention with the segment block mask vs SDPA with the additive mask: max difference and times."""
    import warnings

    from torch.nn.attention.flex_attention import flex_attention
    from torch.nn.functional import scaled_dot_product_attention

    q, k, v, mask = attention_inputs(segment_ids, heads, head_dim, dtype)
    device = segment_ids.device
    build_started = time.perf_counter()
    block_mask = segment_block_mask(segment_ids)
    flex = torch.compile(flex_attention) if device.type == "cuda" else flex_attention
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex on CPU warns that it is unfused: expected in the dry run
        flex_output = flex(q, k, v, block_mask=block_mask)  # (batch, heads, seq, head_dim); compiles on CUDA
        compile_s = time.perf_counter() - build_started
        flex_s = min(timed(device, lambda: flex(q, k, v, block_mask=block_mask)) for _ in range(SDPA_REPEATS))
    reference = scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (batch, heads, seq, head_dim)
    sdpa_s = min(timed(device, lambda: scaled_dot_product_attention(q, k, v, attn_mask=mask))
                 for _ in range(SDPA_REPEATS))
    difference = float((flex_output.float() - reference.float()).abs().max())
    return {"max_abs_diff": difference, "equal": difference <= FLEX_MAX_ABS_DIFF[dtype],
            "compiled": device.type == "cuda", "first_call_s": round(compile_s, 2),
            "flex_ms": round(flex_s * 1e3, 3), "sdpa_additive_ms": round(sdpa_s * 1e3, 3),
            "block_sparsity_percent": round(float(block_mask.sparsity()), 1)}


def equivalence_phase(wrapper: LlaraAdaptationModel, batches: dict, dtype: torch.dtype) -> dict:
    """Joint-pass embeddings and losses vs two separate passes, in the model dtype."""
    with torch.no_grad():
        embeddings, losses = {}, {}
        for joint, batch in batches.items():
            states = wrapper.side_hidden_states(batch)
            embeddings[joint] = {side: masked_mean_pool(hidden, mask).float() for side, (hidden, mask) in states.items()}
            losses[joint] = float(wrapper(**batch)["loss"])
    cosine = min(float(torch.nn.functional.cosine_similarity(embeddings[True][side], embeddings[False][side]).min())
                 for side in Side)
    max_abs = max(float((embeddings[True][side] - embeddings[False][side]).abs().max()) for side in Side)
    relative = abs(losses[True] - losses[False]) / max(abs(losses[False]), 1e-12)
    return {"min_cosine": cosine, "max_abs_diff": max_abs, "loss_joint": losses[True], "loss_two_pass": losses[False],
            "loss_relative_diff": relative,
            "equal": cosine >= EQUIVALENCE_MIN_COSINE[dtype] and relative <= EQUIVALENCE_MAX_LOSS_RELATIVE[dtype]}


def adapt_step_phase(wrapper: LlaraAdaptationModel, batches: dict, device: torch.device, repetitions: int) -> dict:
    """Forward + backward seconds (median) and peak memory of the joint and the two-pass step, interleaved."""
    def step(batch: dict) -> None:
        wrapper.zero_grad(set_to_none=True)
        wrapper(**batch)["loss"].backward()

    peaks, times = {}, {True: [], False: []}
    for joint, batch in batches.items():  # warm-up, and each step's own peak memory
        wrapper.zero_grad(set_to_none=True)
        synchronize(device)
        reset_peak(device)
        step(batch)
        synchronize(device)
        peaks[joint] = peak_memory_gib(device)
    for _ in range(repetitions):
        for joint, batch in batches.items():
            times[joint].append(timed(device, lambda batch=batch: step(batch)))
    wrapper.zero_grad(set_to_none=True)
    joint_s, two_pass_s = statistics.median(times[True]), statistics.median(times[False])
    return {"joint_step_s": round(joint_s, 4), "two_pass_step_s": round(two_pass_s, 4),
            "speedup": round(two_pass_s / joint_s, 3), "peak_memory_gib_joint": peaks[True],
            "peak_memory_gib_two_pass": peaks[False],
            "joint_tokens_per_example": int(batches[True]["input_ids"].shape[1]),
            "two_pass_tokens_per_example": int(sum(batches[False][f"{side.value}_input_ids"].shape[1] for side in Side))}


def encode_phase(encoder: LlaraEncoder, settings: dict, device: torch.device) -> dict:
    """Real tokens/s: llara (length-sorted, decoder only) vs naive (corpus order, padded, full causal LM)."""
    rng = random.Random(SEED)
    causal_lm = encoder.model.causal_lm
    vocab = causal_lm.config.vocab_size
    lengths = [rng.randint(settings["encode_min_tokens"], settings["encode_max_tokens"])
               for _ in range(settings["encode_passages"])]
    texts = [[rng.randrange(len(SPECIAL_TOKENS), vocab) for _ in range(length)] for length in lengths]
    suffix = list(encoder.prompt_format.suffix_ids[Side.PASSAGE])
    eos, pad, batch_size = encoder.tokenizer.eos_token_id, encoder.tokenizer.pad_token_id, settings["encode_batch"]
    max_length = settings["encode_max_tokens"] + encoder.prompt_format.prompt_length(joint=False)
    real_tokens = sum(len(text) + len(suffix) + 1 for text in texts)

    def llara() -> None:
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        for start in range(0, len(order), batch_size):
            encoder.embed_token_ids([texts[index] for index in order[start:start + batch_size]], Side.PASSAGE,
                                    max_length)

    @torch.inference_mode()
    def naive() -> None:
        for start in range(0, len(texts), batch_size):
            sequences = [text + suffix + [eos] for text in texts[start:start + batch_size]]
            longest = max(map(len, sequences))
            input_ids = torch.tensor([sequence + [pad] * (longest - len(sequence)) for sequence in sequences], device=device)
            attention = torch.tensor([[1] * len(sequence) + [0] * (longest - len(sequence)) for sequence in sequences],
                                     device=device)
            outputs = causal_lm(input_ids=input_ids, attention_mask=attention, output_hidden_states=True)
            outputs.hidden_states[-1][torch.arange(len(sequences), device=device), attention.sum(dim=1) - 1]

    llara_s, naive_s = timed(device, llara), timed(device, naive)  # first round: warm-up
    reset_peak(device)
    llara_s = min(llara_s, timed(device, llara))
    llara_peak = peak_memory_gib(device)
    naive_s = min(naive_s, timed(device, naive))
    return {"passages": len(texts), "real_tokens": real_tokens, "llara_tokens_per_s": round(real_tokens / llara_s, 1),
            "naive_tokens_per_s": round(real_tokens / naive_s, 1), "speedup": round(naive_s / llara_s, 3),
            "peak_memory_gib_llara": llara_peak}


def environment(device: torch.device) -> dict:
    import transformers

    info = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
            "device": str(device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / GIB, 1))
    else:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def write_result(path: Path, result: dict) -> None:
    """Atomically (re)write the JSON: after every phase, so a kill at the time limit keeps what was measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(result, stream, indent=2)
    os.replace(temp, path)


def run_check(dry_run: bool, out: Path, settings: dict | None = None) -> dict:
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not dry_run else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # never bf16 on CPU (AVX2 CPUs crawl)
    shape, settings = (TINY, settings or DRY_SETTINGS) if dry_run else (LLAMA_2_7B, settings or FULL_SETTINGS)
    result: dict = {"check": "gpu", "dry_run": dry_run, "ran_on_gpu": device.type == "cuda", "dtype": str(dtype),
                    "model_shape": shape, "settings": settings, "environment": environment(device), "phases": {}}
    phases = result["phases"]

    def record(name: str, phase: Callable[[], dict], min_remaining_s: float = 0.0) -> None:
        elapsed = time.perf_counter() - started
        if elapsed > TIME_BUDGET_S - min_remaining_s:
            phases[name] = {"skipped": f"time budget ({elapsed:.0f} s of {TIME_BUDGET_S} s used)"}
        else:
            phase_started = time.perf_counter()
            phases[name] = {**phase(), "seconds": round(time.perf_counter() - phase_started, 2)}
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
        write_result(out, result)
        print(json.dumps({name: phases[name]}), flush=True)

    tokenizer = build_tokenizer(shape["vocab_size"])
    holder: dict = {}

    def model_phase() -> dict:
        holder["model"] = build_model(shape, tokenizer, device, dtype)
        return {"parameters_billion": round(sum(p.numel() for p in holder["model"].parameters()) / 1e9, 3),
                "peak_memory_gib": peak_memory_gib(device)}

    record("model", model_phase)
    model = holder["model"]
    prompt_format = PromptFormat.from_tokenizer(TEMPLATES[FAMILY], tokenizer)
    max_length = settings["tokens"]
    text_tokens = prompt_format.text_budget(max_length, joint=True)
    examples = random_examples(shape["vocab_size"], settings["batch_size"], text_tokens, settings["next_tokens"])
    batches = {joint: to_device(collate_adaptation(examples, prompt_format, tokenizer.pad_token_id, max_length,
                                                   joint=joint), device) for joint in (True, False)}
    heads = shape["num_attention_heads"]
    head_dim = shape["hidden_size"] // heads
    segment_ids = batches[True]["segment_ids"]  # (batch, seq)

    record("sdpa", lambda: sdpa_phase(segment_ids, heads, head_dim, dtype))
    record("flex", lambda: flex_phase(segment_ids, heads, head_dim, dtype), FLEX_MIN_REMAINING_S)
    wrapper = LlaraAdaptationModel(model.train(), prompt_format, bow_logits=FAMILY_BOW_LOGITS[FAMILY],
                                   excluded_target_ids=tokenizer.all_special_ids)
    record("equivalence", lambda: equivalence_phase(wrapper, batches, dtype))
    record("adapt_step", lambda: adapt_step_phase(wrapper, batches, device, settings["repetitions"]))
    encoder = LlaraEncoder(model, tokenizer, LlaraConfig(prompt_family=FAMILY), device=device)
    record("encode", lambda: encode_phase(encoder, settings, device))
    result["passed"] = all(phases[name].get("equal", True) for name in ("flex", "equivalence"))
    write_result(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny config (what the test suite runs)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    args = parser.parse_args(argv)
    result = run_check(args.dry_run, args.out)
    print(f"wrote {args.out} (passed: {result['passed']}, {result['elapsed_s']} s)")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
