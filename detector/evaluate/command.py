"""``trovewatch evaluate``: arguments, inputs, and the one-line errors (exit code 2).

Two ways in:

- ``--scores scores.ndjson``: a ``trovewatch score`` output is measured as it is; with
  ``LOG... --train-until T`` too, the baselines are fitted on the logs before ``T``.
- ``--model-dir DIR LOG... --train-until T``: the logs before ``T`` fit the baselines,
  the logs from ``--since`` (default ``T``) to ``--until`` are scored by the model and
  by every baseline.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from pydantic import ValidationError

from detector import features as F
from detector import formats, model, pipeline, settings
from detector import schema as S
from detector.arguments import add_server_settings, log_file_problem, told, utc_time
from detector.evaluate import evaluation, report
from detector.evaluate.inputs import EvaluateError, in_period, load_labels, load_scores
from detector.reader import NotALogError
from detector.rejects import Quarantine

EXIT_OK, EXIT_BAD_INPUT = 0, 2
PROG = "trovewatch"  # errors read as the rest of the command line's: "trovewatch: error: ..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``evaluate`` subcommand's arguments (no ``--debug``: its parser's maker adds it)."""
    parser.add_argument("logs", nargs="*", type=Path, metavar="LOG", help="audit logs (.gz too)")
    parser.add_argument(
        "--labels", type=Path, required=True, metavar="FILE",
        help="incidents CSV: incident_id,account,start,end,kind,description (ISO-8601 UTC)",
    )  # fmt: skip
    parser.add_argument(
        "--scores", type=Path, metavar="FILE", help="a `trovewatch score` NDJSON output"
    )
    parser.add_argument("--model-dir", type=Path, help="score the logs with this model")
    parser.add_argument(
        "--train-until", type=utc_time, metavar="TIME",
        help="the logs before this time train the baselines (ISO-8601, UTC unless an offset)",
    )  # fmt: skip
    parser.add_argument(
        "--since", type=utc_time, help="evaluate from this time (default: --train-until)"
    )
    parser.add_argument("--until", type=utc_time, help="evaluate up to this time")
    parser.add_argument(
        "--k", type=float, default=3.0,
        help="the static baseline flags rows read >= mean + k sd (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=float, help="trovewatch's flag threshold with --model-dir (0..1)"
    )
    parser.add_argument(
        "--html", type=Path, metavar="OUT.html",
        help="also write a report with plots, one file that opens offline",
    )  # fmt: skip
    parser.add_argument("--format", default="auto", choices=formats.CHOICES, help="log format")
    parser.add_argument("--mapping", type=Path, help="TOML mapping for generic NDJSON/CSV exports")
    add_server_settings(parser)
    parser.add_argument("--config", type=Path, help="settings file (TOML)")


def _check(args: argparse.Namespace) -> None:
    """Usage mistakes, before anything is read."""
    if args.scores is None and args.model_dir is None:
        raise EvaluateError("give --scores FILE, or --model-dir DIR with LOG... and --train-until")
    if args.scores is not None and args.model_dir is not None:
        raise EvaluateError("give either --scores or --model-dir, not both")
    if args.model_dir is not None and not args.logs:
        raise EvaluateError("--model-dir needs the logs to score: LOG...")
    if args.logs and args.train_until is None:
        raise EvaluateError(
            "with logs, give --train-until: the baselines train on the logs before it"
        )
    if args.logs and args.since is not None and args.since < args.train_until:
        raise EvaluateError(
            "--since is before --train-until: the baselines would be tested on their training data"
        )
    if args.since and args.until and args.until <= args.since:
        raise EvaluateError("--until must be after --since")
    for path in args.logs:
        if problem := log_file_problem(path):
            raise EvaluateError(problem)
    if args.html is not None and importlib.util.find_spec("matplotlib") is None:
        raise EvaluateError("--html needs matplotlib: uv sync --extra eval")


def _events(args: argparse.Namespace) -> pl.DataFrame:
    quarantine = Quarantine(None)
    events, summary = pipeline.read_events(
        args.logs,
        format_name=args.format,
        mapping=args.mapping,
        told=told(args),
        quarantine=quarantine,
        until=args.until,
    )
    print(summary.paragraph(), file=sys.stderr)
    return events


def _every(window: timedelta) -> str:
    return f"{int(window.total_seconds())}s"


def _window_of(scores: pl.DataFrame) -> timedelta:
    lengths = scores.select((pl.col("window_end") - pl.col(F.WINDOW)).mode().first())
    length = lengths.item()
    if not isinstance(length, timedelta) or length <= timedelta(0):
        raise EvaluateError("scores file: window_end must come after window_start")
    return length


def evaluate(args: argparse.Namespace) -> evaluation.Evaluation:
    """Read the inputs named by ``args`` and compare every method on them."""
    _check(args)
    labels = load_labels(args.labels)
    since = args.since or args.train_until
    conf = settings.load(args.config, threshold=args.threshold)
    trained = None if args.model_dir is None else model.load(args.model_dir)
    events = _events(args) if args.logs else None
    if trained is None:
        scored = load_scores(args.scores)
        if since is not None:
            scored = scored.filter(pl.col(F.WINDOW) >= since)
        if args.until is not None:
            scored = scored.filter(pl.col(F.WINDOW) < args.until)
        threshold = None
    else:
        assert events is not None
        threshold = conf.threshold
        # As `score --since` does: the events before it are the windows' history.
        start = pipeline.history_from(since, trained.horizons)
        read = events if start is None else events.filter(pl.col(S.TIME) >= start)
        scored = pipeline.score(read, trained, conf, since)
    if scored.is_empty():
        raise EvaluateError("no account-windows in the evaluated period")
    window = _window_of(scored) if trained is None else F.span(trained.horizons.base)
    train = evaluated = None
    if events is not None:
        # Two separate runs, as `score` sees the evaluated period: no window straddles the split.
        every = _every(window)
        before = events.filter(pl.col(S.TIME) < args.train_until).lazy()
        train = F.window_activity(before, every).collect()
        evaluated = F.window_activity(
            events.filter(pl.col(S.TIME) >= since).lazy(), every
        ).collect()
    first, last = scored[F.WINDOW].min(), scored["window_end"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    kept = in_period(labels, since or first, args.until or last)
    result = evaluation.compare(
        scored, kept, window, threshold=threshold, train=train, evaluated=evaluated,
        k=args.k, seed=conf.seed,
    )  # fmt: skip
    result.left_out = labels.height - kept.height
    return result


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``: the report on stdout, ``--html`` if asked; 0, or 2 on bad input."""
    try:
        result = evaluate(args)
        sys.stdout.write(report.text(result))
        if args.html is not None:
            args.html.write_text(report.html(result), encoding="utf-8")
            print(f"HTML report written to {args.html}", file=sys.stderr)
    except (
        EvaluateError,
        NotALogError,
        formats.MappingError,
        model.ModelError,
        FileNotFoundError,
        IsADirectoryError,
        PermissionError,
    ) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:
        if getattr(args, "debug", False):
            raise
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"{PROG}: error: setting {where}: {first['msg']}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK
