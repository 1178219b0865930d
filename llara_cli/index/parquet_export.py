"""``llara index --engine parquet``: the passage vectors as one Parquet file any engine can ingest.

``vectors.parquet`` has two columns, ``doc_id`` (string) and ``vector`` (``fixed_size_list<float32>[dim]``),
rows in shard order; the schema's metadata key ``llara`` holds ``meta.json`` (model, prompt family, pooling,
dim, normalization, corpus hash, llara version) so the file says how its queries must be encoded. Written
row group by row group from the memory-mapped shards, into a temp file renamed into place.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from llara_cli.encode.embedding_store import META_FILE
from llara_cli.encode.shards import expand_shard_dirs
from llara_cli.errors import LlaraError, UsageError
from llara_cli.index.engines import ENGINE_FILE, Engine, EngineIndexMeta, load_passage_shards, merged_meta
from llara_cli.storage.files import write_json

logger = logging.getLogger(__name__)

PARQUET_FILE = "vectors.parquet"
METADATA_KEY = b"llara"
ROW_GROUP_ROWS = 65536


def export_parquet(embedding_dirs: Sequence[str | Path], out_dir: str | Path, *, overwrite: bool = False) -> EngineIndexMeta:
    """Write ``out_dir/vectors.parquet`` (doc_id, vector; llara's meta in the schema) plus ``engine.json`` and
    ``meta.json``; returns the recorded meta."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise LlaraError("the Parquet export needs pyarrow: pip install 'llara[milvus]'") from None
    import numpy as np

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UsageError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    directories = expand_shard_dirs([Path(directory) for directory in embedding_dirs])
    if not directories:
        raise UsageError("no embedding directories given")
    shards, total = load_passage_shards(directories)
    meta = EngineIndexMeta(embedding=merged_meta(shards[0].meta, total), engine=Engine.PARQUET,
                           params={"file": PARQUET_FILE, "count": total})
    dim = meta.embedding.dim
    schema = pa.schema([("doc_id", pa.string()), ("vector", pa.list_(pa.float32(), dim))],
                       metadata={METADATA_KEY: json.dumps(meta.embedding.to_dict()).encode("utf-8")})
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        with pq.ParquetWriter(temp_dir / PARQUET_FILE, schema) as writer:
            for shard in shards:
                for start in range(0, len(shard.ids), ROW_GROUP_ROWS):
                    block = np.ascontiguousarray(shard.vectors[start:start + ROW_GROUP_ROWS], dtype=np.float32)
                    vectors = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), dim)  # (rows, dim)
                    ids = pa.array(shard.ids[start:start + ROW_GROUP_ROWS], pa.string())
                    writer.write_table(pa.Table.from_arrays([ids, vectors], schema=schema))
        write_json(temp_dir / META_FILE, meta.embedding.to_dict())
        write_json(temp_dir / ENGINE_FILE, meta.to_dict())
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(temp_dir, out_dir)
    except OSError as error:
        raise LlaraError(f"cannot write {out_dir / PARQUET_FILE}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    logger.info("exported %d vectors of dim %d to %s", total, dim, out_dir / PARQUET_FILE)
    return meta


def read_parquet_export(path: str | Path) -> tuple[list[str], object, dict]:
    """``(doc_ids, vectors (n, dim) float32, llara meta)`` of a ``vectors.parquet`` (a directory or the file)."""
    import numpy as np
    import pyarrow.parquet as pq

    path = Path(path)
    path = path / PARQUET_FILE if path.is_dir() else path
    table = pq.read_table(path)
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    column = table.column("vector").combine_chunks()
    vectors = np.asarray(column.values, dtype=np.float32).reshape(len(table), -1)  # (n, dim)
    return table.column("doc_id").to_pylist(), vectors, metadata
