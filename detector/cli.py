"""``trovewatch``: the command line. Parses arguments and calls the pipeline; no logic.

Exit codes: 0 success, 2 bad input or usage, 74 storage failed (EXIT_IO), 1 internal error.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, NoReturn

from pydantic import ValidationError

from detector import evaluate, formats, model, pipeline, report, settings, simulate
from detector.arguments import add_server_settings, log_file_problem, told, utc_time
from detector.reader import NotALogError
from detector.rejects import Quarantine, QuarantineError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"
# Served when `serve` is given nothing to follow: one of the three identical sample outputs.
SAMPLE_LOG = DEFAULT_MODEL.parent.parent / "sample_logs" / "postgresql.json.gz"
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
SHORT_TRAINING: Final = timedelta(days=7)  # a week: every weekday seen once
STDIN: Final = Path("-")  # a LOG of - is standard input
EXIT_IO: Final = 74  # sysexits' EX_IOERR: the machine, not the input nor trovewatch


class UsageError(Exception):
    """Bad arguments or input: reported in one line, exit code 2."""


class StorageError(Exception):
    """Storage that cannot be used, none of the user's input nor a bug (a damaged state
    database): reported in one line, exit code :data:`EXIT_IO`."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line (and exit code 2) instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"trovewatch: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trovewatch",
        description="Flag bulk data exfiltration in database audit logs, per account.",
    )
    debug_help = "show tracebacks on errors"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "logs",
            nargs="+",
            type=Path,
            metavar="LOG",
            help="log files (.gz is read directly; - is standard input)",
        )
        p.add_argument(
            "--format",
            default="auto",
            choices=formats.CHOICES,
            help="input format (default: detect)",
        )
        p.add_argument("--mapping", type=Path, help="TOML mapping for generic NDJSON/CSV exports")
        add_server_settings(p)
        p.add_argument("--config", type=Path, help="settings file (TOML)")
        p.add_argument(
            "--since",
            type=utc_time,
            help="only events at or after this time (ISO-8601, UTC unless an offset is given;"
            " score reads the days before it as history for its sums)",
        )
        p.add_argument("--until", type=utc_time, help="only events before this time")
        p.add_argument(
            "--quarantine",
            type=Path,
            default=Path("trovewatch-quarantine.ndjson"),
            help="where rejected lines go, with file, line number and reason (default: %(default)s)",
        )

    train = sub.add_parser("train", help="learn per-account profiles and fit the model")
    common(train)
    train.add_argument(
        "--model-dir", type=Path, required=True, help="directory to write the model to"
    )
    train.add_argument("--window", help="base window, e.g. 5m (default from settings)")

    score = sub.add_parser("score", help="score every account-window; NDJSON out")
    common(score)
    score.add_argument(
        "--model-dir", type=Path, default=DEFAULT_MODEL, help="model to use (default: bundled)"
    )
    score.add_argument("--out", type=Path, help="output file (default: stdout)")
    score.add_argument(
        "--threshold", type=float, help="flag threshold, 0..1 (default from settings)"
    )
    serve = sub.add_parser(
        "serve",
        help="follow audit logs as they are written, score continuously, serve the API",
        description="Run the sidecar: follow logs, score each account-window as it closes, "
        "and serve scores, alerts and metrics over HTTP. With no arguments, the bundled "
        "sample logs are served with the bundled model on 127.0.0.1:8000.",
    )
    serve.add_argument("--model-dir", type=Path, help="model to use (default: bundled)")
    serve.add_argument(
        "--follow",
        nargs="+",
        metavar="GLOB",
        help="log files to follow (quote globs; '-' is stdin; default: settings, else the "
        "bundled sample log)",
    )
    serve.add_argument("--format", choices=formats.CHOICES[:-1], help="format (default: detect)")
    add_server_settings(serve)
    serve.add_argument("--state-dir", type=Path, help="checkpoints, results and the API token")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--config", type=Path, help="settings file (TOML)")
    # Log files named as for score: refused with the option to use (see run_serve).
    serve.add_argument("stray", nargs="*", metavar="", help=argparse.SUPPRESS)
    successor = sub.add_parser(
        "retrain",
        help="train a successor of a served model on its recent logs, never on its alerts",
        description="What serve does every retrain_every: train on the last retrain_period "
        "of LOG... (event time, ending at --until) except the windows serve flagged or "
        "scored high and nobody judged a false positive, hold each account's learned "
        "volume to guardrail_factor per period, and publish the model in STATE_DIR/models "
        "(a running serve goes on with its model: restart it to use this one).",
    )
    successor.add_argument(
        "logs", nargs="+", type=Path, metavar="LOG", help="log files (.gz is read directly)"
    )
    successor.add_argument("--model-dir", type=Path, required=True, help="the model in use")
    successor.add_argument("--state-dir", type=Path, required=True, help="serve's state directory")
    successor.add_argument(
        "--format", default="auto", choices=formats.CHOICES[:-1], help="(default: detect)"
    )
    add_server_settings(successor)
    successor.add_argument("--config", type=Path, help="settings file (TOML)")
    successor.add_argument(
        "--until", type=utc_time, help="end of the period learned from (default: now)"
    )
    report = sub.add_parser(
        "report", help="print the flagged windows of a score output, with reasons"
    )
    report.add_argument("scores", type=Path, help="NDJSON written by `trovewatch score`")
    evaluation = sub.add_parser(
        "evaluate", help="detection quality on labelled incidents, beside baselines"
    )
    evaluate.add_arguments(evaluation)
    simulation = sub.add_parser(
        "simulate", help="write a simulated organisation's pgAudit log with labelled incidents"
    )
    simulate.add_arguments(simulation)
    for command in sub.choices.values():  # `trovewatch score --debug ...` works too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help
        )
    return parser


