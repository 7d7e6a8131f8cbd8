"""API tokens and their scopes.

``settings.api_tokens`` is a comma-separated list of ``token:scope1+scope2`` with the
scopes ``read``, ``ingest`` and ``admin`` (admin implies the other two), e.g.
``TROVEWATCH_API_TOKENS='k3P...:read,Zq9...:ingest,Hh2...:admin'``. Without it, the service
uses the read token in ``state_dir/api-token``, created on first start.

Tokens are kept only as SHA-256 digests and a presented token is compared with every one
of them in constant time, without stopping at a match.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from detector.settings import Settings

TOKEN_FILE: Final = "api-token"
MIN_TOKEN_CHARS: Final = 16


class Scope(StrEnum):
    READ = "read"
    INGEST = "ingest"
    ADMIN = "admin"


IMPLIED: Final = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.INGEST: frozenset({Scope.INGEST}),
    Scope.ADMIN: frozenset(Scope),
}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Tokens:
    """The configured tokens: (SHA-256 digest, scopes granted) pairs."""

    entries: tuple[tuple[bytes, frozenset[Scope]], ...]

    @classmethod
    def parse(cls, spec: str) -> Tokens:
        """Tokens from ``token:scope1+scope2,...``; ``ValueError`` saying which entry is wrong.

        Example: ``Tokens.parse("s3cret-reader-token-1:read,s3cret-admin-token-01:admin")``.
        """
        entries: list[tuple[bytes, frozenset[Scope]]] = []
        for n, entry in enumerate(spec.split(","), start=1):
            token, sep, scopes = entry.strip().partition(":")
            where = f"api_tokens entry {n}"
            if not sep or not token or not scopes:
                raise ValueError(
                    f"{where}: write it as token:scope1+scope2 (scopes read, ingest, admin)"
                )
            if any(c.isspace() or c == "+" for c in token):
                raise ValueError(f"{where}: the token has whitespace or '+' in it")
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"{where}: the token has {len(token)} characters; use at least "
                    f"{MIN_TOKEN_CHARS} (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            granted: set[Scope] = set()
            for name in scopes.split("+"):
                try:
                    granted |= IMPLIED[Scope(name.strip())]
                except ValueError:
                    raise ValueError(
                        f"{where}: unknown scope {name.strip()!r} (scopes: read, ingest, admin)"
                    ) from None
            digest = _digest(token)
            if any(digest == d for d, _ in entries):
                raise ValueError(f"{where}: the same token is given twice")
            entries.append((digest, frozenset(granted)))
        return cls(tuple(entries))

    @classmethod
    def ensure(cls, settings: Settings, state_dir: Path | None = None) -> tuple[Tokens, str | None]:
        """The configured tokens; without any, the read token in ``state_dir/api-token``.

        On first start that file is created (mode 0600) with a new random read token,
        returned as the second value so the caller can print it once; otherwise None.
        The file may also hold a full ``token:scopes`` spec.
        """
        if settings.api_tokens:
            return cls.parse(settings.api_tokens), None
        state_dir = settings.state_dir if state_dir is None else state_dir
        path = state_dir / TOKEN_FILE
        if not path.exists():
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            token = secrets.token_urlsafe(32)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use that one
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(token + "\n")
                return cls.parse(f"{token}:read"), token
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(
                f"{path} is not a token (not UTF-8 text); delete it to have a new token made"
            ) from None
        if not text:
            raise ValueError(f"{path} is empty; delete it to have a new token made")
        try:
            return cls.parse(text if ":" in text else f"{text}:read"), None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}; delete it to have a new token made") from exc

    def scopes(self, token: str) -> frozenset[Scope]:
        """The scopes ``token`` grants, empty for an unknown token (constant time)."""
        presented = _digest(token)
        granted: frozenset[Scope] = frozenset()
        for digest, scopes in self.entries:
            if hmac.compare_digest(presented, digest):
                granted = scopes
        return granted
