"""AWS Database Activity Streams (DAS), decrypted: one JSON record per line.

DAS puts encrypted records on a Kinesis stream; the user decrypts them (KMS + AWS
Encryption SDK, then gunzip) and writes each result as one line. A line is one of the
shapes the AWS documentation shows:

* the decrypted payload, ``{"type": "DatabaseActivityMonitoringRecord", "clusterId",
  "instanceId", "databaseActivityEventList": [event, ...]}``;
* the outer Kinesis record with that payload already decrypted in place,
  ``{"type": "DatabaseActivityMonitoringRecords", "version", "databaseActivityEvents":
  {...payload...}, "key"}`` (the Aurora PostgreSQL examples are printed this way; with
  ``databaseActivityEvents`` still an encrypted string the line is ``not_audit``);
* one bare event per line (the RDS for Oracle examples, and what AWS's Java sample
  consumer prints).

Events are exploded column-wise and turned into statements by the engine's rules in
:mod:`detector.formats.aws_das_engines` (Aurora PostgreSQL, Aurora MySQL, RDS for Oracle,
RDS for SQL Server). Heartbeats, successful logins and logouts are context. No engine
reports bytes. See ``docs/formats-aws-das.md``.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.formats import aws_das_engines as engines
from detector.formats.base import Parsed
from detector.formats.jsonlines import decode_lines
from detector.reader import Chunk
from detector.rejects import Reason, rejects, split_too_long

NAME: Final = "aws-das"

# Every scalar is decoded as text: engines disagree on types (exitCode is 0, "0", "" or a
# SQLSTATE; sessionId and statementId are numbers or strings).
_SCALARS: Final = [
    "type", "class", "clientApplication", "command", "commandText", "databaseName",
    "dbProtocol", "dbUserName", "errorMessage", "exitCode", "logTime", "startTime", "endTime",
    "objectName", "objectType", "pid", "remoteHost", "rowCount", "serverType", "serviceName",
    "sessionId", "statementId", "substatementId",
]  # fmt: skip
_NATIVE: Final = pl.Struct(
    {"schema_name": pl.String, "response_rows": pl.String, "duration_milliseconds": pl.String}
)
EVENT: Final = pl.Struct({**dict.fromkeys(_SCALARS, pl.String), "engineNativeAuditFields": _NATIVE})
_PAYLOAD: Final[dict[str, pl.DataType]] = {
    "clusterId": pl.String(),
    "instanceId": pl.String(),
    "databaseActivityEventList": pl.List(EVENT),
}
RECORD: Final = pl.Struct(
    {**EVENT.to_schema(), **_PAYLOAD, "databaseActivityEvents": pl.Struct(_PAYLOAD)}
)
_ENCRYPTED: Final = r'"databaseActivityEvents"\s*:\s*"'
_MARKERS: Final = ('"databaseActivityEventList"', '"DatabaseActivityMonitoringRecord')
_BARE_KEYS: Final = ('"dbUserName"', '"logTime"', '"dbProtocol"')


def looks_like_das(line: str) -> bool:
    """True for a JSON line with a DAS record's or a bare DAS event's keys."""
    if not line.lstrip().startswith("{"):
        return False
    return any(m in line for m in _MARKERS) or all(k in line for k in _BARE_KEYS)


class AwsDas:
    """``--format aws-das``."""

    name = NAME

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        return bool(lines) and looks_like_das(lines[0])

    def parse(self, chunk: Chunk) -> Parsed:
        lines = chunk.lines.filter(pl.col("line").str.strip_chars() != "")
        lines, too_long = split_too_long(lines)
        # Still encrypted: nothing in it can be read.
        sealed = pl.col("line").str.contains(_ENCRYPTED)
        encrypted = rejects(lines, sealed, Reason.NOT_AUDIT)
        decoded, bad_json = decode_lines(lines.filter(~sealed), RECORD)
        events, shapeless, empty = _explode(decoded.drop("line"))
        not_audit = rejects(lines, pl.col("line_no").is_in(shapeless.implode()), Reason.NOT_AUDIT)
        events = events.with_columns(engines.parse_time(pl.col("logTime")).alias(S.TIME))
        heartbeat = (pl.col("type") == "heartbeat").fill_null(False)
        undated = events.filter(~heartbeat & pl.col(S.TIME).is_null())["line_no"].unique()
        bad_time = rejects(lines, pl.col("line_no").is_in(undated.implode()), Reason.BAD_FIELD)
        # A line is used whole or quarantined whole.
        records = events.filter(~heartbeat & ~pl.col("line_no").is_in(undated.implode()))
        statements, logins, connections = engines.to_events(records)
        out = pl.concat([statements, logins], how="diagonal_relaxed").with_columns(
            pl.lit(NAME).alias(S.SOURCE_FORMAT)
        )
        found = pl.concat([too_long, encrypted, bad_json, not_audit, bad_time])
        return Parsed(
            events=S.conform(out.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=found.sort("line_no"),
            context=empty + events.filter(heartbeat).height + connections,
        )

    @staticmethod
    def finish(events: pl.DataFrame) -> pl.DataFrame:
        """Whole-file step: :func:`join_orphans`, objects sorted."""
        return join_orphans(events)


def _explode(decoded: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, int]:
    """One row per event (``line_no``, ``_instance``, the event's fields); the line
    numbers of JSON objects with neither an event list nor a bare event's fields; and the
    number of lines whose event list was empty (context)."""
    inner = pl.col("databaseActivityEvents")
    listed = pl.coalesce(
        pl.col("databaseActivityEventList"), inner.struct.field("databaseActivityEventList")
    )
    instance = pl.coalesce(pl.col("instanceId"), inner.struct.field("instanceId"))
    frame = decoded.select(
        "line_no", instance.alias("_instance"), listed.alias("_events"), *EVENT.to_schema()
    )
    bare = pl.col("_events").is_null() & (
        pl.col("logTime").is_not_null() | pl.col("type").is_in(["record", "heartbeat"])
    ).fill_null(False)
    shapeless = frame.filter(pl.col("_events").is_null() & ~bare)["line_no"]
    empty = frame.filter(pl.col("_events").list.len() == 0).height
    exploded = (
        frame.filter(pl.col("_events").list.len() > 0)
        .select("line_no", "_instance", "_events")
        .explode("_events")
        .unnest("_events")
    )
    singles = frame.filter(bare).select("line_no", "_instance", *EVENT.to_schema())
    return pl.concat([exploded, singles]).sort("line_no", maintain_order=True), shapeless, empty


def join_orphans(events: pl.DataFrame) -> pl.DataFrame:
    """Whole-file step: MySQL ``AUX`` events whose ``MAIN`` was in another chunk give
    their objects to it; those whose ``MAIN`` never came stay events of their own.

    Ingest merges split statements keeping the first part's fields: an ``AUX`` part
    first would lose the statement's text, so AUX-only parts carry the uid
    ``aux:<id>`` until here.
    """
    # Objects sorted: the same set whichever chunks a statement's events came in.
    events = events.with_columns(pl.col(S.OBJECTS).list.sort())
    uid = pl.col(S.STATEMENT_ID)
    orphan = uid.str.starts_with(engines.ORPHAN).fill_null(False)
    if not events.select(orphan.any()).item():
        return events
    key = [S.SESSION, S.STATEMENT_ID]
    parts = events.filter(orphan).with_columns(uid.str.strip_prefix(engines.ORPHAN))
    extra = parts.group_by(key).agg(pl.col(S.OBJECTS).explode().drop_nulls().alias("_extra"))
    whole = events.filter(~orphan)
    merged = whole.join(extra, on=key, how="left", maintain_order="left").with_columns(
        pl.concat_list(S.OBJECTS, pl.col("_extra").fill_null([]))
        .list.unique()
        .list.sort()
        .alias(S.OBJECTS)
    )
    alone = (
        parts.join(whole, on=key, how="anti")
        .group_by(key, maintain_order=True)
        .agg(
            pl.all().exclude(S.OBJECTS).first(),
            pl.col(S.OBJECTS).explode().drop_nulls().unique().sort(),
        )
    )
    return pl.concat([merged.drop("_extra"), alone.select(events.columns)]).sort(
        S.TIME, maintain_order=True
    )
