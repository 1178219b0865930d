"""The model card (``README.md``) of an exported llara model, read from the model's own configs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llara_cli.core.prompts import TEMPLATES, Side, prompted_side
from llara_cli.model.config import LlaraConfig, Pooling
from llara_cli.storage.files import read_json

TRAINING_CONFIG_FILES = ("adapt_config.json", "finetune_config.json")
RECIPE_KEYS = (  # the settings a reader needs to reproduce a run, in this order, when the run recorded them
    "model", "corpus", "train", "queries", "qrels", "data_format", "prompt_family", "objective", "joint",
    "lm_loss_weight", "bow_scale", "remove_stop_words", "max_length", "query_max_length", "passage_max_length",
    "negatives_from", "num_negatives", "group_size", "in_batch_negatives", "temperature", "max_steps", "epochs",
    "batch_size", "grad_accum", "learning_rate", "warmup_ratio", "scheduler", "weight_decay", "precision",
    "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "seed",
)
POOLING_TEXT = {
    Pooling.EOS: "the last hidden state at the eos token that ends the prompt",
    Pooling.MARKER_MEAN: "the mean of the last hidden states of the eight marker tokens",
}


def _recipe(directory: Path) -> list[str]:
    lines = []
    for name in TRAINING_CONFIG_FILES:
        path = directory / name
        if not path.is_file():
            continue
        payload: Any = read_json(path)
        if not isinstance(payload, dict):
            continue
        shown = {key: payload[key] for key in RECIPE_KEYS if key in payload}
        lines += [f"`{name}` (the run's own settings; the full file is in this directory):", "",
                  "```json", json.dumps(shown, indent=2, sort_keys=False, default=str), "```", ""]
    return lines or ["No training run config is recorded with this model (a base model, or trained outside llara).", ""]


def render_model_card(config: LlaraConfig, directory: Path, export_format: str, *, name: str,
                      merged_adapter: bool, dim: int) -> str:
    template = TEMPLATES[config.prompt_family]
    passage = template.render("{text}", Side.PASSAGE)
    query_side = prompted_side(Side.QUERY, config.query_prompt)
    query = template.render("{text}", query_side)
    query_prompt = "EBAR" if query_side is Side.QUERY else "the passage prompt: this model is symmetric"
    library = "sentence-transformers" if export_format == "sentence-transformers" else "transformers"
    front = ["---", f"library_name: {library}", "tags:", "- llara", "- dense-retrieval", "- sentence-transformers",
             "pipeline_tag: sentence-similarity"]
    if config.base_model and not Path(config.base_model).is_absolute():
        front.append(f"base_model_note: {config.base_model}")
    front.append("---")
    st_load = [
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        "# the modules are llara_cli's own (pip install llara); sentence-transformers >= 6 asks for",
        "# trust_remote_code for any module class outside its namespace (this directory holds no Python file)",
        f'model = SentenceTransformer("{name}", trust_remote_code=True)',
        f'query_embeddings = model.encode_query(["what causes tides"])        # {query_prompt}',
        'passage_embeddings = model.encode_document(["The Moon pulls ..."])  # EBAE side',
        "scores = model.similarity(query_embeddings, passage_embeddings)",
        "```",
    ]
    hf_load = [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{name}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
        "```",
    ]
    body = [
        f"# {name}",
        "",
        f"A dense retriever trained with [llara](https://github.com/) (LLaRA, arXiv 2312.15503): a decoder LLM whose "
        f"{'pooled states' if config.pooling is Pooling.MARKER_MEAN else 'eos state'} embed queries and passages.",
        "",
        "## How it embeds",
        "",
        f"- prompt family: `{config.prompt_family.value}` (prompt layout {config.prompt_layout})",
        f"- passages (EBAE): `{passage}`",
        f"- queries ({query_prompt}): `{query}`",
        f"- pooling: {POOLING_TEXT[config.pooling]}; "
        f"{'L2-normalised (cosine = inner product)' if config.normalize else 'not normalised'}",
        f"- dimension: {dim}",
        f"- tokens per text, prompt included: queries {config.query_max_length}, passages {config.passage_max_length} "
        "(only the text is truncated, never the prompt)",
        f"- stage: `{config.stage.value}`; base model: `{config.base_model or 'unknown'}`"
        + ("; a LoRA adapter merged into the weights" if merged_adapter else ""),
        f"- written by llara {config.llara_version}",
        "",
        "## Training recipe",
        "",
        *_recipe(directory),
        "## Use it",
        "",
        "With sentence-transformers:" if library == "sentence-transformers" else "With transformers:",
        "",
        *(st_load if library == "sentence-transformers" else hf_load),
        "",
        "With llara (the same vectors):",
        "",
        "```bash",
        f"llara encode corpus.jsonl --model {name} --out emb/corpus",
        f"llara search --model {name} --index emb/corpus --queries queries.jsonl --out run.trec",
        "```",
        "",
    ]
    return "\n".join(front + [""] + body)
