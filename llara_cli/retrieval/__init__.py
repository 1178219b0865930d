"""Encoding and indexing: corpora to embedding directories (sharded, resumable, launcher-aware) and faiss indexes.

Searching those indexes is :mod:`llara_cli.search`.
"""
