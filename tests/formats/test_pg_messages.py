"""PostgreSQL's records in the server's language, against the message catalogues the
server translates them with (installed with Debian's postgresql-15: the tests fail in CI
without them, and skip elsewhere).

A German server prints ``FEHLER:`` for ``ERROR:`` and ``Verbindung autorisiert:
Benutzer=clerk Datenbank=shop`` for its connection lines: every translation's severities
and connection lines must read as their English originals.
"""

from __future__ import annotations

import gettext
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector import schema as S
from detector.formats import pg_messages
from tests.conftest import unavailable
from tests.formats.common import FUZZ, read_bytes

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import pg_translations


def installed() -> list[Path]:
    found = pg_translations.catalogues([])
    if not found:
        unavailable("no PostgreSQL message catalogues (Debian package postgresql-15)")
    return found


@pytest.fixture(scope="module")
def languages() -> dict[str, gettext.GNUTranslations]:
    return {path.parts[-3]: pg_translations.load(path) for path in installed()}


def test_every_translated_severity_reads_as_its_english_name(
    languages: dict[str, gettext.GNUTranslations],
) -> None:
    for lang, language in languages.items():
        for translated, name in pg_translations.severity_names(language).items():
            severity = pl.Series([translated, "LOG"])
            assert pg_messages.in_english(severity).to_list() == [name, "LOG"], lang


def connection_lines(say: gettext.GNUTranslations) -> list[str]:
    """A session's connection lines as a server in ``say``'s language prints them."""
    _ = say.gettext
    return [
        _("connection received: host=%s port=%s") % ("10.0.0.7", "51234"),
        _("connection received: host=%s") % "[local]",
        _("connection authorized: user=%s") % "clerk"
        + _(" database=%s") % "shop"
        + _(" application_name=%s") % "psql",
        _("replication connection authorized: user=%s") % "rep_user"
        + _(" application_name=%s") % "walreceiver",
        _("disconnection: session time: %d:%02d:%02d.%03d user=%s database=%s host=%s%s%s")
        % (0, 0, 1, 5, "clerk", "shop", "10.0.0.7", " port=", "51234"),
    ]


ENGLISH = connection_lines(gettext.NullTranslations())  # type: ignore[arg-type]


def test_every_translations_connection_lines_read_as_in_english(
    languages: dict[str, gettext.GNUTranslations],
) -> None:
    for lang, language in languages.items():
        lines = connection_lines(language)
        english = pg_messages.connections_in_english(pl.Series([*lines, "AUDIT: x"])).to_list()
        assert english[:4] == ENGLISH[:4], lang
        # the disconnection line is only told by its start (its fields are not read)
        assert english[4].startswith("disconnection: session time: "), lang
        assert english[5] == "AUDIT: x"


def test_every_translations_refused_logins_read_as_in_english(
    languages: dict[str, gettext.GNUTranslations],
) -> None:
    """The FATAL a refused login logs names the account that tried, in any language."""
    values = ("10.0.0.9", "intruder", "shop", "no encryption")
    for lang, language in languages.items():
        for msgid in pg_translations.REFUSALS:
            n = msgid.count("%s")
            said = language.gettext(msgid) % values[:n]
            read = pl.DataFrame({"m": [said]}).select(pg_messages.refusals_in_english(pl.col("m")))
            assert read.item() == msgid % values[:n], (lang, said)


def test_english_messages_are_left_as_they_are() -> None:
    lines = pl.Series([*ENGLISH, "AUDIT: SESSION,1,1,READ,SELECT,,,select 1,<none>", None])
    assert pg_messages.connections_in_english(lines).to_list() == lines.to_list()


# -- sessions of a stderr log in any of the translations, by hypothesis --------------------

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
LANGUAGES = st.sampled_from([pg_messages.ENGLISH, *pg_messages.CONNECTION_PIECES])
LOG = st.sampled_from(["LOG", *(t for t, e in pg_messages.SEVERITY_NAMES.items() if e == "LOG")])


def stamped(second: int, pid: int, severity: str, message: str) -> tuple[int, str]:
    """A stderr line with PostgreSQL's default prefix ``%m [%p] ``, and its second."""
    return second, f"2026-12-01 06:00:{second:02d}.000 UTC [{pid}] {severity}:  {message}"


@st.composite
def sessions(draw: st.DrawFn) -> tuple[bytes, dict[int, tuple[str, int]]]:
    """A stderr log with PostgreSQL's default prefix (no user: only the connection lines
    name one), its sessions each in one of the languages, interleaved; and each
    session's pid -> (user, rows read)."""
    lines: list[tuple[int, str]] = []
    truth: dict[int, tuple[str, int]] = {}
    for i in range(draw(st.integers(1, 6))):
        pid, user, rows = 1000 + i, draw(NAMES), draw(st.integers(0, 10**6))
        say, log, at = draw(LANGUAGES), draw(LOG), draw(st.integers(0, 50))
        authorized = f"{say.authorized}{user}{say.database}shop{say.application}psql"
        audit = f"AUDIT: SESSION,1,1,READ,SELECT,TABLE,shop.t,select * from shop.t,<none>,{rows}"
        lines += [
            stamped(at, pid, log, f"{say.host}10.0.0.{i}{say.port}5000{i}"),
            stamped(at, pid, log, authorized),
            stamped(at + 1, pid, log, audit),
            stamped(at + 2, pid, log, f"{say.disconnection}0:00:01.000 x"),
        ]
        truth[pid] = (user, rows)
    ordered = [text for _, text in sorted(lines, key=lambda line: line[0])]
    return ("\n".join(ordered) + "\n").encode(), truth


@given(sessions())
@FUZZ
def test_each_sessions_reads_are_its_user_whatever_language_names_it(
    log: tuple[bytes, dict[int, tuple[str, int]]],
) -> None:
    data, truth = log
    read = read_bytes(data, "pgaudit-stderr")
    assert read.rows.height == 0
    got = read.events.select(S.ACCOUNT, S.ROWS, S.CLIENT_IP, S.APPLICATION).rows()
    expected = [(user, rows, f"10.0.0.{pid - 1000}", "psql") for pid, (user, rows) in truth.items()]
    assert sorted(got) == sorted(expected)
