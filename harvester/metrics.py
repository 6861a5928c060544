"""Every Prometheus metric the daemon exports, on a registry of its own (not the global one).

Labels carry only target keys (`workspace/gateway`), operation names, outcomes and
statuses: never a credential, URL or error text.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from harvester.api.client import RequestStats
from harvester.harvest import RunSummary

#: run durations span a tiny gateway (well under a second) to a first pass over a big one
RUN_DURATION_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class _ClientStatsCollector(Collector):
    """Retries and throttled answers, read from the API client's own counters at scrape time."""

    def __init__(self) -> None:
        self.stats: RequestStats | None = None

    def collect(self) -> Iterator[Metric]:
        stats = self.stats or RequestStats()
        yield CounterMetricFamily(
            "harvester_api_retries", "API attempts retried after a transient failure",
            value=stats.retries,
        )  # fmt: skip
        yield CounterMetricFamily(
            "harvester_api_throttled", "API answers that said the caller is throttled",
            value=stats.throttled,
        )  # fmt: skip


class Metrics:
    """The daemon's metrics; one instance per daemon (tests may create several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.runs = Counter(
            "harvester_runs", "Harvest runs finished, by target and status",
            ["target", "status"], registry=registry,
        )  # fmt: skip
        self.sessions_inserted = Counter(
            "harvester_sessions_inserted", "Sessions stored for the first time, by target",
            ["target"], registry=registry,
        )  # fmt: skip
        self.sessions_updated = Counter(
            "harvester_sessions_updated", "Stored sessions that changed, by target",
            ["target"], registry=registry,
        )  # fmt: skip
        self.api_requests = Counter(
            "harvester_api_requests", "API attempts, by operation and outcome (HTTP status, "
            "throttled, timeout, transport_error, bad_body, error_in_200)",
            ["operation", "outcome"], registry=registry,
        )  # fmt: skip
        self.last_success = Gauge(
            "harvester_last_success_timestamp_seconds",
            "When this process last finished a successful run of the target (unix time)",
            ["target"], registry=registry,
        )  # fmt: skip
        self.run_duration = Histogram(
            "harvester_run_duration_seconds", "Duration of harvest runs (skipped ones excluded)",
            ["target"], buckets=RUN_DURATION_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.targets = Gauge(
            "harvester_targets", "Gateways this process schedules", registry=registry
        )
        self.database_up = Gauge(
            "harvester_database_up", "1 when the last database check succeeded, else 0",
            registry=registry,
        )  # fmt: skip
        self.discoveries = Counter(
            "harvester_discoveries", "Discovery rounds, by outcome (ok, partial, failed)",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self._client_stats = _ClientStatsCollector()
        registry.register(self._client_stats)

    def watch_client(self, stats: RequestStats) -> None:
        """Export the retry and throttle counters of this API client."""
        self._client_stats.stats = stats

    def observe_request(self, operation: str, outcome: str) -> None:
        """An `ApiClient.observers` hook: count one API attempt."""
        self.api_requests.labels(operation=operation, outcome=outcome).inc()

    def observe_run(self, summary: RunSummary, finished_at: datetime) -> None:
        """Count a finished run and what it stored."""
        target = summary.gateway.key
        self.runs.labels(target=target, status=summary.status).inc()
        if summary.status == "skipped":
            return
        self.sessions_inserted.labels(target=target).inc(summary.inserted)
        self.sessions_updated.labels(target=target).inc(summary.updated)
        self.run_duration.labels(target=target).observe(summary.duration_s)
        if summary.status == "succeeded":
            self.last_success.labels(target=target).set(finished_at.timestamp())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
