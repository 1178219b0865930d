"""quality.py joins the seeds of an earlier report only when they measure the same setting."""
from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks.quality import (
    HEADLINE,
    MODEL,
    StartingPoint,
    check_headline_seeds,
    earlier_curve,
    earlier_seeds,
    joined_ablation,
    markdown,
    summarise,
    system_name,
)

MACHINE = {"date": "2026-12-02", "cpu": {"model": "Some CPU", "native_bf16": True, "torch_capability": "AVX512"}}


def measures(value: float) -> dict:
    return {"aggregates": {"nDCG@10": value, "R@100": value}, "p_vs_bm25": {"nDCG@10": 0.5, "R@100": 0.5}}


def seed_result(seed: int, dense: float) -> dict:
    stage = {name: {"bm25": measures(0.5), "dense": measures(dense), "whitened": measures(dense)}
             for name in ("scifact", "cacm", "cranfield")}
    return {"arm": "headline", "seed": seed, "adapted": stage}


def write_report(path, seeds, headline=HEADLINE):
    path.write_text(json.dumps({"headline": dataclasses.asdict(headline), "machine": MACHINE, "seeds": seeds,
                                "stage_seconds": {"adapt-s1": 10.0}}))
    return path


def write_report_without(path, finetune_field):
    """A report of the headline setting written before ``finetune_field`` existed."""
    older = dataclasses.asdict(HEADLINE)
    del older["finetune"][finetune_field]
    path.write_text(json.dumps({"headline": older, "machine": MACHINE, "seeds": [seed_result(1, 0.2)]}))
    return path


def test_earlier_seeds_keep_the_date_and_cpu_they_were_measured_on(tmp_path):
    report = write_report(tmp_path / "quality.json", [seed_result(1, 0.2)])
    seeds, times = earlier_seeds(report, HEADLINE, [2, 3])
    assert [result["seed"] for result in seeds] == [1]
    assert seeds[0]["measured_on"] == {"date": "2026-12-02", "cpu": "Some CPU", "native_bf16": True,
                                       "torch_capability": "AVX512"}
    assert times == {"adapt-s1": 10.0}


def test_joined_seeds_give_a_spread_and_name_their_provenance(tmp_path):
    report = write_report(tmp_path / "quality.json", [seed_result(1, 0.2)])
    earlier, _ = earlier_seeds(report, HEADLINE, [2])
    later = {**seed_result(2, 0.4), "measured_on": {"date": "2026-12-03", "cpu": "Other CPU", "native_bf16": False,
                                                   "torch_capability": "AVX2"}}
    seeds = sorted(earlier + [later], key=lambda result: result["seed"])
    summary = summarise(seeds)
    dense = summary["adapted"]["scifact"]["dense"]["nDCG@10"]
    assert dense["values"] == [0.2, 0.4]
    assert dense["mean"] == pytest.approx(0.3)
    assert dense["std"] == pytest.approx(0.1414, abs=1e-4)
    table = markdown({"summary": summary, "seeds": seeds})
    assert "seed 1: 2026-12-02, Some CPU (native bf16); seed 2: 2026-12-03, Other CPU." in table
    assert "0.300 ± 0.141" in table


def test_a_report_of_another_setting_is_refused(tmp_path):
    other = dataclasses.replace(HEADLINE, adapt=dataclasses.replace(HEADLINE.adapt, steps=HEADLINE.adapt.steps + 1))
    report = write_report(tmp_path / "quality.json", [seed_result(1, 0.2)], headline=other)
    with pytest.raises(SystemExit, match="headline setting differs"):
        earlier_seeds(report, HEADLINE, [2])


def test_a_seed_measured_twice_is_refused(tmp_path):
    report = write_report(tmp_path / "quality.json", [seed_result(1, 0.2), seed_result(2, 0.3)])
    with pytest.raises(SystemExit, match=r"already holds seed\(s\) 2"):
        earlier_seeds(report, HEADLINE, [2, 3])


