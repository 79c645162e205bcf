"""One ingest worker: MQTT consumer → pipeline → batch writer → acknowledgements.

The worker thread owns decoding, writing and acknowledging; paho's network thread only
enqueues. A flush happens when ``batch_rows`` readings are buffered or the oldest buffered
message has waited ``flush_interval``. A batch that fails to commit with a transient error is
retried (sense311/retry.py backoff) with the same messages, still unacknowledged; meanwhile
the broker stops sending once ``max_unacked`` messages are outstanding, so memory stays
bounded and nothing is dropped. A permanent error is narrowed down message by message, and
only the messages that cannot be stored are dead-lettered with the database's reason.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ingest import metrics
from ingest.errors import IngestError
from ingest.mqtt import MqttConsumer
from ingest.pipeline import Batch, DeadLetter, Message, Pipeline, Processed
from ingest.registry import Registry, SensorInfo
from ingest.writer import BatchWriter, WriteResult
from sense311.db.errors import is_transient
from sense311.errors import DatabaseError
from sense311.retry import Backoff
from sense311.settings import Settings

__all__ = ["IngestStats", "IngestWorker"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestStats:
    received: int = 0
    acked: int = 0
    rows: int = 0
    inserted: int = 0
    dead_letters: int = 0
    batches: int = 0
    retries: int = 0


class IngestWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str | None = None,
        shared_group: str | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = Pipeline(settings.ingest, settings.storage.retention)
        self.registry = Registry(self.pipeline.alias_keys)
        self.writer = BatchWriter(settings)
        self.stats = IngestStats()
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.consumer = MqttConsumer(
            settings.mqtt_url.get_secret_value(),
            settings.mqtt,
            self.pipeline.router.filters,
            self._queue.put,
            client_id=client_id or settings.mqtt.client_id,
            receive_maximum=settings.ingest.max_unacked,
            shared_group=shared_group if shared_group is not None else settings.mqtt.shared_group,
        )

    def stop(self) -> None:
        """Ask the loop to finish: it flushes and acknowledges what it holds, then returns."""
        self._stop.set()

    def start(self, timeout: float = 30.0) -> None:
        """Load the registry, connect and subscribe; raises when either cannot be reached in time."""
        self._load_registry(timeout)
        self.consumer.start()
        self.consumer.wait_connected(timeout)

    def _load_registry(self, timeout: float) -> None:
        backoff = Backoff(deadline=timeout)
        while True:
            try:
                self.registry.load_all(self.writer.conn)
                self.writer.conn.rollback()
                return
            except DatabaseError as exc:
                if not is_transient(exc) or backoff.expired():
                    raise
                time.sleep(backoff.next_delay())

    def run(self) -> IngestStats:
        """Process until ``stop()``; flushes what is buffered before returning."""
        ing = self.settings.ingest
        interval = ing.flush_interval.total_seconds()
        pending: list[Processed] = []
        rows_estimate = 0
        first_at = 0.0
        get = self._queue.get
        decode = self.pipeline.decode
        try:
            while True:
                timeout = interval if not pending else max(0.0, first_at + interval - time.monotonic())
                try:
                    msg = get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    msg = None
                if msg is not None:
                    if not pending:
                        first_at = time.monotonic()
                    p = decode(msg)
                    pending.append(p)
                    if p.decoded is not None:
                        rows_estimate += len(p.decoded.readings)
                    # Drain what is already queued without waiting, up to the batch size.
                    while rows_estimate < ing.batch_rows:
                        try:
                            msg = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        p = decode(msg)
                        pending.append(p)
                        if p.decoded is not None:
                            rows_estimate += len(p.decoded.readings)
                    metrics.BUFFERED.set(len(pending))
                due = pending and (rows_estimate >= ing.batch_rows or time.monotonic() - first_at >= interval)
                if due or (pending and self._stop.is_set()):
                    self._flush(pending)
                    pending = []
                    rows_estimate = 0
                    metrics.BUFFERED.set(0)
                if self._stop.is_set() and not pending:
                    break
        finally:
            self.consumer.stop()
            self.writer.close()
        return self.stats

    # -- flushing -------------------------------------------------------------------------

    def _flush(self, pending: list[Processed]) -> None:
        self.stats.received += len(pending)
        metrics.RECEIVED.inc(len(pending))
        backoff = Backoff(base=0.2, cap=self.settings.ingest.retry_max_delay.total_seconds())
        while True:
            try:
                result = self._write(pending)
                break
            except DatabaseError as exc:
                if not is_transient(exc):
                    result = self._write_narrowed(pending, exc)
                    break
                delay = backoff.next_delay()
                self.stats.retries += 1
                metrics.WRITE_RETRIES.inc()
                log.warning(
                    "%d messages not committed after %d attempts in %.1f s: %s; retrying in %.1f s",
                    len(pending),
                    backoff.attempts,
                    backoff.elapsed(),
                    exc,
                    delay,
                )
                if self._stop.wait(delay) and backoff.attempts > 3:
                    # Shutting down with the database away: keep nothing unacked in memory; the
                    # broker holds the messages for the persistent session.
                    log.error(
                        "stopping with %d messages unacknowledged; the broker will redeliver", len(pending)
                    )
                    return
        acked = self.consumer.ack(p.message.token for p in pending)
        self.stats.acked += acked
        self._account(result)

    def _write(self, pending: list[Processed]) -> WriteResult:
        if self.registry.stale():
            self.registry.load_all(self.writer.conn)
            self.writer.conn.rollback()
        ids, aliases = self.pipeline.sensor_ids(pending)
        self.registry.resolve(self.writer.conn, ids)
        for key, names in aliases.items():
            self.registry.resolve_aliases(self.writer.conn, key, names)
        self.writer.conn.rollback()
        batch = self.pipeline.finalize(pending, self.registry, datetime.now(UTC))
        result = self.writer.write(batch)
        for sid, gateway in batch.auto_register.items():
            self.registry.add(SensorInfo(sid, "unknown", gateway))
        for d in batch.dead_letters:
            metrics.DEAD_LETTERS.labels(d.reason).inc()
        if batch.rows:
            newest = max(r[0] for r in batch.rows)
            metrics.EVENT_LAG.observe(max(0.0, (datetime.now(UTC) - newest).total_seconds()))
        return result

    def _write_narrowed(self, pending: list[Processed], exc: DatabaseError) -> WriteResult:
        """A permanent failure: write message by message; dead-letter the ones that fail."""
        log.error("batch of %d messages failed permanently (%s); writing one by one", len(pending), exc)
        total = WriteResult(0, 0, 0, 0.0)
        for p in pending:
            try:
                r = self._write([p])
            except DatabaseError as one:
                if is_transient(one):
                    raise
                err = IngestError(str(one), reason="write_error")
                dead = DeadLetter(
                    datetime.fromtimestamp(p.message.received_at, UTC),
                    p.message.topic,
                    p.message.payload,
                    err.reason,
                    err.detail,
                    p.format,
                    None,
                    p.gateway,
                )
                self.writer.write(Batch(dead_letters=[dead]))
                metrics.DEAD_LETTERS.labels(err.reason).inc()
                r = WriteResult(0, 0, 1, 0.0)
            total = WriteResult(
                total.rows + r.rows,
                total.inserted + r.inserted,
                total.dead_letters + r.dead_letters,
                total.seconds + r.seconds,
            )
        return total

    def _account(self, result: WriteResult) -> None:
        self.stats.batches += 1
        self.stats.rows += result.rows
        self.stats.inserted += result.inserted
        self.stats.dead_letters += result.dead_letters
        metrics.ROWS_WRITTEN.inc(result.inserted)
        metrics.ROWS_DUPLICATE.inc(result.rows - result.inserted)
        metrics.BATCH_ROWS.observe(result.rows)
        metrics.COMMIT_SECONDS.observe(result.seconds)
