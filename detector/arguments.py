"""Argument types the command line's subcommands share."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def utc_time(text: str) -> datetime:
    """An ISO-8601 time, UTC unless it carries an offset (an argparse ``type``)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
