"""MongoDB's audit log (Enterprise, Atlas, Percona Server for MongoDB), written with
``auditLog.destination: file`` and ``auditLog.format: JSON`` in the default ``mongo``
schema: one Extended JSON document per line, for example (MongoDB manual)::

    { "atype" : "authCheck", "ts" : { "$date" : "2021-08-09T15:28:10.788+00:00" },
      "uuid" : { "$binary" : "ngwRt5CRTZqgE4TsfleoqQ==", "$type" : "04" }, ...,
      "users" : [], "roles" : [], "param" : { "command" : "find",
      "ns" : "sales.inventory", "args" : { ... } }, "result" : 0 }

Reads and writes are ``authCheck`` records (logged on success only with
``auditAuthorizationSuccess``); DDL and user/role changes also have records of their
own. A ``result`` other than 0 is a failure: a refused login for ``authenticate``, an
ERROR otherwise. Logins, logouts and ``clientMetadata`` are context; the application
name a connection declared in its ``clientMetadata`` record is remembered by the
connection's ``uuid`` (across chunks) and given to that connection's events.

The log has no volume: rows, bytes and durations are null. The ``OCSF`` schema
(``auditLog.schema: OCSF``) is not read. See ``docs/formats-mongodb.md``.
"""

from __future__ import annotations

import re
from itertools import islice
from typing import Final

import polars as pl
from polars.exceptions import PolarsError

from detector import schema as S
from detector.formats.base import Parsed
from detector.formats.jsonlines import is_json_object
from detector.reader import Chunk
from detector.rejects import Reason, empty_rejects, rejects, split_too_long

NAME: Final = "mongodb-audit"
DB_SYSTEM: Final = "mongodb"
QUERY_CHARS: Final = 4096  # a command's arguments are kept up to this many characters
EXPORT_APPS: Final = ("mongodump", "mongoexport")  # the names these tools give the server
MAX_CONNECTIONS: Final = 200_000  # connections whose application name is remembered

# Fields whose JSON type varies between records (a string, a number, an Extended JSON
# object such as {"$numberLong": ...}) are read as String: Polars' NDJSON reader gives
# the JSON text of an object read as String, so no record fails on a type it did not
# expect, and the args of a command come back as JSON text, however deep.
_PARAM_FIELDS: Final = ("command", "ns", "args", "user", "db", "role", "mechanism", "old",
                        "new", "indexBuildState", "reason", "clientMetadata")  # fmt: skip
_TEXT: Final = pl.String()
RECORD: Final = pl.Schema(
    {
        "atype": _TEXT,
        "ts": pl.Struct({"$date": _TEXT}),
        "uuid": pl.Struct({"$binary": _TEXT}),
        "remote": pl.Struct({"ip": _TEXT, "port": _TEXT, "unix": _TEXT, "isSystemUser": _TEXT}),
        "users": pl.List(pl.Struct({"user": _TEXT, "db": _TEXT})),
        "param": pl.Struct(dict.fromkeys(_PARAM_FIELDS, _TEXT)),
        "result": _TEXT,
    }
)

_READ: Final = ["find", "aggregate", "getmore", "count", "distinct", "mapreduce", "geosearch",
                "geonear"]  # fmt: skip
_WRITE: Final = ["insert", "update", "delete", "findandmodify", "bulkwrite", "applyops"]
_DDL: Final = [
    "create", "drop", "dropdatabase", "createindexes", "dropindexes", "renamecollection",
    "collmod", "converttocapped", "clonecollectionascapped", "shardcollection",
    "reshardcollection", "refinecollectionshardkey", "enablesharding",
    "createsearchindexes", "dropsearchindexes", "updatesearchindex",
]  # fmt: skip
_ROLE: Final = [
    "createuser", "dropuser", "updateuser", "dropallusersfromdatabase", "grantrolestouser",
    "revokerolesfromuser", "createrole", "updaterole", "droprole", "dropallrolesfromdatabase",
    "grantrolestorole", "revokerolesfromrole", "grantprivilegestorole",
    "revokeprivilegesfromrole",
]  # fmt: skip
# Commands drivers send on their own (handshakes, closing sessions and cursors): context.
_HOUSEKEEPING: Final = ["hello", "ismaster", "ping", "buildinfo", "endsessions", "killcursors",
                        "saslstart", "saslcontinue", "logout", "getlasterror"]  # fmt: skip
