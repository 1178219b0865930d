from __future__ import annotations

from llara_cli.data.qrels import Qrel
from llara_cli.data.runs import ScoredDoc
from llara_cli.evaluation import evaluate_runs, plot_report

PNG_MAGIC = b"\x89PNG"
QRELS = [Qrel("1", "d1", 1), Qrel("2", "d2", 1), Qrel("3", "d3", 1)]
RUNS = {
    "a": [ScoredDoc("1", "d1", 2.0), ScoredDoc("1", "d2", 1.0), ScoredDoc("2", "d1", 1.0), ScoredDoc("3", "d3", 1.0)],
    "b": [ScoredDoc("1", "d2", 2.0), ScoredDoc("1", "d1", 1.0), ScoredDoc("2", "d2", 1.0)],
}


def test_plot_with_baseline_writes_a_png(tmp_path):
    report = evaluate_runs(QRELS, RUNS, ["nDCG@10", "R@100"], baseline="a")
    out = plot_report(report, tmp_path / "sub" / "plot.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert [path.name for path in out.parent.iterdir()] == ["plot.png"]  # no temp file left


def test_plot_without_baseline_and_without_ndcg(tmp_path):
    report = evaluate_runs(QRELS, {"a": RUNS["a"]}, ["MAP"])
    assert plot_report(report, tmp_path / "plot.png").read_bytes().startswith(PNG_MAGIC)
