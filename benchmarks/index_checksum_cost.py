"""What the integrity check of #28 costs when an index is opened: ``load_index`` with the sha256 of each index
file checked (``meta.json``'s ``checksums``) against the same index with them removed, side by side.

    python benchmarks/index_checksum_cost.py                    # 160,000 x 768 flat index (~490 MB)
    python benchmarks/index_checksum_cost.py --rows 20000       # smaller

Random unit vectors, a flat inner-product index built once by ``build_index``; repetitions interleave the two
variants (checked, unchecked) so drift in machine load hits both alike. Prints one JSON line with ``ratio``
(open time checked / unchecked) and the hashing throughput.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import save_result
from llara_cli.encode.embedding_store import EmbeddingMeta, save_embeddings
from llara_cli.index.faiss_index import INDEX_FILE, build_index, load_index
from llara_cli.index.integrity import CHECKSUMS_KEY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=160_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llara-checksum-") as scratch:
        root = Path(scratch)
        vectors = np.random.default_rng(0).standard_normal((args.rows, args.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        meta = EmbeddingMeta(model="bench", prompt_family="paper", pooling="last8", side="passage", dim=args.dim,
                             max_length=64, normalize=True, count=args.rows, source_sha256="bench")
        save_embeddings(root / "emb", [f"d{row}" for row in range(args.rows)], vectors, meta)
        del vectors
        build_index([root / "emb"], root / "checked")
        shutil.copytree(root / "checked", root / "unchecked")
        meta_path = root / "unchecked" / "meta.json"
        payload = json.loads(meta_path.read_text())
        payload.pop(CHECKSUMS_KEY)
        meta_path.write_text(json.dumps(payload))
        times: dict[str, list[float]] = {"checked": [], "unchecked": []}
        for _ in range(args.repeats):
            for variant in ("checked", "unchecked"):
                started = time.perf_counter()
                load_index(root / variant)
                times[variant].append(time.perf_counter() - started)
        size_mb = (root / "checked" / INDEX_FILE).stat().st_size / 1e6
    checked, unchecked = statistics.median(times["checked"]), statistics.median(times["unchecked"])
    save_result("index_checksum_cost", {
        "rows": args.rows, "dim": args.dim, "index_type": "flat", "index_file_mb": round(size_mb, 1),
        "repeats": args.repeats, "open_checked_s": round(checked, 3), "open_unchecked_s": round(unchecked, 3),
        "ratio": round(checked / unchecked, 2),
        "hash_mb_per_s": round(size_mb / max(checked - unchecked, 1e-9)),
    })


if __name__ == "__main__":
    main()
