"""Argument types the command line's subcommands share."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from detector.formats import Told
from detector.formats.pg_stderr import prefix_regex
from detector.formats.zones import check_timezone

TIMEZONE_HELP = (
    "the time zone of a MariaDB server's clock (IANA name, e.g. Europe/Berlin), in which its"
    " audit log writes its times (default: UTC, or set by the slow log's when both are read)"
)
POSTGRES_TIMEZONE_HELP = (
    "a PostgreSQL server's log_timezone (IANA name, e.g. Asia/Shanghai), for the zone"
    " abbreviations several zones print (CST, IST); without it, they are read as this"
    " machine's zone reads them, or as a log's last write says, else as China's and India's"
)


def add_server_settings(parser: argparse.ArgumentParser) -> None:
    """The options that tell what a log's server settings say and its lines do not."""
    parser.add_argument(
        "--log-line-prefix",
        type=log_line_prefix,
        help="the server's log_line_prefix, for stderr logs",
    )
    parser.add_argument("--mariadb-timezone", type=timezone, help=TIMEZONE_HELP)
    parser.add_argument("--postgres-timezone", type=timezone, help=POSTGRES_TIMEZONE_HELP)


def told(args: argparse.Namespace) -> Told:
    """What :func:`add_server_settings`' options said."""
    return Told(args.log_line_prefix, args.mariadb_timezone, args.postgres_timezone)


def utc_time(text: str) -> datetime:
    """An ISO-8601 time, UTC unless it carries an offset (an argparse ``type``)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def log_line_prefix(text: str) -> str:
    """A ``log_line_prefix`` trovewatch can read lines with (an argparse ``type``)."""
    try:
        prefix_regex(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def timezone(text: str) -> str:
    """A time zone's IANA name (an argparse ``type``)."""
    try:
        return check_timezone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def log_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a log file, in one sentence; None if it can be."""
    if path.is_dir():  # a log directory given for its files: the shell's glob was missed
        return f"{path}: a directory; name the log files in it (e.g. {path}/*)"
    if path.exists() and not path.is_file():  # a named pipe, a device
        return f"{path}: not a regular file; to read a stream, pipe it in as - (cat {path} | trovewatch score -)"
    if not path.is_file():
        return f"{path}: no such file"
    return None
