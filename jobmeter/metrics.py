"""Prometheus metrics, declared once; `/metrics` exposes the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPLIED = Counter("jobmeter_events_applied_total", "Events applied by a projection", ["projection"])
EVENTS_SKIPPED = Counter(
    "jobmeter_events_skipped_total", "Records skipped as already applied (redelivery)", ["projection"]
)
OFFSETS_SKIPPED = Counter(
    "jobmeter_offsets_skipped_total", "Offsets a projection found missing from the log (never read)", ["projection"]
)
DEAD_LETTERS = Counter("jobmeter_dead_letters_total", "Records sent to the dead-letter topic", ["source"])
PARTITIONS_HELD = Gauge(
    "jobmeter_partitions_held", "Partitions a projection holds at a record it cannot read yet (newer version, unknown "
    "type): nothing after it is applied until a reader that knows it runs", ["projection"]
)
BATCH_SECONDS = Histogram("jobmeter_batch_seconds", "Time to fold one batch", ["projection"])
INGESTED = Counter("jobmeter_ingested_total", "Ingested items by outcome", ["path", "outcome"])
INGEST_REFUSED = Counter(
    "jobmeter_ingest_refused_total", "Ingest requests answered 503 because a consumer was too far behind (admission)"
)
CONSUMER_LAG = Gauge(
    "jobmeter_consumer_jobs_behind",
    "Jobs a projection has not folded yet, as ingest's admission last read it: its records behind times the jobs per "
    "record this process published lately (read only when JOBMETER_INGEST_MAX_LAG is set)",
    ["projection"],
)
