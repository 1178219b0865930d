"""Shared ``Annotated`` option aliases, so every command spells an option the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DEFAULT_MODEL = "smollm2-135m"

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m",
        help="Model: a local Hugging Face / llara model directory, or an alias (smollm2-135m, llama-2-7b).",
    ),
]
OptionalModelOpt = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Model directory or alias; default: the one recorded with the index."),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Texts per forward pass.")]
MaxLengthOpt = Annotated[int, typer.Option("--max-length", min=8, help="Maximum tokens per text, prompt included.")]
OutDirOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
OutFileOpt = Annotated[Path, typer.Option("--out", "-o", help="Output file.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
TrustRemoteCodeOpt = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow custom model code from the model directory (off by default).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (data order, sampling).")]
QrelsOpt = Annotated[
    str,
    typer.Option(
        "--qrels", "-q",
        help="Qrels: a TREC or BEIR file, a BEIR directory, or a name (msmarco, msmarco-doc-dev, beir/<name>, "
        "scifact, cacm, cranfield) looked up under $LLARA_DATA, then ~/.cache/llara/data.",
    ),
]
QrelsSplitOpt = Annotated[
    str, typer.Option("--split", help="Qrels split of a BEIR-layout collection (qrels/<split>.tsv).")
]
DEFAULT_DTYPE = "auto"
DtypeOpt = Annotated[
    str,
    typer.Option("--dtype", help="Model dtype: auto (bf16 where the hardware runs it natively, else fp32; "
                 "`llara env` shows the choice), fp32, bf16 or fp16."),
]
PrecisionOpt = Annotated[
    str,
    typer.Option("--precision", help="Mixed precision: auto (bf16 on GPUs and CPUs with native bf16, else fp32), "
                 "fp32, bf16 or fp16."),
]
Bf16AliasOpt = Annotated[bool, typer.Option("--bf16", help="Same as --precision bf16 (kept for older scripts).")]
PromptFamilyOpt = Annotated[
    Optional[str],
    typer.Option("--prompt-family", help="paper or flagembedding; default: the model's saved family, else paper."),
]
