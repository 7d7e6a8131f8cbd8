"""Duration strings (``30s``, ``5m``, ``7d``) and the window horizons written in them.

Plain Python, without Polars: the settings and the API process read durations and do
not otherwise need Polars (about 50 MB of RSS). :func:`detector.features.duration`
turns one into a Polars expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Horizons:
    """The base window and the longer trailing horizons, as Polars durations."""

    base: str = "5m"
    longer: tuple[str, ...] = ("1h", "1d", "3d")

    @property
    def all(self) -> tuple[str, ...]:
        return (self.base, *self.longer)

    @property
    def lookback(self) -> timedelta:
        """How far before a window its judging reaches: the longest horizon's sums, and
        the alerts of the account within the longest horizon before it, with the sums
        those alerts showed (one more horizon back)."""
        return 2 * span(self.longer[-1] if self.longer else self.base)


def parse(every: str) -> tuple[int, str]:
    """The number and the unit (a key of :data:`UNITS`) of a duration string.

    Raises ``ValueError`` for anything else (it validates settings too)."""
    number, unit = every[:-1], every[-1:]
    if not (number.isascii() and number.isdigit()) or unit not in UNITS:
        raise ValueError(f"{every!r}: use a number and one of s, m, h, d, w (e.g. 5m or 7d)")
    return int(number), unit


def span(every: str) -> timedelta:
    """A simple duration string like ``30s``, ``5m`` or ``7d`` as a timedelta.

    Raises ``ValueError`` for anything else."""
    n, unit = parse(every)
    try:
        return timedelta(**{UNITS[unit]: n})
    except OverflowError as exc:
        raise ValueError(f"{every!r}: too long") from exc
