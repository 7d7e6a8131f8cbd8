"""The HTML report's figures, as inline SVG text (matplotlib, from the ``eval`` extra).

Each function returns one ``<svg>...</svg>`` string: the page needs no other file.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from detector.evaluate.evaluation import Evaluation, Method
from detector.features import ACCOUNT, WINDOW

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARGIN: Final = timedelta(hours=3)  # shown before and after an incident's detection interval
COLOURS: Final = ("#1b6ac9", "#d1495b", "#edae49", "#8d6a9f", "#66a182", "#00798c")


def _figure(width: float, height: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig, [row[0] for row in axes]


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    # No RDF metadata block (date, creator): the page stays the same for the same figures.
    fig.savefig(
        buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None}
    )
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _measured(result: Evaluation) -> list[tuple[int, Method]]:
    return [(i, m) for i, m in enumerate(result.methods) if m.metrics is not None]


def pr_curves(result: Evaluation) -> str:
    """Precision against recall over account-windows, one line per method."""
    fig, (ax,) = _figure(7, 5.5)
    for i, method in _measured(result):
        assert method.metrics is not None
        curve = method.metrics.curve
        if curve.is_empty():
            continue
        auc = method.metrics.pr_auc or 0.0
        recall = [0.0, *curve["recall"].to_list()]
        precision = [curve["precision"][0], *curve["precision"].to_list()]
        ax.step(
            recall, precision, where="pre", color=COLOURS[i % len(COLOURS)],
            label=f"{method.name} (PR-AUC {auc:.3f})",
        )  # fmt: skip
    ax.set(xlabel="recall (account-windows)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.05))
    ax.set_title("Precision-recall over account-windows")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return _svg(fig)


def alerts_per_day(result: Evaluation) -> str:
    """Flagged windows per day, one group of bars per day, one bar per method."""
    measured = _measured(result)
    fig, (ax,) = _figure(max(7.0, 0.6 * _days(result)), 4)
    width = 0.8 / max(len(measured), 1)
    for slot, (i, method) in enumerate(measured):
        assert method.metrics is not None
        per_day = method.metrics.per_day
        xs = [d.toordinal() + (slot - (len(measured) - 1) / 2) * width for d in per_day["day"]]
        ax.bar(
            xs, per_day["flagged_windows"].to_list(), width=width,
            color=COLOURS[i % len(COLOURS)], label=method.name,
        )  # fmt: skip
    days = sorted({d for _, m in measured if m.metrics for d in m.metrics.per_day["day"]})
    ax.set_xticks([d.toordinal() for d in days], [d.strftime("%m-%d") for d in days])
    ax.set(ylabel="flagged windows", xlabel="day (UTC)")
    ax.set_title("Alert volume per day, at each method's default threshold")
    ax.legend(fontsize="small")
    return _svg(fig)


def _days(result: Evaluation) -> int:
    return max(1, (result.period[1] - result.period[0]).days + 1)


def incident_timeline(result: Evaluation, incident: dict[str, Any]) -> str:
    """Each method's score of the incident's account around it, one panel per method:
    flagged windows in red, the method's default threshold dashed, the incident shaded."""
    measured = _measured(result)
    fig, axes = _figure(8, 0.4 + 1.3 * len(measured), rows=len(measured))
    start, end, until = incident["start"], incident["end"], incident["until"]
    lo, hi = start - MARGIN, until + MARGIN
    for ax, (i, method) in zip(axes, measured, strict=True):
        assert method.scored is not None
        own = method.scored.filter(
            pl.col(ACCOUNT) == incident[ACCOUNT], pl.col(WINDOW) >= lo, pl.col(WINDOW) <= hi
        ).filter(pl.col("score").is_finite())
        ax.axvspan(start, max(end, start + result.window), color="#bbbbbb", alpha=0.5)
        ax.plot(
            own[WINDOW].to_list(),
            own["score"].to_list(),
            ".-",
            color=COLOURS[i % len(COLOURS)],
            lw=0.8,
        )
        hits = own.filter(pl.col("flagged"))
        ax.plot(hits[WINDOW].to_list(), hits["score"].to_list(), "o", color="#d00000", ms=5)
        if method.threshold is not None:
            ax.axhline(method.threshold, color="#555555", ls="--", lw=0.8)
        ax.set_ylabel(method.name, rotation=0, ha="right", va="center", fontsize="small")
        ax.set_xlim(lo, hi)
    axes[0].set_title(
        f"{incident['incident_id']} {incident['kind']} by {incident[ACCOUNT]}: score per window (UTC)"
    )
    return _svg(fig)
