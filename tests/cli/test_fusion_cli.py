"""`llara search --fuse`: the robust default and the tuned fusion, with provenance beside the run."""
from __future__ import annotations

import json

from llara_cli.data.runs import write_run
from tests.cli.conftest import invoke
from tests.search.test_anchored_fusion import synthetic_runs


def test_search_tunes_the_fusion_weight_on_train_queries_and_records_it(tmp_path):
    train_bm25, train_dense, train_qrels = synthetic_runs("train", seed=11, dense_knows=True)
    test_bm25, test_dense, _ = synthetic_runs("test", seed=12, dense_knows=True)
    paths = {}
    for name, results in (("bm25", test_bm25), ("dense", test_dense), ("bm25-train", train_bm25),
                          ("dense-train", train_dense)):
        paths[name] = tmp_path / f"{name}.trec"
        write_run(paths[name], results)
    qrels = tmp_path / "train.qrels"
    qrels.write_text("".join(f"{qrel.query_id} 0 {qrel.doc_id} {qrel.relevance}\n" for qrel in train_qrels))
    out = tmp_path / "fused.trec"
    result = invoke("search", "--fuse", paths["bm25"], "--fuse", paths["dense"], "--method", "tuned",
                    "--tune-run", paths["bm25-train"], "--tune-run", paths["dense-train"], "--tune-qrels", qrels,
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert "fused 2 runs with tuned" in result.output
    provenance = json.loads((tmp_path / "fused.trec.json").read_text())
    assert provenance["method"] == "tuned" and provenance["dense_weight"] > 0

    default_out = tmp_path / "default.trec"
    result = invoke("search", "--fuse", paths["bm25"], "--fuse", paths["dense"], "--out", default_out)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "default.trec.json").read_text())["method"] == "robust"

    result = invoke("search", "--fuse", paths["bm25"], "--fuse", paths["dense"], "--method", "tuned",
                    "--out", tmp_path / "untuned.trec")
    assert result.exit_code == 2 and "needs the runs of the same systems" in result.stderr
    assert not (tmp_path / "untuned.trec").exists()


def test_search_json_reports_what_it_wrote_and_nothing_else_on_stdout(tmp_path):
    bm25, dense, _ = synthetic_runs("test", seed=12, dense_knows=True)
    write_run(tmp_path / "bm25.trec", bm25)
    write_run(tmp_path / "dense.trec", dense)
    out = tmp_path / "rrf.trec"
    result = invoke("search", "--fuse", tmp_path / "bm25.trec", "--fuse", tmp_path / "dense.trec", "--method", "rrf",
                    "--k", 7, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # the fused-runs line went to stderr
    assert "fused 2 runs" in result.stderr
    assert payload["schema_version"] == 1 and payload["mode"] == "fuse" and payload["run"] == str(out)
    assert payload["queries"] == len(bm25) and payload["max_hits_per_query"] == 7
    assert payload["scored_docs"] == len(out.read_text().splitlines())
    assert payload["provenance"] == str(tmp_path / "rrf.trec.json")
    assert payload["inputs"]["fuse"] == [str(tmp_path / "bm25.trec"), str(tmp_path / "dense.trec")]