def test_a_file_that_is_not_a_report_is_refused_with_its_name(tmp_path):
    broken = tmp_path / "notes.json"
    broken.write_text("[1, 2")
    with pytest.raises(SystemExit, match="notes.json: not a quality.py report"):
        earlier_seeds(broken, HEADLINE, [2])


def test_a_report_written_before_lora_dropout_was_a_lever_joins_as_the_dropout_it_ran_at(tmp_path):
    report = write_report_without(tmp_path / "quality.json", "lora_dropout")
    seeds, _ = earlier_seeds(report, HEADLINE, [2])
    assert [result["seed"] for result in seeds] == [1]
    no_dropout = dataclasses.replace(HEADLINE, finetune=dataclasses.replace(HEADLINE.finetune, lora_dropout=0.0))
    with pytest.raises(SystemExit, match="headline setting differs"):
        earlier_seeds(report, no_dropout, [2])


def test_the_ablation_table_compares_each_arm_with_the_headline_at_its_own_seed():
    headline = [seed_result(1, 0.2), seed_result(2, 0.4)]
    for result in headline:
        result["adapted"]["model"] = f"adapt-s{result['seed']}"
        result["measured_on"] = {"date": "2026-12-03", "cpu": "Some CPU", "native_bf16": True}
    arms = [{**seed_result(seed, dense), "arm": "paper-family"} for seed, dense in ((1, 0.25), (2, 0.3))]
    for arm in arms:
        arm["adapted"]["model"] = f"paper-s{arm['seed']}"
    table = markdown({"summary": summarise(headline), "seeds": headline, "ablation": arms})
    assert "| paper-family | 1 | adapted | 0.250 (+0.050) | 0.250 (+0.050) | 0.250 (+0.050) |  |" in table
    assert "| paper-family | 2 | adapted | 0.300 (-0.100) | 0.300 (-0.100) | 0.300 (-0.100) |  |" in table


def test_cached_models_of_the_default_lora_dropout_keep_their_names():
    assert not HEADLINE.finetune.name("adapt").endswith("-d0.1")
    assert dataclasses.replace(HEADLINE.finetune, lora_dropout=0.0).name("adapt").endswith("-d0")


def test_full_finetuning_models_are_named_apart_from_lora_ones():
    full = dataclasses.replace(HEADLINE.finetune, lora=False, learning_rate=1e-5)
    assert full.name("adapt").endswith("-lr1e-05-p128-full")
    assert not HEADLINE.finetune.name("adapt").endswith("-full")


def test_a_report_written_before_full_finetuning_was_a_lever_joins_as_lora(tmp_path):
    report = write_report_without(tmp_path / "quality.json", "lora")
    seeds, _ = earlier_seeds(report, HEADLINE, [2])
    assert [result["seed"] for result in seeds] == [1]


def test_an_arm_measured_on_another_machine_shows_its_own_adaptation_and_where():
    headline = [seed_result(1, 0.2)]
    headline[0]["adapted"]["model"] = "adapt-s1"
    headline[0]["measured_on"] = {"date": "2026-12-02", "cpu": "Some CPU", "native_bf16": True}
    arm = {**seed_result(1, 0.25), "arm": "full-finetuning",
           "measured_on": {"date": "2026-12-03", "cpu": "Other CPU", "native_bf16": False}}
    arm["adapted"]["model"] = "adapt-s1"
    table = markdown({"summary": summarise(headline), "seeds": headline, "ablation": [arm]})
    assert "| full-finetuning | 1 | adapted | 0.250 (+0.050) | 0.250 (+0.050) | 0.250 (+0.050) |  |" in table
    assert "Measured elsewhere than their headline seed: full-finetuning at seed 1: 2026-12-03, Other CPU." in table


def test_arms_without_a_headline_seed_to_compare_with_are_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"quality.json: holds no headline seed 4 to compare"):
        check_headline_seeds(tmp_path / "quality.json", [seed_result(1, 0.2)], [1, 4])
    check_headline_seeds(tmp_path / "quality.json", [seed_result(1, 0.2)], [1])


