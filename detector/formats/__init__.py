"""Log formats: each turns chunks of a file's lines into events (see ``base.Format``).

``detect`` picks a format from a file's first lines; ``get`` builds one by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from detector.formats.base import Format, Parsed
from detector.formats.mapped import MappedFormat, Mapping, MappingError
from detector.formats.mariadb_audit import MariadbAudit
from detector.formats.mariadb_slow import MariadbSlow
from detector.formats.pg_csvlog import PgCsvlog
from detector.formats.pg_jsonlog import PgJsonlog
from detector.formats.pg_stderr import PgStderr
from detector.reader import NotALogError, head_lines, looks_binary

NATIVE: Final = (
    "pgaudit-jsonlog",
    "pgaudit-csvlog",
    "pgaudit-stderr",
    "mariadb-audit",
    "mariadb-slow",
)
CHOICES: Final = ("auto", *NATIVE, "mapped")
# PostgreSQL's outputs of the same events, richest first: one server's logs in two of
# them are the same statements twice (MariaDB's audit and slow logs complement each other).
PG_OUTPUTS: Final = NATIVE[:3]

__all__ = ["CHOICES", "Format", "MappingError", "Parsed", "detect", "get", "native"]


def native(name: str, log_line_prefix: str | None) -> Format:
    """A native format by name (``NATIVE``)."""
    if name == "pgaudit-jsonlog":
        return PgJsonlog()
    if name == "pgaudit-csvlog":
        return PgCsvlog()
    if name == "mariadb-audit":
        return MariadbAudit()
    if name == "mariadb-slow":
        return MariadbSlow()
    return PgStderr(log_line_prefix)


def get(
    name: str,
    path: Path,
    *,
    mapping: Path | None = None,
    log_line_prefix: str | None = None,
) -> Format:
    """The format for ``path``: ``name`` if given, else detected from its first lines.

    Raises :class:`NotALogError` when ``auto`` recognises nothing, and
    :class:`MappingError` for a bad mapping file.
    """
    if mapping is not None or name == "mapped":
        if mapping is None:
            raise MappingError("--format mapped needs --mapping FILE")
        return MappedFormat(Mapping.load(mapping))
    head = head_lines(path)
    if name == "auto":
        if looks_binary(path):
            raise NotALogError(f"{path}: binary data, not a text log")
        name = detect(path, head)
    fmt = native(name, log_line_prefix)
    configure = getattr(fmt, "configure", None)  # formats that learn from the head (a prefix, a CSV header)
    if configure is not None:
        configure(head)
    return fmt


def detect(path: Path, head: list[str]) -> str:
    """The name of the native format whose shape the first lines of ``path`` have."""
    if not any(s.strip() for s in head):
        raise NotALogError(f"{path}: empty, nothing to read")
    for name in NATIVE:
        if native(name, None).sniff(head):
            return name
    raise NotALogError(
        f"{path}: not a PostgreSQL/pgAudit log in jsonlog, csvlog or stderr form, nor a "
        "MariaDB server_audit or slow query log "
        "(first line: {!r}); use --format, --log-line-prefix or --mapping".format(head[0][:80])
    )
