"""Prometheus metrics of ingest (one set per process; served by ``sense311.metrics_server``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_ROWS",
    "BUFFERED",
    "COMMIT_SECONDS",
    "DEAD_LETTERS",
    "DECODED",
    "EVENT_LAG",
    "RECEIVED",
    "ROWS_DUPLICATE",
    "ROWS_WRITTEN",
    "WRITE_RETRIES",
]

RECEIVED = Counter("sense311_ingest_messages_received", "MQTT messages received")
DECODED = Counter("sense311_ingest_messages_decoded", "Messages decoded, by format", ["format"])
DEAD_LETTERS = Counter("sense311_ingest_dead_letters", "Dead letters written, by reason", ["reason"])
ROWS_WRITTEN = Counter("sense311_ingest_rows_written", "Readings inserted into the readings table")
ROWS_DUPLICATE = Counter("sense311_ingest_rows_duplicate", "Readings ignored because already stored")
WRITE_RETRIES = Counter("sense311_ingest_write_retries", "Batch commits retried after a transient error")
BATCH_ROWS = Histogram(
    "sense311_ingest_batch_rows",
    "Readings per committed batch",
    buckets=(10, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
COMMIT_SECONDS = Histogram(
    "sense311_ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BUFFERED = Gauge("sense311_ingest_buffered_messages", "Messages received and not yet acknowledged")
EVENT_LAG = Histogram(
    "sense311_ingest_event_lag_seconds",
    "Commit time minus the reading's event time (newest in each batch)",
    buckets=(0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400),
)
