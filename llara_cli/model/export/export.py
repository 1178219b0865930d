"""``llara export``: a llara model as a sentence-transformers directory, or a plain Hugging Face directory.

Both are written with a model card (``README.md``: the prompts, the pooling, the training recipe read from the
model's own configs, load examples). A LoRA adapter directory is merged into plain weights first. The output
is written beside ``out_dir`` and renamed into place, so an interrupted export leaves nothing half-written.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from llara_cli.core.prompts import TEMPLATES, Side
from llara_cli.errors import UsageError
from llara_cli.model.config import LlaraConfig
from llara_cli.model.export.card import TRAINING_CONFIG_FILES, render_model_card
from llara_cli.storage.files import atomic_write

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"


class ExportFormat(str, Enum):
    SENTENCE_TRANSFORMERS = "sentence-transformers"
    HF = "hf"  # the merged causal LM + tokenizer + llara_config.json: what push_to_hub expects


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    format: ExportFormat
    prompt_family: str
    dim: int
    merged_adapter: bool


def _check_out_dir(out_dir: Path, model: str, overwrite: bool) -> None:
    source = Path(model).expanduser()
    if source.exists() and out_dir.exists() and out_dir.resolve() == source.resolve():
        raise UsageError(f"output {out_dir} is the model being exported: write it elsewhere")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UsageError(f"{out_dir} already exists and is not empty (pass --overwrite to replace it)")


def export_model(model: str, out_dir: str | Path, *, to: ExportFormat | str = ExportFormat.SENTENCE_TRANSFORMERS,
                 prompt_family: str | None = None, trust_remote_code: bool = False,
                 overwrite: bool = False) -> ExportResult:
    """Write ``model`` (a llara or HF model directory, an alias, or an adapter directory) to ``out_dir``.

    ``to="sentence-transformers"``: ``SentenceTransformer(out_dir, trust_remote_code=True)`` loads it, and its
    ``encode_query``/``encode_document`` give ``llara encode``'s query/passage vectors. ``to="hf"``: a plain model
    directory (``AutoModelForCausalLM.from_pretrained`` loads it; ``llara encode --model`` too).
    """
    from llara_cli.core.prompts import parse_choice
    from llara_cli.model.llara_model import LlaraModel, ModelSource, save_model_dir

    export_format = parse_choice(ExportFormat, to, "export format")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, model, overwrite)
    source = ModelSource.resolve(model, prompt_family=prompt_family, trust_remote_code=trust_remote_code)
    llara_model = LlaraModel.load(source, dtype="fp32", trust_remote_code=trust_remote_code, merge=True)
    source_dir = source.adapter_dir or source.model_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        if export_format is ExportFormat.SENTENCE_TRANSFORMERS:
            build_sentence_transformer(llara_model).save(str(staging), create_model_card=False)
        else:
            save_model_dir(staging, llara_model.causal_lm, llara_model.tokenizer, llara_model.config)
        for name in TRAINING_CONFIG_FILES:
            if source_dir is not None and (source_dir / name).is_file():
                shutil.copy2(source_dir / name, staging / name)
        card = render_model_card(llara_model.config, staging, export_format.value, name=out_dir.name,
                                 merged_adapter=source.adapter_dir is not None, dim=llara_model.dim)
        with atomic_write(staging / CARD_FILE) as handle:
            handle.write(card)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("exported %s to %s (%s)", model, out_dir, export_format.value)
    return ExportResult(out_dir, export_format, llara_model.config.prompt_family.value, llara_model.dim,
                        source.adapter_dir is not None)


def build_sentence_transformer(llara_model):
    """A ``SentenceTransformer`` in memory over a loaded :class:`LlaraModel` (its weights shared, not copied)."""
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.base.modules import Normalize
    except ImportError:
        raise UsageError("exporting to sentence-transformers needs it installed: "
                         "pip install 'sentence-transformers>=6'") from None
    from llara_cli.model.export.sentence_transformers import LlaraPooling, LlaraTransformer

    config: LlaraConfig = llara_model.config
    modules = [LlaraTransformer(llara_model), LlaraPooling(llara_model.dim, config.pooling.value)]
    if config.normalize:
        modules.append(Normalize())
    template = TEMPLATES[config.prompt_family]
    model = SentenceTransformer(modules=modules, device=str(llara_model.device),
                                prompts={"query": "", "document": ""}, similarity_fn_name="cosine")
    model.model_card_data.model_name = f"llara {template.family.value} ({template.render('{text}', Side.PASSAGE)})"
    return model