COMMAND_CLASS: Final = {
    **dict.fromkeys(_READ, "READ"),
    **dict.fromkeys(_WRITE, "WRITE"),
    **dict.fromkeys(_DDL, "DDL"),
    **dict.fromkeys(_ROLE, "ROLE"),
}
# The server's own records of what a command did (the atype list of the manual's
# "mongo Schema Audit Messages"). Atypes not listed (startup, rotateLog,
# applicationMessage, ...) and successful logins, logouts, clientMetadata are context.
ATYPE_CLASS: Final = {
    **dict.fromkeys(
        ["createCollection", "createDatabase", "createIndex", "renameCollection",
         "dropCollection", "dropDatabase", "dropIndex", "shardCollection", "enableSharding",
         "refineCollectionShardKey", "importCollection"],
        "DDL",
    ),
    **dict.fromkeys(
        ["createUser", "dropUser", "dropAllUsersFromDatabase", "updateUser",
         "grantRolesToUser", "revokeRolesFromUser", "createRole", "updateRole", "dropRole",
         "dropAllRolesFromDatabase", "grantRolesToRole", "revokeRolesFromRole",
         "grantPrivilegesToRole", "revokePrivilegesFromRole", "directAuthMutation"],
        "ROLE",
    ),
    **dict.fromkeys(
        ["replSetReconfig", "addShard", "removeShard", "shutdown", "setClusterParameter",
         "getClusterParameter", "auditConfigure"],
        "MISC",
    ),
}  # fmt: skip

_HEAD: Final = re.compile(r'\s*\{\s*"atype"\s*:\s*"')
_RECORD_START: Final = r'^\s*\{\s*"atype"\s*:'
_SMALL: Final = 32


