"""``ServeConfig``: what ``llara serve`` serves (named dense indexes, BM25 corpora, hybrids) and its limits."""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llara_cli.errors import UsageError
from llara_cli.search.anchored_fusion import ROBUST_DENSE_WEIGHT
from llara_cli.search.fusion import FUSION_DEPTH

DEFAULT_HOST = "127.0.0.1"  # loopback: exposing the service is an explicit choice (--host 0.0.0.0)
DEFAULT_PORT = 8081  # Pyserini's REST server's default
DEFAULT_MAX_BATCH = 32  # queries encoded in one forward pass
DEFAULT_BATCH_WAIT_MS = 2.0  # how long the first query of a batch waits for others
DEFAULT_MAX_PENDING = 256  # requests admitted at once (queued or running); beyond: 429
DEFAULT_TIMEOUT_S = 30.0  # per request, queueing included; beyond: 504
DEFAULT_MAX_QUERY_CHARS = 4096
DEFAULT_MAX_HITS = 1000
DEFAULT_MAX_BODY_BYTES = 1 << 20  # a request body over this is refused with 413 before it is parsed
API_KEY_ENV = "LLARA_API_KEY"  # the key is read from the environment (never a command-line argument)
INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class HybridSpec:
    """A served fusion: the BM25 index anchors, the dense one reorders its near-ties (``llara search --fuse``)."""

    bm25: str
    dense: str
    dense_weight: float = ROBUST_DENSE_WEIGHT
    depth: int = FUSION_DEPTH  # documents retrieved from each side and fused


@dataclass(frozen=True)
class ServeConfig:
    dense: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)  # name -> index dir(s) or engine dir
    bm25: Mapping[str, Path] = field(default_factory=dict)  # name -> corpus (jsonl/tsv or BEIR directory)
    hybrid: Mapping[str, HybridSpec] = field(default_factory=dict)
    documents: Path | None = None  # corpus whose texts fill document_txt and /documents (default: a BM25 corpus)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None
    model: str | None = None  # None: each index's own
    dtype: str = "auto"
    max_length: int | None = None
    trust_remote_code: bool = False
    max_batch: int = DEFAULT_MAX_BATCH
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    max_pending: int = DEFAULT_MAX_PENDING
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS
    max_hits: int = DEFAULT_MAX_HITS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    bm25_threads: int | None = None  # None: the process' thread budget

    def __post_init__(self) -> None:
        names = [*self.dense, *self.bm25, *self.hybrid]
        if not names:
            raise UsageError("nothing to serve: give at least one --dense, --bm25 or --hybrid index")
        for name in names:
            if not INDEX_NAME.fullmatch(name):
                raise UsageError(f"index name {name!r}: letters, digits, '.', '_' and '-', at most 128")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise UsageError(f"index name(s) {', '.join(repeated)} given twice")
        for name, spec in self.hybrid.items():
            if spec.bm25 not in self.bm25:
                raise UsageError(f"hybrid {name}: {spec.bm25!r} is not a served --bm25 index")
            if spec.dense not in self.dense:
                raise UsageError(f"hybrid {name}: {spec.dense!r} is not a served --dense index")
            if not 0.0 <= spec.dense_weight <= 1.0 or spec.depth < 1:
                raise UsageError(f"hybrid {name}: the dense weight must lie in [0, 1] and the depth be >= 1")
        for what, value in (("max_batch", self.max_batch), ("max_pending", self.max_pending),
                            ("max_query_chars", self.max_query_chars), ("max_hits", self.max_hits),
                            ("max_body_bytes", self.max_body_bytes)):
            if value < 1:
                raise UsageError(f"{what} must be at least 1, got {value}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0) or not 0 <= self.batch_wait_ms < 10_000:
            raise UsageError("the timeout must be positive and the batch wait in [0, 10000) ms")
        if not 0 <= self.port < 65536:
            raise UsageError(f"port {self.port} is not a TCP port")


def parse_named(value: str, option: str) -> tuple[str, str]:
    """``NAME=VALUE`` of a repeatable option (``--dense scifact=index/scifact``)."""
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise UsageError(f"{option} takes NAME=VALUE, got {value!r}")
    return name, rest


def parse_hybrid(value: str, depth: int = FUSION_DEPTH) -> tuple[str, HybridSpec]:
    """``NAME=BM25,DENSE[,WEIGHT]`` (WEIGHT: a number, e.g. the tuned one from a fused run's provenance, or
    ``robust``)."""
    name, rest = parse_named(value, "--hybrid")
    parts = rest.split(",")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise UsageError(f"--hybrid takes NAME=BM25_NAME,DENSE_NAME[,WEIGHT], got {value!r}")
    weight = ROBUST_DENSE_WEIGHT
    if len(parts) == 3 and parts[2] != "robust":
        try:
            weight = float(parts[2])
        except ValueError:
            raise UsageError(f"--hybrid {name}: the weight {parts[2]!r} is not a number (or 'robust')") from None
    return name, HybridSpec(bm25=parts[0], dense=parts[1], dense_weight=weight, depth=depth)
