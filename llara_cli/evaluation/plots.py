"""A PNG summary of a report: recall@k curves per run, and per-query deltas against the baseline run."""
from __future__ import annotations

import logging
from pathlib import Path

from llara_cli.evaluation.report import EvaluationReport
from llara_cli.storage.files import atomic_write

logger = logging.getLogger(__name__)

DELTA_MEASURE = "nDCG@10"
FIGURE_WIDTH_INCHES = 8.0
PANEL_HEIGHT_INCHES = 4.0
DPI = 120
GAIN_COLOUR = "tab:green"
LOSS_COLOUR = "tab:red"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_SOFTWARE = "llara evaluate"  # the PNG's Software text: what marks a plot llara may regenerate
HEADER_BYTES = 4096  # matplotlib writes its text chunks before the image data


def delta_measure(report: EvaluationReport) -> str:
    """The measure of the per-query delta chart: nDCG@10 when evaluated, else the first measure."""
    return DELTA_MEASURE if DELTA_MEASURE in report.measures else report.measures[0]


def _plot_recall(axes, report: EvaluationReport) -> None:
    for name, result in report.runs.items():
        cutoffs = list(result.recall_curve)
        label = f"{name} (baseline)" if name == report.baseline else name
        axes.plot(cutoffs, [result.recall_curve[cutoff] for cutoff in cutoffs], marker="o", markersize=3, label=label)
    axes.set_xscale("log")
    axes.set_xlabel("cutoff k (log scale)")
    axes.set_ylabel("R@k")
    axes.set_ylim(0.0, 1.0)
    axes.set_title(f"Recall@k over {report.judged_queries} judged queries")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")


def _plot_deltas(axes, report: EvaluationReport, name: str, measure: str) -> None:
    values = report.runs[name].per_query[measure]
    baseline = report.runs[report.baseline].per_query[measure]
    deltas = sorted((values[query_id] - baseline[query_id] for query_id in baseline), reverse=True)
    wins = sum(delta > 0 for delta in deltas)
    losses = sum(delta < 0 for delta in deltas)
    colours = [GAIN_COLOUR if delta >= 0 else LOSS_COLOUR for delta in deltas]
    axes.bar(range(len(deltas)), deltas, width=1.0, color=colours)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xlabel("judged queries, sorted by delta")
    axes.set_ylabel(f"{measure} delta")
    axes.set_title(
        f"{measure}: {name} − {report.baseline} per query "
        f"({wins} better, {losses} worse, {len(deltas) - wins - losses} equal)"
    )


def plot_report(report: EvaluationReport, out_png: str | Path) -> Path:
    """Write the recall@k curves and, with a baseline, one sorted per-query delta chart per compared run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    compared = [name for name in report.runs if report.baseline is not None and name != report.baseline]
    measure = delta_measure(report)
    figure = Figure(figsize=(FIGURE_WIDTH_INCHES, PANEL_HEIGHT_INCHES * (1 + len(compared))), dpi=DPI)
    FigureCanvasAgg(figure)
    panels = figure.subplots(1 + len(compared), 1, squeeze=False)[:, 0]
    _plot_recall(panels[0], report)
    for axes, name in zip(panels[1:], compared):
        _plot_deltas(axes, report, name, measure)
    figure.tight_layout()
    out_png = Path(out_png)
    with atomic_write(out_png, "wb") as handle:
        figure.savefig(handle, format="png", metadata={"Software": PLOT_SOFTWARE})
    logger.info("wrote %s", out_png)
    return out_png


def is_llara_plot(path: str | Path) -> bool:
    """Whether ``path`` is a regular file holding a PNG that ``llara evaluate --plot`` wrote."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            header = handle.read(HEADER_BYTES)
    except OSError:
        return False
    return header.startswith(PNG_SIGNATURE) and b"Software\x00" + PLOT_SOFTWARE.encode() in header
