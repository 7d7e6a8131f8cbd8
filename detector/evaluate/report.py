"""The evaluation as a terminal report and as one self-contained HTML page.

Both show the same table: per method, incidents detected per kind, overall recall,
median time to detect, false alerts per 1,000 account-days and PR-AUC, then each
incident's time to detect per method and the definitions behind the figures.
"""

from __future__ import annotations

import html as html_lib
from datetime import datetime, timedelta
from typing import Final

from detector.evaluate.evaluation import Evaluation

MAX_TIMELINES: Final = 30  # incident plots in the HTML page
MISSED: Final = "missed"


def duration(delta: timedelta | None) -> str:
    """A short human duration: ``45s``, ``4m 44s``, ``2h 05m``, ``1d 3h``; ``-`` for None."""
    if delta is None:
        return "-"
    seconds = round(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _when(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M}"


def _kinds(result: Evaluation) -> list[str]:
    return sorted(set(result.labels["kind"].to_list()))


def summary_rows(result: Evaluation) -> tuple[list[str], list[list[str]]]:
    """The main table: a header and one row per method (cells as text)."""
    kinds = _kinds(result)
    header = [
        "method",
        *kinds,
        "recall",
        "median TTD",
        "false alerts/1k acct-days",
        "PR-AUC",
        "flagged",
    ]
    rows = []
    for method in result.methods:
        m = method.metrics
        if m is None:
            rows.append([method.name, method.note, *[""] * (len(header) - 2)])
            continue
        per_kind = {r["kind"]: r for r in m.recall.iter_rows(named=True)}
        cells = [f"{per_kind[k]['detected']}/{per_kind[k]['incidents']}" for k in kinds]
        overall = per_kind["all"]["recall"]
        fa = m.false_alerts
        rows.append(
            [
                method.name,
                *cells,
                "-" if overall is None else f"{overall:.2f}",
                duration(m.median_ttd),
                "-" if fa.per_1000 is None else f"{fa.per_1000:.1f} ({fa.false_account_days})",
                "-" if m.pr_auc is None else f"{m.pr_auc:.3f}",
                f"{m.flagged_windows:,}",
            ]
        )
    return header, rows


def incident_rows(result: Evaluation) -> tuple[list[str], list[list[str]]]:
    """Time to detect per incident (rows) and measured method (columns)."""
    measured = [m for m in result.methods if m.metrics is not None]
    header = ["incident", "kind", "account", "start (UTC)", *[m.name for m in measured]]
    found = {
        m.name: {r["incident_id"]: r for r in m.metrics.detections.iter_rows(named=True)}
        for m in measured
        if m.metrics is not None
    }
    rows = []
    for label in result.labels.sort("start").iter_rows(named=True):
        cells = []
        for m in measured:
            hit = found[m.name][label["incident_id"]]
            cells.append(duration(hit["time_to_detect"]) if hit["detected"] else MISSED)
        rows.append(
            [label["incident_id"], label["kind"], label["account"], _when(label["start"]), *cells]
        )
    return header, rows


def preamble(result: Evaluation) -> list[str]:
    """What was evaluated, in sentences."""
    kinds = result.labels.group_by("kind").len().sort("kind")
    per_kind = ", ".join(f"{n} {k}" for k, n in kinds.iter_rows())
    lines = [
        f"Evaluated {result.windows:,} account-windows of {duration(result.window)} "
        f"({result.accounts} accounts) from {_when(result.period[0])} to {_when(result.period[1])} UTC "
        f"against {result.labels.height} labelled incident(s){f' ({per_kind})' if per_kind else ''}."
    ]
    if result.left_out:
        lines.append(
            f"{result.left_out} labelled incident(s) outside the evaluated period left out."
        )
    if result.training is not None:
        lines.append(
            f"Baselines fitted on {result.training_windows:,} account-windows from "
            f"{_when(result.training[0])} to {_when(result.training[1])} UTC."
        )
    lines.extend(f"Note: {n}." for n in result.notes)
    return lines


def definitions(result: Evaluation) -> list[str]:
    """How each figure is counted, for the reader of the table."""
    window = duration(result.window)
    return [
        f"recall: an incident is detected when a flagged window of its account overlaps [start, end + {window}]"
        f" (slow drips: [start, start + 24h]); per kind as detected/incidents.",
        "median TTD: time from an incident's start to the end of its first flagged window, over detected incidents.",
        "false alerts/1k acct-days: unlabelled account-days with a flagged window per 1,000 account-days "
        "with activity (their count in brackets); an incident's account-days from start to detection end are labelled.",
        f"PR-AUC: average precision over account-windows ({result.positives:,} positive); "
        "a window is positive when its account has an incident overlapping it. "
        "Threshold-free: every score is a threshold; each method's flagged windows rank first "
        "(trovewatch flags guardrail pulls and slow drips by rule, whatever its score).",
        "default thresholds: trovewatch's own flag; static: z >= k over the account's training windows; "
        "the other baselines: their training windows' 99.9th percentile score (trovewatch's calibration point).",
        "the learned baselines see raw per-window counts only: rows read, statements, objects, exports, failed.",
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns; a row whose second cell is a note runs on past the columns."""
    widths = [
        max([len(header[i]), *(len(r[i]) for r in rows if i == 0 or not _is_note(r))])
        for i in range(len(header))
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        if _is_note(r):
            lines.append(f"{r[0].ljust(widths[0])}  {r[1]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return lines


def _is_note(row: list[str]) -> bool:
    return len(row) > 2 and all(c == "" for c in row[2:])


def text(result: Evaluation) -> str:
    """The terminal report."""
    lines = [*preamble(result), ""]
    lines += _table(*summary_rows(result))
    if result.labels.height:
        lines += ["", "Time to detect per incident:"]
        lines += _table(*incident_rows(result))
    lines += ["", *(f"- {d}" for d in definitions(result))]
    return "\n".join(lines) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    esc = html_lib.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        if _is_note(r):
            body.append(
                f"<tr><td>{esc(r[0])}</td><td class=note colspan={len(header) - 1}>{esc(r[1])}</td></tr>"
            )
        else:
            cells = "".join(f"<td class={'miss' if c == MISSED else 'v'}>{esc(c)}</td>" for c in r)
            body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:90em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f3f3f3}td.miss{color:#b00000}td.note{color:#666;font-style:italic}
figure{margin:1.5em 0}svg{max-width:100%;height:auto}li{margin:.3em 0}
"""


def html(result: Evaluation) -> str:
    """The report as one HTML page with its plots inline (SVG): it opens offline."""
    from detector.evaluate import plots

    esc = html_lib.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>trovewatch evaluation</title><style>{STYLE}</style></head><body>",
        "<h1>trovewatch evaluation</h1>",
        *(f"<p>{esc(p)}</p>" for p in preamble(result)),
        _html_table(*summary_rows(result)),
    ]
    if result.labels.height:
        parts += ["<h2>Time to detect per incident</h2>", _html_table(*incident_rows(result))]
    parts += ["<ul>", *(f"<li>{esc(d)}</li>" for d in definitions(result)), "</ul>"]
    parts += ["<h2>Precision-recall</h2>", f"<figure>{plots.pr_curves(result)}</figure>"]
    parts += ["<h2>Alert volume per day</h2>", f"<figure>{plots.alerts_per_day(result)}</figure>"]
    found = result.methods[0].metrics
    if found is not None and found.detections.height:
        parts.append("<h2>Scores around each incident</h2>")
        shown = found.detections.sort("start").head(MAX_TIMELINES)
        for incident in shown.iter_rows(named=True):
            parts.append(f"<figure>{plots.incident_timeline(result, incident)}</figure>")
        if found.detections.height > MAX_TIMELINES:
            parts.append(
                f"<p>{found.detections.height - MAX_TIMELINES} more incidents not plotted.</p>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
