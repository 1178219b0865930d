"""Peak memory (RSS) of ``llara finetune`` per setting on the embedded model: batch x group x passage length,
plain InfoNCE vs the cached contrastive loss (``--chunk-size``) vs gradient checkpointing.

    python benchmarks/finetune_memory.py                  # the default grid, one optimizer step each
    python benchmarks/finetune_memory.py --cap-gib 12     # stop (and record) any run that passes 12 GiB

Each setting is one ``python -m llara_cli finetune --max-steps 1`` process on a synthetic training file built from
SciFact's corpus (query: a title; positive: its abstract; negatives: other abstracts -- every passage fills its
token budget, as real ones do). The parent samples the child's RSS every 0.1 s and reads its exact peak
(``ru_maxrss``) when it exits; a run passing ``--cap-gib`` is killed, so a shared machine never runs out, and is
recorded as "over the cap". Beside each measurement: the library's pre-flight estimate
(:func:`llara_cli.training.memory_plan.plan_finetune_memory`), so the estimate's error is measured too.
Results: ``benchmarks/results/finetune_memory.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import REPO_ROOT, SHARED_DATA, save_report

MODEL = "smollm2-135m"
GIB = 1024 ** 3
# (batch, group, passage length, chunk size (0: off), gradient checkpointing)
DEFAULT_GRID = (
    (8, 2, 196, 0, False), (8, 4, 196, 0, False), (8, 8, 196, 0, False),
    (8, 8, 196, 16, False), (8, 8, 196, 8, False), (8, 8, 196, 0, True), (8, 8, 196, 16, True),
    (16, 8, 196, 16, False),
)


def training_file(path: Path, count: int = 64, negatives: int = 15, seed: int = 0) -> Path:
    rng = random.Random(seed)
    records = [json.loads(line) for line in (SHARED_DATA / "scifact" / "corpus.jsonl").open()][:2000]
    records = [record for record in records if record.get("title") and len(record.get("text", "")) > 1200]
    with path.open("w") as handle:
        for record in records[:count]:
            others = rng.sample(records, negatives + 1)
            negs = [other["text"] for other in others if other["_id"] != record["_id"]][:negatives]
            handle.write(json.dumps({"query": record["title"], "pos": [record["text"]], "neg": negs}) + "\n")
    return path


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_of(command: list[str], cap_bytes: int) -> tuple[int | None, int, bool]:
    """Run ``command`` (with the repository on PYTHONPATH); its exit code, peak RSS in bytes, and whether it was
    killed for passing ``cap_bytes``. The parent samples the RSS every 0.1 s; a helper process reads the exact
    peak (``ru_maxrss`` of its only child) when the command exits."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    wrapper = ("import resource, subprocess, sys, json; p = subprocess.Popen(sys.argv[1:]); "
               "print('PID', p.pid, flush=True); rc = p.wait(); "
               "print('RESULT', json.dumps([rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]), flush=True)")
    process = subprocess.Popen([sys.executable, "-c", wrapper, *command], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    child = int(process.stdout.readline().split()[1])
    sampled, killed = 0, False
    while process.poll() is None:
        sampled = max(sampled, rss_bytes(child))
        if sampled > cap_bytes and not killed:
            os.kill(child, signal.SIGKILL)
            killed = True
        time.sleep(0.1)
    lines = [line for line in process.stdout.read().splitlines() if line.startswith("RESULT")]
    rc, max_rss_kib = json.loads(lines[-1].split(" ", 1)[1]) if lines else (None, 0)
    return rc, max(sampled, max_rss_kib * 1024), killed


def measured_run(command: list[str], out: Path, cap_bytes: int) -> dict:
    """Run one training ``command`` writing ``out`` (removed after, with its ``.partial``): its peak RSS in GiB,
    whether the cap stopped it, its exit code and wall time."""
    started = time.perf_counter()
    rc, peak, killed = peak_rss_of(command, cap_bytes)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
    return {"peak_rss_gib": round(peak / GIB, 2), "over_cap": killed, "exit_code": rc,
            "wall_s": round(time.perf_counter() - started, 1)}


def measure(train: Path, work: Path, batch: int, group: int, length: int, chunk: int, checkpointing: bool,
            cap_bytes: int) -> dict:
    out = work / f"b{batch}-g{group}-l{length}-c{chunk}-{'gc' if checkpointing else 'nogc'}"
    command = [sys.executable, "-m", "llara_cli", "finetune", "--train", str(train), "--model", MODEL,
               "--out", str(out), "--max-steps", "1", "--batch-size", str(batch), "--group-size", str(group),
               "--passage-max-length", str(length), "--chunk-size", str(chunk), "--save-steps", "1000",
               "--no-memory-check", "--overwrite"]
    if checkpointing:
        command.append("--gradient-checkpointing")
    return {"batch": batch, "group": group, "passage_length": length, "chunk_size": chunk,
            "gradient_checkpointing": checkpointing, **measured_run(command, out, cap_bytes),
            "estimate_gib": round(estimate(batch, group, length, chunk, checkpointing) / GIB, 2)}


def estimate(batch: int, group: int, length: int, chunk: int, checkpointing: bool) -> int:
    from llara_cli.model.resolve import resolve_model
    from llara_cli.training.finetune_config import FinetuneConfig
    from llara_cli.training.memory_plan import estimate_finetune_memory, model_shape

    config = FinetuneConfig(out_dir=Path("unused"), batch_size=batch, group_size=group, passage_max_length=length,
                            chunk_size=chunk, gradient_checkpointing=checkpointing, precision="auto")
    return estimate_finetune_memory(config, model_shape(resolve_model(MODEL))).total_bytes


def table(result: dict) -> str:
    lines = [(f"Peak RSS of one `llara finetune` step, {MODEL}, LoRA, {result['precision']}, query length 32 "
              f"(cap {result['cap_gib']} GiB)"), "",
             "| batch | group | passage len | chunk | grad. ckpt | peak RSS GiB | estimate GiB | wall s | note |",
             "|---:|---:|---:|---:|:---:|---:|---:|---:|---|"]
    for row in result["rows"]:
        peak = f"> {result['cap_gib']} (stopped)" if row["over_cap"] else f"{row['peak_rss_gib']:.2f}"
        lines.append(f"| {row['batch']} | {row['group']} | {row['passage_length']} | {row['chunk_size'] or 'off'} | "
                     f"{'yes' if row['gradient_checkpointing'] else 'no'} | {peak} | {row['estimate_gib']:.2f} | "
                     f"{row['wall_s']:.0f} | {row.get('note', '')} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"b{r['batch']} g{r['group']}\nc{r['chunk_size'] or '-'}{' gc' if r['gradient_checkpointing'] else ''}"
              for r in rows]
    figure, axis = plt.subplots(figsize=(max(6, len(rows) * 1.1), 4))
    axis.bar(range(len(rows)), [r["peak_rss_gib"] for r in rows], label="measured peak RSS")
    axis.plot(range(len(rows)), [r["estimate_gib"] for r in rows], "ro", label="pre-flight estimate")
    axis.set_xticks(range(len(rows)), labels, fontsize=7)
    axis.set_ylabel("GiB")
    axis.set_title(f"llara finetune, {MODEL}, one step")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gib", type=float, default=12.0)
    parser.add_argument("--grid", default=None, help="b,g,l,chunk,gc;... (gc: 0/1); default: the built-in grid")
    parser.add_argument("--earlier-rows", type=Path, default=None,
                        help="rows an earlier invocation printed (one JSON object a line), reported first")
    parser.add_argument("--note", default="", help="a note recorded with this invocation's rows")
    parser.add_argument("--report-only", action="store_true", help="measure nothing: report --earlier-rows")
    arguments = parser.parse_args()
    grid = DEFAULT_GRID
    if arguments.grid:
        grid = tuple((int(batch), int(group), int(length), int(chunk), bool(int(checkpointing)))
                     for batch, group, length, chunk, checkpointing in (item.split(",")
                                                                          for item in arguments.grid.split(";")))
    from llara_cli.runtime.precision import resolve_dtype

    rows = []
    if arguments.earlier_rows:
        rows = [json.loads(line) for line in arguments.earlier_rows.read_text().splitlines() if line.startswith("{")]
    with tempfile.TemporaryDirectory(prefix="finetune-memory-") as work:
        train = training_file(Path(work) / "train.jsonl")
        for setting in () if arguments.report_only else grid:
            row = measure(train, Path(work), *setting, cap_bytes=int(arguments.cap_gib * GIB))
            row["note"] = arguments.note
            print(json.dumps(row), flush=True)
            rows.append(row)
    for row in rows:  # the current estimate for every row, earlier ones included
        row["estimate_gib"] = round(estimate(row["batch"], row["group"], row["passage_length"], row["chunk_size"],
                                             row["gradient_checkpointing"]) / GIB, 2)
    result = {"model": MODEL, "precision": resolve_dtype("auto"), "cap_gib": arguments.cap_gib, "steps": 1,
              "query_max_length": 32, "lora": True, "rows": rows,
              "ru_maxrss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    save_report("finetune_memory", result, table(result), plot)


if __name__ == "__main__":
    main()
