"""The README's and the docs' command blocks run as written, at reduced size, so a page cannot drift from the code.

Each page's ```bash and ```python blocks run in order in a fresh directory, with ``llara`` and ``python`` on PATH
being this checkout. The reduced size comes from the environment, not from rewriting the pages: ``$LLARA_HOME``
holds the tiny random model of ``tests/conftest.py`` where the embedded ``smollm2-135m`` is converted to, so every
command that names (or defaults to) that alias runs on the tiny model; ``data/scifact`` is a six-document
collection. Lines that start a GPU launcher or the Makefile (``make``, ``torchrun``, ``accelerate``) are not run, nor
``llara serve``, which serves until stopped (a real server on loopback is tested in ``tests/cli/test_serve_cli.py``
and ``tests/search/service/``).
Also run: every command's ``--help`` examples, each from a copy of the README's files (``--max-steps`` cut to 2),
except those that need what no offline 2-core machine holds (``NEEDS_ELSEWHERE`` says which and why).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, write_beir_collection

pytestmark = pytest.mark.slow

PAGES = ("README.md", "docs/index.md", "docs/quickstart-data.md", "docs/use-elsewhere.md", "docs/evaluation.md")
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)
NOT_RUN = ("make ", "torchrun ", "accelerate ", "llara serve ")
BLOCK_TIMEOUT_S = 420
DOCS = {
    "d1": "the protein cell gene cancer", "d2": "river city music film history", "d3": "a model for dense retrieval",
    "d4": "water energy light", "d5": "king queen war history", "d6": "computer program network learning",
}
QUERIES = {"q1": "protein gene", "q2": "dense retrieval model", "q3": "queen war"}


def code_blocks(page: str) -> list[tuple[str, str]]:
    return [(kind, body) for kind, body in BLOCK.findall((REPO_ROOT / page).read_text())]


def _write_collection(directory: Path) -> None:
    write_beir_collection(directory, DOCS, QUERIES, [("q1", "d1", 1), ("q2", "d3", 1), ("q3", "d5", 2)])
    write_beir_collection(directory, DOCS, QUERIES, [("q1", "d1", 1), ("q2", "d3", 1)], split="train")


@pytest.fixture
def workspace(tmp_path, tiny_model_dir) -> tuple[Path, dict[str, str]]:
    """A working directory, and an environment whose ``llara``/``python`` are this checkout on the tiny model."""
    home = tmp_path / "llara-home"
    shutil.copytree(tiny_model_dir, home / "models" / "smollm2-135m")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llara").write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" -m llara_cli "$@"\n')
    (bin_dir / "python").write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    work = tmp_path / "work"
    _write_collection(work / "data" / "scifact")
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LLARA_HOME": str(home),
                   "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    environment.pop("OPENAI_API_KEY", None)  # as a user has it: llara must not need one
    return work, environment


def run_block(kind: str, body: str, work: Path, environment: dict[str, str], where: str) -> None:
    if kind == "bash":
        lines = [f": not run here: {line}" if line.lstrip().startswith(NOT_RUN) else line for line in body.splitlines()]
        command = ["bash", "-euo", "pipefail", "-c", "\n".join(lines)]
    else:
        command = [sys.executable, "-c", body]
    result = subprocess.run(command, cwd=work, env=environment, capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S)
    assert result.returncode == 0, f"{where} failed:\n{body}\n--- stderr ---\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES)
def test_every_command_block_of_the_page_runs_as_written(page, workspace):
    work, environment = workspace
    blocks = code_blocks(page)
    assert blocks, f"{page} has no bash or python block"
    for number, (kind, body) in enumerate(blocks, start=1):
        run_block(kind, body, work, environment, f"{page} block {number} ({kind})")


def _help_examples(command: str) -> list[str]:
    from typer.testing import CliRunner

    from llara_cli.cli.app import app

    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"}).output
    found = [" ".join(match.split()) for match in  # an example line starts with llara (not a launcher's tail)
             re.findall(r"^[\s│]*(llara " + re.escape(command) + r"\b[^\n│]*)", text, re.MULTILINE)]
    return [example for example in found if "[OPTIONS]" not in example]  # not the usage line


def test_the_export_help_examples_and_the_adapt_resume_example_run(workspace):
    work, environment = workspace
    examples = _help_examples("export")
    assert len(examples) == 2
    resume = [example for example in _help_examples("adapt") if "--resume" in example]
    assert resume == ["llara adapt --corpus data/scifact --out runs/adapted-long --max-steps 3000 --resume"]
    reduced = resume[0].replace("--max-steps 3000", "--max-steps 2 --batch-size 2 --max-length 48")
    first = "llara adapt --corpus data/scifact --out runs/adapted --max-steps 2 --batch-size 2 --max-length 48"
    for command in [*examples, first, reduced]:
        run_block("bash", command, work, environment, command)


# --help examples that need what no offline machine holds, or a launcher: the reason is the check's documentation
NEEDS_ELSEWHERE = {
    "msmarco": "MS MARCO is not on this machine (no network)",
    "cranfield": "the bundled collection names resolve to ../shared or a download",
    "llama-2-7b": "7B weights",
    "torchrun": "a multi-process launcher",
    "accelerate": "a multi-process launcher",
    "corpus.jsonl": "an example file name standing for the user's corpus",
    "runs/emb/shard-": "embedding shards of a sharded encode",
    "--partial": "index shards of a sharded encode",
    "q.tsv": "example file names standing for the user's MS MARCO-style files",
    "out/adapted": "a model from an earlier `llara adapt`",
    "out/mrl": "a model from the `llara finetune --mrl-dims` example",
    "index/scifact-bin": "the binary index of the `llara index --type binary` example",
    "dense-train.trec": "a dense run on the training queries (an earlier `llara search`)",
    "scifact-train.jsonl": "the output of the `llara mine` example",
    "a.trec": "example run names",
    "llara.trec": "example run names",
    "-train.trec": "runs on the training queries (the finetune page's first step)",
    "$(which llara)": "a launcher line",
}
COMMANDS = ("adapt", "finetune", "mine", "encode", "index", "search", "evaluate", "export", "demo-collection", "env")


def all_help_examples() -> list[str]:
    examples = []
    for command in COMMANDS:
        examples += [example for example in _help_examples(command) if example.startswith(f"llara {command} ")
                     or example == f"llara {command}"]
    return examples


def test_every_help_example_runs_as_written_unless_it_needs_another_machine(workspace, tmp_path):
    work, environment = workspace
    for kind, body in code_blocks("README.md"):  # emb/, index/ and the runs the examples start from
        run_block(kind, body, work, environment, "README.md")
    ran = []
    for number, example in enumerate(all_help_examples()):
        if any(marker in example for marker in NEEDS_ELSEWHERE):
            continue
        fresh = tmp_path / f"example-{number}"
        shutil.copytree(work, fresh)  # each example starts from the README's files, as a reader would
        output = re.search(r"--out (\S+)", example)
        if output is not None:  # ... writing a new output, not one the README already wrote
            for path in (fresh / output.group(1), fresh / f"{output.group(1)}.json"):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        reduced = re.sub(r"--max-steps \d+", "--max-steps 2", example)
        run_block("bash", reduced, fresh, environment, f"--help example {example!r}")
        ran.append(example)
    assert len(ran) >= 12, ran
