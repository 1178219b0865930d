"""`llara evaluate`: evaluate TREC runs against qrels with ir_measures, compare them, plot them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from llara_cli.cli.options import OverwriteOpt, QrelsOpt, QrelsSplitOpt
from llara_cli.data.collections import resolve_qrels
from llara_cli.data.qrels import read_qrels
from llara_cli.data.runs import read_run
from llara_cli.errors import UsageError
from llara_cli.evaluation import DEFAULT_MEASURES, evaluate_runs, plot_report, split_measure_names
from llara_cli.evaluation.plots import is_llara_plot
from llara_cli.storage.outputs import check_output_file, writing_output_file

if TYPE_CHECKING:
    from rich.table import Table

    from llara_cli.evaluation import EvaluationReport

NAME_SEPARATOR = ","
VALUE_FORMAT = "{:.4f}"
BETTER_MARKER = "▲"
WORSE_MARKER = "▼"
BASELINE_LABEL = " (baseline)"
UNJUDGED_COLUMN = "unjudged@10"
QUERIES_COLUMN = "queries"
NOT_AVAILABLE = "–"
UNLIMITED_WIDTH = 10_000  # measuring width for tables printed to a pipe or file


def run_names(paths: list[Path], names: str | None) -> list[str]:
    """``--names`` split on commas, or the file stems; names must be unique."""
    if names is None:
        chosen = [path.stem for path in paths]
    else:
        chosen = [name.strip() for name in names.split(NAME_SEPARATOR)]
        if len(chosen) != len(paths) or not all(chosen):
            raise UsageError(
                f"--names gives {len(chosen)} names for {len(paths)} runs; give one non-empty name per run"
            )
    duplicates = sorted({name for name in chosen if chosen.count(name) > 1})
    if duplicates:
        raise UsageError(f"several runs are named {', '.join(duplicates)}; tell them apart with --names a,b,...")
    return chosen


def pick_baseline(baseline: str | None, names: list[str], paths: list[Path]) -> str | None:
    """``--baseline`` as a run name or one of the run paths; default: the first run when there are several."""
    if baseline is None:
        return names[0] if len(names) > 1 else None
    if baseline in names:
        return baseline
    for name, path in zip(names, paths):
        if Path(baseline).expanduser().resolve() == path.expanduser().resolve():
            return name
    raise UsageError(f"--baseline {baseline!r} is neither a run name nor a run path; runs: {', '.join(names)}")


def _cell(report: EvaluationReport, name: str, measure: str) -> str:
    result = report.runs[name]
    text = VALUE_FORMAT.format(result.aggregates[measure])
    comparison = result.comparisons.get(measure)
    if comparison is not None and comparison.significant:
        text += BETTER_MARKER if comparison.delta > 0 else WORSE_MARKER
    return text


def report_table(report: EvaluationReport) -> Table:
    """One row per run, one column per measure; ▲/▼ mark significant differences from the baseline."""
    from rich import box
    from rich.table import Table

    labels = [name + (BASELINE_LABEL if name == report.baseline else "") for name in report.runs]
    table = Table(title=f"{report.judged_queries} judged queries", box=box.SIMPLE_HEAD)
    table.add_column("run", no_wrap=True, min_width=max(len(label) for label in labels))
    for measure in report.measures:
        table.add_column(measure, justify="right", no_wrap=True)
    table.add_column(QUERIES_COLUMN, justify="right", no_wrap=True)
    table.add_column(UNJUDGED_COLUMN, justify="right", no_wrap=True)
    for label, (name, result) in zip(labels, report.runs.items()):
        coverage = result.coverage
        unjudged = NOT_AVAILABLE if coverage.unjudged_at_10 is None else VALUE_FORMAT.format(coverage.unjudged_at_10)
        table.add_row(
            label,
            *(_cell(report, name, measure) for measure in report.measures),
            f"{coverage.evaluated_queries}/{coverage.judged_queries}",
            unjudged,
        )
    if report.baseline is not None and len(report.runs) > 1:
        correction = f", Bonferroni x{report.comparisons_in_family}" if report.bonferroni else ""
        table.caption = (
            f"{BETTER_MARKER}/{WORSE_MARKER}: significantly better/worse than {report.baseline} "
            f"(paired two-sided t-test, p < {report.alpha}{correction})"
        )
    return table


def print_table(table: Table) -> None:
    """Print on stdout; a pipe or file gets the table's natural width instead of wrapping at 80 columns."""
    console = Console(highlight=False)
    if not console.is_terminal:
        natural = console.measure(table, options=console.options.update_width(UNLIMITED_WIDTH)).maximum
        console = Console(highlight=False, width=max(console.width, natural))
    console.print(table)


