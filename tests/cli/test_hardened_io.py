"""Bad inputs and unsafe outputs through the CLI (docs/reliability.md, rows 33-): each run exits != 0 with one
line naming the culprit (file:line or the option), and leaves every file as it was."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess

import numpy as np
import pytest

from llara_cli.encode.embedding_store import EMBEDDINGS_FILE, EmbeddingMeta, save_embeddings
from tests.cli.conftest import invoke

DIM = 8
DOCS = {"d1": "protein gene cell", "d2": "river city music", "d3": "dense retrieval model"}
QUERIES = {"q1": "protein gene", "q2": "dense model"}
RUN_LINES = ["q1 Q0 d1 1 2.0 a", "q1 Q0 d2 2 1.0 a", "q2 Q0 d3 1 3.0 a"]




def tree(directory):
    """Every path under ``directory`` with the sha256 of its bytes (None for directories)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


def assert_one_line_error(result, *culprits, exit_code=2):
    """Exit code, no traceback, exactly one stderr line, naming every culprit."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for culprit in culprits:
        assert str(culprit) in lines[0], (culprit, lines[0])


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


# --- ids with whitespace are refused where they are read ----------------------------------------------------------

@pytest.mark.parametrize("bad_id", ["doc one", "doc\tone", "doc\u00a0one"])
def test_corpus_ids_with_whitespace_are_refused_at_the_corpus_line(collection, tmp_path, bad_id):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "a"}, {"_id": bad_id, "text": "b"}])
    before = tree(tmp_path)
    result = invoke("search", "--bm25", "--corpus", corpus, "--queries", collection, "--out", tmp_path / "run.trec")
    assert_one_line_error(result, f"{corpus}:2:", "contains whitespace")
    assert tree(tmp_path) == before


def test_query_ids_with_whitespace_are_refused_at_the_topics_line(collection, tmp_path):
    topics = tmp_path / "topics.tsv"
    topics.write_text("q1\tprotein\nq 2\tdense model\n")
    before = tree(tmp_path)
    result = invoke("search", "--bm25", "--corpus", collection, "--queries", topics, "--out", tmp_path / "run.trec")
    assert_one_line_error(result, f"{topics}:2:", "query id 'q 2' contains whitespace")
    assert tree(tmp_path) == before


def test_encode_refuses_a_bad_id_before_encoding_anything(tiny_model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "a"}, {"_id": "d 2", "text": "b"}])
    before = tree(tmp_path)
    result = invoke("encode", corpus, "--model", tiny_model_dir, "--out", tmp_path / "emb")
    assert_one_line_error(result, f"{corpus}:2:", "'d 2'")
    assert tree(tmp_path) == before  # no chunks left to block a corrected rerun


def test_beir_qrels_with_a_space_in_an_id_stay_beir_and_name_the_line(collection, run_file, tmp_path):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td 3\t1\n")
    result = invoke("evaluate", run_file, "--qrels", qrels)
    assert_one_line_error(result, f"{qrels}:3:", "document id 'd 3' contains whitespace")


def test_qrels_format_is_decided_by_the_first_line_and_held(run_file, tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\nq2 d3 1\n")
    result = invoke("evaluate", run_file, "--qrels", qrels)
    assert_one_line_error(result, f"{qrels}:2:", "expected 4 columns", "TREC")


@pytest.mark.parametrize("relevance", ["0.6", "inf", "nan", "1e400"])
def test_fractional_or_non_finite_relevance_names_file_and_line(run_file, tmp_path, relevance):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(f"q1 0 d1 1\nq2 0 d3 {relevance}\n")
    result = invoke("evaluate", run_file, "--qrels", qrels)
    assert_one_line_error(result, f"{qrels}:2:", f"relevance {relevance!r} is not an integer grade")


# --- byte-order marks, directories, splits ------------------------------------------------------------------------

def test_byte_order_marks_are_dropped_by_every_reader(tmp_path):
    from llara_cli.data.corpus import read_corpus, read_queries
    from llara_cli.data.qrels import read_qrels
    from llara_cli.data.runs import read_run
    from llara_cli.storage.files import read_json

    bom = "\ufeff"
    (tmp_path / "run.trec").write_text(bom + "1 Q0 d1 1 2.0 a\n", encoding="utf-8")
    (tmp_path / "qrels.txt").write_text(bom + "1 0 d1 1\n", encoding="utf-8")
    (tmp_path / "beir.tsv").write_text(bom + "query-id\tcorpus-id\tscore\n1\td1\t1\n", encoding="utf-8")
    (tmp_path / "topics.tsv").write_text(bom + "1\tprotein\n", encoding="utf-8")
    (tmp_path / "corpus.jsonl").write_text(bom + '{"_id": "d1", "text": "x"}\n', encoding="utf-8")
    (tmp_path / "meta.json").write_text(bom + '{"a": 1}\n', encoding="utf-8")
    assert read_run(tmp_path / "run.trec")[0].query_id == "1"
    assert read_qrels(tmp_path / "qrels.txt")[0].query_id == "1"
    assert read_qrels(tmp_path / "beir.tsv")[0].query_id == "1"
    assert read_queries(tmp_path / "topics.tsv")[0].query_id == "1"
    assert read_corpus(tmp_path / "corpus.jsonl")[0].doc_id == "d1"
    assert read_json(tmp_path / "meta.json") == {"a": 1}


def test_a_directory_given_as_a_run_says_it_is_a_directory(collection, tmp_path):
    (tmp_path / "runs").mkdir()
    result = invoke("evaluate", tmp_path / "runs", "--qrels", collection)
    assert_one_line_error(result, tmp_path / "runs", "is a directory")


def test_a_split_typo_lists_the_available_splits(collection, tmp_path):
    before = tree(tmp_path)
    result = invoke("search", "--bm25", "--corpus", collection, "--queries", collection, "--split", "tset",
                    "--out", tmp_path / "run.trec")
    assert_one_line_error(result, "tset", "available splits: test")
    assert tree(tmp_path) == before


def test_swapped_corpus_and_queries_are_refused(collection, tmp_path):
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"_id": d, "title": "T", "text": t} for d, t in DOCS.items()])
    before = tree(tmp_path)
    result = invoke("search", "--bm25", "--corpus", collection / "queries.jsonl", "--queries", corpus,
                    "--out", tmp_path / "run.trec")
    assert_one_line_error(result, f"{corpus}:1:", "'title' field", "swapped")
    queries_as_corpus = write_jsonl(tmp_path / "q.jsonl", [{"qid": "q1", "query": "protein"}])
    result = invoke("search", "--bm25", "--corpus", queries_as_corpus, "--queries", collection,
                    "--out", tmp_path / "run.trec")
    assert_one_line_error(result, f"{queries_as_corpus}:1:", "'query' field", "swapped")
    assert set(tree(tmp_path)) == set(before) | {"q.jsonl"}


def test_qrels_that_judge_no_retrieved_document_warn(collection, tmp_path):
    run = tmp_path / "other.trec"
    run.write_text("q1 Q0 x1 1 2.0 a\nq2 Q0 x2 1 1.0 a\n")
    result = invoke("evaluate", run, "--qrels", collection)
    assert result.exit_code == 0, result.output
    assert "no retrieved document is judged" in result.stderr


# --- the output guard ----------------------------------------------------------------------------------------------

def test_fusion_refuses_an_output_that_is_one_of_its_inputs(run_file, tmp_path):
    other = tmp_path / "b.trec"
    other.write_text("q1 Q0 d2 1 5.0 b\n")
    before = tree(tmp_path)
    for extra in ([], ["--overwrite"]):
        result = invoke("search", "--fuse", run_file, "--fuse", other, "--out", run_file, *extra)
        assert_one_line_error(result, run_file, "is also an input")
    assert tree(tmp_path) == before


def test_mine_refuses_an_output_that_is_its_run(collection, run_file, tmp_path):
    before = tree(tmp_path)
    result = invoke("mine", "--train", collection, "--split", "test", "--run", run_file, "--out", run_file, "--overwrite")
    assert_one_line_error(result, run_file, "is also an input")
    assert tree(tmp_path) == before


def test_search_refuses_an_existing_output_unless_overwrite(run_file, tmp_path):
    out = tmp_path / "fused.trec"
    out.write_text("previous\n")
    before = tree(tmp_path)
    result = invoke("search", "--fuse", run_file, "--out", out)
    assert_one_line_error(result, out, "already exists", "--overwrite")
    assert tree(tmp_path) == before
    result = invoke("search", "--fuse", run_file, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.read_text() != "previous\n"


def test_search_refuses_a_directory_as_output(run_file, tmp_path):
    (tmp_path / "out").mkdir()
    result = invoke("search", "--fuse", run_file, "--out", tmp_path / "out", "--overwrite")
    assert_one_line_error(result, tmp_path / "out", "is a directory")


# --- embeddings and indexes ----------------------------------------------------------------------------------------

def write_embeddings(directory, count=4):
    vectors = np.random.default_rng(0).standard_normal((count, DIM)).astype(np.float32)
    meta = EmbeddingMeta(model="tiny", prompt_family="paper", pooling="last8", side="passage", dim=DIM,
                         max_length=64, normalize=True, count=count, source_sha256="abc")
    save_embeddings(directory, [f"d{row}" for row in range(count)], vectors, meta)
    return directory


def test_nan_vectors_are_refused_when_indexing(tmp_path):
    embeddings = write_embeddings(tmp_path / "emb")
    vectors = np.load(embeddings / EMBEDDINGS_FILE)
    vectors[2, 3] = np.nan
    np.save(embeddings / EMBEDDINGS_FILE, vectors)
    before = tree(tmp_path)
    result = invoke("index", embeddings, "--out", tmp_path / "index")
    assert_one_line_error(result, embeddings / EMBEDDINGS_FILE, "row 2 (id d2)", "NaN")
    assert tree(tmp_path) == before


def test_a_blank_line_in_the_docid_file_is_refused(tmp_path):
    assert invoke("index", write_embeddings(tmp_path / "emb"), "--out", tmp_path / "index").exit_code == 0
    docid = tmp_path / "index" / "docid"
    docid.write_text("d0\n\nd2\nd3\n")
    (tmp_path / "q.tsv").write_text("q1\tprotein\n")
    before = tree(tmp_path)
    result = invoke("search", "--index", tmp_path / "index", "--queries", tmp_path / "q.tsv",
                    "--out", tmp_path / "run.trec")
    assert_one_line_error(result, f"{docid}:2:", "empty id")
    assert tree(tmp_path) == before


def test_a_second_index_writer_is_refused_while_the_first_runs(tmp_path):
    from llara_cli.storage.locks import SIBLING_LOCK_TEMPLATE

    embeddings = write_embeddings(tmp_path / "emb")
    from tests.storage.test_locks import hold_lock_in_another_process

    holder = hold_lock_in_another_process("sibling", tmp_path / "index")
    try:
        before = tree(tmp_path)
        result = invoke("index", embeddings, "--out", tmp_path / "index")
        assert_one_line_error(result, tmp_path / "index", f"another llara process (pid {holder.pid},", exit_code=1)
        assert tree(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    result = invoke("index", embeddings, "--out", tmp_path / "index")  # the dead writer's lock is taken over
    assert result.exit_code == 0, result.output
    assert not (tmp_path / SIBLING_LOCK_TEMPLATE.format(name="index")).exists()


def test_encode_refuses_a_directory_that_is_not_an_llara_output(collection, tiny_model_dir, tmp_path):
    foreign = tmp_path / "pyserini-index"
    foreign.mkdir()
    (foreign / "docid").write_text("x\n")
    (foreign / "index").write_bytes(b"faiss")
    before = tree(tmp_path)
    for extra in ([], ["--overwrite"]):
        result = invoke("encode", collection, "--model", tiny_model_dir, "--out", foreign, *extra)
        assert_one_line_error(result, foreign, "not an llara embedding directory", "docid")
    assert tree(tmp_path) == before


def test_a_truncated_model_safetensors_is_named(collection, tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    before = tree(tmp_path)
    result = invoke("encode", collection, "--model", model, "--out", tmp_path / "emb")
    assert_one_line_error(result, weights, "not a readable safetensors file", exit_code=1)
    assert tree(tmp_path) == before


def test_a_truncated_chunk_on_resume_names_the_chunk(collection, tiny_model_dir, tmp_path):
    from llara_cli.encode.directory import CHUNKS_DIR, STATE_FILE

    out = tmp_path / "emb"
    assert invoke("encode", collection, "--model", tiny_model_dir, "--out", out, "--chunk-size", 2).exit_code == 0
    # rebuild the state of an interrupted run whose first chunk was cut short on disk
    meta = json.loads((out / "meta.json").read_text())
    vectors = np.load(out / EMBEDDINGS_FILE)
    for name in ("meta.json", EMBEDDINGS_FILE, "ids.txt"):
        (out / name).unlink()
    (out / CHUNKS_DIR).mkdir()
    for start in range(0, len(vectors), 2):
        np.save(out / CHUNKS_DIR / f"chunk-{start:012d}.npy", vectors[start:start + 2])
    chunk = out / CHUNKS_DIR / f"chunk-{0:012d}.npy"
    chunk.write_bytes(chunk.read_bytes()[:-10])
    state = {**meta, "chunk_size": 2, "source": str(collection / "corpus.jsonl")}
    state.pop("llara_version")
    (out / STATE_FILE).write_text(json.dumps(state))
    before = tree(tmp_path)
    result = invoke("encode", collection, "--model", tiny_model_dir, "--out", out, "--chunk-size", 2)
    assert_one_line_error(result, chunk, "delete it and rerun")
    assert tree(tmp_path) == before


# --- usage errors: click's own message naming the option, exit 2 --------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (["--bogus"], "--bogus"),
    (["search", "--bogus"], "--bogus"),
    (["search", "--fuse", "a.trec"], "--out"),
    (["search", "--fuse", "a.trec", "--out", "x", "--k", "0"], "--k"),
    (["search", "--bm25", "--out", "x", "--k", "10000000000"], "--k"),
    (["search", "--bm25", "--out", "x", "--k1", "nan"], "--k1"),
    (["search", "--bm25", "--out", "x", "--k1", "inf"], "--k1"),
    (["search", "--bm25", "--out", "x", "--b", "-0.1"], "--b"),
    (["encode", "c.jsonl", "--out", "x", "--max-length", "1"], "--max-length"),
    (["index", "--out", "x"], "EMBEDDING_DIRS"),
])
def test_usage_errors_name_the_option_and_exit_2(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and option.lower() in errors[0].lower(), result.stderr
    assert list(tmp_path.iterdir()) == []


# --- the write layer -------------------------------------------------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path):
    """A 64 KiB tmpfs (needs root: mount), unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_disk_says_no_space_left_and_names_the_directory(small_filesystem):
    from llara_cli.errors import LlaraError
    from llara_cli.storage.files import atomic_write

    target = small_filesystem / "chunk.npy"
    with pytest.raises(LlaraError, match=rf"^no space left on {small_filesystem} while writing chunk.npy"):
        with atomic_write(target, "wb") as handle:
            np.save(handle, np.zeros((64, 1024), dtype=np.float32), allow_pickle=False)  # 256 KiB
    assert list(small_filesystem.iterdir()) == []


