"""A tiny served collection: the pipeline tests' six documents, a faiss index of the tiny model and BM25."""
from __future__ import annotations

from tests.cli.test_pipeline_cli import QUERIES

MORE_QUERIES = {f"x{number}": text for number, text in enumerate(
    ["protein cell", "river music", "energy water light", "king history war", "computer network",
     "dense vector search index", "cancer treatment study", "film city", "neural learning model",
     "gene disease risk", "queen king", "language model retrieval", "health food", "old war history",
     "fast computer program", "light energy"])}
ALL_QUERIES = {**QUERIES, **MORE_QUERIES}


def write_search_runs(served_collection, out_dir, k: int) -> None:
    """``llara search``'s dense (fp32), BM25 and robust-fused runs of every query, ``k`` deep, as ``dense.trec``,
    ``bm25.trec`` and ``fused.trec`` in ``out_dir``: what the served and in-memory searchers must equal."""
    from tests.cli.conftest import invoke

    collection = served_collection["collection"]
    assert invoke("search", "--index", served_collection["index"], "--queries", collection, "--out",
                  out_dir / "dense.trec", "--k", k, "--dtype", "fp32").exit_code == 0
    assert invoke("search", "--bm25", "--corpus", served_collection["corpus"], "--queries", collection, "--out",
                  out_dir / "bm25.trec", "--k", k).exit_code == 0
    assert invoke("search", "--fuse", out_dir / "bm25.trec", "--fuse", out_dir / "dense.trec", "--out",
                  out_dir / "fused.trec", "--k", k).exit_code == 0
