"""Passages/s of the exported sentence-transformers model vs ``llara encode``'s encoder, side by side in one run.

    python benchmarks/st_export_throughput.py                       # smollm2-135m, SciFact passages
    python benchmarks/st_export_throughput.py --tiny --passages 64  # quick check on a tiny random model

``llara export --to sentence-transformers`` writes the model once; ``SentenceTransformer(DIR).encode_document``
and ``LlaraEncoder.encode_passages`` then encode the same passages with the same weights, dtype, batch size and
max length, timed in alternation (median of the repetitions). Both sort by length and run the decoder body only;
sentence-transformers sorts by characters where llara sorts by tokens, and adds its module dispatch per batch.
The cosine of every pair of vectors is reported too (parity: >= 0.9999 in fp32).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import save_result
from benchmarks.encode_throughput import sample_passages
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.model.export import export_model

ST_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def tiny_model_dir(directory: Path) -> str:
    from tests.conftest import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return str(directory)


def timed(encode, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    vectors = encode(texts)
    return time.perf_counter() - start, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="fp32", choices=sorted(ST_DTYPES))
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    work = Path(tempfile.mkdtemp(prefix="st-export-bench-"))
    model = tiny_model_dir(work / "tiny") if arguments.tiny else "smollm2-135m"
    export_model(model, work / "st")
    st_model = SentenceTransformer(str(work / "st"), trust_remote_code=True, device="cpu",
                                   model_kwargs={"dtype": ST_DTYPES[arguments.dtype]})
    st_model.max_seq_length = arguments.max_length  # the passage length, prompt included, as --max-length
    encoder = LlaraEncoder.load(model, dtype=arguments.dtype)
    texts = sample_passages(arguments.passages, arguments.seed)

    def st_encode(batch: list[str]) -> np.ndarray:
        return st_model.encode_document(batch, batch_size=arguments.batch_size, show_progress_bar=False)

    def llara_encode(batch: list[str]) -> np.ndarray:
        return encoder.encode_passages(batch, batch_size=arguments.batch_size, max_length=arguments.max_length)

    st_encode(texts[:arguments.batch_size])  # warm-up
    llara_encode(texts[:arguments.batch_size])
    times: dict[str, list[float]] = {"sentence_transformers": [], "llara": []}
    for _ in range(arguments.repetitions):
        seconds, st_vectors = timed(st_encode, texts)
        times["sentence_transformers"].append(seconds)
        seconds, llara_vectors = timed(llara_encode, texts)
        times["llara"].append(seconds)
        print(f"repetition {len(times['llara'])}: sentence-transformers {times['sentence_transformers'][-1]:.1f} s, "
              f"llara {seconds:.1f} s", file=sys.stderr, flush=True)
    cosines = (st_vectors * llara_vectors).sum(axis=1) / (
        np.linalg.norm(st_vectors, axis=1) * np.linalg.norm(llara_vectors, axis=1))
    st_seconds, llara_seconds = statistics.median(times["sentence_transformers"]), statistics.median(times["llara"])
    save_result("st_export_throughput" + ("_tiny" if arguments.tiny else ""), {
        "benchmark": "st_export_throughput",
        "model": "tiny-random-llama" if arguments.tiny else "smollm2-135m",
        "dtype": arguments.dtype, "passages": len(texts), "batch_size": arguments.batch_size,
        "max_length": arguments.max_length, "repetitions": arguments.repetitions,
        "llara_passages_per_second": round(len(texts) / llara_seconds, 2),
        "st_passages_per_second": round(len(texts) / st_seconds, 2),
        "llara_vs_st": round(st_seconds / llara_seconds, 3),
        "min_cosine": float(np.round(cosines.min(), 7)),
        "seconds": {name: [round(value, 2) for value in values] for name, values in times.items()},
    })


if __name__ == "__main__":
    main()
