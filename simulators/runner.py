"""One simulation run from options to output: the entry point behind ``sense311 simulate``.

::

    report = run_simulation(parse_options(seed=7, faults="default", duration="1d", output="none",
                                          ground_truth="ground_truth.jsonl"),
                            progress=lambda done, total: ...)

Without ``--start``, a paced run (``--speed``) starts now and an as-fast-as-possible run ends
now, so ``--output db --duration 30d`` fills the last 30 days. Steps: build the fleet and the
fault plan, optionally register the fleet, then send every
message to the output — an MQTT broker in a gateway format (paced by ``speed``: 1 = real time,
3600 = an hour per second, unset = as fast as the broker acknowledges), straight into
``readings`` (backfill), a JSON Lines file, or nowhere — and finally write the ground truth.
This is the only simulator code that reads the clock: for the default start time and to pace
real-time and time-warped runs. If a run stops early (Ctrl-C, a broker failure) the ground truth
still describes what was sent up to that moment.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from sense311.errors import ConfigError, DatabaseError
from simulators.backfill import backfill
from simulators.city import CityConfig
from simulators.cli_options import SimulationOptions, parse_options
from simulators.encoders import TIME_FAITHFUL, get_encoder
from simulators.errors import SimulatorError
from simulators.fleet import build_fleet
from simulators.messages import SimMessage
from simulators.publisher import MqttPublisher
from simulators.registry import register_fleet
from simulators.simulation import Simulation

__all__ = ["DEFAULT_DURATION_S", "RunReport", "run_simulation"]

DEFAULT_DURATION_S = 86_400
#: Pacing sleeps shorter than this are skipped: sleeping per message would cost more than it keeps.
MIN_SLEEP_S = 0.005
#: Database connections made for --register / --output db give up after this many seconds.
DB_CONNECT_TIMEOUT_S = 10

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class RunReport:
    """What a run did: steps simulated of the total, messages emitted and sent, episodes
    labelled, rows written (``--output db``), sensors registered, wall-clock seconds, and notes
    worth showing the user (e.g. a format that cannot carry the simulated time)."""

    steps: int
    total_steps: int
    messages: int
    sent: int
    episodes: int
    rows: int
    registered: int
    elapsed_s: float
    ground_truth: Path | None
    completed: bool
    notes: list[str]


def _options(options: SimulationOptions | Mapping[str, Any]) -> SimulationOptions:
    return options if isinstance(options, SimulationOptions) else parse_options(**dict(options))


def _period(opts: SimulationOptions, now_s: float) -> tuple[datetime, datetime]:
    """The simulated period. Without a start, a paced run starts now and an as-fast-as-possible
    one ends now (a backfill of recent history); times without an end last ``duration``."""
    step_s = opts.step.total_seconds()
    duration_s = opts.duration.total_seconds() if opts.duration is not None else DEFAULT_DURATION_S
    now = datetime.fromtimestamp((now_s // step_s) * step_s, tz=UTC)
    start, end = opts.start, opts.end
    if start is None and end is None:
        if opts.speed is None:
            end = now
        else:
            start = now
    if start is None:
        assert end is not None
        start = datetime.fromtimestamp(end.timestamp() - duration_s, tz=UTC)
    if end is None:
        end = datetime.fromtimestamp(start.timestamp() + duration_s, tz=UTC)
    if end <= start:
        raise ConfigError(f"--end ({end.isoformat()}) must be after the start ({start.isoformat()})")
    return start, end


def _notes(opts: SimulationOptions) -> list[str]:
    notes = []
    if opts.output in ("mqtt", "file") and opts.format not in TIME_FAITHFUL and opts.speed != 1:
        notes.append(
            f"{opts.format} payloads carry no time: a subscriber stores them at receive time, "
            "not at the simulated time (use a format with timestamps for backfill or --speed other than 1)"
        )
    return notes


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=DB_CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise DatabaseError(f"could not connect to the database for the simulator: {exc}") from exc


class _FileSink:
    """``--output file``: one JSON object per line, ``{"topic", "payload"}`` (text) or
    ``{"topic", "payload_b64"}`` for bytes that are not UTF-8."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("w", encoding="utf-8")

    def publish(self, topic: str, payload: bytes) -> None:
        try:
            line = {"topic": topic, "payload": payload.decode("utf-8")}
        except UnicodeDecodeError:
            line = {"topic": topic, "payload_b64": base64.b64encode(payload).decode()}
        self.fh.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.fh.close()


