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
import re
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


# A refused login's messages (auth.c, miscinit.c, postinit.c): FATAL, naming the user.
REFUSALS = (
    'password authentication failed for user "%s"',
    'role "%s" does not exist',
    'role "%s" is not permitted to log in',
    'no pg_hba.conf entry for host "%s", user "%s", database "%s", %s',
    'database "%s" does not exist',
)


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


def escaped(text: str) -> str:
    """``text`` matched literally by a regular expression of Python's and of Rust's (Polars'),
    which refuses escapes of letters, digits and spaces."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def refusals(language: gettext.GNUTranslations) -> list[tuple[str, str]]:
    """Each translated refused-login message as a regular expression and the English
    message it stands for, its "%s" filled by the expression's groups in order."""
    found = []
    for msgid in REFUSALS:
        translated = language.gettext(msgid)
        if translated == msgid or "$" in translated:  # (no translation reorders them)
            continue
        pieces = [escaped(piece) for piece in translated.split("%s")]
        pattern = "^" + "(.*?)".join(pieces[:-1]) + ("(.*)" if len(pieces) > 1 else "")
        english = msgid
        for group in range(1, len(pieces)):
            english = english.replace("%s", f"${{{group}}}", 1)
        found.append((pattern + pieces[-1] + "$", english))
    return found


def quoted(text: str) -> str:
    """``text`` as a Python string in double quotes, as the code is formatted."""
    return json.dumps(text, ensure_ascii=False)


def main(argv: list[str]) -> int:
    names: dict[str, str] = {}
    pieces: dict[str, dict[str, str]] = {}
    refused: dict[str, list[tuple[str, str]]] = {}
    for catalogue in catalogues(argv):
        language = load(catalogue)
        for translated, name in severity_names(language).items():
            names.setdefault(translated, name)
        if (found := connection_pieces(language)) is not None:
            pieces.setdefault(catalogue.parts[-3], found)
        refused.setdefault(catalogue.parts[-3], refusals(language))
    print("SEVERITY_NAMES = {")
    for translated, name in sorted(names.items(), key=lambda item: (item[1], item[0])):
        print(f"    {quoted(translated)}: {quoted(name)},")
    print("}\nREFUSALS = (")
    for lang, found in sorted(refused.items()):
        for pattern, english in found:
            print(f"    ({quoted(pattern)}, {quoted(english)}),  # {lang}")
    print(")\nCONNECTION_PIECES = (")
    for lang, found in sorted(pieces.items()):
        print(f"    Pieces(  # {lang}")
        for key, text in found.items():
            print(f"        {key}={quoted(text)},")
        print("    ),")
    print(")")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
