"""Prometheus metrics of the sidecar, on their own registry.

Account names are never labels here, except in :class:`FlaggedAccounts`: the currently
flagged accounts, at most ``cap`` of them, built fresh at every scrape so that a cleared
account disappears. The cap and the number left out are exported beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

SEVERITIES = ("low", "medium", "high", "critical")

# ``*_created`` series only double the scrape; no alert or panel here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class Flagged:
    account: str
    severity: str
    score: float


class FlaggedAccounts(Collector):
    """``trovewatch_flagged_account{account,severity}``: the top ``cap`` flagged accounts
    by score, asked of ``source`` at scrape time; plus how many there are and are left out.
    None of them while ``source`` cannot say (None): unknown, not none flagged."""

    def __init__(self, source: Callable[[], list[Flagged] | None], cap: int) -> None:
        self._source = source
        self._cap = cap

    def collect(self) -> Iterator[Metric]:
        found = self._source()
        if found is None:
            return
        flagged = sorted(found, key=lambda f: (-f.score, f.account))
        shown = flagged[: self._cap]
        family = GaugeMetricFamily(
            "trovewatch_flagged_account",
            "Currently flagged accounts (top by score, capped); the value is the score.",
            labels=["account", "severity"],
        )
        for f in shown:
            family.add_metric([f.account, f.severity], f.score)
        yield family
        yield GaugeMetricFamily(
            "trovewatch_flagged_accounts", "Accounts currently flagged.", value=len(flagged)
        )
        yield GaugeMetricFamily(
            "trovewatch_flagged_accounts_cap",
            "Most accounts named in trovewatch_flagged_account.",
            value=self._cap,
        )
        yield GaugeMetricFamily(
            "trovewatch_flagged_accounts_omitted",
            "Flagged accounts left out of trovewatch_flagged_account by the cap.",
            value=len(flagged) - len(shown),
        )

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    """Every metric the service exports, registered on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "trovewatch_events",
            "Audit events taken in for scoring, by source and format: one per statement,"
            " a statement whose lines two reads split counted once.",
            ["source", "format"],
            registry=r,
        )
        self.lines = Counter(
            "trovewatch_lines_read", "Log lines read, by source.", ["source"], registry=r
        )
        self.rejected = Counter(
            "trovewatch_lines_rejected",
            "Lines rejected and quarantined, by reason.",
            ["reason"],
            registry=r,
        )
        # Here, not at the top: the API process imports this module (the store's Flagged)
        # but counts nothing, and the rejects module imports Polars (50 MB).
        from detector.rejects import Reason

        for reason in Reason:
            self.rejected.labels(reason.value)
        self.cut = Counter(
            "trovewatch_statements_cut",
            "Statements longer than 1 MB kept as events with their text cut.",
            registry=r,
        )
        self.zone_guessed = Counter(
            "trovewatch_zone_guessed_lines",
            "PostgreSQL lines timed in a zone abbreviation several zones print (CST, IST),"
            " read in a zone guessed as postgres_timezone is unset: their times may be hours off.",
            ["abbreviation"],
            registry=r,
        )
        self.unvolumed = Counter(
            "trovewatch_statements_without_volume",
            "MariaDB audited statements with no slow-log record (long_query_time above 0, "
            "log_slow_rate_limit, filters, statements in procedures): rows and bytes unknown.",
            registry=r,
        )
        self.late = Counter(
            "trovewatch_late_events",
            "Events that arrived after their window was scored; counted in the next open one.",
            registry=r,
        )
        self.future = Counter(
            "trovewatch_future_events",
            "Events timed more than max_clock_skew past this machine's clock; counted at the "
            "newest sane event time.",
            registry=r,
        )
        self.windows = Counter("trovewatch_windows_scored", "Account-windows scored.", registry=r)
        self.alerts = Counter(
            "trovewatch_alerts", "Alerts raised, by severity.", ["severity"], registry=r
        )
        for severity in SEVERITIES:
            self.alerts.labels(severity)
        self.latency = Histogram(
            "trovewatch_score_latency_seconds",
            "From the moment a window could close (its end plus the allowed lateness, in "
            "event time) to its score being stored.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400),
            registry=r,
        )
        self.scoring = Histogram(
            "trovewatch_scoring_duration_seconds",
            "Time to score one batch of closed windows.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.model_trained = Gauge(
            "trovewatch_model_trained_timestamp_seconds",
            "End of the model's training period (Unix time).",
            registry=r,
        )
        self.model_loaded = Gauge(
            "trovewatch_model_loaded_timestamp_seconds",
            "When the model in use was loaded (Unix time).",
            registry=r,
        )
        self.retrains = Counter(
            "trovewatch_model_retrains_total",
            "Scheduled retrainings, by outcome: published (and swapped in) or failed.",
            ["outcome"],
            registry=r,
        )
        for outcome in ("published", "failed"):
            self.retrains.labels(outcome)
        self.last_event = Gauge(
            "trovewatch_last_event_timestamp_seconds",
            "Event time of the newest event, by source (Unix time).",
            ["source"],
            registry=r,
        )
        self.last_read = Gauge(
            "trovewatch_last_read_timestamp_seconds",
            "Wall time at which a source last gave new data (Unix time).",
            ["source"],
            registry=r,
        )
        self.checkpoint_lag = Gauge(
            "trovewatch_checkpoint_lag_bytes",
            "Bytes of followed files not yet covered by a saved checkpoint, by source.",
            ["source"],
            registry=r,
        )
        self.archives_damaged = Gauge(
            "trovewatch_archives_damaged",
            "Compressed archives under a followed glob read only up to damage in them "
            "(their later records are lost; /readyz names them), until moved out of it.",
            ["source"],
            registry=r,
        )
        self.files_unreadable = Gauge(
            "trovewatch_files_unreadable",
            "Files matched by a followed glob that serve cannot open (permissions), by "
            "source: nothing of them is read; /readyz names them.",
            ["source"],
            registry=r,
        )
        self.audit_clock_ahead = Gauge(
            "trovewatch_mariadb_audit_clock_ahead_seconds",
            "How far a followed MariaDB audit log's clock runs ahead of UTC, as serve set it "
            "(by the slow log's, or by the records' lead on the machine's clock); 0 when "
            "mariadb_timezone puts its records on UTC.",
            registry=r,
        )
        self.checkpoint_time = Gauge(
            "trovewatch_last_checkpoint_timestamp_seconds",
            "When the last checkpoint was saved (Unix time).",
            registry=r,
        )
        self.storage_ok = Gauge(
            "trovewatch_storage_writable",
            "1 if the state directory took the last checkpoint, else 0.",
            registry=r,
        )
        self.quarantine_ok = Gauge(
            "trovewatch_quarantine_writable",
            "1 if the quarantine file took the last rejected lines, else 0 (they are "
            "counted, but their copies are lost; /readyz says why).",
            registry=r,
        )
        self.quarantine_ok.set(1)
        self.model_refuses = Gauge(
            "trovewatch_model_refuses_logs",
            "1 while the model refuses the logs read (they carry other fields than its "
            "training logs; reading is held, /readyz says why), else 0.",
            registry=r,
        )
        self.pass_seconds = Gauge(
            "trovewatch_ingest_pass_seconds",
            "How long the ingest loop's pass in progress has run (seconds; 0 between "
            "passes). A pass reads, parses, closes windows and saves, in seconds at most; "
            "minutes mean it is stuck waiting on something (/readyz says on what).",
            registry=r,
        )
        self.open_windows = Gauge(
            "trovewatch_open_windows", "Account-windows not yet closed.", registry=r
        )
        self.accounts = Gauge(
            "trovewatch_accounts_tracked", "Accounts with state in memory.", registry=r
        )
        self.accounts_cap = Gauge(
            "trovewatch_accounts_tracked_cap",
            "max_accounts: past it, the least recently active accounts' history is dropped.",
            registry=r,
        )
        self.ingest_errors = Counter(
            "trovewatch_ingest_errors",
            "Passes of the ingest loop that ended in an unexpected error (each goes back to "
            "the last checkpoint and tries again; the log has the traceback).",
            registry=r,
        )
        self.api_restarts = Counter(
            "trovewatch_api_restarts",
            "Times the API process ended by itself (kill -9, the out-of-memory killer) or "
            "stopped answering for 30 s, and was started again; the ingest went on meanwhile.",
            registry=r,
        )
        self.evicted = Counter(
            "trovewatch_accounts_evicted",
            "Accounts whose window history was dropped to stay within max_accounts.",
            registry=r,
        )
        self.overflow = Counter(
            "trovewatch_overflow_events",
            "Events of new account names past max_accounts open at once, counted together "
            'under the account "\\u0000(overflow)" (a NUL, then (overflow)).',
            registry=r,
        )

    def watch_flagged(self, source: Callable[[], list[Flagged] | None], cap: int) -> None:
        self.registry.register(FlaggedAccounts(source, cap))
