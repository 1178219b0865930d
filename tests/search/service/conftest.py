"""A tiny served collection: the pipeline tests' six documents, a faiss index of the tiny model and BM25."""
from __future__ import annotations

from tests.cli.test_pipeline_cli import QUERIES

MORE_QUERIES = {f"x{number}": text for number, text in enumerate(
    ["protein cell", "river music", "energy water light", "king history war", "computer network",
     "dense vector search index", "cancer treatment study", "film city", "neural learning model",
     "gene disease risk", "queen king", "language model retrieval", "health food", "old war history",
     "fast computer program", "light energy"])}
ALL_QUERIES = {**QUERIES, **MORE_QUERIES}
