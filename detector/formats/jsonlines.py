"""Decoding JSON-lines columns in bulk, isolating the lines that are not JSON objects.

Polars decodes a whole column at once but fails the whole column on one bad line. We
decode the chunk in one call; only if that fails do we bisect to the bad lines, so clean
input costs one vectorised decode and each bad line costs ``O(log n)`` decodes.
"""

from __future__ import annotations

import json
from typing import Final

import polars as pl
from polars.exceptions import ComputeError, PolarsError

from detector.rejects import Reason, rejects

_SMALL: Final = 32


def _decode(lines: pl.DataFrame, dtype: pl.Struct) -> pl.DataFrame:
    return lines.with_columns(pl.col("line").str.json_decode(dtype).alias("_json"))


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _decode_or_split(lines: pl.DataFrame, dtype: pl.Struct) -> tuple[list[pl.DataFrame], list[int]]:
    try:
        return [_decode(lines, dtype)], []
    except (ComputeError, PolarsError):
        pass
    if lines.height <= _SMALL:
        # Slow path, only ever for a handful of lines around a bad one.
        ok = [_is_json_object(s) for s in lines["line"].to_list()]
        good = lines.filter(pl.Series(ok))
        bad = lines.filter(~pl.Series(ok))["line_no"].to_list()
        if good.height and good.height < lines.height:
            parts, more_bad = _decode_or_split(good, dtype)
            return parts, bad + more_bad
        if good.height == lines.height:
            # Valid JSON that does not fit the schema's types: all bad fields.
            return [], lines["line_no"].to_list()
        return [], bad
    half = lines.height // 2
    left, bad_left = _decode_or_split(lines.slice(0, half), dtype)
    right, bad_right = _decode_or_split(lines.slice(half), dtype)
    return left + right, bad_left + bad_right


def decode_lines(lines: pl.DataFrame, dtype: pl.Struct) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decode ``lines`` (``line_no``, ``line``) as JSON objects of ``dtype``.

    Returns the decoded frame (``line_no``, ``line`` and the struct's fields as columns)
    and the rejects (``invalid_json``). Blank lines are dropped silently.
    """
    lines = lines.filter(pl.col("line").str.strip_chars() != "")
    looks = pl.col("line").str.strip_chars().str.starts_with("{") & pl.col(
        "line"
    ).str.strip_chars().str.ends_with("}")
    bad = rejects(lines, ~looks, Reason.INVALID_JSON)
    parts, bad_line_nos = _decode_or_split(lines.filter(looks), dtype)
    if bad_line_nos:
        bad = pl.concat(
            [bad, rejects(lines, pl.col("line_no").is_in(bad_line_nos), Reason.INVALID_JSON)]
        )
    if parts:
        decoded = pl.concat(parts).unnest("_json")
    else:
        decoded = lines.clear().with_columns(
            pl.lit(None, dtype).alias("_json")
        ).unnest("_json")
    return decoded, bad.sort("line_no")
