"""`llara encode`: encode a corpus (passages, EBAE side) or queries (EBAR side) into an embedding directory."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llara_cli.cli.options import (
    DEFAULT_DTYPE,
    DEFAULT_MODEL,
    BatchSizeOpt,
    DimOpt,
    DtypeOpt,
    ModelMaxLengthOpt,
    ModelOpt,
    OutDirOpt,
    OverwriteOpt,
    PromptFamilyOpt,
    QueryPromptOverrideOpt,
    TrustRemoteCodeOpt,
)
from llara_cli.errors import UsageError

DEFAULT_BATCH_SIZE = 16


def encode(
    source: Annotated[Path, typer.Argument(help="Corpus or queries: jsonl, tsv, or a BEIR directory.")],
    out: OutDirOpt,
    model: ModelOpt = DEFAULT_MODEL,
    queries: Annotated[bool, typer.Option(
        "--queries", help="Encode queries (the model's query prompt: EBAR, or the passage prompt where llara adapt "
        "chose ebae) instead of passages.")] = False,
    query_prompt: QueryPromptOverrideOpt = None,
    max_length: ModelMaxLengthOpt = None,
    batch_size: BatchSizeOpt = DEFAULT_BATCH_SIZE,
    dtype: DtypeOpt = DEFAULT_DTYPE,
    prompt_family: PromptFamilyOpt = None,
    shard_id: Annotated[int, typer.Option("--shard-id", min=0, help="Which shard to encode (0-based).")] = 0,
    shard_num: Annotated[int, typer.Option("--shard-num", min=1, help="Number of contiguous shards.")] = 1,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1, help="Texts per saved chunk (the resume unit).")] = 1024,
    store_dtype: Annotated[str, typer.Option("--store-dtype", help="embeddings.npy as fp32, or fp16 (half the disk; indexes read it as float32).")] = "fp32",
    dim: DimOpt = None,
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Encode texts into embeddings ([bold]resumable[/]: rerun the same command after an interruption).

    Examples:

      [cyan]llara encode data/scifact --out emb/scifact[/]

      [cyan]llara encode data/scifact/queries.jsonl --queries --out emb/scifact-queries[/]

    A 144-dim prefix (of a model finetuned with --mrl-dims):

      [cyan]llara encode data/scifact --model out/mrl --dim 144 --out emb/scifact-144[/]

      [cyan]llara encode corpus.jsonl --model out/adapted --shard-id 0 --shard-num 4 --out emb/shard0[/]

      [cyan]torchrun --nproc-per-node 8 --no-python llara encode corpus.jsonl --model out/adapted --out emb/corpus[/]
      (each rank encodes its shard on its own GPU into emb/corpus/shard-00<rank>; `llara index emb/corpus`)
    """
    from llara_cli.cli.progress import item_progress
    from llara_cli.core.prompts import Side
    from llara_cli.encode.directory import EncodeJob, encode_to_directory
    from llara_cli.encode.encoder import LlaraEncoder
    from llara_cli.encode.launcher import device_type_of, encode_device, job_for_rank, launched_rank
    from llara_cli.runtime.precision import resolve_dtype

    side = Side.QUERY if queries else Side.PASSAGE
    if query_prompt is not None and not queries:
        raise UsageError("--query-prompt applies to queries: add --queries")
    job = EncodeJob(source=source, out_dir=out, side=side, batch_size=batch_size, max_length=max_length,
                    shard_id=shard_id, shard_num=shard_num, chunk_size=chunk_size, overwrite=overwrite,
                    store_dtype=store_dtype, dim=dim)
    launched = launched_rank()
    if launched is not None:  # torchrun / accelerate launch: this rank's shard, on this rank's device
        job = job_for_rank(job, launched)
    device = encode_device(launched)
    dtype = resolve_dtype(dtype, device_type=device_type_of(device))
    encoder = LlaraEncoder.load(model, dtype=dtype, prompt_family=prompt_family, trust_remote_code=trust_remote_code,
                                device=device, query_prompt=query_prompt)
    unit = "queries" if queries else "passages"
    with item_progress(f"encoding {unit}", unit) as (on_start, on_advance):
        meta = encode_to_directory(job, encoder, on_progress=on_advance, on_start=on_start)
    typer.echo(f"encoded {meta.count} {unit} (dim {meta.dim}, {meta.prompt_family} prompt, {dtype}) -> {job.out_dir}")


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
