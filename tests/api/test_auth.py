"""Tokens and scopes (api/auth.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from api.auth import Scope, Tokens
from detector.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, TOKENS


def test_scopes_of_each_token() -> None:
    tokens = Tokens.parse(TOKENS)
    assert tokens.scopes(READ_TOKEN) == {Scope.READ}
    assert tokens.scopes(INGEST_TOKEN) == {Scope.INGEST}
    assert tokens.scopes(ADMIN_TOKEN) == {Scope.READ, Scope.INGEST, Scope.ADMIN}
    assert tokens.scopes("not-a-configured-token-at-all") == frozenset()
    assert tokens.scopes("") == frozenset()
    both = Tokens.parse(f" {READ_TOKEN}:read+ingest ")
    assert both.scopes(READ_TOKEN) == {Scope.READ, Scope.INGEST}


def test_tokens_are_not_kept_in_clear() -> None:
    assert READ_TOKEN.encode() not in repr(Tokens.parse(TOKENS)).encode()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "entry 1: write it as token:scope1"),
        (READ_TOKEN, "entry 1: write it as token:scope1"),
        (f"{READ_TOKEN}:", "entry 1: write it as token:scope1"),
        (":read", "entry 1: write it as token:scope1"),
        (f"{READ_TOKEN}:read,", "entry 2: write it as token:scope1"),
        (f"{READ_TOKEN}:write", "entry 1: unknown scope 'write'"),
        (f"{READ_TOKEN}:read+", "entry 1: unknown scope ''"),
        ("short:read", "entry 1: the token has 5 characters; use at least 16"),
        ("with space 0123456789:read", "whitespace"),
        (f"{READ_TOKEN}:read,{READ_TOKEN}:admin", "entry 2: the same token is given twice"),
    ],
)
def test_an_invalid_spec_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tokens.parse(spec)


def test_invalid_spec_errors_do_not_echo_the_token() -> None:
    with pytest.raises(ValueError) as raised:
        Tokens.parse(f"{READ_TOKEN}:write")
    assert READ_TOKEN not in str(raised.value)


def test_configured_tokens_win(tmp_path: Path) -> None:
    tokens, new = Tokens.ensure(Settings(api_tokens=TOKENS), tmp_path)
    assert new is None and tokens.scopes(ADMIN_TOKEN)
    assert not (tmp_path / "api-token").exists()


def test_without_tokens_a_read_token_is_made_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tokens, new = Tokens.ensure(Settings(state_dir=state))
    assert new is not None and len(new) >= 40
    assert tokens.scopes(new) == {Scope.READ}
    path = state / "api-token"
    assert path.read_text().strip() == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700  # made for it: the owner's only
    again, shown = Tokens.ensure(Settings(state_dir=state))
    assert shown is None  # printed only the first time
    assert again.scopes(new) == {Scope.READ}


def test_the_token_file_may_hold_a_full_spec(tmp_path: Path) -> None:
    (tmp_path / "api-token").write_text(f"{ADMIN_TOKEN}:admin\n")
    tokens, new = Tokens.ensure(Settings(), tmp_path)
    assert new is None and Scope.ADMIN in tokens.scopes(ADMIN_TOKEN)
    (tmp_path / "api-token").write_text("\n")
    with pytest.raises(ValueError, match="api-token is empty"):
        Tokens.ensure(Settings(), tmp_path)


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"\x00\xff garbage", "not a token \\(not UTF-8 text\\)"), (b"short\n", "5 characters")],
    ids=["binary", "too-short"],
)
def test_a_damaged_token_file_is_named_with_what_to_do(
    tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / "api-token").write_bytes(content)
    with pytest.raises(ValueError, match=f"api-token.*{says}.*delete it to have a new token made"):
        Tokens.ensure(Settings(), tmp_path)