@contextmanager
def _progress(steps: int) -> Iterator[Callable[[str], None]]:
    """A progress bar over ``steps`` named steps on a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        yield lambda stage: None
        return
    from tqdm import tqdm

    with tqdm(
        total=steps, file=sys.stderr, leave=False, bar_format="{l_bar}{bar}| {n}/{total}"
    ) as bar:
        started = False

        def step(stage: str) -> None:
            nonlocal started
            if started:
                bar.update()
            started = True
            bar.set_description(stage)

        yield step


def _check_files(paths: list[Path]) -> None:
    for path in paths:
        if path != STDIN and (problem := log_file_problem(path)):
            raise UsageError(problem)
    if paths.count(STDIN) > 1:
        raise UsageError("- (standard input) is given twice")


@contextmanager
def _stdin_spooled(paths: list[Path]) -> Iterator[list[Path]]:
    """``paths``, with ``-`` (standard input: ``zcat log.gz | trovewatch score -``)
    copied to a temporary file named ``stdin``, then read like any log: detection and
    the readers read a file's head, then its chunks. The copy goes when the command ends."""
    if STDIN not in paths:
        yield paths
        return
    with tempfile.TemporaryDirectory(prefix="trovewatch-") as tmp:
        spooled = Path(tmp) / "stdin"
        with spooled.open("wb") as fh:
            shutil.copyfileobj(sys.stdin.buffer, fh, 1 << 20)
        yield [spooled if path == STDIN else path for path in paths]