def test_the_run_writer_refuses_ids_that_would_break_the_columns(tmp_path):
    from llara_cli.data.runs import write_run
    from llara_cli.errors import UsageError

    for results, culprit in (({"q 1": [("d1", 1.0)]}, "query id 'q 1'"), ({"q1": [("d\t1", 1.0)]}, "document id 'd\\t1'"),
                             ({"q1": [("", 1.0)]}, "document empty id")):
        with pytest.raises(UsageError, match=f"^cannot write a TREC run for query .*: {re.escape(culprit)}"):
            write_run(tmp_path / "run.trec", results)
    assert list(tmp_path.iterdir()) == []


def test_evaluate_never_plots_onto_a_run(collection, run_file, tmp_path):
    before = tree(tmp_path)
    result = invoke("evaluate", run_file, "--qrels", collection, "--plot", run_file)
    assert_one_line_error(result, run_file, "is also an input")
    assert tree(tmp_path) == before


def test_fusing_one_run_twice_is_refused(run_file, tmp_path):
    before = tree(tmp_path)
    result = invoke("search", "--fuse", run_file, "--fuse", tmp_path / "." / run_file.name, "--out", tmp_path / "f.trec")
    assert_one_line_error(result, "given more than once")
    assert tree(tmp_path) == before


def test_a_model_that_gives_nan_vectors_is_stopped_at_the_first_chunk(collection, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken-model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    result = invoke("encode", collection, "--model", broken, "--out", tmp_path / "emb", "--chunk-size", 1)
    assert_one_line_error(result, collection / "corpus.jsonl", "row 0 (id d1) holds NaN")
    assert not list((tmp_path / "emb").rglob("*.npy"))  # nothing saved, no merged set


def test_reruns_remove_what_killed_index_and_encode_runs_left(collection, tiny_model_dir, tmp_path):
    embeddings = write_embeddings(tmp_path / "emb")
    killed_build, killed_swap = tmp_path / ".index.k1ll3d.tmp", tmp_path / ".index.old.k1ll3d"
    for directory in (killed_build, killed_swap):
        (directory / "index").mkdir(parents=True)
    assert invoke("index", embeddings, "--out", tmp_path / "index").exit_code == 0
    assert not killed_build.exists() and not killed_swap.exists()
    out = tmp_path / "enc"
    (out / "chunks").mkdir(parents=True)
    leftovers = [out / ".embeddings.npy.k1ll3d.tmp", out / "chunks" / ".chunk-000000000000.npy.k1ll3d.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"partial")
    result = invoke("encode", collection, "--model", tiny_model_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert not any(leftover.exists() for leftover in leftovers)


def test_an_output_onto_a_file_read_from_an_input_directory_is_refused(collection, tmp_path):
    before = tree(tmp_path)
    result = invoke("search", "--bm25", "--corpus", collection, "--queries", collection,
                    "--out", collection / "corpus.jsonl", "--overwrite")
    assert_one_line_error(result, collection / "corpus.jsonl", "is also an input")
    result = invoke("evaluate", tmp_path / "collection" / "qrels" / "test.tsv", "--qrels", collection,
                    "--plot", collection / "qrels" / "test.tsv")
    assert_one_line_error(result, "is also an input")
    assert tree(tmp_path) == before
