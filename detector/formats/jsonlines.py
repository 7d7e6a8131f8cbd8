"""Decoding JSON-lines columns in bulk, isolating the lines that are not JSON objects.

Polars decodes a whole column at once but fails the whole column on one bad line. We
decode the chunk in one call; only if that fails do we bisect to the bad lines, so clean
input costs one vectorised decode and each bad line costs ``O(log n)`` decodes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Final

import polars as pl
from polars.exceptions import ComputeError, PolarsError

from detector.rejects import Reason, rejects

_SMALL: Final = 32


def _decode(lines: pl.DataFrame, dtype: pl.Struct) -> pl.DataFrame:
    return lines.with_columns(pl.col("line").str.json_decode(dtype).alias("_json"))


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        return False


@dataclass
class _Split:
    parts: list[pl.DataFrame] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)  # not JSON objects
    mistyped: list[int] = field(default_factory=list)  # JSON, but a field of the wrong type

    def extend(self, other: _Split) -> None:
        self.parts += other.parts
        self.invalid += other.invalid
        self.mistyped += other.mistyped


def _decode_or_split(lines: pl.DataFrame, dtype: pl.Struct) -> _Split:
    try:
        return _Split(parts=[_decode(lines, dtype)])
    except (ComputeError, PolarsError):
        pass
    if lines.height == 1:
        line_no = lines["line_no"].to_list()
        if is_json_object(lines["line"][0]):
            return _Split(mistyped=line_no)
        return _Split(invalid=line_no)
    out = _Split()
    if lines.height <= _SMALL:
        # Few lines around a bad one: check each, cheaply, rather than bisecting further.
        ok = pl.Series([is_json_object(s) for s in lines["line"].to_list()])
        out.invalid += lines.filter(~ok)["line_no"].to_list()
        good = lines.filter(ok)
        if good.height == lines.height:
            for i in range(good.height):
                out.extend(_decode_or_split(good.slice(i, 1), dtype))
            return out
        if good.height:
            out.extend(_decode_or_split(good, dtype))
        return out
    half = lines.height // 2
    out.extend(_decode_or_split(lines.slice(0, half), dtype))
    out.extend(_decode_or_split(lines.slice(half), dtype))
    return out


def decode_lines(lines: pl.DataFrame, dtype: pl.Struct) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``lines`` (``line_no``, ``line``) as JSON objects of ``dtype``.

    Returns the decoded frame (``line_no``, ``line`` and the struct's fields as columns)
    and the rejects: ``invalid_json`` for lines that are not JSON objects, ``bad_field``
    for JSON objects with a field of the wrong type. Blank lines are dropped silently.
    """
    lines = lines.filter(pl.col("line").str.strip_chars() != "")
    looks = pl.col("line").str.strip_chars().str.starts_with("{") & pl.col(
        "line"
    ).str.strip_chars().str.ends_with("}")
    bad = rejects(lines, ~looks, Reason.INVALID_JSON)
    split = _decode_or_split(lines.filter(looks), dtype)
    bad = pl.concat(
        [
            bad,
            rejects(lines, pl.col("line_no").is_in(split.invalid), Reason.INVALID_JSON),
            rejects(lines, pl.col("line_no").is_in(split.mistyped), Reason.BAD_FIELD),
        ]
    )
    if split.parts:
        decoded = pl.concat(split.parts).unnest("_json")
    else:
        decoded = lines.clear().with_columns(pl.lit(None, dtype).alias("_json")).unnest("_json")
    return decoded, bad.sort("line_no")
