"""PostgreSQL ``stderr`` output (``log_destination = 'stderr'``) carrying pgAudit records.

Each line starts with the server's ``log_line_prefix``. We turn the prefix into a regular
expression (:func:`prefix_regex`); when the user does not give theirs, the most specific
of the common prefixes that fits the file's first lines is used. A record continued
over several lines (a multi-line statement) has its continuation lines start with a tab.
"""

from __future__ import annotations

import re
from typing import Final

import polars as pl

from detector.formats import pg_messages, pgaudit
from detector.formats.base import Parsed
from detector.formats.pg_sessions import Servers
from detector.reader import Chunk, RecordStart
from detector.rejects import Reason, rejects, with_raw_lines

# A record's severity or a follower's name (DETAIL, ..., STATEMENT), in English (DEBUG1-5
# too) or translated (lc_messages: pg_messages.SEVERITY_NAMES).
SEVERITIES: Final = "|".join(
    [
        "DEBUG1|DEBUG2|DEBUG3|DEBUG4|DEBUG5",
        *pg_messages.SEVERITIES,
        *map(re.escape, pg_messages.SEVERITY_NAMES),
    ]
)
_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
# A time zone abbreviation ("UTC", "EST", "+0530") never holds a ":": without this, in
# RDS's "%t:%r:" the zone would run on into an IPv6 client ("UTC::" then "1(46968)").
_ZONE = r"(?: [^ \]:]+)?"
ESCAPES: Final = {
    "m": rf"(?P<ts>{_TIME}\.\d+{_ZONE})",
    "t": rf"(?P<ts>{_TIME}{_ZONE})",
    "n": r"(?P<epoch>\d+(?:\.\d+)?)",
    "p": r"(?P<pid>\d+)",
    "P": r"(?P<leader_pid>\d*)",
    # Role and database names may hold spaces ("Zoë Ü"): they end where the rest fits.
    "u": r"(?P<user>.*?)",
    "d": r"(?P<dbname>.*?)",
    "a": r"(?P<application_name>.*?)",
    # host(port), [local], or nothing; never a bare word, which is a name's next word.
    "r": r"(?P<remote_host>\[local\]|[^\s(]+\(\d+\)|)",
    "h": r"(?P<remote_host>\S*?)",
    "b": r"(?P<backend_type>.*?)",
    "c": r"(?P<session_id>[0-9a-f]+\.[0-9a-f]+)",
    "l": r"\d+",
    "s": rf"{_TIME}{_ZONE}",
    "v": r"\S*?",
    "x": r"\S*?",
    "e": r"[0-9A-Z]{5}",
    "i": r".*?",
    "Q": r"-?\d*",
}
# Common prefixes, most specific first: the first that fits a file's head is used.
COMMON_PREFIXES: Final = (
    "%m [%p] %q%u@%d %r %a ",
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%m [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: user=%u,db=%d,app=%a,client=%h ",  # pgBadger's documentation
    "%m [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%m [%p] %c %l %q%u@%d ",
    "%t:%r:%u@%d:[%p]:",  # Amazon RDS and Aurora, which cannot be changed there
    "%m [%p] %q%u@%d %h ",
    "%t [%p]: [%l-1] user=%u,db=%d ",
    "%m [%p] %q%u@%d ",
    "%t [%p] %q%u@%d ",
    "%m [%p] ",
    "%t [%p] ",
)
RECORD_START: Final = re.compile(rb"[^\t]")


def prefix_regex(prefix: str) -> str:
    """A regular expression for a log line with ``log_line_prefix = prefix``.

    Named groups carry the prefix's fields, then ``severity`` and ``message``. Fields
    after ``%q`` are optional, as the server omits them for non-session processes.

    >>> bool(re.match(prefix_regex("%m [%p] "), "2026-11-28 06:55:02.403 UTC [4518] LOG:  hi"))
    True
    """
    out: list[str] = []
    optional_from: int | None = None
    seen: set[str] = set()
    for token in prefix_tokens(prefix):
        esc = token[-1] if token.startswith("%") else None
        if esc is None:
            out.append(re.escape(token))
        elif esc == "%":
            out.append("%")
        elif esc == "q":
            optional_from = len(out)
        elif esc in ESCAPES:
            out.append(_named_once(ESCAPES[esc], seen))
        else:
            raise ValueError(f"log_line_prefix escape %{esc} is not supported")
    if optional_from is not None:
        out = [*out[:optional_from], "(?:", *out[optional_from:], ")?"]
    return "^" + "".join(out) + rf"(?P<severity>{SEVERITIES}):  (?P<message>.*)$"


def prefix_tokens(prefix: str) -> list[str]:
    """``prefix`` as its escapes (``%x``, with any padding) and literal characters."""
    tokens: list[str] = []
    i = 0
    while i < len(prefix):
        m = re.match(r"%-?\d*(.)", prefix[i:]) if prefix[i] == "%" else None
        if prefix[i] == "%" and m is None:
            raise ValueError(f"log_line_prefix ends with a lone '%': {prefix!r}")
        token = m.group(0) if m else prefix[i]
        tokens.append(token)
        i += len(token)
    return tokens


def _named_once(pattern: str, seen: set[str]) -> str:
    """``pattern`` with its group unnamed if an earlier escape took the name."""
    group = re.search(r"\?P<(\w+)>", pattern)
    if group and group.group(1) in seen:
        return re.sub(r"\?P<\w+>", "?:", pattern)
    if group:
        seen.add(group.group(1))
    return pattern


def strict_regex(prefix: str) -> str | None:
    """A cheaper :func:`prefix_regex` (without ``message``) for the usual line, or None.

    Each choice the general expression makes (the fields after ``%q`` or not, how far a
    field goes) is fixed to its first option, the one the general expression tries
    first, and the field is held to stop where that option must: a lazy field at the
    first occurrence of the character after it, the time zone present. Where this
    expression matches and ``severity`` is one of :data:`SEVERITIES`, every option the
    general expression would have tried first fails at the next character, so both give
    the same groups; any other line needs the general expression. Only prefixes whose
    every escape is followed by a literal character (that ends it) have one.
    """
    tokens = prefix_tokens(prefix)
    out: list[str] = []
    seen: set[str] = set()
    for i, token in enumerate(tokens):
        if token == "%q" or not token.startswith("%"):
            out.append("" if token == "%q" else re.escape(token))
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else "%"  # then the severity
        if len(token) != 2 or after.startswith("%"):
            return None  # padded, or not ended by a literal character
        pattern = "%" if token == "%%" else _strict_escape(token[1], after)
        if pattern is None:
            return None
        out.append(_named_once(pattern, seen))
    return "^(?P<_head>" + "".join(out) + "(?P<severity>[^\\s:]+):  )"


def _strict_escape(esc: str, after: str) -> str | None:
    """The pattern of escape ``esc`` that takes only its first choice before the literal
    character ``after`` (see :func:`strict_regex`), or None."""
    stop = re.escape(after)
    digit = after.isdigit()
    if esc in "mts" and after in " ]":
        # The zone taken, to its end: a shorter zone is followed by a zone character.
        return ESCAPES[esc].replace(_ZONE, r" [^ \]:]+")
    if esc in "hvx":  # lazy, to the first ``after``
        return ESCAPES[esc].replace(r"\S*?", rf"[^\s{stop}]*")
    if esc in "abiud":
        return ESCAPES[esc].replace(r".*?", rf"[^{stop}\n]*")
    if esc in "pPl" and not digit:
        return ESCAPES[esc]
    if (esc == "Q" and not digit and after != "-") or (esc == "n" and not digit and after != "."):
        return ESCAPES[esc]
    if esc == "c" and after not in "0123456789abcdef.":
        return ESCAPES[esc]
    if esc == "r" and after == " ":
        # A host (with its port) begins with no "[" here, so the next character always
        # tells which choice goes on: the regex engine then reads the groups in one pass
        # (a third of the time); a host that does begin with one is read the general way.
        return r"(?P<remote_host>\[local\]|[^\s(\[][^\s(]*\(\d+\)|)"
    if esc == "e":
        return ESCAPES[esc]
    return None


def guess_prefix(head: list[str], prefixes: tuple[str, ...] = COMMON_PREFIXES) -> str | None:
    """Of ``prefixes``, the one matching the most non-continuation head lines (the first
    on a tie), if it matches at least half: a few stray lines must not hide it."""
    lines = [s for s in head if s and not s.startswith("\t")]
    if not lines:
        return None
    hits = {p: sum(1 for s in lines if re.match(prefix_regex(p), s)) for p in prefixes}
    best = max(prefixes, key=lambda p: hits[p])  # max keeps the first of equals
    return best if hits[best] * 2 >= len(lines) else None


class PgStderr:
    name = "pgaudit-stderr"
    finish = staticmethod(pgaudit.finish)
    record_start: RecordStart = RECORD_START

    def __init__(self, log_line_prefix: str | None = None, timezone: str | None = None) -> None:
        self.log_line_prefix = log_line_prefix
        self.timezone = timezone  # the server's log_timezone, if told
        self._servers, self._server = Servers(), ""

    def sniff(self, head: list[str]) -> bool:
        """The head is stderr output with the user's prefix, or else a common one."""
        prefixes = (self.log_line_prefix,) if self.log_line_prefix else COMMON_PREFIXES
        return guess_prefix(head, prefixes) is not None

    def configure(self, head: list[str]) -> None:
        """Pick the prefix from the file's head unless the user gave one."""
        if self.log_line_prefix is None:
            self.log_line_prefix = guess_prefix(head) or "%m [%p] "

    def parse(self, chunk: Chunk) -> Parsed:
        """Events of ``chunk``, the one after the chunks this parser parsed before (in
        the same file, or the files one server wrote one after the other): sessions that
        began there go on here (:mod:`detector.formats.pg_sessions`)."""
        return self.carry(self.parse_alone(chunk))

    def carry(self, parsed: Parsed) -> Parsed:
        """``parsed`` (:meth:`parse_alone` of the next chunk) in the sessions of the
        chunks carried before it."""
        names = re.findall(r"\?P<(\w+)>", head_regex(self.log_line_prefix or "%m [%p] "))
        sessions = self._servers.of(self._server, derived="session_id" not in names)
        return sessions.carry(parsed)

    def share_sessions(self, servers: Servers, server: str) -> None:
        """Read this file as the one after the files of ``server`` read before (their
        sessions, kept in ``servers``, go on here; this file's stay there for the next)."""
        self._servers, self._server = servers, server

    def parse_alone(self, chunk: Chunk) -> Parsed:
        """Events of ``chunk`` by itself: sessions numbered within it, and the AUDIT
        events of sessions it did not see open without a user (for :meth:`carry`)."""
        prefix = self.log_line_prefix or "%m [%p] "
        rx = head_regex(prefix)
        lines = chunk.lines
        records, bad = _join_continuations(lines, rx, strict_regex(prefix))
        fields = pl.col("_fields")
        names = set(re.findall(r"\?P<(\w+)>", rx))

        def field(name: str, dtype: type[pl.DataType] = pl.String) -> pl.Expr:
            if name in names:
                return fields.struct.field(name).replace("", None).cast(dtype, strict=False)
            return pl.lit(None, dtype)

        # The message is the rest of the line after the matched head.
        message = pl.col("line").str.strip_prefix(fields.struct.field("_head"))
        if records["_more"].null_count() < records.height:  # a copy of every message
            message = message + pl.col("_more").fill_null("")
        records = records.select(
            "line_no",
            fields.struct.field("ts").alias("ts")
            if "ts" in names
            else pl.lit(None, pl.String).alias("ts"),
            field("user").alias("user"),
            field("dbname").alias("dbname"),
            field("pid", pl.Int64).alias("pid"),
            field("remote_host").str.replace(r"\(\d+\)$", "").alias("remote_host"),
            field("application_name").alias("application_name"),
            field("session_id").alias("session_id"),
            field("backend_type").alias("backend_type"),
            field("leader_pid", pl.Int64).alias("leader_pid"),
            fields.struct.field("severity").alias("severity"),
            message.alias("message"),
        )
        records = _sessions(
            records.with_columns(
                pg_messages.in_english(records["severity"]),
                pg_messages.connections_in_english(records["message"]),
            )
        )
        if _user_at_database(prefix) and records["dbname"].str.contains("@", literal=True).any():
            records = _named_by_connections(_split_at_last_at(records))
        parsed = pgaudit.to_events(
            records, self.name, sessions_carried=True, timezone=self.timezone, english=True
        )
        found = pl.concat([bad, parsed.rejects]).sort("line_no")
        parsed.rejects = with_raw_lines(found, lambda: lines)
        return parsed


def head_regex(prefix: str) -> str:
    """:func:`prefix_regex` without its ``message`` group, the whole match in ``_head``.

    The message is the rest of the line whatever the head matched, so this matches the
    same lines with the same fields; but the captures are resolved over the short head
    only, not over the statement text (half the cost of the stderr parse).
    """
    head = prefix_regex(prefix).removeprefix("^").removesuffix("(?P<message>.*)$")
    return "^(?P<_head>" + head + ")"


def _user_at_database(prefix: str) -> bool:
    """True if ``prefix`` prints the user and the database with an ``@`` between them
    (``%u@%d``): a name holding an ``@`` then makes the line say which is which no more."""
    tokens = prefix_tokens(prefix)
    return any(tokens[i : i + 3] == ["%u", "@", "%d"] for i in range(len(tokens)))


def _split_at_last_at(records: pl.DataFrame) -> pl.DataFrame:
    """``records`` with ``user@database`` (read by ``%u@%d``, the user up to the first
    ``@``) split at the last ``@`` instead: ``jane.doe@corp.com@shop`` is the role
    ``jane.doe@corp.com`` on ``shop``. Role names with an ``@`` (e-mail style, from Azure
    AD, IAM or LDAP) are common, database names with one rare; the session's connection
    line, where seen, says which it is (:func:`_named_by_connections`)."""
    user, db = pl.col("user"), pl.col("dbname")
    split = db.str.contains("@", literal=True) & user.is_not_null()
    return records.with_columns(
        pl.when(split)
        .then(user + "@" + db.str.extract(r"^(.*)@", 1))
        .otherwise(user)
        .alias("user"),
        pl.when(split).then(db.str.extract(r"@([^@]*)$", 1)).otherwise(db).alias("dbname"),
    )


def _named_by_connections(records: pl.DataFrame) -> pl.DataFrame:
    """``records`` whose ``user@database`` reads the same as their session's connection
    line's ``user=... database=...`` with those names (split where the server split
    them). Sessions whose connection line is in an earlier chunk are renamed the same way
    when carried (:meth:`detector.formats.pg_sessions.OpenSessions.carry`)."""
    auth = pl.col("message").str.extract_groups(pgaudit.CONNECTION_AUTHORIZED)
    said = records.with_columns(
        auth.struct.field("u").alias("_u"), auth.struct.field("d").alias("_d")
    ).with_columns(pl.col("_u", "_d").fill_null(strategy="forward").over("session_id"))
    same = (pl.col("user") + "@" + pl.col("dbname")) == (pl.col("_u") + "@" + pl.col("_d"))
    return said.with_columns(
        pl.when(same).then("_u").otherwise("user").alias("user"),
        pl.when(same).then("_d").otherwise("dbname").alias("dbname"),
    ).drop("_u", "_d")


def _join_continuations(
    lines: pl.DataFrame, rx: str, strict: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Records (first line, ``_fields``: the groups of ``rx`` (:func:`head_regex`), and
    ``_more``: its tab-continued lines) and unparsable lines. ``strict`` is ``rx``'s
    :func:`strict_regex`, tried first."""
    is_cont = pl.col("line").str.starts_with("\t")
    lines = lines.with_columns(is_cont.alias("_cont"), (~is_cont).cum_sum().alias("_rec"))
    heads = _heads(lines.filter(~pl.col("_cont")), rx, strict)
    matched = pl.col("_fields").struct.field("_head").is_not_null()
    bad = rejects(heads, ~matched & (pl.col("line") != ""), Reason.UNRECOGNISED)
    records = heads.filter(matched)
    if lines["_cont"].any():
        more = (
            lines.filter(pl.col("_cont"))
            .group_by("_rec")
            .agg(("\n" + pl.col("line").str.slice(1)).str.join("").alias("_more"))
        )
        records = records.join(more, on="_rec", how="left", maintain_order="left")
    else:
        records = records.with_columns(pl.lit(None, pl.String).alias("_more"))
    return records.drop("_cont", "_rec"), bad


def _heads(heads: pl.DataFrame, rx: str, strict: str | None) -> pl.DataFrame:
    """``heads`` with ``_fields``, the groups of ``rx`` (null where it does not match):
    by ``strict`` where it is sure (:func:`strict_regex`), by ``rx`` for the rest."""
    if strict is None:
        return heads.with_columns(pl.col("line").str.extract_groups(rx).alias("_fields"))
    heads = heads.with_columns(pl.col("line").str.extract_groups(strict).alias("_fields"))
    severity = pl.col("_fields").struct.field("severity")
    sure = severity.is_in(SEVERITIES.split("|")).fill_null(False)
    if heads.select(sure.all()).item():
        return heads
    rest = heads.filter(~sure).with_columns(pl.col("line").str.extract_groups(rx).alias("_fields"))
    return pl.concat([heads.filter(sure), rest]).sort("line_no")


def _sessions(records: pl.DataFrame) -> pl.DataFrame:
    """Session ids (derived from pid and connection order without ``%c``) and the
    ``STATEMENT`` text of each ``ERROR`` (the next ``STATEMENT`` record of its process)."""
    conn = pl.col("message").str.starts_with("connection received:")
    derived = pl.col("pid").cast(pl.String) + "." + conn.cum_sum().over("pid").cast(pl.String)
    if records["session_id"].null_count():
        records = records.with_columns(pl.coalesce("session_id", derived).alias("session_id"))
    main = ~pl.col("severity").is_in(pg_messages.FOLLOWERS)
    if not records.select((pl.col("severity") == "STATEMENT").any()).item():
        # No statement to hand out (no failed statement in the chunk): the window over
        # (pid, group) would cost more than the rest of this step.
        return records.with_columns(pl.lit(None, pl.String).alias("statement")).filter(main)
    statement = (
        pl.when(pl.col("severity") == "STATEMENT").then(pl.col("message")).drop_nulls().first()
    )
    return (
        records.with_columns(main.cum_sum().over("pid").alias("_group"))
        .with_columns(statement.over("pid", "_group").alias("statement"))
        .filter(main)
        .drop("_group")
    )
