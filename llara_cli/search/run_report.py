"""What a search wrote, as the versioned ``llara search --json`` document (schema: docs/evaluation.md)."""
from __future__ import annotations

from pathlib import Path

from llara_cli.data.runs import read_run

SEARCH_SCHEMA_VERSION = 1  # bumped when a key changes meaning or goes away


def describe_written_run(run_path: str | Path, *, mode: str, k: int, inputs: dict[str, object]) -> dict[str, object]:
    """The run file read back: its path, queries, lines and the deepest ranking, with the search's settings."""
    from llara_cli import __version__
    from llara_cli.search.run_fusion import provenance_path

    scored_docs = read_run(run_path)
    per_query: dict[str, int] = {}
    for scored in scored_docs:
        per_query[scored.query_id] = per_query.get(scored.query_id, 0) + 1
    provenance = provenance_path(run_path)
    return {
        "schema_version": SEARCH_SCHEMA_VERSION,
        "llara_version": __version__,
        "mode": mode,
        "run": str(run_path),
        "provenance": str(provenance) if mode == "fuse" and Path(provenance).is_file() else None,
        "k": k,
        "queries": len(per_query),
        "scored_docs": len(scored_docs),
        "max_hits_per_query": max(per_query.values()),
        "inputs": {key: value for key, value in inputs.items() if value},
    }