def _paced(
    messages: Iterator[SimMessage],
    sim: Simulation,
    speed: float | None,
    progress: Progress | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    state: dict[str, int],
) -> Iterator[SimMessage]:
    """Messages released no earlier than their simulated time allows, with progress per step."""
    wall0 = clock()
    for msg in messages:
        step = (msg.true_time_ms - sim.start_ms) // sim.step_ms + 1
        if step > state["steps"]:
            state["steps"] = step
            state["until_ms"] = sim.start_ms + step * sim.step_ms
            if progress is not None:
                progress(step, sim.n_steps)
        if speed is not None:
            due = wall0 + (msg.true_time_ms - sim.start_ms) / 1000.0 / speed
            wait = due - clock()
            if wait > MIN_SLEEP_S:
                sleep(wait)
        yield msg
    if progress is not None and state["steps"] < sim.n_steps:
        progress(sim.n_steps, sim.n_steps)  # the last steps were silent


def run_simulation(
    options: SimulationOptions | Mapping[str, Any],
    progress: Progress | None = None,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """Run one simulation as ``options`` say; ``progress(done_steps, total_steps)`` as it goes.

    Raises ``ConfigError`` (bad options, one line), ``PublishError`` (broker trouble) or
    ``DatabaseError``. ``clock`` (epoch seconds) and ``sleep`` are injectable for tests.
    """
    opts = _options(options)
    started = clock()
    city = CityConfig(name=opts.city, lat=opts.lat, lon=opts.lon, tz=opts.tz)
    fleet = build_fleet(opts.seed, opts.counts(), city)
    start, end = _period(opts, started)
    sim = Simulation(fleet, opts.rates(), start, end, opts.step)
    state = {"steps": 0, "until_ms": sim.start_ms, "messages": 0, "sent": 0, "rows": 0, "registered": 0}
    completed = False
    try:
        with ExitStack() as stack:
            conn = None
            if opts.database_url is not None and (opts.register_sensors or opts.output == "db"):
                conn = stack.enter_context(_connect(opts.database_url))
            if opts.register_sensors and conn is not None:
                state["registered"] = register_fleet(conn, fleet)
            if opts.output == "db":
                assert conn is not None
                result = backfill(conn, sim, progress=progress)
                state.update(
                    steps=sim.n_steps, until_ms=sim.end_ms, messages=result.messages, rows=result.inserted
                )
                state["sent"] = result.messages
            else:
                encoder = get_encoder(opts.format, fleet, opts.topic_prefix)
                sink: Any = None
                if opts.output == "mqtt":
                    sink = stack.enter_context(
                        MqttPublisher(
                            opts.mqtt_url,
                            max_inflight=opts.max_inflight,
                            connect_timeout=opts.connect_timeout,
                            ack_timeout=opts.ack_timeout,
                        )
                    )
                elif opts.output == "file":
                    assert opts.out_file is not None
                    try:
                        sink = _FileSink(opts.out_file)
                    except OSError as exc:
                        raise SimulatorError(
                            f"could not write {opts.out_file}: {exc.strerror or exc}"
                        ) from exc
                    stack.callback(sink.close)
                for msg in _paced(sim.messages(), sim, opts.speed, progress, clock, sleep, state):
                    state["messages"] += 1
                    if sink is None:
                        continue
                    for topic, payload in encoder.encode(msg):
                        sink.publish(topic, payload)
                        state["sent"] += 1
                state["until_ms"] = sim.end_ms
        completed = True
    finally:
        truth = sim.ground_truth() if completed else sim.ground_truth(until_ms=state["until_ms"])
        truth.summary["options"] = opts.summary()
        path = None
        if opts.ground_truth is not None:
            try:
                path = truth.write(opts.ground_truth)
            except OSError as exc:
                raise SimulatorError(
                    f"could not write the ground truth to {opts.ground_truth}: {exc.strerror or exc}"
                ) from exc
    return RunReport(
        steps=state["steps"] if not completed else sim.n_steps,
        total_steps=sim.n_steps,
        messages=state["messages"],
        sent=state["sent"],
        episodes=len(truth.episodes),
        rows=state["rows"],
        registered=state["registered"],
        elapsed_s=clock() - started,
        ground_truth=path,
        completed=completed,
        notes=_notes(opts),
    )
