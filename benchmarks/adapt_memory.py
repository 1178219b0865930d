"""Peak memory (RSS) of ``llara adapt`` per setting on the embedded model, beside the pre-flight estimate.

    python benchmarks/adapt_memory.py                  # the default grid, two optimizer steps each
    python benchmarks/adapt_memory.py --cap-gib 12     # stop (and record) any run that passes 12 GiB
    python benchmarks/adapt_memory.py --grid "8,256,1,0,released" --earlier benchmarks/results/adapt_memory.json

Each setting is one ``python -m llara_cli adapt --max-steps 2`` process (every weight trained unless the row says
LoRA; the released objective, whose next-token loss adds logits over the text tokens, or the paper's BoW-only
one) on SciFact's abstracts
joined into one long text file, so every example fills ``--max-length``. The peak is measured as in
``finetune_memory.py`` (RSS sampled every 0.1 s and the child's exact ``ru_maxrss``); beside it the library's
estimate (:func:`llara_cli.training.memory_plan.estimate_adapt_memory`), so the estimate's error is measured.
Two steps, because AdamW creates its moments at the first optimizer step: only the second step's forward and
backward pass run beside them, as every later step does.
Results: ``benchmarks/results/adapt_memory.{json,md}`` with the machine kind.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS_DIR, SHARED_DATA, save_result
from benchmarks.finetune_memory import GIB, MODEL, measured_run

STEPS = 2
# (batch, max length, LoRA, gradient checkpointing, objective)
DEFAULT_GRID = ((8, 128, False, False, "released"), (8, 512, False, False, "released"), (8, 512, False, False, "paper"),
                (8, 512, False, True, "released"), (8, 512, True, False, "released"))
CORPUS_DOCUMENTS = 400  # abstracts written to the text corpus (far more than one step of any row reads)
ABSTRACTS_PER_LINE = 6  # one text document: ~1,500 tokens, so every span fills the longest max length here


def text_corpus(path: Path) -> Path:
    """SciFact abstracts as a plain text corpus, ``ABSTRACTS_PER_LINE`` to a document, so every span is full."""
    with (SHARED_DATA / "scifact" / "corpus.jsonl").open() as source:
        texts = [" ".join(f"{record['title']}. {record['text']}".split())
                 for record in map(json.loads, (line for _, line in zip(range(CORPUS_DOCUMENTS), source)))]
    path.write_text("".join(" ".join(texts[start:start + ABSTRACTS_PER_LINE]) + "\n"
                            for start in range(0, len(texts), ABSTRACTS_PER_LINE)))
    return path


def config_for(batch: int, length: int, lora: bool, checkpointing: bool, objective: str):
    from llara_cli.training.adapt import AdaptConfig

    return AdaptConfig(corpus=Path("unused"), out_dir=Path("unused"), model=MODEL, batch_size=batch,
                       max_length=length, lora=lora, gradient_checkpointing=checkpointing, precision="auto",
                       objective=objective)


def estimate(batch: int, length: int, lora: bool, checkpointing: bool, objective: str) -> int:
    from llara_cli.model.resolve import resolve_model
    from llara_cli.training.memory_plan import estimate_adapt_memory, model_shape

    config = config_for(batch, length, lora, checkpointing, objective)
    return estimate_adapt_memory(config, model_shape(resolve_model(MODEL))).total_bytes


def measure(corpus: Path, work: Path, batch: int, length: int, lora: bool, checkpointing: bool, objective: str,
            cap_bytes: int) -> dict:
    out = work / f"b{batch}-l{length}-{'lora' if lora else 'full'}-{'gc' if checkpointing else 'nogc'}-{objective}"
    command = [sys.executable, "-m", "llara_cli", "adapt", "--corpus", str(corpus), "--model", MODEL,
               "--out", str(out), "--max-steps", str(STEPS), "--batch-size", str(batch), "--max-length", str(length),
               "--objective", objective, "--save-steps", "1000", "--no-memory-check", "--overwrite",
               "--lora" if lora else "--full"]
    if checkpointing:
        command.append("--gradient-checkpointing")
    return {"batch": batch, "max_length": length, "lora": lora, "gradient_checkpointing": checkpointing,
            "objective": objective, **measured_run(command, out, cap_bytes),
            "estimate_gib": round(estimate(batch, length, lora, checkpointing, objective) / GIB, 2)}


def table(result: dict) -> str:
    lines = [(f"Peak RSS of `llara adapt` over {result['steps']} steps, {MODEL}, {result['precision']} "
              f"(cap {result['cap_gib']} GiB); {result['machine']['model']}, {result['machine']['cores']} cores"), "",
             "| batch | max length | weights | grad. ckpt | objective | peak RSS GiB | estimate GiB | estimate / peak "
             "| wall s |", "|---:|---:|---|:---:|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        peak = f"> {result['cap_gib']} (stopped)" if row["over_cap"] else f"{row['peak_rss_gib']:.2f}"
        ratio = "" if row["over_cap"] or row["exit_code"] else f"{row['estimate_gib'] / row['peak_rss_gib']:.2f}"
        lines.append(f"| {row['batch']} | {row['max_length']} | {'LoRA' if row['lora'] else 'all'} | "
                     f"{'yes' if row['gradient_checkpointing'] else 'no'} | {row['objective']} | {peak} | "
                     f"{row['estimate_gib']:.2f} | "
                     f"{ratio} | {row['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from benchmarks._common import cpu_kind
    from llara_cli.runtime.precision import resolve_dtype

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gib", type=float, default=12.0)
    parser.add_argument("--grid", default=None,
                        help="batch,length,lora,gc,objective;... (lora, gc: 0/1); default: built in")
    parser.add_argument("--earlier", type=Path, default=None,
                        help="an earlier adapt_memory.json whose rows are reported first (estimates recomputed)")
    parser.add_argument("--report-only", action="store_true", help="measure nothing: report --earlier")
    arguments = parser.parse_args()
    grid = () if arguments.report_only else DEFAULT_GRID
    if arguments.grid:
        grid = tuple((int(batch), int(length), bool(int(lora)), bool(int(checkpointing)), objective)
                     for batch, length, lora, checkpointing, objective in (item.split(",")
                                                                           for item in arguments.grid.split(";")))
    rows = json.loads(arguments.earlier.read_text())["rows"] if arguments.earlier else []
    with tempfile.TemporaryDirectory(prefix="adapt-memory-") as work:
        corpus = text_corpus(Path(work) / "corpus.txt")
        for setting in grid:
            row = measure(corpus, Path(work), *setting, cap_bytes=int(arguments.cap_gib * GIB))
            print(json.dumps(row), flush=True)
            rows.append(row)
    for row in rows:  # the current estimate for every row, earlier ones included
        row["estimate_gib"] = round(estimate(row["batch"], row["max_length"], row["lora"],
                                             row["gradient_checkpointing"], row["objective"]) / GIB, 2)
    result = {"model": MODEL, "precision": resolve_dtype("auto"), "cap_gib": arguments.cap_gib, "steps": STEPS,
              "machine": cpu_kind(), "rows": rows}
    save_result("adapt_memory", result)
    (RESULTS_DIR / "adapt_memory.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
