"""Accounts: each one's latest window, and one account's recent windows and totals."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from starlette.convertors import Convertor, register_url_convertor

from api.deps import READ, StoreDep
from api.models import AccountDetail, AccountPage, Error, SeverityName


class AccountName(Convertor[str]):
    """The rest of the path, whatever it holds: a role name may hold a slash
    (``ops/etl``) or a newline (``CREATE ROLE "a\nb"``), which Starlette's ``path``
    convertor (``.*``) does not match: the route was missed, 404 before the token was
    even checked."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("account_name", AccountName())

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], dependencies=[READ])


@router.get("")
def list_accounts(
    store: StoreDep,
    sort: Annotated[
        Literal["score", "account", "window"],
        Query(description="score: highest first; account: A-Z; window: newest first"),
    ] = "score",
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    severity: SeverityName | None = None,
    flagged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,  # SQLite integers are 64-bit
) -> AccountPage:
    """Every account with its latest scored window."""
    total, items = store.accounts(sort, min_score, severity, flagged, limit, offset)
    return AccountPage.model_validate(
        {"total": total, "limit": limit, "offset": offset, "items": items}
    )


@router.get(
    "/{account:account_name}",
    responses={404: {"model": Error, "description": "account never scored"}},
)
async def get_account(
    store: StoreDep, account: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> AccountDetail:
    """An account's most recent windows with their features and reasons, and its totals."""
    found = store.account(account, limit)
    if found is None:
        raise HTTPException(404, {"error": "no such account", "account": account})
    return AccountDetail.model_validate(found)
