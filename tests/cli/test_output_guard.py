"""Issue #28, nothing lost: --overwrite replaces only what llara wrote for the same command, never an input or a
foreign directory; special files are never replaced; a plot replaces only a plot llara wrote (docs/reliability.md)."""
from __future__ import annotations

import os
import stat

import pytest

from tests.cli.conftest import invoke
from tests.cli.test_hardened_io import (
    assert_one_line_error,
    tree,
    write_embeddings,
)


@pytest.fixture
def embeddings(tmp_path):
    return write_embeddings(tmp_path / "emb")


def test_index_overwrite_refuses_a_beir_collection(embeddings, collection):
    before = tree(collection)
    result = invoke("index", embeddings, "--out", collection, "--overwrite")
    assert_one_line_error(result, collection, "not an llara faiss index", "corpus.jsonl")
    assert tree(collection) == before


def test_index_overwrite_refuses_its_own_input(embeddings):
    before = tree(embeddings)
    result = invoke("index", embeddings, "--out", embeddings.parent, "--overwrite")
    assert_one_line_error(result, "would replace the input")
    assert tree(embeddings) == before


def test_index_overwrite_replaces_its_own_index_but_not_one_with_foreign_files(embeddings, tmp_path):
    out = tmp_path / "index"
    assert invoke("index", embeddings, "--out", out).exit_code == 0
    assert invoke("index", embeddings, "--out", out, "--overwrite").exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = invoke("index", embeddings, "--out", out, "--overwrite")
    assert_one_line_error(result, out, "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


def test_finetune_overwrite_refuses_a_folder_of_notes(tiny_model_dir, collection, tmp_path, run_file):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("keep me")
    result = invoke("finetune", "--train", collection, "--split", "test", "--negatives-from", run_file,
                    "--model", tiny_model_dir, "--out", notes, "--overwrite", "--max-steps", "1")
    assert_one_line_error(result, notes, "todo.md", "not an llara model")
    assert (notes / "todo.md").read_text() == "keep me"


def test_adapt_overwrite_refuses_its_own_corpus_directory(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    corpus = data / "corpus.txt"
    data.mkdir()
    corpus.write_text("the cell protein gene river city music\n" * 4)
    before = tree(data)
    result = invoke("adapt", "--corpus", corpus, "--model", tiny_model_dir, "--out", data, "--overwrite",
                    "--max-steps", "1", "--max-length", "48")
    assert_one_line_error(result, "would replace the input", corpus)
    assert tree(data) == before


def test_adapt_overwrite_refuses_its_own_model(tiny_model_dir, tmp_path):
    corpus = tmp_path / "wiki.txt"
    corpus.write_text("the cell protein gene river city music\n" * 4)
    before = tree(tiny_model_dir)
    result = invoke("adapt", "--corpus", corpus, "--model", tiny_model_dir, "--out", tiny_model_dir, "--overwrite",
                    "--max-steps", "1", "--max-length", "48")
    assert_one_line_error(result, "would replace the input")
    assert tree(tiny_model_dir) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_search_out_a_fifo_is_refused_even_with_overwrite(collection, run_file, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run_file.with_name("b.trec").write_text(run_file.read_text())
    result = invoke("search", "--fuse", run_file, "--fuse", run_file.with_name("b.trec"), "--out", fifo, "--overwrite")
    assert_one_line_error(result, fifo, "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_search_out_a_device_link_is_refused(run_file, tmp_path):
    link = tmp_path / "stdout-link"
    link.symlink_to("/dev/null")
    run_file.with_name("b.trec").write_text(run_file.read_text())
    result = invoke("search", "--fuse", run_file, "--fuse", run_file.with_name("b.trec"), "--out", link, "--overwrite")
    assert_one_line_error(result, link, "device")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)


def test_search_out_under_a_regular_file_says_it_is_not_a_directory(run_file, tmp_path):
    run_file.with_name("b.trec").write_text(run_file.read_text())
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = invoke("search", "--fuse", run_file, "--fuse", run_file.with_name("b.trec"), "--out", afile / "x.trec")
    assert_one_line_error(result, f"{afile} is not a directory")


def test_evaluate_plot_replaces_only_a_plot_llara_wrote(collection, run_file, tmp_path):
    plot = tmp_path / "notes.png"
    plot.write_text("my notes, not a plot")
    result = invoke("evaluate", run_file, "--qrels", collection, "--plot", plot)
    assert_one_line_error(result, plot, "--overwrite")
    assert plot.read_text() == "my notes, not a plot"
    fresh = tmp_path / "cmp.png"
    assert invoke("evaluate", run_file, "--qrels", collection, "--plot", fresh).exit_code == 0
    first = fresh.stat().st_mtime_ns
    assert invoke("evaluate", run_file, "--qrels", collection, "--plot", fresh).exit_code == 0  # regenerated freely
    assert fresh.stat().st_mtime_ns >= first and fresh.read_bytes().startswith(b"\x89PNG")
    assert invoke("evaluate", run_file, "--qrels", collection, "--plot", plot, "--overwrite").exit_code == 0


def test_a_search_rerun_removes_the_temp_run_a_killed_search_left(run_file, tmp_path):
    run_file.with_name("b.trec").write_text(run_file.read_text())
    out = tmp_path / "fused.trec"
    left = tmp_path / ".fused.trec.k1ll3d.tmp"  # what atomic_write leaves when its process is killed
    other = tmp_path / ".other.trec.k1ll3d.tmp"  # another output's: not this run's to remove
    left.write_text("partial")
    other.write_text("partial")
    result = invoke("search", "--fuse", run_file, "--fuse", run_file.with_name("b.trec"), "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file() and not left.exists() and other.exists()
    assert not (tmp_path / ".fused.trec.llara.lock").exists()


@pytest.mark.parametrize("target", ["/dev/stdout", "/dev/llara-new.trec", "/proc/self/fd/1"])
def test_outputs_into_device_and_process_paths_are_refused(run_file, target):
    run_file.with_name("b.trec").write_text(run_file.read_text())
    result = invoke("search", "--fuse", run_file, "--fuse", run_file.with_name("b.trec"), "--out", target, "--overwrite")
    assert_one_line_error(result, target, "not into device or process paths")
    assert not os.path.exists("/dev/llara-new.trec")


def test_a_run_with_a_control_character_id_names_its_line(collection, tmp_path):
    run = tmp_path / "esc.trec"
    run.write_text("q1 Q0 d1 1 2.0 a\nq1 Q0 d\x1b[2J 2 1.0 a\n")
    result = invoke("evaluate", run, "--qrels", collection)
    assert_one_line_error(result, f"{run}:2:", "U+001B")
    assert "\x1b[2J" not in result.stderr


def test_training_overwrite_replaces_its_own_model(tiny_model_dir, tmp_path):
    corpus = tmp_path / "wiki.txt"
    corpus.write_text("the cell protein gene river city music\n" * 8)
    out = tmp_path / "adapted"
    arguments = ("adapt", "--corpus", corpus, "--model", tiny_model_dir, "--out", out, "--max-steps", "1",
                 "--max-length", "48", "--batch-size", "2")
    assert invoke(*arguments).exit_code == 0
    first = tree(out)
    result = invoke(*arguments, "--overwrite")
    assert result.exit_code == 0, result.output
    assert set(tree(out)) == set(first)


def test_finetune_overwrite_replaces_its_own_adapter(tiny_model_dir, collection, run_file, tmp_path):
    out = tmp_path / "ft"
    arguments = ("finetune", "--train", collection, "--split", "test", "--negatives-from", run_file,
                 "--model", tiny_model_dir, "--out", out, "--max-steps", "1", "--batch-size", "2",
                 "--group-size", "1", "--lora-targets", "q_proj")
    first = invoke(*arguments)
    assert first.exit_code == 0, first.output
    again = invoke(*arguments, "--overwrite")
    assert again.exit_code == 0, again.output
    assert (out / "adapter_model.safetensors").is_file()


def test_adapt_overwrite_refuses_the_directory_its_model_alias_resolves_to(tiny_model_dir, tmp_path, monkeypatch):
    import llara_cli.model.resolve as resolve_module

    monkeypatch.setitem(resolve_module.MODEL_ALIASES, "tiny-alias", resolve_module.ModelAlias(
        name="tiny-alias", description="the tiny test model", how_to_obtain="tests", hub_repo="tests/tiny"))
    monkeypatch.setattr(resolve_module, "_resolve_from_hub_cache", lambda repo_id, label: tiny_model_dir)
    corpus = tmp_path / "wiki.txt"
    corpus.write_text("the cell protein gene river city music\n" * 4)
    before = tree(tiny_model_dir)
    result = invoke("adapt", "--corpus", corpus, "--model", "tiny-alias", "--out", tiny_model_dir, "--overwrite",
                    "--max-steps", "1", "--max-length", "48")
    assert_one_line_error(result, "would replace the input")
    assert tree(tiny_model_dir) == before
