"""The sidecar's storage: scored windows, alerts, feedback, suppressions and checkpoints.

All SQL lives in this module. :class:`Store` is the interface the engine and the API use;
:class:`SqliteStore` implements it on one SQLite file (``state_dir/trovewatch.db``) in WAL
mode, so API readers run while the engine writes. A server database would be a second
implementation of the same Protocol.

Times are stored as integer microseconds since the Unix epoch (UTC, Polars' own unit) and
returned by the query methods as ISO-8601 strings ending in ``Z``. Every period below
(retention, flag hold, suppressions) is measured in *event* time, against the newest
stored ``window_end``, so a replayed old log behaves as a live one.

Alert statuses: ``open``, ``suppressed`` (raised while the account was suppressed),
``true_positive`` and ``false_positive`` (judged by feedback).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from detector.live.metrics import Flagged

if TYPE_CHECKING:
    # Imported where scored windows are written or read back for retraining (the
    # ingest process): the API process, which only queries, does without it (50 MB).
    import polars as pl

DB_FILE: Final = "trovewatch.db"
VERDICTS: Final = ("true_positive", "false_positive")
STATUSES: Final = ("open", "suppressed", *VERDICTS)
SORTS: Final = ("score", "account", "window")
ROW_CHUNK: Final = 2_000  # scored windows turned into SQLite rows at a time
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Sort = Literal["score", "account", "window"]
Verdict = Literal["true_positive", "false_positive"]

# One entry per schema version: the statements that take the database from the previous
# version to this one. The schema version is the number of entries (PRAGMA user_version).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE windows (
            account TEXT NOT NULL,
            window_start INTEGER NOT NULL,
            window_end INTEGER NOT NULL,
            score REAL NOT NULL,
            flagged INTEGER NOT NULL,
            severity TEXT,
            reasons TEXT NOT NULL,      -- JSON list of strings
            features TEXT NOT NULL,     -- JSON object
            objects TEXT NOT NULL,      -- JSON list of strings
            rows_read INTEGER,          -- the base window's volumes, for totals
            bytes_read INTEGER,
            statements INTEGER,
            exports INTEGER,
            PRIMARY KEY (account, window_start)
        ) WITHOUT ROWID""",
        "CREATE INDEX windows_by_end ON windows (window_end)",
        "CREATE INDEX windows_by_start ON windows (window_start)",
        # Each account's newest window, kept by commit() so listing accounts is one join.
        """CREATE TABLE latest (
            account TEXT PRIMARY KEY,
            window_start INTEGER NOT NULL
        ) WITHOUT ROWID""",
        # All-time totals: they survive prune().
        """CREATE TABLE totals (
            account TEXT PRIMARY KEY,
            windows INTEGER NOT NULL,
            statements INTEGER NOT NULL,
            rows_read INTEGER NOT NULL,
            bytes_read INTEGER,         -- NULL while no window ever carried bytes
            exports INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account TEXT NOT NULL,
            window_start INTEGER NOT NULL,
            window_end INTEGER NOT NULL,
            score REAL NOT NULL,
            severity TEXT,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,   -- wall clock, Unix seconds
            note TEXT,
            judged_at REAL,             -- wall clock, Unix seconds
            UNIQUE (account, window_start)
        )""",
        "CREATE INDEX alerts_by_end ON alerts (window_end)",
        "CREATE INDEX alerts_by_start ON alerts (window_start)",
        """CREATE TABLE suppressions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            account TEXT NOT NULL,
            start INTEGER NOT NULL,     -- event time, inclusive
            until INTEGER NOT NULL,     -- event time, exclusive
            alert_id INTEGER,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX suppressions_by_account ON suppressions (account, start)",
        """CREATE TABLE checkpoint (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            sources TEXT NOT NULL,      -- JSON
            saved_at REAL NOT NULL
        )""",
        "CREATE TABLE checkpoint_state (name TEXT PRIMARY KEY, data BLOB NOT NULL)",
        "CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL)",
    ),
    # v2: a suppression may cover only windows reading some of the objects it names
    ("ALTER TABLE suppressions ADD COLUMN objects TEXT",),  # JSON list; NULL: all
    # v3: where a window's statements came from: client addresses and applications (JSON
    # lists; NULL in windows saved before)
    (
        "ALTER TABLE windows ADD COLUMN clients TEXT",
        "ALTER TABLE windows ADD COLUMN applications TEXT",
    ),
]


def _covers(window: str) -> str:
    """SQL: suppression ``s`` covers the window row ``window`` of its account and period
    when it names no objects, or when every object the window read is one it names."""
    return f"""(s.objects IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each({window}.objects) o
        WHERE o.value NOT IN (SELECT value FROM json_each(s.objects))))"""


class StoreError(Exception):
    """The state database cannot be used (newer schema, not a database...)."""


class StoreDamaged(StoreError):
    """The state database file is damaged: SQLite finds its pages malformed (a disk or
    file system fault, or a write into it by something else). Nothing trovewatch can
    repair: the file must be replaced (:data:`DAMAGED_REMEDY`)."""


# SQLite's primary result codes for a file whose contents are not a sound database:
# SQLITE_CORRUPT and SQLITE_NOTADB.
_DAMAGED_CODES: Final = frozenset({11, 26})
DAMAGED_REMEDY: Final = (
    "stop trovewatch and move the file aside, or restore a copy of it; without it "
    "trovewatch starts afresh: the alerts, feedback and suppressions it held are gone, "
    "and the followed logs are read again from their start"
)


def damaged(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite finding the database file damaged."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF in _DAMAGED_CODES
    )


@dataclass
class Checkpoint:
    """Where the engine is: source positions (JSON-able) and its window state (opaque
    blobs, e.g. Parquet bytes), saved together with the windows they produced.

    With ``replace`` the state is the whole state; without it, only what changed: each
    named blob replaces the one of that name, ``None`` deletes it, others stay.
    """

    sources: dict[str, Any]
    state: Mapping[str, bytes | None]
    saved_at: float
    replace: bool = True
    # Loaded: names of the state left out of ``state``, read one at a time when needed
    # (:meth:`Store.checkpoint_blob`; the window history, days of it).
    deferred: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertRow:
    """An alert created by :meth:`Store.commit`."""

    id: int
    account: str
    window_start: str
    severity: str | None
    score: float
    status: str


class Store(Protocol):
    """Storage of the sidecar. The engine thread writes; API threads read concurrently."""

    def load_checkpoint(self, defer: str | None = None) -> Checkpoint | None: ...

    def checkpoint_blob(self, name: str) -> bytes | None: ...

    def commit(self, scored: pl.DataFrame, checkpoint: Checkpoint) -> list[AlertRow]: ...

    def accounts(
        self,
        sort: Sort = "score",
        min_score: float | None = None,
        severity: str | None = None,
        flagged: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]: ...

    def account(self, name: str, limit: int = 50) -> dict[str, Any] | None: ...

    def alerts(
        self,
        since: datetime | None = None,
        severity: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]: ...

    def alert(self, alert_id: int) -> dict[str, Any] | None: ...

    def feedback(
        self,
        alert_id: int,
        verdict: Verdict,
        note: str | None = None,
        suppress_for: timedelta | None = None,
        objects_only: bool = False,
    ) -> dict[str, Any] | None: ...

    def flagged(self, hold: timedelta) -> list[Flagged]: ...

    def training_windows(self, start: datetime, end: datetime) -> pl.DataFrame: ...

    def prune(self, retention: timedelta) -> int: ...

    def writable(self) -> bool: ...

    def lock_problem(self) -> str | None:
        """What to say while the last write probe found the database locked by another
        process's transaction; None when it did not."""
        ...

    def close(self) -> None: ...


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another connection (a
    ``sqlite3`` shell's open transaction, a copy taken with locks) held the database
    past the busy timeout."""
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(exc, sqlite3.OperationalError) and name.startswith("SQLITE_BUSY")


def lock_problem(path: Path) -> str:
    """What /readyz says while another process's transaction holds the database."""
    return (
        f"state database {path} locked by another process's transaction (a sqlite3 shell "
        f"left in BEGIN? `fuser {path}` names it): nothing is saved until it ends; "
        "positions held, nothing lost"
    )


def schema_version() -> int:
    """The schema version this trovewatch writes."""
    return len(MIGRATIONS)


def _us(value: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(microseconds=1)


def _span_us(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _iso(us: int | None) -> str | None:
    """ISO-8601 UTC with a ``Z``; fractions of a second only when there are some."""
    if us is None:
        return None
    moment = EPOCH + timedelta(microseconds=us)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """The SQL conditions of ``(condition, value)`` whose value is not None, joined by
    AND (``1`` first: all rows when none is), and their values in order, for its ``?``."""
    given = [(condition, value) for condition, value in conditions if value is not None]
    return " AND ".join(["1", *(c for c, _ in given)]), [value for _, value in given]


def _json_list(column: str) -> pl.Expr:
    """A list column as JSON text, in Polars (no Python per row)."""
    import polars as pl

    return (
        pl.struct(pl.col(column).alias("v"))
        .struct.json_encode()
        .str.strip_prefix('{"v":')
        .str.strip_suffix("}")
        .alias(column)
    )


_WINDOW_COLS: Final = (
    "account, window_start, window_end, score, flagged, severity, reasons, features, objects, "
    "clients, applications"
)
_INCOMING_COLS: Final = (
    f"{_WINDOW_COLS}, rows_read, bytes_read, statements, exports"  # the order of _rows()
)
_INCOMING_PLACES: Final = ", ".join("?" for _ in _INCOMING_COLS.split(","))
_ALERT_SELECT: Final = """
    SELECT a.id, a.account, a.window_start, a.window_end, a.score, a.severity, a.status,
           a.created_at, a.note, a.judged_at, w.reasons, w.objects, w.clients, w.applications,
           (SELECT max(s.until) FROM suppressions s WHERE s.alert_id = a.id) AS suppressed_until
    FROM alerts a LEFT JOIN windows w
      ON w.account = a.account AND w.window_start = a.window_start
"""


class SqliteStore:
    """:class:`Store` on SQLite in WAL mode: one connection per thread, one writer at a time.

    ``base_window`` (e.g. ``"5m"``) names the features holding a window's own volumes
    (``rows_read_5m``...), which are kept as columns for the per-account totals.
    """

    def __init__(self, state_dir: Path, base_window: str = "5m") -> None:
        self.path = Path(state_dir) / DB_FILE
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only
        self._base = base_window
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._opened_read_only = False  # any of them opened on a read-only file system
        self._lock = threading.Lock()
        self._closed = False
        self._locked = False  # the last write probe found the database locked
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        self._migrate(conn)
        self._identity = self._file_identity()

    # -- connections -------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if self._opened_read_only and self._writable_file():
            self._reopen_all()
        if conn is not None and conn not in self._connections:  # closed by _reopen_all
            conn = None
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            try:
                conn = sqlite3.connect(
                    self.path, timeout=5.0, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")  # WAL: consistent after a crash
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"{self.path}: not a usable trovewatch state database ({exc})"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
                self._opened_read_only |= not self._writable_file()
        return conn

    def _writable_file(self) -> bool:
        """Whether the database file (or the directory it is created in) can be written:
        not on a read-only file system, for root too."""
        return os.access(self.path if self.path.exists() else self.path.parent, os.W_OK)

    def _reopen_all(self) -> None:
        """Close every thread's connection; each opens a new one at its next use.

        A connection opened while the file system was read-only stays read-only once it
        is writable again, and in one process SQLite shares the file's WAL index among
        connections, so while any of them is open no new one can write either. A thread
        in the middle of a query at that moment gets an error once."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            self._opened_read_only = False

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot across several queries."""
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """A transaction begun with ``begin``: committed if its body succeeds, else
        rolled back and the body's exception raised (not the rollback's). SQLite finding
        the file damaged is raised as :class:`StoreDamaged`."""
        conn = self._conn()
        try:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if damaged(exc):
                raise StoreDamaged(f"{self.path} is damaged ({exc}): {DAMAGED_REMEDY}") from exc
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the database to :func:`schema_version`, one version per transaction.

        Raises :class:`StoreError` for a database written by a newer trovewatch.
        """
        try:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: not a usable trovewatch state database ({exc})"
            ) from exc
        target = schema_version()
        if current > target:
            raise StoreError(
                f"{self.path}: state database has schema v{current}, newer than this "
                f"trovewatch's v{target}; upgrade trovewatch or use another state_dir"
            )
        for version in range(current + 1, target + 1):
            with self._write() as tx:
                for statement in MIGRATIONS[version - 1]:
                    tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {version:d}")

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- the engine's side ---------------------------------------------------------------

    def load_checkpoint(self, defer: str | None = None) -> Checkpoint | None:
        """The last saved checkpoint, or None before the first commit. With ``defer``,
        the blobs whose names begin with it are left out of its state, named in
        ``deferred``."""
        with self._read() as conn:
            row = conn.execute("SELECT sources, saved_at FROM checkpoint WHERE id = 1").fetchone()
            if row is None:
                return None
            state, deferred = {}, []
            for name, data in conn.execute(
                "SELECT name, CASE WHEN ?1 IS NOT NULL AND substr(name, 1, length(?1)) = ?1"
                " THEN NULL ELSE data END FROM checkpoint_state",
                (defer,),
            ):
                if data is None:
                    deferred.append(name)
                else:
                    state[name] = data
        return Checkpoint(
            sources=json.loads(row[0]), state=state, saved_at=row[1], deferred=tuple(deferred)
        )

    def checkpoint_blob(self, name: str) -> bytes | None:
        """One blob of the last saved checkpoint's state (None if it holds no such name)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT data FROM checkpoint_state WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def _rows(self, scored: pl.DataFrame) -> Iterator[list[tuple[Any, ...]]]:
        """``scored`` (the shape of :func:`detector.pipeline.score`) as rows for SQLite,
        one per (account, window_start), ``ROW_CHUNK`` at a time: a close of 100,000
        windows then holds one chunk's JSON and Python tuples, not all of them at once."""
        import polars as pl

        features = scored.schema["features"]
        present = {f.name for f in features.fields} if isinstance(features, pl.Struct) else set()
        volumes = [
            pl.col("features").struct.field(f"{name}_{self._base}").alias(name)
            if f"{name}_{self._base}" in present
            else pl.lit(None, pl.Int64).alias(name)
            for name in ("rows_read", "bytes_read", "statements", "exports")
        ]
        keys = ["account", "window_start"]
        # Windows come once each from a close: the copy of them all (100,000 windows'
        # features at a close) that dropping repeats makes is made only for repeats.
        if scored.select(keys).is_duplicated().any():
            scored = scored.unique(keys, keep="first", maintain_order=True)
        for offset in range(0, scored.height, ROW_CHUNK):
            yield (
                scored.slice(offset, ROW_CHUNK)
                .select(
                    "account",
                    pl.col("window_start").dt.epoch("us"),
                    pl.col("window_end").dt.epoch("us"),
                    "score",
                    pl.col("flagged").cast(pl.Int8),
                    "severity",
                    _json_list("reasons"),
                    pl.col("features").struct.json_encode(),
                    _json_list("objects"),
                    _json_list("clients"),
                    _json_list("applications"),
                    *volumes,
                )
                .rows()
            )

    def commit(self, scored: pl.DataFrame, checkpoint: Checkpoint) -> list[AlertRow]:
        """Save scored windows, their alerts and the checkpoint in ONE transaction.

        ``scored`` has the shape of :func:`detector.pipeline.score`. A window already
        stored (same account and window_start) is left as it was: committing twice
        stores it once, raises one alert and counts once in the totals. Each flagged
        new window gets an alert, ``suppressed`` if a suppression of its account covers
        its start, else ``open``. Returns the alerts created, oldest first.
        """
        sources = json.dumps(checkpoint.sources)
        with self._write() as conn:
            # The checkpoint first: a failure further on must take it back with the rest.
            conn.execute("DELETE FROM checkpoint")
            if checkpoint.replace:
                conn.execute("DELETE FROM checkpoint_state")
            conn.execute(
                "INSERT INTO checkpoint (id, sources, saved_at) VALUES (1, ?, ?)",
                (sources, checkpoint.saved_at),
            )
            conn.executemany(
                "DELETE FROM checkpoint_state WHERE name = ?",
                [(name,) for name, data in checkpoint.state.items() if data is None],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO checkpoint_state (name, data) VALUES (?, ?)",
                [(name, data) for name, data in checkpoint.state.items() if data is not None],
            )
            if not scored.height:
                return []
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS incoming ({_INCOMING_COLS}, new INTEGER)"
            )
            conn.execute("DELETE FROM incoming")
            for rows in self._rows(scored):
                conn.executemany(
                    f"INSERT INTO incoming ({_INCOMING_COLS}) VALUES ({_INCOMING_PLACES})",
                    rows,
                )
            conn.execute(
                """UPDATE incoming SET new = NOT EXISTS (
                    SELECT 1 FROM windows w
                    WHERE w.account = incoming.account AND w.window_start = incoming.window_start)"""
            )
            conn.execute(
                """INSERT INTO totals (account, windows, statements, rows_read, bytes_read, exports)
                SELECT account, count(*), coalesce(sum(statements), 0),
                       coalesce(sum(rows_read), 0), sum(bytes_read), coalesce(sum(exports), 0)
                FROM incoming WHERE new GROUP BY account
                ON CONFLICT (account) DO UPDATE SET
                    windows = windows + excluded.windows,
                    statements = statements + excluded.statements,
                    rows_read = rows_read + excluded.rows_read,
                    bytes_read = CASE WHEN excluded.bytes_read IS NULL THEN bytes_read
                                      ELSE coalesce(bytes_read, 0) + excluded.bytes_read END,
                    exports = exports + excluded.exports"""
            )
            conn.execute(
                f"""INSERT INTO windows ({_INCOMING_COLS})
                SELECT {_INCOMING_COLS} FROM incoming WHERE new"""
            )
            conn.execute(
                """INSERT INTO latest (account, window_start)
                SELECT account, max(window_start) FROM incoming WHERE new GROUP BY account
                ON CONFLICT (account) DO UPDATE
                SET window_start = max(window_start, excluded.window_start)"""
            )
            first_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM alerts").fetchone()[0]
            conn.execute(
                f"""INSERT INTO alerts (account, window_start, window_end, score, severity,
                                       status, created_at)
                SELECT i.account, i.window_start, i.window_end, i.score, i.severity,
                       CASE WHEN EXISTS (
                           SELECT 1 FROM suppressions s WHERE s.account = i.account
                           AND s.start <= i.window_start AND i.window_start < s.until
                           AND {_covers("i")})
                       THEN 'suppressed' ELSE 'open' END,
                       ?
                FROM incoming i WHERE i.new AND i.flagged
                ORDER BY i.window_start, i.account""",
                (time.time(),),
            )
            created = conn.execute(
                """SELECT id, account, window_start, severity, score, status
                FROM alerts WHERE id >= ? ORDER BY id""",
                (first_id,),
            ).fetchall()
            conn.execute("DELETE FROM incoming")
        return [
            AlertRow(
                id=r[0],
                account=r[1],
                window_start=_iso(r[2]) or "",
                severity=r[3],
                score=r[4],
                status=r[5],
            )
            for r in created
        ]

    # -- the API's side ------------------------------------------------------------------

    def _page(
        self, count: str, select: str, params: list[Any], limit: int, offset: int
    ) -> tuple[int, list[sqlite3.Row]]:
        """The number of rows ``count`` counts, and the page of ``select``'s rows (its
        query up to its LIMIT) from ``offset``, at most ``limit``: in one read snapshot."""
        with self._read() as conn:
            total = conn.execute(count, params).fetchone()[0]
            cursor = conn.execute(f"{select} LIMIT ? OFFSET ?", [*params, limit, offset])
            cursor.row_factory = sqlite3.Row
            rows = cursor.fetchall()
        return total, rows

    @staticmethod
    def _window(row: sqlite3.Row, features: bool) -> dict[str, Any]:
        item = {
            "window_start": _iso(row["window_start"]),
            "window_end": _iso(row["window_end"]),
            "score": row["score"],
            "flagged": bool(row["flagged"]),
            "severity": row["severity"],
            "reasons": json.loads(row["reasons"]),
            "objects": json.loads(row["objects"]),
            "clients": json.loads(row["clients"] or "[]"),
            "applications": json.loads(row["applications"] or "[]"),
        }
        if features:
            item["features"] = json.loads(row["features"])
        return item

    def accounts(
        self,
        sort: Sort = "score",
        min_score: float | None = None,
        severity: str | None = None,
        flagged: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Each account's latest window, filtered, sorted and paged.

        ``sort``: ``score`` (highest first), ``account`` (A-Z) or ``window`` (newest
        first); ties by account. Returns (number matching, the page's items).
        """
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        condition, params = _where(
            ("w.score >= ?", min_score),
            ("w.severity = ?", severity),
            ("w.flagged = ?", None if flagged is None else int(flagged)),
        )
        order = {
            "score": "w.score DESC, w.account",
            "account": "w.account",
            "window": "w.window_start DESC, w.account",
        }[sort]
        base = f"""FROM latest l JOIN windows w
            ON w.account = l.account AND w.window_start = l.window_start
            WHERE {condition}"""
        total, rows = self._page(
            f"SELECT count(*) {base}", f"SELECT w.* {base} ORDER BY {order}", params, limit, offset
        )
        return total, [{"account": r["account"], **self._window(r, False)} for r in rows]

    def account(self, name: str, limit: int = 50) -> dict[str, Any] | None:
        """An account's ``limit`` most recent windows (with features) and its all-time
        totals (windows, statements, rows_read, bytes_read or None if never known,
        exports); None for an account never stored."""
        with self._read() as conn:
            cursor = conn.execute(
                "SELECT windows, statements, rows_read, bytes_read, exports "
                "FROM totals WHERE account = ?",
                (name,),
            )
            cursor.row_factory = sqlite3.Row
            totals = cursor.fetchone()
            if totals is None:
                return None
            cursor = conn.execute(
                "SELECT * FROM windows WHERE account = ? ORDER BY window_start DESC LIMIT ?",
                (name, limit),
            )
            cursor.row_factory = sqlite3.Row
            windows = cursor.fetchall()
        return {
            "account": name,
            "totals": dict(totals),
            "windows": [self._window(r, True) for r in windows],
        }

    @staticmethod
    def _alert(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "account": row["account"],
            "window_start": _iso(row["window_start"]),
            "window_end": _iso(row["window_end"]),
            "score": row["score"],
            "severity": row["severity"],
            "status": row["status"],
            "reasons": json.loads(row["reasons"] or "[]"),
            "objects": json.loads(row["objects"] or "[]"),
            "clients": json.loads(row["clients"] or "[]"),
            "applications": json.loads(row["applications"] or "[]"),
            "created_at": _iso(round(row["created_at"] * 1e6)),
            "note": row["note"],
            "judged_at": _iso(None if row["judged_at"] is None else round(row["judged_at"] * 1e6)),
            "suppressed_until": _iso(row["suppressed_until"]),
        }

    def alerts(
        self,
        since: datetime | None = None,
        severity: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Alerts whose window starts at or after ``since`` (event time), newest first,
        with their reasons. Returns (number matching, the page's items)."""
        condition, params = _where(
            ("a.window_start >= ?", None if since is None else _us(since)),
            ("a.severity = ?", severity),
            ("a.status = ?", status),
        )
        total, rows = self._page(
            f"SELECT count(*) FROM alerts a WHERE {condition}",
            f"{_ALERT_SELECT} WHERE {condition} ORDER BY a.window_start DESC, a.id DESC",
            params,
            limit,
            offset,
        )
        return total, [self._alert(r) for r in rows]

    def alert(self, alert_id: int) -> dict[str, Any] | None:
        """One alert with its reasons, or None."""
        with self._read() as conn:
            cursor = conn.execute(f"{_ALERT_SELECT} WHERE a.id = ?", (alert_id,))
            cursor.row_factory = sqlite3.Row
            row = cursor.fetchone()
        return None if row is None else self._alert(row)

    def feedback(
        self,
        alert_id: int,
        verdict: Verdict,
        note: str | None = None,
        suppress_for: timedelta | None = None,
        objects_only: bool = False,
    ) -> dict[str, Any] | None:
        """Judge an alert: its status becomes ``verdict``, with the note and the time.

        With ``suppress_for``, the account is suppressed from the alert's window_start
        until its window_end + ``suppress_for`` (event time): alerts raised in that
        period are ``suppressed``, including open ones already stored, and the account
        is not currently flagged. With ``objects_only`` too, only the account's windows
        reading nothing but objects this alert's window read are: a pattern, not the
        account. Returns the updated alert, or None if there is none.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
        if suppress_for is not None and suppress_for <= timedelta(0):
            raise ValueError("suppress_for must be positive")
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "SELECT account, window_start, window_end FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
            if row is None:
                return None
            account, start, end = row
            conn.execute(
                "UPDATE alerts SET status = ?, note = ?, judged_at = ? WHERE id = ?",
                (verdict, note, now, alert_id),
            )
            if suppress_for is not None:
                until = end + _span_us(suppress_for)
                objects = None
                if objects_only:
                    objects = conn.execute(
                        "SELECT objects FROM windows WHERE account = ? AND window_start = ?",
                        (account, start),
                    ).fetchone()[0]
                suppression = conn.execute(
                    "INSERT INTO suppressions (account, start, until, alert_id, created_at, "
                    "objects) VALUES (?, ?, ?, ?, ?, ?)",
                    (account, start, until, alert_id, now, objects),
                ).lastrowid
                conn.execute(
                    f"""UPDATE alerts SET status = 'suppressed' WHERE account = ?
                    AND status = 'open' AND window_start >= ? AND window_start < ?
                    AND EXISTS (SELECT 1 FROM suppressions s, windows w
                        WHERE s.id = ? AND w.account = alerts.account
                        AND w.window_start = alerts.window_start AND {_covers("w")})""",
                    (account, start, until, suppression),
                )
        return self.alert(alert_id)

    def flagged(self, hold: timedelta) -> list[Flagged]:
        """Accounts currently flagged: with an open or true_positive alert whose window
        ended within ``hold`` of the newest stored window_end (event time), unless a
        suppression covers that newest time. One per account: its highest score and
        that alert's severity."""
        with self._read() as conn:
            newest = conn.execute("SELECT max(window_end) FROM windows").fetchone()[0]
            if newest is None:
                return []
            rows = conn.execute(
                """SELECT account, severity, score FROM (
                    SELECT a.account, a.severity, a.score, row_number() OVER (
                        PARTITION BY a.account ORDER BY a.score DESC, a.window_start DESC) AS n
                    FROM alerts a
                    WHERE a.status IN ('open', 'true_positive') AND a.window_end >= ?
                      AND NOT EXISTS (
                        SELECT 1 FROM suppressions s WHERE s.account = a.account
                        AND s.objects IS NULL AND s.start <= ? AND ? < s.until))
                WHERE n = 1 ORDER BY score DESC, account""",
                (newest - _span_us(hold), newest, newest),
            ).fetchall()
        return [Flagged(account=a, severity=s or "none", score=sc) for a, s, sc in rows]

    def training_windows(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Stored windows starting in [start, end) that retraining may learn from, in
        the shape of :func:`detector.pipeline.score` (features decoded from JSON).

        Left out, so that the model never learns an attack: windows whose alert was
        judged true_positive, and every flagged window not judged false_positive
        (open or suppressed ones included). False positives are kept: they are normal.
        """
        import polars as pl

        with self._read() as conn:
            rows = conn.execute(
                f"""SELECT {", ".join("w." + c for c in _WINDOW_COLS.split(", "))}
                FROM windows w LEFT JOIN alerts a
                  ON a.account = w.account AND a.window_start = w.window_start
                WHERE w.window_start >= ? AND w.window_start < ?
                  AND coalesce(a.status, '') <> 'true_positive'
                  AND (NOT w.flagged OR a.status = 'false_positive')
                ORDER BY w.window_start, w.account""",
                (_us(start), _us(end)),
            ).fetchall()
        frame = pl.DataFrame(
            rows,
            schema={
                "account": pl.String,
                "window_start": pl.Int64,
                "window_end": pl.Int64,
                "score": pl.Float64,
                "flagged": pl.Int64,
                "severity": pl.String,
                "reasons": pl.String,
                "features": pl.String,
                "objects": pl.String,
                "clients": pl.String,
                "applications": pl.String,
            },
            orient="row",
        )
        strings = pl.List(pl.String)
        # Feature names and types are the model's, not the store's: inferred from them all.
        features = pl.DataFrame()
        if frame.height:
            order = json.loads(frame["features"][0])  # the struct's own field order
            features = pl.read_ndjson(
                io.StringIO("\n".join(frame["features"])), infer_schema_length=None
            )
            features = features.select(
                *[c for c in order if c in features.columns],
                *[c for c in features.columns if c not in order],
            )
        return frame.with_columns(
            pl.col("window_start", "window_end").cast(pl.Datetime("us", "UTC")),
            pl.col("flagged").cast(pl.Boolean),
            pl.col("reasons").str.json_decode(strings),
            pl.col("objects").str.json_decode(strings),
            pl.col("clients", "applications").fill_null("[]").str.json_decode(strings),
            features.to_struct("features") if frame.height else pl.lit(None, pl.Struct({})),
        )

    def prune(self, retention: timedelta) -> int:
        """Delete windows and alerts that ended before the newest window_end less
        ``retention`` (event time), and suppressions over by then. Totals are kept.
        Returns the number of windows and alerts deleted."""
        with self._write() as conn:
            newest = conn.execute("SELECT max(window_end) FROM windows").fetchone()[0]
            if newest is None:
                return 0
            cutoff = newest - _span_us(retention)
            windows = conn.execute("DELETE FROM windows WHERE window_end < ?", (cutoff,)).rowcount
            alerts = conn.execute("DELETE FROM alerts WHERE window_end < ?", (cutoff,)).rowcount
            conn.execute("DELETE FROM suppressions WHERE until < ?", (cutoff,))
            conn.execute(
                """DELETE FROM latest WHERE NOT EXISTS (
                    SELECT 1 FROM windows w
                    WHERE w.account = latest.account AND w.window_start = latest.window_start)"""
            )
        return int(windows + alerts)

    def replaced(self) -> bool:
        """Whether the database file at ``state_dir`` is gone or another file than the
        one opened (the state directory removed, say): what is written goes to the
        opened one, lost at the next start."""
        return self._file_identity() != self._identity

    def writable(self) -> bool:
        """True if a small write to the database file at ``state_dir`` succeeds now: the
        file is still the one opened (not removed or replaced), not locked by another
        writer for more than a second, not on a read-only or full disk."""
        if self.replaced():
            return False
        try:
            conn = self._conn()
            conn.execute("PRAGMA busy_timeout = 1000")
            try:
                with self._write() as tx:
                    tx.execute(
                        "INSERT INTO probe (id, at) VALUES (1, ?) "
                        "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                        (time.time(),),
                    )
            finally:
                conn.execute("PRAGMA busy_timeout = 5000")
        except (sqlite3.Error, StoreError) as exc:
            self._locked = is_locked(exc)
            return False
        self._locked = False
        return True

    def lock_problem(self) -> str | None:
        return lock_problem(self.path) if self._locked else None
