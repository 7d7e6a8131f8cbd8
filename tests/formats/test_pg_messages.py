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

from detector.formats import pg_messages
from tests.conftest import unavailable

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


def test_the_tables_are_those_the_installed_catalogues_give(
    languages: dict[str, gettext.GNUTranslations],
) -> None:
    for lang, language in languages.items():
        for translated, name in pg_translations.severity_names(language).items():
            assert pg_messages.SEVERITY_NAMES.get(translated) == name, (lang, translated)
        pieces = pg_translations.connection_pieces(language)
        if pieces is not None:
            assert pg_messages.Pieces(**pieces) in pg_messages.CONNECTION_PIECES, lang


def test_english_messages_are_left_as_they_are() -> None:
    lines = pl.Series([*ENGLISH, "AUDIT: SESSION,1,1,READ,SELECT,,,select 1,<none>", None])
    assert pg_messages.connections_in_english(lines).to_list() == lines.to_list()
