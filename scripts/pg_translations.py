"""Print what PostgreSQL's message catalogues translate of the records trovewatch reads,
for ``detector/formats/pg_messages.py``: stderr and csvlog print a record's severity
(``LOG``, ``ERROR``, ...) and stderr its followers (``DETAIL``, ``STATEMENT``, ...) in the
server's lc_messages, and every output the connection lines stderr's sessions are named
by. Reads the catalogues installed with the server (Debian's postgresql-NN:
/usr/share/locale/*/LC_MESSAGES/postgres-NN.mo), or those given.

    python3 scripts/pg_translations.py [CATALOGUE.mo ...]
"""

from __future__ import annotations

import gettext
import glob
import json
import sys
from pathlib import Path

# How elog.c prints them: "%s:  " after a translated severity, a translated "DETAIL:  ".
SEVERITIES = ("LOG", "ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "INFO", "DEBUG")
FOLLOWERS = ("DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT")
# The connection lines (postinit.c, postmaster.c) and a walsender's commands
# (walsender.c), as message ids: each piece is the text before a "%s" (the port's:
# between the two).
CONNECTION = {
    "authorized": "connection authorized: user=%s",
    "replication": "replication connection authorized: user=%s",
    "database": " database=%s",
    "application": " application_name=%s",
    "host": "connection received: host=%s port=%s",
    "disconnection": "disconnection: session time: %d:%02d:%02d.%03d user=%s database=%s host=%s%s%s",
    "command": "received replication command: %s",
}


def catalogues(paths: list[str]) -> list[Path]:
    found = paths or glob.glob("/usr/share/locale/*/LC_MESSAGES/postgres-*.mo")
    return sorted(Path(p) for p in found)


def load(catalogue: Path) -> gettext.GNUTranslations:
    with catalogue.open("rb") as f:
        return gettext.GNUTranslations(f)


def severity_names(language: gettext.GNUTranslations) -> dict[str, str]:
    """Each translated name and the English name it stands for. A follower is kept only
    as elog.c's "NAME:  " can be read, two spaces after a colon (French puts a space
    before the colon: "ASTUCE :  " is "ASTUCE " then ":  ")."""
    names: dict[str, str] = {}
    for name in SEVERITIES:
        translated = language.gettext(name)
        if translated != name:
            names.setdefault(translated, name)
    for name in FOLLOWERS:
        translated = language.gettext(f"{name}:  ")
        if translated != f"{name}:  " and translated.endswith(":  "):
            names.setdefault(translated.removesuffix(":  "), name)
    return names


def connection_pieces(language: gettext.GNUTranslations) -> dict[str, str] | None:
    """The translated pieces of the connection lines (the disconnection line's up to its
    first "%"), or None if none is translated."""
    pieces = {key: language.gettext(msgid) for key, msgid in CONNECTION.items()}
    if all(pieces[key] == msgid for key, msgid in CONNECTION.items()):
        return None
    head = {key: text.split("%", 1)[0] for key, text in pieces.items()}
    head["port"] = pieces["host"].split("%s", 2)[1]
    return head


def quoted(text: str) -> str:
    """``text`` as a Python string in double quotes, as the code is formatted."""
    return json.dumps(text, ensure_ascii=False)


def main(argv: list[str]) -> int:
    names: dict[str, str] = {}
    pieces: dict[str, dict[str, str]] = {}
    for catalogue in catalogues(argv):
        language = load(catalogue)
        for translated, name in severity_names(language).items():
            names.setdefault(translated, name)
        if (found := connection_pieces(language)) is not None:
            pieces.setdefault(catalogue.parts[-3], found)
    print("SEVERITY_NAMES = {")
    for translated, name in sorted(names.items(), key=lambda item: (item[1], item[0])):
        print(f"    {quoted(translated)}: {quoted(name)},")
    print("}\nCONNECTION_PIECES = (")
    for lang, found in sorted(pieces.items()):
        print(f"    Pieces(  # {lang}")
        for key, text in found.items():
            print(f"        {key}={quoted(text)},")
        print("    ),")
    print(")")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