def test_the_written_report_keeps_the_arms_of_the_report_it_joins(tmp_path):
    report = tmp_path / "quality.json"
    earlier_arms = [{**seed_result(seed, 0.3), "arm": "lora-dropout-0"} for seed in (2, 3)]
    report.write_text(json.dumps({"ablation": earlier_arms, "ablation_arms": [{"label": "lora-dropout-0"}]}))
    again = {**seed_result(3, 0.35), "arm": "lora-dropout-0"}
    new = {**seed_result(1, 0.4), "arm": "full-finetuning"}
    ablation, arms = joined_ablation(report, [again, new], [{"label": "lora-dropout-0"}, {"label": "full-finetuning"}])
    assert [(entry["arm"], entry["seed"]) for entry in ablation] == [
        ("lora-dropout-0", 2), ("lora-dropout-0", 3), ("full-finetuning", 1)]
    assert ablation[1] is again
    assert [arm["label"] for arm in arms] == ["lora-dropout-0", "full-finetuning"]
    assert joined_ablation(None, [new], []) == ([new], [])


def test_an_arm_whose_adaptation_was_not_evaluated_shows_its_finetuning_and_says_so():
    headline = [seed_result(1, 0.2)]
    headline[0]["adapted"]["model"] = "adapt-s1"
    headline[0]["adapted+ft"] = {**seed_result(1, 0.5)["adapted"], "model": "adapt-s1+ft"}
    for name in ("scifact", "cacm", "cranfield"):
        headline[0]["adapted+ft"][name].update(tuned=measures(0.6), robust=measures(0.6))
    headline[0]["measured_on"] = {"date": "2026-12-02", "cpu": "Some CPU", "native_bf16": True}
    arm = {"arm": "full-finetuning", "seed": 1, "adapted": {"model": "adapt-s1"},
           "adapted+ft": {**seed_result(1, 0.55)["adapted"], "model": "adapt-s1+ft-full"},
           "measured_on": {"date": "2026-12-03", "cpu": "Other CPU", "native_bf16": False}}
    table = markdown({"summary": summarise(headline), "seeds": headline, "ablation": [arm]})
    assert "| full-finetuning | 1 | adapted+ft | 0.550 (+0.050) | 0.550 (+0.050) | 0.550 (+0.050) |  |" in table
    assert "| full-finetuning | 1 | adapted |" not in table
    assert "full-finetuning at seed 1: 2026-12-03, Other CPU (its adaptation, trained again there, not evaluated)." in table


def test_the_curve_starts_from_the_raw_model_cached_apart_from_its_plain_encoding():
    start = StartingPoint(HEADLINE.adapt.family, HEADLINE.adapt.max_length)
    assert system_name(start) == f"{MODEL}-flagembedding-p128"
    assert system_name(start) != system_name(MODEL)  # the plain model encodes in the paper family at 512 tokens


def test_a_run_without_a_curve_keeps_the_curve_of_the_report_it_joins(tmp_path):
    curve = {"seed": 1, "measured_on": {"date": "2026-12-04", "cpu": "Other CPU", "native_bf16": False},
             "points": [{"step": 0, "scifact": 0.05, "cacm": 0.04, "cranfield": 0.03},
                        {"step": 200, "scifact": 0.3, "cacm": 0.15, "cranfield": 0.15}]}
    report = tmp_path / "quality.json"
    report.write_text(json.dumps({"curve": curve}))
    assert earlier_curve(report) == curve
    assert earlier_curve(None) is None
    report.write_text(json.dumps({"curve": None}))
    assert earlier_curve(report) is None
    seeds = [{**seed_result(1, 0.2), "measured_on": curve["measured_on"]}]
    table = markdown({"summary": summarise(seeds), "seeds": seeds, "curve": curve})
    assert ("seed 1; step 0: the raw model in the headline's prompt family and passage length), measured 2026-12-04, "
            "Other CPU:") in table
    assert "| 200 | 0.300 | 0.150 | 0.150 |" in table