class MongodbAudit:
    """``--format mongodb-audit``. Keeps the application name of each connection seen
    in a ``clientMetadata`` record, so later chunks of the same file get it too."""

    name = NAME

    def __init__(self) -> None:
        self._apps: dict[str, str] = {}

    def sniff(self, head: list[str]) -> bool:
        lines = [s for s in head if s.strip()]
        if not lines or not _HEAD.match(lines[0]):
            return False
        hits = sum(1 for s in lines if _HEAD.match(s) and '"ts"' in s)
        return hits * 2 >= len(lines)

    def parse(self, chunk: Chunk) -> Parsed:
        lines = chunk.lines
        lines, too_long = split_too_long(lines)
        lines = lines.filter(pl.col("line").str.strip_chars() != "")
        looks = pl.col("line").str.strip_chars().str.starts_with("{")
        decoded, invalid, mistyped = _decode(lines.filter(looks))
        bad = lines.filter(
            ~looks | pl.col("line_no").is_in(pl.Series(invalid, dtype=pl.UInt64).implode())
        )
        # A line that starts like a record but does not end like one was cut short.
        cut = pl.col("line").str.contains(_RECORD_START) & ~pl.col(
            "line"
        ).str.strip_chars().str.ends_with("}")
        records, found = _fields(decoded)
        parsed = self._events(records)
        parsed.rejects = pl.concat(
            [
                too_long,
                rejects(bad, cut, Reason.TRUNCATED),
                rejects(bad, ~cut, Reason.INVALID_JSON),
                rejects(lines, pl.col("line_no").is_in(pl.Series(mistyped, dtype=pl.UInt64).implode()),
                        Reason.BAD_FIELD),
                found.join(lines, on="line_no", how="left").select("line_no", "reason", "line"),
            ]
        ).sort("line_no")  # fmt: skip
        return parsed

    def _events(self, records: pl.DataFrame) -> Parsed:
        """Events and the number of context records, from well-formed records."""
        atype = pl.col("atype")
        failed = pl.col("_result") != 0
        by_command = (
            pl.when(pl.col("_command").str.to_lowercase().is_in(_HOUSEKEEPING))
            .then(pl.lit(None, pl.String))
            .otherwise(
                pl.col("_command")
                .str.to_lowercase()
                .replace_strict(COMMAND_CLASS, default="MISC", return_dtype=pl.String)
            )
        )
        done = (
            pl.when(atype == "authCheck")
            .then(by_command)
            .when((atype == "createIndex") & (pl.col("_build") == "IndexBuildStarted"))
            .then(pl.lit(None, pl.String))  # the build's end record is the event
            .otherwise(atype.replace_strict(ATYPE_CLASS, default=None, return_dtype=pl.String))
        )
        # Any refused command is an ERROR event, even one whose success is context.
        klass = (
            pl.when(atype == "authenticate")
            .then(pl.when(failed).then(pl.lit("CONNECT")))
            .when(failed & (done.is_not_null() | (atype == "authCheck")))
            .then(pl.lit("ERROR"))
            .otherwise(done)
        )
        records = records.with_columns(klass.alias(S.CLASS))
        is_event = pl.col(S.CLASS).is_not_null() & (pl.col("_system") != "true").fill_null(True)
        events = records.filter(is_event)
        apps = self._remember_apps(records, events)
        events = events.join(apps, on="_uuid", how="left", maintain_order="left")
        export = (pl.col(S.CLASS) == "READ") & pl.col(S.APPLICATION).is_in(list(EXPORT_APPS))
        out = events.select(
            S.TIME,
            S.ACCOUNT,
            S.CLIENT_IP,
            S.APPLICATION,
            pl.lit(DB_SYSTEM).alias(S.DB_SYSTEM),
            S.DATABASE,
            S.OBJECTS,
            S.CLASS,
            pl.coalesce(pl.when(atype == "authCheck").then(pl.col("_command")), atype).alias(
                S.COMMAND
            ),
            S.QUERY,
            (~failed).alias(S.SUCCESS),
            export.fill_null(False).alias(S.EXPORT),
            S.SESSION,
            pl.lit(NAME).alias(S.SOURCE_FORMAT),
        )
        return Parsed(
            events=S.conform(out.lazy()).sort(S.TIME, maintain_order=True).collect(),
            rejects=empty_rejects(),
            context=records.height - events.height,
        )

    def _remember_apps(self, records: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
        """``_uuid`` -> application name for the connections of ``events``.

        A connection declares its client metadata once, when it says hello; its events
        may come chunks later, so names are kept per connection until it closes.
        """
        meta = records.filter((pl.col("atype") == "clientMetadata") & pl.col("_uuid").is_not_null())
        names = meta.select(
            "_uuid", pl.col("_client").str.json_path_match("$.application.name").alias("_app")
        ).drop_nulls()
        self._apps.update(zip(names["_uuid"].to_list(), names["_app"].to_list(), strict=True))
        wanted = events["_uuid"].drop_nulls().unique().to_list()
        found = pl.DataFrame(
            {"_uuid": wanted, S.APPLICATION: [self._apps.get(u) for u in wanted]},
            schema={"_uuid": pl.String, S.APPLICATION: pl.String},
        )
        closed = records.filter(
            (pl.col("atype") == "logout")
            & pl.col("_reason").str.contains(r"(?i)closure|disconnect")
        )
        for uuid in closed["_uuid"].drop_nulls().to_list():
            self._apps.pop(uuid, None)
        for uuid in list(islice(self._apps, max(0, len(self._apps) - MAX_CONNECTIONS))):
            del self._apps[uuid]  # the oldest connections first
        return found


def _joined(lines: pl.DataFrame) -> bytes:
    return str(lines["line"].str.join("\n").item()).encode()


def _decode(lines: pl.DataFrame) -> tuple[pl.DataFrame, list[int], list[int]]:
    """``lines`` read as :data:`RECORD` documents with their ``line_no``; and the line
    numbers of lines that are not JSON objects, and of objects that fit no record
    (a field of an impossible type, such as ``users`` that is not a list).

    Clean input is one call of Polars' NDJSON reader; a chunk it cannot read whole is
    split in halves until the bad lines are isolated.
    """
    try:
        whole = pl.read_ndjson(_joined(lines), schema=RECORD) if lines.height else None
    except (PolarsError, ValueError):
        whole = None
    if whole is not None and whole.height == lines.height:
        return whole.with_columns(lines["line_no"]), [], []
    if lines.height == 0:
        return pl.DataFrame(schema={**RECORD, "line_no": pl.UInt64}), [], []
    if lines.height == 1:
        line_no = [int(lines["line_no"][0])]
        if is_json_object(lines["line"][0]):
            return _decode(lines.clear())[0], [], line_no
        return _decode(lines.clear())[0], line_no, []
    if lines.height <= _SMALL:
        ok = pl.Series([is_json_object(s) for s in lines["line"].to_list()], dtype=pl.Boolean)
        invalid = lines.filter(~ok)["line_no"].to_list()
        if invalid:
            frame, more_invalid, mistyped = _decode(lines.filter(ok))
            return frame, invalid + more_invalid, mistyped
    half = lines.height // 2
    first, second = _decode(lines.slice(0, half)), _decode(lines.slice(half))
    return pl.concat([first[0], second[0]]), first[1] + second[1], first[2] + second[2]


def _qualified(user: pl.Expr, db: pl.Expr) -> pl.Expr:
    """``user@db``, MongoDB's name for a user (the same name in two databases is two
    users); the bare name when the database is not logged."""
    user = user.replace("", None)
    return pl.when(db.is_not_null() & (db != "")).then(user + "@" + db).otherwise(user)


def _fields(decoded: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Records with the event columns worked out, and rejects (``line_no``, ``reason``)
    for records without an ``atype`` (not this log), without a time or a command
    (not audit events), or with a time or result that cannot be read."""
    p = pl.col("param")
    date = pl.col("ts").struct.field("$date")
    millis = date.str.extract(r'^\{\s*"\$numberLong"\s*:\s*"(-?\d{1,15})"\s*\}$', 1).cast(
        pl.Int64, strict=False
    )
    from_millis = pl.from_epoch(
        pl.when(millis.abs() < 253_402_300_800_000).then(millis), time_unit="ms"
    ).dt.cast_time_unit("us")
    iso = date.str.replace(r"Z$", "+00:00").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", time_unit="us", strict=False
    )
    uuid = pl.col("uuid").struct.field("$binary")
    uuid = pl.coalesce(uuid.str.extract(r'"base64"\s*:\s*"([^"]*)"', 1), uuid)
    remote = pl.col("remote")
    ip, port = remote.struct.field("ip"), remote.struct.field("port").str.extract(r"(\d+)", 1)
    result = pl.col("result")
    records = decoded.with_columns(
        pl.coalesce(from_millis.dt.replace_time_zone("UTC"), iso.dt.convert_time_zone("UTC")).alias(
            S.TIME
        ),
        result.str.extract(r"^[^-\d]*(-?\d+)\D*$", 1).cast(pl.Int64, strict=False).alias("_result"),
        p.struct.field("command").alias("_command"),
        p.struct.field("indexBuildState").alias("_build"),
        p.struct.field("reason").alias("_reason"),
        p.struct.field("clientMetadata").alias("_client"),
        remote.struct.field("isSystemUser").alias("_system"),
        uuid.alias("_uuid"),
    )
    reject = [
        (pl.col("atype").is_null(), Reason.UNRECOGNISED),
        (date.is_null() | ((pl.col("atype") == "authCheck") & pl.col("_command").is_null()),
         Reason.NOT_AUDIT),
        (pl.col(S.TIME).is_null() | (result.is_not_null() & pl.col("_result").is_null()),
         Reason.BAD_FIELD),
    ]  # fmt: skip
    found, left = [], records
    for mask, reason in reject:
        found.append(rejects(left, mask, reason).select("line_no", "reason"))
        left = left.filter(~mask)
    records = left.with_columns(pl.col("_result").fill_null(0))

    ns = p.struct.field("ns")
    first_user = pl.col("users").list.first()
    by_users = _qualified(first_user.struct.field("user"), first_user.struct.field("db"))
    by_param = _qualified(p.struct.field("user"), p.struct.field("db"))
    args = p.struct.field("args")
    collection = ns.str.contains(r"^[^.]+\.") & ~ns.str.contains(r"^[^.]+\.\$cmd")
    renamed = pl.concat_list(p.struct.field("old"), p.struct.field("new")).list.drop_nulls()
    target = pl.coalesce(
        p.struct.field("old") + " -> " + p.struct.field("new"),
        ns,
        by_param,
        _qualified(p.struct.field("role"), p.struct.field("db")),
    )
    described = (
        pl.col("atype")
        + (" " + target).fill_null("")
        + (" (" + p.struct.field("mechanism") + ")").fill_null("")
    )
    records = records.with_columns(
        pl.when(pl.col("atype") == "authenticate")
        .then(pl.coalesce(by_param, by_users))
        .otherwise(by_users)
        .alias(S.ACCOUNT),
        pl.coalesce(ip, remote.struct.field("unix")).replace("", None).alias(S.CLIENT_IP),
        pl.coalesce(
            pl.coalesce(ns, p.struct.field("old")).str.extract(r"^([^.]+)", 1),
            p.struct.field("db"),
            args.str.extract(r'"\$db"\s*:\s*"([^"\\]+)"', 1),
        ).alias(S.DATABASE),
        pl.when(pl.col("atype") == "renameCollection")
        .then(renamed)
        .when(collection)
        .then(pl.concat_list(ns))
        .otherwise(pl.lit([], dtype=pl.List(pl.String)))
        .alias(S.OBJECTS),
        pl.coalesce(
            pl.when(pl.col("atype") == "authCheck").then(args.str.slice(0, QUERY_CHARS)), described
        ).alias(S.QUERY),
        pl.coalesce(pl.col("_uuid"), ip + ":" + port).alias(S.SESSION),
    )
    return records, pl.concat(found)
