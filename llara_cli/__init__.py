"""llara: turn a decoder LLM into a dense retriever with LLaRA, and run the retrieval workflow.

The handful of names a user needs, importable from here (each loaded on first use, so ``import llara_cli`` and
``llara --help`` stay fast)::

    from llara_cli import LlaraEncoder, DenseSearcher, Bm25Searcher, evaluate_runs

The package tree is the architecture (``docs/concepts.md`` has the map): ``core`` (the LLaRA maths), ``model``,
``runtime``, ``encode``, ``index``, ``search``, ``training``, ``evaluation``, ``data``, ``storage``, ``cli``.
"""
from __future__ import annotations

__version__ = "0.1.0"

from llara_cli._lazy import lazy_exports
from llara_cli.errors import LlaraError, UsageError

_EXPORTS = {
    # models and encoding
    "LlaraModel": "llara_cli.model.llara_model",
    "LlaraConfig": "llara_cli.model.config",
    "PromptFamily": "llara_cli.core.prompts",
    "LlaraEncoder": "llara_cli.encode.encoder",
    "EncodeJob": "llara_cli.encode.directory",
    "encode_to_directory": "llara_cli.encode.directory",
    # indexes
    "IndexType": "llara_cli.index.faiss_types",
    "build_index": "llara_cli.index.faiss_index",
    "load_index": "llara_cli.index.faiss_index",
    "build_bm25_index": "llara_cli.index.lucene_index",
    # search
    "DenseSearcher": "llara_cli.search.dense",
    "Bm25Searcher": "llara_cli.search.bm25",
    "HybridSearcher": "llara_cli.search.hybrid",
    "FusionMethod": "llara_cli.search.run_fusion",
    "fuse_run_files": "llara_cli.search.run_fusion",
    # evaluation
    "evaluate_runs": "llara_cli.evaluation.evaluator",
    # data
    "read_corpus": "llara_cli.data.corpus",
    "read_queries": "llara_cli.data.corpus",
    "read_qrels": "llara_cli.data.qrels",
    "read_run": "llara_cli.data.runs",
    "write_run": "llara_cli.data.runs",
    # training
    "AdaptConfig": "llara_cli.training.adapt",
    "run_adaptation": "llara_cli.training.adapt",
    "FinetuneConfig": "llara_cli.training.finetune_config",
    "run_finetuning": "llara_cli.training.finetune",
}

__all__ = ["__version__", "LlaraError", "UsageError", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