def evaluate(
    runs: Annotated[
        list[Path],
        typer.Argument(help="TREC run files (qid Q0 docid rank score tag).", metavar="RUN", show_default=False),
    ],
    qrels: QrelsOpt,
    split: QrelsSplitOpt = "test",
    measures: Annotated[
        list[str] | None,
        typer.Option(
            "--measures",
            help="ir_measures names, repeated or comma-separated.  \\[default: nDCG@10,MRR@10,R@100,R@1000,MAP]",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Run to test the others against (name or path); default: the first run."),
    ] = None,
    bonferroni: Annotated[
        bool, typer.Option("--bonferroni", help="Multiply p-values by the number of comparisons (runs x measures).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON document on stdout instead of a table "
                           "(versioned schema: docs/evaluation.md; canonical measure names as keys).")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write recall@k curves and per-query nDCG@10 deltas to this PNG.")
    ] = None,
    names: Annotated[
        str | None, typer.Option("--names", help="Comma-separated run names, one per run; default: file stems.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Evaluate TREC runs against qrels with ir_measures, with paired t-tests against a baseline run.

    Judged queries a run lacks score 0; run queries without judgements are reported, not scored.
    Warnings (partial query overlap) go to stderr.

    Examples:

    [cyan]llara evaluate bm25.trec llara.trec --qrels cranfield --measures nDCG@10,R@100[/]

    [cyan]llara evaluate dense.trec --qrels msmarco --measures MRR@10 --json > scores.json[/]

    [cyan]llara evaluate a.trec b.trec --qrels data/scifact --baseline a --bonferroni --plot cmp.png[/]
    """
    if plot is not None:
        # a plot llara wrote is regenerated freely; any other file only with --overwrite; never a run
        check_output_file(plot, [*runs, Path(qrels)], overwrite=overwrite or is_llara_plot(plot))
    chosen_names = run_names(runs, names)
    baseline_name = pick_baseline(baseline, chosen_names, runs)
    measure_names = split_measure_names(measures) if measures else list(DEFAULT_MEASURES)
    qrels_file = resolve_qrels(qrels, split)
    judgements = read_qrels(qrels_file, split)
    scored = {name: read_run(path) for name, path in zip(chosen_names, runs)}
    report = evaluate_runs(judgements, scored, measure_names, baseline=baseline_name, bonferroni=bonferroni)

    stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    for warning in report.warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")
    if as_json:
        qrels_read = {"path": str(qrels_file), "given": str(qrels), "split": split, "judgements": len(judgements)}
        runs_read = {name: {"path": str(path), "scored_docs": len(scored[name]),
                            "queries": len({doc.query_id for doc in scored[name]})}
                     for name, path in zip(chosen_names, runs)}
        typer.echo(json.dumps(report.to_document(qrels=qrels_read, run_files=runs_read), indent=2))
    else:
        print_table(report_table(report))
    if plot is not None:
        with writing_output_file(plot):  # removes the temp file a killed plot of this output left
            written = plot_report(report, plot)
        stderr.print(f"wrote {escape(str(written))}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
