"""pgAudit records to events, whichever output carried them (``detector.formats.pgaudit``)."""

from __future__ import annotations

import polars as pl

from detector import schema as S
from detector.formats.pgaudit import RECORD_COLUMNS, to_events


def _records(lines: list[tuple[str, str]]) -> pl.DataFrame:
    """Records of ``(session, AUDIT message)`` pairs, one second apart, user alice."""
    n = len(lines)
    return pl.DataFrame(
        {
            "line_no": range(1, n + 1),
            "ts": [f"2026-11-28 06:55:{i:02d}.000 UTC" for i in range(n)],
            "user": ["alice"] * n,
            "dbname": ["shop"] * n,
            "pid": [1] * n,
            "remote_host": ["10.0.0.1"] * n,
            "application_name": ["psql"] * n,
            "session_id": [session for session, _ in lines],
            "backend_type": ["client backend"] * n,
            "leader_pid": [None] * n,
            "severity": ["LOG"] * n,
            "message": [message for _, message in lines],
            "statement": [None] * n,
        },
        schema=RECORD_COLUMNS,
    )


def test_a_statement_logged_per_relation_is_one_event_with_every_relation() -> None:
    join = "SESSION,4,1,READ,SELECT,TABLE,public.{},SELECT * FROM a JOIN b USING (id);,<none>,9"
    other = "SESSION,7,1,READ,SELECT,TABLE,public.c,SELECT * FROM c;,<none>,3"
    for order in (["a", "b", None], ["a", None, "b"]):  # together, or another session between
        lines = [
            ("s2", "AUDIT: " + other) if rel is None else ("s1", "AUDIT: " + join.format(rel))
            for rel in order
        ]
        events = to_events(_records(lines), "test").events.sort(S.SESSION)
        assert events[S.OBJECTS].to_list() == [["public.a", "public.b"], ["public.c"]]
        assert events[S.ROWS].to_list() == [9, 3]
        assert events[S.STATEMENT_ID].to_list() == ["4.1", "7.1"]


def test_the_same_statement_number_in_two_sessions_is_two_events() -> None:
    line = "AUDIT: SESSION,1,1,READ,SELECT,TABLE,public.a,SELECT * FROM a;,<none>,5"
    events = to_events(_records([("s1", line), ("s2", line), ("s1", line)]), "test").events
    assert events.height == 2
    assert sorted(events[S.SESSION].to_list()) == ["s1", "s2"]


def test_each_statement_of_a_string_of_several_is_classed_by_its_own_text() -> None:
    """pgAudit logs every statement of one simple query with the whole string; each is
    read as its own statement of it, and a ``;`` inside a literal or a function body
    does not cut a statement."""
    string = "SELECT ';' FROM shop.orders; COPY shop.customers TO STDOUT"
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$SELECT 1; SELECT 2$$"
    events = to_events(
        _records(
            [
                ("s1", f'AUDIT: SESSION,1,1,READ,SELECT,TABLE,shop.orders,"{string}",<none>,4'),
                ("s1", f'AUDIT: SESSION,2,1,READ,COPY,,,"{string}",<none>,0'),
                ("s1", f"AUDIT: SESSION,3,1,DDL,CREATE FUNCTION,,,{body};,<none>,0"),
            ]
        ),
        "pgaudit-csvlog",
    ).events
    assert events[S.QUERY].to_list() == [
        "SELECT ';' FROM shop.orders",
        "COPY shop.customers TO STDOUT",
        f"{body};",
    ]
    assert events[S.EXPORT].to_list() == [False, True, False]
    assert events[S.OBJECTS].to_list() == [["shop.orders"], ["shop.customers"], []]
    assert events[S.ROWS].to_list() == [4, None, 0]
