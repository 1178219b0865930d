"""`llara export`: a llara model as a sentence-transformers directory or a plain Hugging Face directory."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llara_cli.cli.options import OutDirOpt, OverwriteOpt, PromptFamilyOpt, TrustRemoteCodeOpt
from llara_cli.model.export.export import ExportFormat


def export(
    model: Annotated[str, typer.Argument(help="A llara model directory, an adapter directory, an alias or a HF model directory.")],
    out: OutDirOpt,
    to: Annotated[ExportFormat, typer.Option("--to", help="sentence-transformers: a SentenceTransformer directory (encode_query / encode_document give llara's vectors); hf: the merged causal LM with its card, ready for push_to_hub.")] = ExportFormat.SENTENCE_TRANSFORMERS,
    prompt_family: PromptFamilyOpt = None,
    overwrite: OverwriteOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Export a model for other tools, with a model card (README.md); a LoRA adapter is merged first.

    Examples:

      [cyan]llara export smollm2-135m --to sentence-transformers --out st/smollm2[/]
      (then: SentenceTransformer("st/smollm2", trust_remote_code=True).encode_query([...]))

      [cyan]llara export smollm2-135m --to hf --out hf/smollm2 --overwrite[/]
    """
    from llara_cli.model.export.export import export_model

    result = export_model(model, out, to=to, prompt_family=prompt_family, trust_remote_code=trust_remote_code,
                          overwrite=overwrite)
    merged = ", LoRA adapter merged" if result.merged_adapter else ""
    typer.echo(f"exported {model} ({result.prompt_family} prompt, dim {result.dim}{merged}) "
               f"as {result.format.value} -> {Path(result.out_dir)}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
