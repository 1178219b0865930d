from __future__ import annotations

import pytest

from llara_cli.data.runs import group_run, read_run
from llara_cli.errors import UsageError
from llara_cli.search.fusion import reciprocal_rank_fusion, weighted_fusion
from llara_cli.search.run_fusion import fuse_run_files

RUN_1 = {"q1": [("a", 3.0), ("b", 2.0), ("c", 1.0)], "q2": [("x", 1.0)]}
RUN_2 = {"q1": [("b", 10.0), ("d", 5.0), ("a", 0.0)]}


def test_rrf_equals_hand_computed_scores():
    fused = reciprocal_rank_fusion([RUN_1, RUN_2], k=60)
    scores = dict(fused["q1"])
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["c"] == pytest.approx(1 / 63)
    assert scores["d"] == pytest.approx(1 / 62)
    assert [doc_id for doc_id, _ in fused["q1"]] == ["b", "a", "d", "c"]
    assert fused["q2"] == [("x", pytest.approx(1 / 61))]


def test_rrf_depth_limits_input_and_output():
    fused = reciprocal_rank_fusion([RUN_1, RUN_2], k=60, depth=2)
    # c (rank 3 of run 1) and a (rank 3 of run 2) fall outside depth 2; d is cut from the output
    assert fused["q1"] == [("b", pytest.approx(1 / 62 + 1 / 61)), ("a", pytest.approx(1 / 61))]


def test_rrf_ties_broken_by_doc_id():
    fused = reciprocal_rank_fusion([{"q": [("b", 1.0)]}, {"q": [("a", 1.0)]}])
    assert [doc_id for doc_id, _ in fused["q"]] == ["a", "b"]


def test_weighted_fusion_min_max():
    fused = weighted_fusion([RUN_1, RUN_2], weights=[0.75, 0.25])
    scores = dict(fused["q1"])
    # run 1: a 1, b 0.5, c 0; run 2: b 1, d 0.5, a 0
    assert scores["a"] == pytest.approx(0.75 * 1.0 + 0.25 * 0.0)
    assert scores["b"] == pytest.approx(0.75 * 0.5 + 0.25 * 1.0)
    assert scores["c"] == pytest.approx(0.0)
    assert scores["d"] == pytest.approx(0.25 * 0.5)
    # q2 has one document in run 1 only: constant scores normalise to 1.0, missing from run 2 adds 0
    assert dict(fused["q2"]) == {"x": pytest.approx(0.75)}


def test_weighted_fusion_default_equal_weights_and_bad_weights():
    assert dict(weighted_fusion([RUN_1, RUN_2])["q1"])["b"] == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    with pytest.raises(UsageError, match="2 fusion weights for 1 runs"):
        weighted_fusion([RUN_1], weights=[1.0, 2.0])
    with pytest.raises(UsageError, match="at least one run"):
        reciprocal_rank_fusion([])


def test_fuse_run_files_writes_a_trec_run(tmp_path):
    paths = []
    for index, run in enumerate((RUN_1, RUN_2)):
        path = tmp_path / f"run{index}.trec"
        path.write_text("".join(
            f"{query_id} Q0 {doc_id} {rank} {score} t\n"
            for query_id, scored in run.items() for rank, (doc_id, score) in enumerate(scored, start=1)
        ))
        paths.append(path)
    out = tmp_path / "fused.trec"
    fused = fuse_run_files(paths, "rrf", out)
    assert group_run(read_run(out))["q1"] == [(doc_id, pytest.approx(score, abs=1e-6)) for doc_id, score in fused["q1"]]
    assert out.read_text().splitlines()[0].split()[-1] == "llara-rrf"
    with pytest.raises(UsageError, match="unknown fusion method 'max'"):
        fuse_run_files(paths, "max", out)
