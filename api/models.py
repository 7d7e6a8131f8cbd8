"""Request and response bodies of the API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from detector.durations import span

Timestamp = Annotated[
    str,
    Field(
        description="ISO-8601, UTC (event time for windows)",
        examples=["2026-10-20T03:10:00Z"],
        json_schema_extra={"format": "date-time"},
    ),
]
SeverityName = Literal["none", "low", "medium", "high", "critical"]
Status = Literal["open", "suppressed", "true_positive", "false_positive"]
Verdict = Literal["true_positive", "false_positive"]
FormatName = Literal[
    "auto", "pgaudit-jsonlog", "pgaudit-csvlog", "pgaudit-stderr", "pgaudit-syslog"
]

MAX_SUPPRESSION: Final = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``... as a timedelta; ValueError otherwise."""
    return span(text.strip())


class Error(BaseModel):
    """Every 4xx and 5xx body: a short text, sometimes with details."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(examples=["no such alert"])


class WindowSummary(BaseModel):
    window_start: Timestamp
    window_end: Timestamp
    score: float = Field(description="0..1, higher is more anomalous")
    flagged: bool
    severity: str | None = Field(description="critical, high, medium, low, or none")
    reasons: list[str] = Field(description="for flagged windows: what happened, with numbers")
    objects: list[str] = Field(description="objects read in the window, schema-qualified")
    clients: list[str] = Field(
        description="client addresses the window's statements came from, as the log gives "
        "them (empty where it gives none)"
    )
    applications: list[str] = Field(
        description="application names the window's statements gave (empty where the log "
        "gives none)"
    )


class AccountSummary(WindowSummary):
    """An account and its latest window."""

    account: str


class AccountPage(BaseModel):
    total: int = Field(description="accounts matching the filters")
    limit: int
    offset: int
    items: list[AccountSummary]


class Window(WindowSummary):
    features: dict[str, Any] = Field(
        description="volumes per horizon and their ratios to normal; null = not in the log"
    )


class Totals(BaseModel):
    """All-time totals of an account's scored windows (kept after windows are pruned)."""

    windows: int
    statements: int
    rows_read: int
    bytes_read: int | None = Field(description="null while the log never carried bytes")
    exports: int


class AccountDetail(BaseModel):
    account: str
    totals: Totals
    windows: list[Window] = Field(description="most recent first")


class Alert(BaseModel):
    id: int
    account: str
    window_start: Timestamp
    window_end: Timestamp
    score: float
    severity: str | None
    status: Status
    reasons: list[str]
    objects: list[str]
    clients: list[str] = Field(description="client addresses of the window's statements")
    applications: list[str] = Field(description="application names of the window's statements")
    created_at: Timestamp
    note: str | None
    judged_at: Timestamp | None
    suppressed_until: Timestamp | None = Field(
        description="end of the suppression this alert's feedback set (event time)"
    )


class AlertPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[Alert]


class Feedback(BaseModel):
    """A verdict on an alert; ``suppress_for`` also silences the account from the alert's
    window start until that long after its end (event time): all of it (``suppress``
    ``account``), or only its windows reading nothing but this alert's objects
    (``objects``: the pattern, e.g. a monthly report of the same tables)."""

    model_config = ConfigDict(extra="forbid")
    verdict: Verdict
    note: str | None = Field(None, max_length=4000)
    suppress_for: str | None = Field(None, examples=["7d", "12h"])
    suppress: Literal["account", "objects"] = Field(
        "account", description="what suppress_for silences: the account, or this pattern"
    )

    @field_validator("suppress_for")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not timedelta(0) < parse_duration(value) <= MAX_SUPPRESSION:
            raise ValueError("suppress_for must be more than 0 and at most 3650d")
        return value


class Manifest(BaseModel):
    """The model in use: what it was trained on, with which versions and artefact hashes."""

    model_config = ConfigDict(extra="allow")
    name: str
    schema_version: int
    feature_version: int
    features: list[str]
    horizons: dict[str, Any]
    libraries: dict[str, str]
    training: dict[str, Any]
    calibration: dict[str, float]
    artefacts: dict[str, str] = Field(default_factory=dict)
    forest: str = Field("", description="how model.joblib holds the forest")


class Ingested(BaseModel):
    lines: int
    events: int
    rejected: dict[str, int] = Field(description="lines rejected, by reason")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    problems: list[str]
