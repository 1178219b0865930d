"""Passages/s of llara's encoder vs a naive padded Hugging Face loop, and achieved FLOP/s vs matmul peak.

    python benchmarks/encode_throughput.py                      # smollm2-135m, SciFact passages
    python benchmarks/encode_throughput.py --tiny --passages 64 # quick check on a tiny random model

Both sides encode the same passages with the same model, dtype, batch size and max length, timed in
alternation. The naive loop is what a first script does: batches in corpus order padded to their longest
text, the full causal LM called with ``output_hidden_states=True`` (so the LM head runs on every token).
llara sorts by length, runs only the decoder body and pools the prompt's eos state.
Model FLOPs count 2 x (non-embedding parameters) per real token plus attention; the peak is the ``torch.mm``
rate of the machine's best dtype (what ``--dtype auto`` picks: bf16 where native, else fp32) measured in the same
run. ``--dtype`` defaults to that best dtype too.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import SHARED_DATA, best_dtype, save_result
from llara_cli.core.prompts import Side
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.model.config import LlaraConfig

PEAK_MATMUL_SIZE = 2048
PEAK_REPEATS = 10
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def sample_passages(count: int, seed: int) -> list[str]:
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if corpus.is_file():
        texts = [(record.get("title", "") + " " + record["text"]).strip()
                 for record in map(json.loads, corpus.read_text().splitlines())]
    else:  # a fresh clone: the docstring collection has a realistic spread of lengths too
        import tempfile

        from llara_cli.demo.collection import build_stdlib_collection

        directory = Path(tempfile.mkdtemp()) / "stdlib"
        build_stdlib_collection(directory)
        texts = [json.loads(line)["text"] for line in (directory / "corpus.jsonl").read_text().splitlines()]
    return random.Random(seed).sample(texts, min(count, len(texts)))


def load_encoder(tiny: bool, dtype: str) -> LlaraEncoder:
    if tiny:
        from tests.conftest import build_tiny_model, build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        return LlaraEncoder(build_tiny_model(len(tokenizer)).to(TORCH_DTYPES[dtype]), tokenizer, LlaraConfig())
    return LlaraEncoder.load("smollm2-135m", dtype=dtype)


def naive_encode(encoder: LlaraEncoder, texts: list[str], batch_size: int, max_length: int) -> float:
    """Corpus order, padded batches, full causal LM forward; returns seconds."""
    template = encoder.prompt_format.template
    prompts = [template.render(text, Side.PASSAGE).replace("</s>", encoder.tokenizer.eos_token) for text in texts]
    start = time.perf_counter()
    with torch.inference_mode():
        for offset in range(0, len(prompts), batch_size):
            inputs = encoder.tokenizer(prompts[offset:offset + batch_size], padding=True, truncation=True,
                                       max_length=max_length, return_tensors="pt")
            outputs = encoder.model.causal_lm(**inputs, output_hidden_states=True)
            lengths = inputs["attention_mask"].sum(dim=1) - 1
            outputs.hidden_states[-1][torch.arange(len(lengths)), lengths]  # eos state, right padding
    return time.perf_counter() - start


def llara_encode(encoder: LlaraEncoder, texts: list[str], batch_size: int, max_length: int) -> float:
    start = time.perf_counter()
    encoder.encode(texts, Side.PASSAGE, batch_size=batch_size, max_length=max_length)
    return time.perf_counter() - start


def matmul_peak(dtype: torch.dtype) -> float:
    left = torch.randn(PEAK_MATMUL_SIZE, PEAK_MATMUL_SIZE, dtype=dtype)
    right = torch.randn(PEAK_MATMUL_SIZE, PEAK_MATMUL_SIZE, dtype=dtype)
    torch.mm(left, right)
    start = time.perf_counter()
    for _ in range(PEAK_REPEATS):
        torch.mm(left, right)
    return 2 * PEAK_MATMUL_SIZE ** 3 * PEAK_REPEATS / (time.perf_counter() - start)


def model_flops(encoder: LlaraEncoder, texts: list[str], max_length: int) -> float:
    """2 x non-embedding parameters per real token, plus 2 x 2 x layers x dim x (tokens seen) for attention."""
    config = encoder.model.causal_lm.config
    embedding_parameters = encoder.model.causal_lm.get_input_embeddings().weight.numel()
    body_parameters = sum(parameter.numel() for parameter in encoder.model.causal_lm.parameters()) - embedding_parameters
    if not config.tie_word_embeddings:
        body_parameters -= encoder.model.causal_lm.get_output_embeddings().weight.numel()
    budget = encoder.prompt_format.text_budget(max_length, joint=False)
    prompt = encoder.prompt_format.prompt_length(joint=False)
    lengths = [min(len(ids), budget) + prompt for ids in encoder.tokenize(texts)]
    attention = sum(4 * config.num_hidden_layers * config.hidden_size * length * (length + 1) / 2 for length in lengths)
    return 2 * body_parameters * sum(lengths) + attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--passages", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="auto", choices=["auto", *sorted(TORCH_DTYPES)])
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    peak_dtype = best_dtype()
    if arguments.dtype == "auto":
        arguments.dtype = peak_dtype

    encoder = load_encoder(arguments.tiny, arguments.dtype)
    texts = sample_passages(arguments.passages, arguments.seed)
    llara_encode(encoder, texts[:arguments.batch_size], arguments.batch_size, arguments.max_length)  # warm-up
    times = {"naive": [], "llara": []}
    for _ in range(arguments.repetitions):
        times["naive"].append(naive_encode(encoder, texts, arguments.batch_size, arguments.max_length))
        times["llara"].append(llara_encode(encoder, texts, arguments.batch_size, arguments.max_length))
    peak = matmul_peak(TORCH_DTYPES[peak_dtype])
    run_dtype_peak = peak if arguments.dtype == peak_dtype else matmul_peak(TORCH_DTYPES[arguments.dtype])
    naive_seconds, llara_seconds = statistics.median(times["naive"]), statistics.median(times["llara"])
    flops = model_flops(encoder, texts, arguments.max_length)
    save_result("encode_throughput" + ("_tiny" if arguments.tiny else ""), {
        "benchmark": "encode_throughput",
        "model": "tiny-random-llama" if arguments.tiny else "smollm2-135m",
        "dtype": arguments.dtype, "passages": len(texts), "batch_size": arguments.batch_size,
        "max_length": arguments.max_length,
        "llara_passages_per_second": round(len(texts) / llara_seconds, 2),
        "naive_passages_per_second": round(len(texts) / naive_seconds, 2),
        "speedup_vs_naive": round(naive_seconds / llara_seconds, 3),
        "achieved_gflops": round(flops / llara_seconds / 1e9, 2),
        "matmul_peak_gflops": round(peak / 1e9, 2), "peak_dtype": peak_dtype,
        "run_dtype_matmul_gflops": round(run_dtype_peak / 1e9, 2),
        "fraction_of_peak": round(flops / llara_seconds / peak, 3),
    })


if __name__ == "__main__":
    main()
