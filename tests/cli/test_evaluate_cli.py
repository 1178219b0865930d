from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llara_cli.cli.app import app

QRELS = "1 0 d1 2\n1 0 d2 1\n2 0 2 1\n2 0 d4 1\n3 0 d5 1\n"
RUNS = {
    "bm25": "1 Q0 d1 1 3.0 a\n1 Q0 d9 2 2.0 a\n2 Q0 2 1 5.0 a\n2 Q0 d7 2 4.0 a\n3 Q0 d8 1 1.0 a\n3 Q0 d5 2 0.5 a\n",
    "dense": "1 Q0 d9 1 3.0 b\n1 Q0 d1 2 2.0 b\n2 Q0 d7 1 1.0 b\n2 Q0 d4 2 0.5 b\n4 Q0 x 1 1.0 b\n",
}


@pytest.fixture()
def files(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(QRELS)
    runs = []
    for name, text in RUNS.items():
        runs.append(tmp_path / f"{name}.trec")
        runs[-1].write_text(text)
    return qrels, runs


def _invoke(*args):
    return CliRunner().invoke(app, ["evaluate", *map(str, args)])


def test_table_shows_runs_values_and_baseline(files):
    qrels, runs = files
    result = _invoke(*runs, "--qrels", qrels, "--measures", "MRR@10", "--measures", "R@100,MAP")
    assert result.exit_code == 0, result.output
    assert "bm25 (baseline)" in result.stdout
    assert "dense" in result.stdout
    assert "0.8333" in result.stdout  # MRR@10 of bm25: (1 + 1 + 1/2) / 3
    assert "R@100" in result.stdout and "MAP" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2  # dense lacks query 3, and query 4 is unjudged


def test_json_is_plain_json(files):
    qrels, runs = files
    result = _invoke(*runs, "--qrels", qrels, "--json", "--names", "a,b", "--baseline", "b", "--bonferroni")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["baseline"] == "b"
    assert payload["significance"]["comparisons_in_family"] == 5
    assert payload["runs"]["a"]["aggregates"]["RR@10"] == pytest.approx(2.5 / 3)  # canonical: MRR@10 is RR@10


def test_json_has_a_versioned_schema_canonical_keys_and_what_was_read(files):
    qrels, runs = files
    result = _invoke(*runs, "--qrels", qrels, "--json", "--measures", "MRR@10,ndcg@10,map")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["schema_version"] == 1
    assert payload["measures"] == ["RR@10", "nDCG@10", "AP"]
    assert payload["requested_measures"] == {"RR@10": "MRR@10", "nDCG@10": "ndcg@10", "AP": "map"}
    assert payload["qrels"]["path"] == str(qrels) and payload["qrels"]["judgements"] == 5
    assert payload["qrels"]["judged_queries"] == 3
    assert payload["runs"]["bm25"]["path"] == str(runs[0]) and payload["runs"]["bm25"]["scored_docs"] == 6
    assert payload["runs"]["dense"]["queries"] == 3
    assert set(payload["runs"]["bm25"]["aggregates"]) == {"RR@10", "nDCG@10", "AP"}
    assert set(payload["runs"]["dense"]["comparisons"]) == {"RR@10", "nDCG@10", "AP"}
    assert "trec_eval" in payload["tie_rule"]


def test_plot_writes_a_png(files, tmp_path):
    qrels, runs = files
    out = tmp_path / "plot.png"
    result = _invoke(*runs, "--qrels", qrels, "--plot", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("run_text", "extra", "message"),
    [
        ("1 Q0 d1 1 3.0\n", [], "expected 6 columns"),
        ("9 Q0 d1 1 3.0 x\n", [], "none of its 1 query ids appear in the qrels"),
        ("1 Q0 d1 1 3.0 x\n", ["--measures", "nDGC@10"], "not an ir_measures measure"),
        ("1 Q0 d1 1 3.0 x\n", ["--names", "a,b"], "--names gives 2 names for 1 runs"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, tmp_path, run_text, extra, message):
    qrels, _runs = files
    bad = tmp_path / "bad.trec"
    bad.write_text(run_text)
    result = _invoke(bad, "--qrels", qrels, *extra)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_qrels_name(files):
    _qrels, runs = files
    result = _invoke(runs[0], "--qrels", "no-such-collection")
    assert result.exit_code == 2
    assert "not a known collection name" in result.stderr


def test_help_has_an_example():
    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    assert "llara evaluate bm25.trec" in result.stdout
