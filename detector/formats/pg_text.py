"""What a statement's text says, whichever record carried it: the relations it reads
(:func:`relations_in`, as pgAudit names objects), the statements of a string of several
(:func:`own_statements`), and the marker on a text cut for its length
(:func:`cut_statement`). Everything here is whole-column Polars expressions.

A rule real pgAudit 1.7 logs need (see ``tests/fixtures/pgaudit/FINDINGS.md``):

* Several statements sent as one simple query are audited each with its own statement
  id and rows, but all with the whole string: each is classed by its own statement of
  the string (:func:`own_statements`), two ``COPY ... TO`` of one string each by its own.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector import schema as S
from detector.reader import CUT_MARKER_RE

# Relation names as a statement writes them: schema.table, "Quoted"."Names", table.
IDENT: Final = r'(?:"[^"]+"|[A-Za-z_][\w$]*)'
_RELATION: Final = rf"{IDENT}(?:\.{IDENT})?"
# Comments and blanks before a statement's first word: tools put their name or the
# query's origin there (``/* metabase query 42 */ COPY ...``, sqlcommenter, cron scripts).
# (Nested ``/* /* */ */`` comments are not undone; pgAudit's READ ``COPY`` still tells
# such a ``COPY ... TO``.)
LEADING: Final = r"(?:\s|/\*(?s:.*?)\*/|--[^\n]*)*"


def relations_in(text: pl.Expr, *, ctes: bool = True) -> pl.Expr:
    """Relations a statement reads, from its text: after ``FROM``/``JOIN`` (``ONLY`` or
    not, every item of a ``FROM a x, b y`` list), or ``COPY t``; not the names its
    ``WITH`` defines.

    Used only where pgAudit names no object (``COPY t TO``, cursors, failed statements).
    Unqualified names are given the ``public`` schema, the default ``search_path``. Names
    are written as pgAudit writes the objects it names (:func:`_quote_identifier`).
    Without ``ctes`` (no text has a ``WITH``: :func:`has_ctes`), the names a ``WITH``
    defines are not looked for: their steps cost ~2 ms a call, on no rows as on many.
    """
    # The items of FROM lists after their first, the first found with every FROM below.
    listed = text.str.extract_all(_FROM_LIST).list.join(" ").str.extract_all(_LISTED)
    found = pl.concat_list(
        # with a following "(", to tell a function (``FROM shop.all_customers()``)
        text.str.extract_all(rf"(?i)\b(?:FROM|JOIN)\s+{_SKIPPED}{_RELATION}\s*\(?"),
        text.str.extract_all(rf"(?i)^{LEADING}COPY\s+{_RELATION}"),
        listed,
    )
    name = (
        pl.element()
        .str.replace(rf"(?i)^{LEADING}(?:FROM|JOIN|COPY|,)\s*{_SKIPPED}", "")
        .str.strip_chars_end()
    )
    # a function's name, or a name in a function's arguments or an alias's columns
    relation = ~pl.element().str.ends_with("(") & ~pl.element().str.ends_with(")")
    relations = _qualified(found.list.eval(pl.element().filter(relation)).list.eval(name))
    if not ctes:
        return relations.list.unique(maintain_order=True)
    # ``WITH x AS (...) SELECT ... FROM x``: x is no relation. (A ``public.x`` named as
    # such in the same text is taken for it too.)
    definitions = text.str.extract_all(_CTE)
    if_cte = pl.element().str.replace(r"(?i)^(?:WITH(?:\s+RECURSIVE)?|,)\s*", "")
    defined = _qualified(definitions.list.eval(if_cte.str.extract(rf"^({IDENT})", 1)))
    marked = pl.element().str.starts_with(NUL)
    unmarked = pl.element().filter(marked).str.strip_prefix(NUL).implode()
    without_ctes = pl.concat_list(relations, defined.list.eval(pl.lit(NUL) + pl.element()))
    return (
        pl.when(definitions.list.len() > 0)
        .then(without_ctes.list.eval(pl.element().filter(~marked & ~pl.element().is_in(unmarked))))
        .otherwise(relations)
        .list.unique(maintain_order=True)
    )


def has_ctes(frame: pl.DataFrame, text: pl.Expr) -> bool:
    """Whether any ``text`` of ``frame`` defines names by ``WITH`` (:func:`relations_in`)."""
    return bool(frame.select(text.str.contains(_CTE).any()).item())


NUL: Final = "\x00"  # marks the names a WITH defines among those a text reads
# Words between FROM or JOIN and the relation: ``FROM ONLY t`` (pg_dump --inserts' cursors,
# PostgreSQL's own foreign-key checks), ``JOIN LATERAL f(x)``.
_SKIPPED: Final = r"(?:(?:ONLY|LATERAL)\s+)?"
# An item of a FROM list: a relation or a function, then maybe an alias and its columns.
_FROM_ITEM: Final = (
    rf"{_SKIPPED}{_RELATION}(?:\s*\([^()]*\))?(?:\s+(?:AS\s+)?{IDENT}(?:\s*\([^()]*\))?)?"
)
# A FROM list of several items (``FROM hr.people p, hr.pay y``), and its items after the first.
_FROM_LIST: Final = rf"(?i)\bFROM\s+(?:{_FROM_ITEM}\s*,\s*)+{_SKIPPED}{_RELATION}\s*[()]?"
_LISTED: Final = rf"(?i),\s*{_SKIPPED}{_RELATION}\s*[()]?"
# A name a WITH defines: ``WITH [RECURSIVE] x [(cols)] AS [NOT] [MATERIALIZED] (``, or
# the same after a comma for the next one.
_CTE: Final = (
    rf"(?i)(?:\bWITH(?:\s+RECURSIVE)?|,)\s*{IDENT}(?:\s*\([^()]*\))?"
    r"\s+AS\s*(?:NOT\s+)?(?:MATERIALIZED\s*)?\("
)


def _qualified(names: pl.Expr) -> pl.Expr:
    """A list of relation names as written in a statement (``hr.people``, ``"Q".t``,
    ``t``) as pgAudit writes them: schema-qualified (``public`` where not) and quoted."""
    # The name's parts in one step, the quoting in the next: one expression using each
    # part several times held each part's patterns as often (~10 ms a call on no rows).
    name = pl.element()
    parts = pl.struct(
        name.str.extract(rf"^({IDENT})", 1).alias("first"),
        name.str.extract(rf"^{IDENT}\.({IDENT})$", 1).alias("second"),
    )
    first, second = pl.element().struct.field("first"), pl.element().struct.field("second")
    schema = pl.when(second.is_null()).then(pl.lit("public")).otherwise(first)
    # Then the server's names, then their quoting: each step reads the one before it
    # several times, and within a list nothing is computed once for all its uses.
    server = pl.struct(
        _server_name(schema).alias("schema"),
        _server_name(pl.coalesce(second, first)).alias("table"),
    )
    in_schema, table = pl.element().struct.field("schema"), pl.element().struct.field("table")
    qualified = _quote_identifier(in_schema) + "." + _quote_identifier(table)
    return names.list.eval(parts).list.eval(server).list.eval(qualified)


_UPPER: Final = [chr(c) for c in range(ord("A"), ord("Z") + 1)]


def _server_name(ident: pl.Expr) -> pl.Expr:
    """An identifier as written in a statement, as the server names it: unquoted, its
    ASCII letters lower-cased; quoted, as written (doubled quotes undone)."""
    quoted = ident.str.starts_with('"')
    inner = ident.str.slice(1, ident.str.len_chars() - 2).str.replace_all('""', '"', literal=True)
    lowered = ident.str.replace_many(_UPPER, [c.lower() for c in _UPPER])
    return pl.when(quoted).then(inner).otherwise(lowered)


def _quote_identifier(name: pl.Expr) -> pl.Expr:
    """A server's name as pgAudit writes it, quoted as PostgreSQL's ``quote_identifier``
    quotes it when it holds more than lower-case ASCII letters, digits and underscores
    (``"Ventes"."Clients été"``, ``shop.customers``)."""
    return (
        pl.when(name.str.contains(r"^[a-z_][a-z0-9_]*$"))
        .then(name)
        .otherwise(pl.lit('"') + name.str.replace_all('"', '""', literal=True) + pl.lit('"'))
    )


QUERY_KEPT: Final = 65_536  # characters of a cut statement's text kept
_CUT_SAYS: Final = (
    " [trovewatch: statement of {} bytes in the log, cut to its first "
    + str(QUERY_KEPT)
    + " characters]"
)
CUT_STATEMENT_RE: Final = (
    r"\[trovewatch: statement of \d+ bytes in the log, cut to its first \d+ characters\]"
)


def cut_statement(text: pl.Expr) -> pl.Expr:
    """A statement's text (as logged, maybe CSV-quoted) cut to its first
    :data:`QUERY_KEPT` characters, then a marker giving its size in the log, bytes the
    reader cut (:data:`detector.reader.CUT_MARKER_RE`) included.

    >>> pl.select(cut_statement(pl.lit("SELECT " + "1," * 40_000))).item()[65_530:]
    ',1,1,1 [trovewatch: statement of 80007 bytes in the log, cut to its first 65536 characters]'
    """
    marker = text.str.extract(CUT_MARKER_RE, 0)
    reader_cut = text.str.extract(CUT_MARKER_RE, 1).cast(pl.Int64).fill_null(0)
    in_text = text.str.len_bytes().cast(pl.Int64)
    size = in_text - marker.str.len_bytes().cast(pl.Int64).fill_null(0) + reader_cut
    says = pl.format(_CUT_SAYS, size)
    quoted = text.str.starts_with('"') & text.str.ends_with('"')
    return pl.concat_str(
        text.str.slice(0, QUERY_KEPT),
        says,
        pl.when(quoted).then(pl.lit('"')).otherwise(pl.lit("")),
    )


def is_cut(query: pl.Expr) -> pl.Expr:
    """True for a statement text cut by :func:`cut_statement`."""
    return (query.str.len_chars() > QUERY_KEPT) & query.str.contains(CUT_STATEMENT_RE)


# One statement of a string of several: quoted literals and identifiers, dollar-quoted
# bodies, comments, and any other character but ``;``.
_PIECE_RE: Final = (
    r"(?:'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$\$(?s:.*?)\$\$"
    r"|\$[A-Za-z_]\w*\$(?s:.*?)\$[A-Za-z_]\w*\$|--[^\n]*|[^;'\"]|['\"])+"
)
# A COPY's text that copies out: ``COPY t TO STDOUT``, ``COPY (SELECT ...) TO '/f'``.
COPY_TO: Final = r"(?i)\)\s*TO\s|\s+TO\s+(?:STDOUT|'|PROGRAM)"
# How a statement whose command is SELECT may begin.
_SELECT_START: Final = r"^(?:SELECT|WITH|TABLE|VALUES|\()"


def own_statements(statements: pl.DataFrame) -> pl.DataFrame:
    """``statements`` with the text of each one logged with a string of several (sent as
    one simple query: ``psql -c "COPY a TO STDOUT; COPY b TO STDOUT"``) cut to its own
    statement of the string. pgAudit logs every statement of the string with the whole
    string; what is an export, which tables a ``COPY`` or cursor names, come from the
    statement's own text. The string as logged is kept in ``_logged`` (its ``duration:``
    line names it).

    A statement (its sub-statements logged with the string share one text) is known by
    the first word of its last such sub-statement's command: ``COPY`` for ``COPY (SELECT
    ...) TO`` (its ``SELECT`` comes first), ``SELECT`` for a function's caller,
    ``EXECUTE``, ``CALL``; ``COPY FROM`` for a ``COPY`` into a table (class WRITE). The
    statements a session logged in a row with the same string (numbered one after the
    other) are one sending of it: the n-th of them with a word takes the string's n-th
    statement beginning with that word (for ``SELECT`` also ``WITH``, ``TABLE``,
    ``VALUES``), from the first again when the string was sent again. A statement of the
    string that pgAudit does not log (its class not in ``pgaudit.log``) has no line to
    count; one that begins like another command is counted with it (``WITH d AS (DELETE
    ...) INSERT ...`` with the ``SELECT``s). An ``EXECUTE``'s prepared statement keeps
    the text logged, the one it was prepared from. Decided within the chunk parsed: a
    sending whose lines a chunk boundary splits starts again from the first after it.
    Statements without a ``;`` before their end, and texts cut (:func:`cut_statement`),
    are left as they are.
    """
    query = pl.col(S.QUERY)
    semicolon = query.str.contains(r";\s*\S")
    with_logged = statements.with_columns(pl.lit(None, pl.String).alias("_logged"))
    # The usual case: no text goes on past a ``;``, nor is a cut text to be looked at.
    if not statements.select(semicolon.any()).item():
        return with_logged
    several = semicolon & ~is_cut(query)
    if not statements.select(several.any()).item():
        return with_logged
    indexed = statements.with_row_index("_row")
    ids = pl.col(S.STATEMENT_ID).str.split_exact(".", 1)
    # One row per statement logged with a string of several, in the order of its lines.
    logged = (
        indexed.filter(several)
        .select(
            "_row",
            S.SESSION,
            S.QUERY,
            ids.struct.field("field_0").cast(pl.Int64, strict=False).alias("_number"),
            ids.struct.field("field_1").cast(pl.Int64, strict=False).alias("_sub"),
            _word(pl.col(S.COMMAND).str.extract(r"^(\S+)", 1), pl.col("a_class") == "WRITE"),
        )
        .group_by(S.SESSION, "_number", S.QUERY, maintain_order=True)
        .agg("_row", pl.col("_word").sort_by("_sub").last())
    )
    # A statement logged with another string than the one before it in its session, or
    # not numbered next after it (pgAudit numbers the statements it logs), begins a
    # sending; within one, the n-th statement with each word.
    number = pl.col("_number")
    begins = (query.ne_missing(query.shift(1)) | number.ne_missing(number.shift(1) + 1)).over(
        S.SESSION
    )
    logged = logged.with_columns(begins.cum_sum().over(S.SESSION).alias("_sending"))
    logged = logged.with_columns(
        pl.int_range(pl.len()).over(S.SESSION, "_sending", "_word").alias("_nth")
    )
    # The statements of each string, by their first word; SELECT-like ones as SELECT.
    pieces = (
        logged.select(S.QUERY)
        .unique()
        .with_columns(query.str.extract_all(_PIECE_RE).alias("_piece"))
        .explode("_piece")
        .with_columns(pl.col("_piece").str.strip_chars())
        .filter(pl.col("_piece") != "")
        .filter(pl.len().over(S.QUERY) > 1)
    )
    start = pl.col("_piece").str.replace(rf"^{LEADING}", "").str.slice(0, 24).str.to_uppercase()
    pieces = pieces.with_columns(
        _word(
            pl.when(start.str.contains(_SELECT_START))
            .then(pl.lit("SELECT"))
            .otherwise(start.str.extract(r"^([A-Z_]+)", 1)),
            ~pl.col("_piece").str.contains(COPY_TO),
        )
    ).with_columns(
        pl.int_range(pl.len()).over(S.QUERY, "_word").alias("_at"),
        pl.len().over(S.QUERY, "_word").alias("_of"),
    )
    own = (
        logged.join(pieces, on=[S.QUERY, "_word"], how="inner")
        .filter(pl.col("_nth") % pl.col("_of") == pl.col("_at"))
        .select("_row", "_piece", "_word")
        .explode("_row")
    )
    # An EXECUTE's prepared statement is logged with the text it was prepared from.
    prepared = (pl.col("_word") == "EXECUTE") & ~pl.col(S.COMMAND).str.starts_with("EXECUTE")
    piece = pl.when(~prepared).then(pl.col("_piece"))
    return (
        indexed.join(own, on="_row", how="left", maintain_order="left")
        .with_columns(piece.alias("_piece"))
        .with_columns(
            pl.when(pl.col("_piece").is_not_null()).then(query).alias("_logged"),
            pl.coalesce("_piece", query).alias(S.QUERY),
        )
        .drop("_row", "_piece", "_word")
    )


def _word(word: pl.Expr, copy_from: pl.Expr) -> pl.Expr:
    """A statement's first word (``_word``), ``COPY FROM`` for a ``COPY`` into a table
    (pgAudit's WRITE ``COPY``): one of a string's two ``COPY``s may be logged alone."""
    return (
        pl.when((word == "COPY") & copy_from)
        .then(pl.lit("COPY FROM"))
        .otherwise(word)
        .alias("_word")
    )
