"""The one settings object: defaults, then a TOML file, then ``TROVEWATCH_*`` variables.

Nothing else in trovewatch reads the environment. Example ``trovewatch.toml``:

```toml
window = "5m"                 # base window
horizons = ["1h", "1d", "3d"] # longer trailing horizons
threshold = 0.5               # flag windows scoring at least this (0..1)
[roles]                       # optional peer groups: account = "group"
backup = "batch"
etl_nightly = "batch"
```
Environment: ``TROVEWATCH_THRESHOLD=0.7``, ``TROVEWATCH_ROLES='{"backup": "batch"}'``.
"""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from detector.durations import Horizons, parse, span

if TYPE_CHECKING:
    from detector.formats import Told

SEVERITY_BANDS = ("low", "medium", "high")  # lowest first; "critical" is the guardrail's


class ConfigError(ValueError):
    """The settings file is missing, unreadable or not TOML."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TROVEWATCH_", extra="forbid")

    window: str = Field("5m", description="Base window: account activity is scored per window.")
    horizons: list[str] = Field(
        default_factory=lambda: ["1h", "1d", "3d"],
        min_length=1,
        description="Longer trailing horizons summed for slow pulls and drips.",
    )
    threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Calibrated score at which a window is flagged.",
    )
    severity_bands: dict[str, float] = Field(
        default_factory=lambda: {"low": 0.5, "medium": 0.7, "high": 0.85},
        description="Lowest score of each severity; guardrail hits are always 'critical'.",
    )
    guardrail_factor: float = Field(
        10.0,
        gt=1,
        description="Flag volume this many times beyond the account's and its peers' largest, whatever the model says.",
    )
    guardrail_min_rows: int = Field(
        1_000,
        ge=0,
        description="The guardrail and the slow-drip rule ignore volumes below this many rows; "
        "a window reading an object new to the account with at least this many rows read is a "
        "reason to flag it when the model's score is over the threshold.",
    )
    reason_factor: float = Field(
        3.0,
        gt=1,
        description="A signal is named as a reason when at least this many times its usual largest.",
    )
    drip_factor: float = Field(
        2.0,
        gt=1,
        description="Flag a horizon's volume longer than a day (at least guardrail_min_rows) this "
        "many times the account's own largest in training, in the window it crosses, and a "
        "calendar day's rows from one object this many times the account's largest day of it "
        "on a day past this many times its largest day in all: slow drips.",
    )
    object_drip_factor: float = Field(
        3.0,
        ge=0,
        description="Flag a calendar day's (UTC) rows read from one object (at least "
        "guardrail_min_rows) this many times the account's largest day of that object in "
        "training, in the window it crosses, on a day the account reads more than "
        "object_drip_day times its largest day in all: slow drips from a table (0: off).",
    )
    # At 1 or 1.25, clerks' ordinary days of three times their usual rows of one table
    # were flagged (nine populations: 88 false account-days at 1.25, 80 at 1.5 and 74 at
    # 2, which caught 2 drips fewer; docs/evaluation.md).
    object_drip_day: float = Field(
        1.5,
        ge=1,
        description="How far past its largest day in training an account's calendar day (UTC) "
        "must be for object_drip_factor to flag one of its tables: a day's work moved from "
        "one table to another is no drip.",
    )
    realert_factor: float = Field(
        1.5,
        ge=1,
        description="Within the longest horizon after an alert, a volume (rows, bytes, "
        "statements) is a reason, a guardrail hit or a drip again only at this many times "
        "the largest the account's alerts showed for that horizon (1: any growth). A window "
        "of at least guardrail_min_rows rows reading an object none of those alerts showed "
        "is judged over its horizons under a day as if there had been no alert.",
    )
    settled_after: str = Field(
        "7d",
        description="An account that arrived during training (after its first day) and was seen "
        "for less than this (from its first window to the training's end) has too little "
        "history of its own to judge by alone: its largest values count as at least its "
        "typical peer's, as a new account's do.",
    )
    quiet_day_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="A day of the week on which an account's largest calendar day (UTC) in "
        "training is at most this share of its largest calendar day is a quiet day for it; "
        "there the day's reads so far past its largest calendar day are a slow drip too "
        "(0: off).",
    )
    retrain_every: str = Field(
        "1d",
        description="serve retrains on the last retrain_period of its logs this often (wall "
        "clock; 0s: never).",
    )
    retrain_period: str = Field(
        "14d",
        description="The sliding period a retrained model learns from; an account's learned "
        "volume may grow guardrail_factor times per period, no faster.",
    )
    retrain_max_bytes: int = Field(
        200_000_000,
        ge=0,
        description="serve does not retrain on logs of formats read whole (MariaDB, "
        "Snowflake, ...: their records are joined across files) when the period's files are "
        "larger than this; PostgreSQL logs are streamed, whatever their size.",
    )
    warmup: str = Field(
        "1d",
        description="Each account's first period in training, used for its profile but not to fit the model.",
    )
    roles: dict[str, str] = Field(
        default_factory=dict, description="Peer groups: account -> group name."
    )
    learned_peers: int = Field(
        0,
        ge=0,
        description="Compare each account not in roles with this many accounts whose read "
        "objects are most like its own, instead of with all accounts (0).",
    )
    # Past a few thousand trees the scores no longer change; training and every
    # score only take longer (1e8 trees ran on until killed).
    trees: int = Field(200, ge=10, le=5000, description="Isolation forest size.")
    seed: int = Field(0, description="Random seed for training.")

    # ``serve``: the sidecar service.
    model_dir: Path | None = Field(
        None, description="Model to serve (--model-dir wins; default: the bundled model)."
    )
    host: str = Field("127.0.0.1", description="Address the API binds to.")
    port: int = Field(8000, ge=0, le=65535, description="API port.")
    state_dir: Path = Field(
        Path("trovewatch-state"),
        description="Checkpoints, scored windows, alerts, feedback (SQLite) and the generated token.",
    )
    follow: list[str] = Field(
        default_factory=list,
        description="Globs of log files to follow, e.g. /var/log/postgresql/*.json; '-' is stdin.",
    )
    format: str = Field("auto", description="Format of followed files (as --format).")
    log_line_prefix: str | None = Field(
        None, description="log_line_prefix, for stderr and syslog logs."
    )
    mariadb_timezone: str | None = Field(
        None,
        description="The time zone of a MariaDB server's clock (IANA name, e.g. Europe/Berlin),"
        " in which its audit log writes its times; unset: UTC, or set by the slow log's.",
    )
    postgres_timezone: str | None = Field(
        None,
        description="A PostgreSQL server's log_timezone (IANA name, e.g. Asia/Shanghai), for"
        " the zone abbreviations several zones print (CST, IST); unset: read as this machine's"
        " zone reads them, or as a log's last write says, else as China's and India's"
        " (trovewatch_zone_guessed_lines_total).",
    )
    lateness: str = Field(
        "30s",
        description="How long after a window's end (event time) late events still count in it.",
    )
    max_clock_skew: str = Field(
        "10m",
        description="Events timed further than this past the wall clock (a server clock gone "
        "wrong) count at the newest sane event time instead, so they cannot close every open "
        "window and make the events after them late (trovewatch_future_events_total).",
    )
    checkpoint_interval: float = Field(
        1.0, gt=0, description="Seconds between checkpoints of offsets and window state."
    )
    poll_interval: float = Field(0.25, gt=0, description="Seconds between polls of idle files.")
    max_line_bytes: int = Field(
        1_000_000, ge=1024, description="Longer lines are quarantined as too_long."
    )
    quarantine_max_bytes: int = Field(
        100_000_000,
        ge=1_000_000,
        description="serve's quarantine file (state_dir/quarantine.ndjson) is rotated before "
        "it grows past this, keeping one previous file (quarantine.ndjson.1): a flood of "
        "garbage keeps its latest lines and cannot fill the state directory's disk; every "
        "rejected line is counted all the same (trovewatch_lines_rejected_total).",
    )
    api_tokens: str | None = Field(
        None, description="Comma-separated token:scope1+scope2 (scopes read, ingest, admin)."
    )
    open_metrics: bool = Field(True, description="Serve /metrics without a token.")
    open_health: bool = Field(True, description="Serve /healthz and /readyz without a token.")
    max_body_bytes: int = Field(
        10_000_000, ge=1024, description="Largest accepted request body (push ingest)."
    )
    retention: str = Field(
        "30d", description="Scored windows and alerts older than this are deleted."
    )
    flag_hold: str = Field(
        "1h",
        description="An account stays currently flagged this long (event time) after its last flagged window.",
    )
    flagged_cap: int = Field(
        50,
        ge=1,
        description="Most flagged accounts named in the trovewatch_flagged_account metric.",
    )
    max_accounts: int = Field(
        200_000,
        ge=1,
        description="Most accounts whose window history serve keeps; beyond it the least "
        "recently active accounts' history is dropped (trovewatch_accounts_evicted_total). "
        "Also the most new accounts with open windows: past it, new names' events are "
        'counted together under the account "\\u0000(overflow)" (a NUL, then (overflow); '
        "trovewatch_overflow_events_total).",
    )
    ingest_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="serve's ingest process lowers its CPU priority by this much (nice) "
        "below its API process, so that parsing and scoring do not hold API answers back "
        "when the cores are busy; 0: the same priority.",
    )

    @field_validator(
        "window",
        "warmup",
        "lateness",
        "max_clock_skew",
        "retention",
        "flag_hold",
        "retrain_every",
        "retrain_period",
        "settled_after",
    )
    @classmethod
    def _duration(cls, value: str) -> str:
        parse(value)
        return value

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        # "0s" turns retraining off (retrain_every); here it would keep nothing: each
        # prune deleted every scored window and alert but the newest.
        if span(value) <= timedelta(0):
            raise ValueError(
                f"{value!r} would delete every scored window and alert as soon as it is "
                'stored; there is no "never": give a long one, e.g. "3650d"'
            )
        return value

    @field_validator("log_line_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None:
            # Imported here: the formats import Polars, which the API process does without.
            from detector.formats.pg_stderr import prefix_regex

            prefix_regex(value)  # an escape it cannot read: said now, not mid-run
        return value

    @field_validator("mariadb_timezone", "postgres_timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            from detector.formats.zones import check_timezone

            check_timezone(value)
        return value

    @field_validator("severity_bands")
    @classmethod
    def _bands(cls, value: dict[str, float]) -> dict[str, float]:
        # Severity is a metric label and an API filter from a fixed set; bands out of
        # order would call a higher score a lower severity.
        unknown = sorted(set(value) - set(SEVERITY_BANDS))
        if unknown:
            raise ValueError(
                f"unknown severity {', '.join(unknown)}: use {', '.join(SEVERITY_BANDS)}"
            )
        if not value:
            raise ValueError("give at least one of low, medium, high")
        lows = [value[name] for name in SEVERITY_BANDS if name in value]
        if any(not 0 <= low <= 1 for low in lows) or lows != sorted(lows):
            raise ValueError("scores must be within 0..1 and rise from low to medium to high")
        return value

    @field_validator("horizons")
    @classmethod
    def _durations(cls, value: list[str]) -> list[str]:
        for item in value:
            parse(item)
        return value

    @model_validator(mode="after")
    def _horizons_longer_than_the_window(self) -> Settings:
        # Each horizon is a trailing sum of base windows with a column of its own: a zero
        # window or a horizon no longer than the window (or another horizon) means nothing.
        window = span(self.window)
        if window <= timedelta(0):
            raise ValueError(f"window {self.window!r} must be longer than 0")
        seen: dict[timedelta, str] = {}
        for horizon in self.horizons:
            if span(horizon) <= window:
                raise ValueError(
                    f"horizon {horizon!r} must be longer than the window ({self.window})"
                )
            if span(horizon) in seen:
                raise ValueError(f"horizons {seen[span(horizon)]!r} and {horizon!r} are the same")
            seen[span(horizon)] = horizon
        return self

    @property
    def horizon_spec(self) -> Horizons:
        return Horizons(base=self.window, longer=tuple(self.horizons))

    def told(self) -> Told:
        """What the followed logs' servers' settings say and the logs do not."""
        from detector.formats import Told  # Polars: not for the API process

        return Told(self.log_line_prefix, self.mariadb_timezone, self.postgres_timezone)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Later sources lose: explicit values, then the environment, then the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


# What a list or table setting looks like in the environment (JSON), for the error.
JSON_EXAMPLES = {
    "follow": '["/var/log/postgresql/*.json"]',
    "horizons": '["1h", "1d", "3d"]',
    "roles": '{"backup": "batch"}',
    "severity_bands": '{"low": 0.5, "medium": 0.7, "high": 0.85}',
}


def _unparsed(exc: SettingsError) -> ConfigError:
    """A variable that is not the JSON a list or table setting needs, said in one line
    (before: "internal error: SettingsError: error parsing value for field ...")."""
    found = re.search(r'field "(\w+)" from source "(\w+)"', str(exc))
    if found is None:
        return ConfigError(f"settings: {exc}")
    name, source = found.groups()
    if source != "EnvSettingsSource":
        return ConfigError(f"setting {name}: cannot be read ({exc})")
    variable = f"TROVEWATCH_{name.upper()}"
    example = JSON_EXAMPLES.get(name, "[...] or {...}")
    return ConfigError(
        f"{variable}: not JSON; a list or table setting is given in the environment as "
        f"JSON, e.g. {variable}='{example}'"
    )


def load(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``config`` (TOML) and the environment; explicit overrides win."""
    try:
        return _load(config, **overrides)
    except SettingsError as exc:
        raise _unparsed(exc) from exc


def _load(config: Path | None = None, **overrides: Any) -> Settings:
    if config is None:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:  # read here too, so that a bad file is named in one line, not a parser traceback
        tomllib.loads(config.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {config}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {config}: not TOML ({exc})") from exc

    class FileSettings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config})

    return FileSettings(**{k: v for k, v in overrides.items() if v is not None})
