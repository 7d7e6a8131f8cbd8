"""Sessions: the backends a day's statements ran in, and their connection log lines.

Every (account, session key) of a day's statements is one backend with its pid, client
port, ``session_id`` (hex start time and pid, as ``%c`` prints it), and the lines
``log_connections``/``log_disconnections`` write: ``connection received``, ``connection
authenticated`` (scram-sha-256), ``connection authorized``, ``disconnection``; or, for a
mistyped password, ``connection received`` and a ``FATAL``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from detector.simulate.tables import DATABASE

HEX: Final = np.array(list("0123456789abcdef"))
PG_HBA: Final = "/etc/postgresql/15/main/pg_hba.conf"
# Line kinds of the day's line table: statement lines are 0
RECEIVED, AUTHENTICATED, AUTHORIZED, DISCONNECTION, FATAL = 1, 2, 3, 4, 5


def hex_strings(values: np.ndarray, width: int) -> pl.Series:
    """Lowercase hexadecimal of non-negative integers, without leading zeros."""
    digits = (values[:, None] >> (4 * np.arange(width - 1, -1, -1))) & 0xF
    text = np.ascontiguousarray(HEX[digits]).view(f"<U{width}").ravel()
    return pl.Series(text).str.strip_chars_start("0").replace("", "0")


def timestamp(us: pl.Expr, seconds: bool = False) -> pl.Expr:
    """PostgreSQL's ``%m`` (milliseconds) or ``%t`` (seconds) time in UTC."""
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M:%S%.3f"
    return pl.from_epoch(us // 1000 * 1000, "us").dt.strftime(fmt) + " UTC"


def build(
    stmts: pl.DataFrame,
    accounts: list[str],
    ips: list[str],
    apps: list[str],
    day_us: int,
    day: int,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """One row per session (sorted by connection time), with its log fragments.

    ``stmts`` has ``account, skey, t, dur, ip, app, login_fail, dump``; the result has
    ``sess`` (row number), ``conn``/``end`` (microseconds) and the string fragments
    ``a`` (user .. line_num), ``ss`` (session_start), ``vb`` (backend id), ``c`` (the
    tail of a statement line), ``lx`` (the first local transaction id).
    """
    sessions = (
        stmts.group_by("account", "skey")
        .agg(
            pl.col("t").min().alias("first"),
            (pl.col("t") - pl.col("dur")).min().alias("first_start"),
            pl.col("t").max().alias("last"),
            pl.col("ip").first(),
            pl.col("app").first(),
            pl.col("login_fail").any(),
            pl.col("dump").any(),
        )
        .sort("first", "account", "skey")
    )
    size = sessions.height
    connect = rng.integers(5_000, 2_000_000, size)  # connecting and starting up
    linger = rng.integers(1_000, 3_000_000, size)
    conn = np.maximum(sessions["first_start"].to_numpy() - connect, day_us)
    fail = sessions["login_fail"].to_numpy()
    conn = np.where(fail, sessions["first"].to_numpy() - 3_000, conn)
    end = np.minimum(sessions["last"].to_numpy() + linger, day_us + 86_400_000_000 - 1)
    end = np.where(sessions["dump"].to_numpy(), sessions["last"].to_numpy() + 4_000, end)
    pid = 1000 + (day * 7919 + np.arange(size) * 3 + rng.integers(0, 3, size)) % 4_190_000
    sid = hex_strings(conn // 1_000_000, 8) + "." + hex_strings(pid, 6)
    sessions = sessions.with_columns(
        pl.Series("sess", np.arange(size)),
        pl.Series("conn", conn),
        pl.Series("end", end),
        pl.Series("pid", pid).cast(pl.String),
        pl.Series("port", rng.integers(32768, 61000, size)).cast(pl.String),
        sid.alias("sid"),
        pl.Series("vb", rng.integers(3, 103, size)).cast(pl.String),
        pl.Series("lx", rng.integers(1, 30_000, size)),
        pl.Series("user", accounts).gather(sessions["account"]),
        pl.Series("host", ips).gather(sessions["ip"]),
        pl.Series("appname", apps).gather(sessions["app"]),
    )
    return sessions.with_columns(
        pl.concat_str(
            pl.lit(',"user":"'), "user", pl.lit(f'","dbname":"{DATABASE}","pid":'), "pid",
            pl.lit(',"remote_host":"'), "host", pl.lit('","remote_port":'), "port",
            pl.lit(',"session_id":"'), "sid", pl.lit('","line_num":'),
        ).alias("a"),
        timestamp(pl.col("conn"), seconds=True).alias("ss"),
        pl.concat_str(
            pl.lit(',"application_name":"'), "appname",
            pl.lit('","backend_type":"client backend","query_id":0}'),
        ).alias("c"),
    )  # fmt: skip


def lines(sessions: pl.DataFrame, last_line: pl.DataFrame) -> pl.DataFrame:
    """The connection lines of every session, rendered: ``sess, t, kind, text``.

    ``last_line`` has ``sess`` and ``n`` (the number of statement lines of the session),
    which gives the disconnection line its ``line_num``.
    """
    s = sessions.join(last_line, on="sess", how="left").with_columns(pl.col("n").fill_null(0))
    ok = s.filter(~pl.col("login_fail"))
    failed = s.filter(pl.col("login_fail"))
    hba = pl.when(pl.col("host").str.starts_with("10.")).then(pl.lit("12")).otherwise(pl.lit("13"))
    head = pl.concat_str(pl.lit('{"timestamp":"'), timestamp(pl.col("t")), pl.lit('"'))
    vxid = pl.concat_str(
        pl.lit(',"session_start":"'),
        "ss",
        pl.lit('","vxid":"'),
        "vb",
        pl.lit("/"),
        pl.col("lx").cast(pl.String),
    )
    received = pl.concat_str(
        head,
        pl.lit(',"pid":'),
        "pid",
        pl.lit(',"remote_host":"'),
        "host",
        pl.lit('","remote_port":'),
        "port",
        pl.lit(',"session_id":"'),
        "sid",
        pl.lit('","line_num":1,"ps":"","session_start":"'),
        "ss",
        pl.lit('","txid":0,"error_severity":"LOG","message":"connection received: host='),
        "host",
        pl.lit(" port="),
        "port",
        pl.lit('","backend_type":"not initialized","query_id":0}'),
    )
    authenticated = pl.concat_str(
        head,
        "a",
        pl.lit('2,"ps":"authentication"'),
        vxid,
        pl.lit(
            '","txid":0,"error_severity":"LOG","message":"connection authenticated: identity=\\"'
        ),
        "user",
        pl.lit(f'\\" method=scram-sha-256 ({PG_HBA}:'),
        hba,
        pl.lit(')","backend_type":"client backend","query_id":0}'),
    )
    authorized = pl.concat_str(
        head,
        "a",
        pl.lit('3,"ps":"authentication"'),
        vxid,
        pl.lit('","txid":0,"error_severity":"LOG","message":"connection authorized: user='),
        "user",
        pl.lit(f" database={DATABASE} application_name="),
        "appname",
        pl.lit('","backend_type":"client backend","query_id":0}'),
    )
    ms = pl.col("end") // 1000 - pl.col("conn") // 1000
    session_time = pl.concat_str(
        (ms // 3_600_000).cast(pl.String),
        pl.lit(":"),
        (ms // 60_000 % 60).cast(pl.String).str.zfill(2),
        pl.lit(":"),
        (ms // 1000 % 60).cast(pl.String).str.zfill(2),
        pl.lit("."),
        (ms % 1000).cast(pl.String).str.zfill(3),
    )
    idle = pl.when(pl.col("dump")).then(pl.lit("idle in transaction")).otherwise(pl.lit("idle"))
    disconnection = pl.concat_str(
        head,
        "a",
        (pl.col("n") + 4).cast(pl.String),
        pl.lit(',"ps":"'),
        idle,
        pl.lit('","session_start":"'),
        "ss",
        pl.lit('","txid":0,"error_severity":"LOG","message":"disconnection: session time: '),
        session_time,
        pl.lit(" user="),
        "user",
        pl.lit(f" database={DATABASE} host="),
        "host",
        pl.lit(" port="),
        "port",
        pl.lit('"'),
        "c",
    )
    fatal = pl.concat_str(
        head, "a", pl.lit('2,"ps":"authentication"'), vxid,
        pl.lit('","txid":0,"error_severity":"FATAL","state_code":"28P01",'
               '"message":"password authentication failed for user \\"'), "user",
        pl.lit('\\"","detail":"Connection matched pg_hba.conf line '), hba,
        pl.lit(f': \\"host {DATABASE} all '),
        pl.when(hba == "12").then(pl.lit("10.0.0.0/8")).otherwise(pl.lit("0.0.0.0/0")),
        pl.lit(' scram-sha-256\\"","backend_type":"client backend","query_id":0}'),
    )  # fmt: skip
    at = pl.col("conn")
    parts = [
        ok.with_columns(t=at, kind=pl.lit(RECEIVED)).with_columns(text=received),
        ok.with_columns(t=at + 1500, kind=pl.lit(AUTHENTICATED)).with_columns(text=authenticated),
        ok.with_columns(t=at + 1600, kind=pl.lit(AUTHORIZED)).with_columns(text=authorized),
        ok.with_columns(t=pl.col("end"), kind=pl.lit(DISCONNECTION)).with_columns(
            text=disconnection
        ),
        failed.with_columns(t=at, kind=pl.lit(RECEIVED)).with_columns(text=received),
        failed.with_columns(t=at + 2000, kind=pl.lit(FATAL)).with_columns(text=fatal),
    ]
    return pl.concat([p.select("sess", "t", pl.col("kind").cast(pl.Int8), "text") for p in parts])