def _check_period(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise UsageError(
            f"--since {since:%Y-%m-%d %H:%M:%S} UTC is not before --until "
            f"{until:%Y-%m-%d %H:%M:%S} UTC: no event can be in that period"
        )


def _log_options(args: argparse.Namespace) -> pipeline.LogOptions:
    """How ``train`` and ``score`` read their logs: --format, --mapping,
    --log-line-prefix, --mariadb-timezone, --postgres-timezone, --since and --until."""
    return pipeline.LogOptions(
        format_name=args.format,
        mapping=args.mapping,
        told=told(args),
        since=args.since,
        until=args.until,
    )


def _report(summary: pipeline.Summary, quarantine: Quarantine) -> None:
    text = summary.paragraph()
    if quarantine.total:
        text += f" Rejected lines are in {quarantine.path}."
    print(text, file=sys.stderr)


def run_train(args: argparse.Namespace) -> int:
    conf = settings.load(args.config, window=args.window)
    _check_period(args.since, args.until)
    _check_files(args.logs)
    if args.model_dir.exists() and not args.model_dir.is_dir():  # found before, not after, training
        raise UsageError(f"--model-dir {args.model_dir}: exists and is not a directory")
    quarantine = Quarantine(args.quarantine)
    with _progress(len(args.logs) + 2) as step, _stdin_spooled(args.logs) as logs:
        try:  # PostgreSQL logs streamed: memory follows the account-windows
            period, summary = pipeline.read_period(
                logs, conf.horizon_spec.base, quarantine, on_file=step, **_log_options(args)
            )
        finally:
            quarantine.close()
        if period.partials.is_empty():
            _report(summary, quarantine)
            raise UsageError("no audit events to train on")
        trained = pipeline.train_period(period, conf, name=args.model_dir.name, on_stage=step)
        manifest = model.save(trained, args.model_dir)
    _report(summary, quarantine)
    print(
        f"Trained on {manifest.training['accounts']} accounts, {manifest.training['fit_windows']:,} "
        f"account-windows of {conf.window}; model written to {args.model_dir}.",
        file=sys.stderr,
    )
    if period.start is not None and period.end is not None:
        covered = period.end - period.start
        if covered < SHORT_TRAINING:
            print(
                f"trovewatch: warning: the logs cover {covered.total_seconds() / 86_400:.1f} days: "
                "each account's largest day and usual weekdays are learned from at least a "
                "week of logs (two recommended); expect false alerts on ordinary days",
                file=sys.stderr,
            )
    return EXIT_OK


def run_score(args: argparse.Namespace) -> int:
    conf = settings.load(args.config, threshold=args.threshold)
    _check_period(args.since, args.until)
    _check_files(args.logs)
    quarantine = Quarantine(args.quarantine)
    try:
        with _stdin_spooled(args.logs) as logs:
            summary = pipeline.score_logs_to(
                args.out, logs, args.model_dir, conf, quarantine, **_log_options(args)
            )
    finally:
        quarantine.close()
    _report(summary, quarantine)
    if not sum(summary.events.values()) and not summary.context and summary.rejected:
        # Nothing in the logs was understood: a wrong --format or --log-line-prefix,
        # or not audit logs at all. An empty score output is not a result.
        raise UsageError(
            "every line was rejected, none read as an event; check --format and --log-line-prefix"
        )
    return EXIT_OK


def run_report(args: argparse.Namespace) -> int:
    if not args.scores.is_file():
        raise UsageError(f"{args.scores}: no such file")
    try:
        sys.stdout.write(report.alerts_text(args.scores))
    except report.NotScoresError as exc:
        raise UsageError(f"{args.scores}: not a score output ({exc})") from exc
    return EXIT_OK


def run_retrain(args: argparse.Namespace) -> int:
    from detector.live.retraining import Retrainer, resume
    from detector.live.store import DB_FILE, SqliteStore, StoreDamaged, StoreError

    _check_files(args.logs)
    if not (args.state_dir / DB_FILE).is_file():
        raise UsageError(f"{args.state_dir}: no serve state here ({DB_FILE})")
    conf = settings.load(
        args.config,
        state_dir=args.state_dir,
        format=args.format,
        log_line_prefix=args.log_line_prefix,
        mariadb_timezone=args.mariadb_timezone,
        postgres_timezone=args.postgres_timezone,
    )
    parent, _ = resume(model.load(args.model_dir), conf)
    try:
        store = SqliteStore(conf.state_dir)
    except StoreDamaged as exc:
        raise StorageError(str(exc)) from exc
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
    retrainer = Retrainer(conf, store, lambda: args.logs)
    try:  # errors reach main(): one line, exit 2 for bad input, 1 for a bug, --debug
        published = retrainer.publish(parent, args.until or datetime.now(UTC))
    finally:
        store.close()
    print(f"Retrained {parent.manifest.name}; published {published}.", file=sys.stderr)
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    from api import server  # the web stack loads only for `serve`

    if args.stray:
        raise UsageError(
            f"serve follows the logs given with --follow, not {' '.join(args.stray)}: "
            "--follow '/var/log/postgresql/*.json' (quoted, so that files created later "
            "are followed too)"
        )
    conf = settings.load(
        args.config,
        follow=args.follow,
        format=args.format,
        log_line_prefix=args.log_line_prefix,
        mariadb_timezone=args.mariadb_timezone,
        postgres_timezone=args.postgres_timezone,
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        model_dir=args.model_dir,
    )
    if not conf.follow:
        conf.follow = [str(SAMPLE_LOG)]
    if conf.state_dir.exists() and not conf.state_dir.is_dir():  # a log given by mistake
        raise UsageError(
            f"state directory {conf.state_dir}: not a directory (--state-dir is where serve "
            "keeps its database and models; the logs go in --follow)"
        )
    return server.run(conf, conf.model_dir or DEFAULT_MODEL)


# A path the user gave that cannot be used as asked (--out a directory, --model-dir a
# file, no permission): bad input. A full disk, a read-only file system or a failing
# device is none of the user's input nor a bug: EXIT_IO. Other OS errors stay internal.
_NO_STORAGE: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
_BAD_PATH = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _path_error(exc: OSError) -> str:
    """``path: what is wrong``, for an error of :data:`_BAD_PATH`."""
    if exc.filename is None:  # raised by trovewatch with its own message
        return str(exc)
    # mkdir(exist_ok=True) on a file: "File exists" would read as no error at all
    wrong = "exists and is not a directory" if isinstance(exc, FileExistsError) else exc.strerror
    return f"{exc.filename}: {wrong}"


def _setting_error(exc: ValidationError, config: Path | None) -> str:
    """A setting refused, in one line: which, where it was given (the environment
    variable, else the config file), why, and for a string setting given unquoted (a
    duration: ``lateness = 30``) how to write it."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if not where:  # a rule across settings has no loc
        return f"settings: {first['msg'].removeprefix('Value error, ')}"
    variable = f"TROVEWATCH_{where.upper()}"
    given = variable if variable in os.environ else config
    label = f"setting {where}" + (f" ({given})" if given else "")
    message = first["msg"].removeprefix("Value error, ")
    field = settings.Settings.model_fields.get(where)
    if first["type"] == "string_type" and field is not None and isinstance(field.default, str):
        message += f'; write it in quotes, as its default is: {where} = "{field.default}"'
    return f"{label}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {
        "train": run_train,
        "score": run_score,
        "serve": run_serve,
        "retrain": run_retrain,
        "report": run_report,
        "evaluate": evaluate.run,
        "simulate": simulate.run,
    }
    try:
        return handlers[args.command](args)
    except (
        UsageError,
        NotALogError,
        formats.MappingError,
        settings.ConfigError,
        model.ModelError,
        QuarantineError,
    ) as exc:
        if args.debug:
            raise
        print(f"trovewatch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except _BAD_PATH as exc:
        if args.debug:
            raise
        print(f"trovewatch: error: {_path_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StorageError as exc:
        if args.debug:
            raise
        print(f"trovewatch: error: {exc}", file=sys.stderr)
        return EXIT_IO
    except ValidationError as exc:
        if args.debug:
            raise
        print(
            f"trovewatch: error: {_setting_error(exc, getattr(args, 'config', None))}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, OSError) and exc.errno in _NO_STORAGE:
            where = f"{exc.filename}: " if exc.filename else "reading or writing: "
            print(f"trovewatch: error: {where}{exc.strerror}", file=sys.stderr)
            return EXIT_IO
        print(
            f"trovewatch: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
