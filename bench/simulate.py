"""Simulator throughput: the vectorised generator, SimMessage objects, encoding, publishing.

    python bench/simulate.py [--sensors 10000] [--days 1] [--step 60] [--format chirpstack_v4]
                             [--encode 100000] [--publish 50000] [--mqtt-url mqtt://127.0.0.1:1883]

Figures, each printed as messages per second:

* generator: ``Simulation.batches()`` over the whole period (default 10,000 sensors, one report
  per minute for a day = 14.4 million messages, at the default fault rates), checked against
  the target of one minute of wall time for that day (printed, not asserted);
* messages: ``Simulation.messages()`` (one ``SimMessage`` per report) over ``--message-hours``,
  projected to the whole period;
* encode: ``--encode`` messages through the chosen format's encoder;
* publish: ``--publish`` messages at QoS 1 through the broker at ``--mqtt-url`` (default
  ``SENSE311_MQTT_URL`` or mqtt://127.0.0.1:1883), until every PUBACK is in; skipped with the
  reason when no broker answers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import time

from simulators import Simulation, build_fleet, default_faults, get_encoder
from simulators.encoders import FORMATS
from simulators.errors import PublishError
from simulators.fleet import DEFAULT_COUNTS
from simulators.publisher import MqttPublisher

#: The issue's target: 10,000 sensors reporting every minute for a day, generated in a minute.
TARGET_S = 60.0
TARGET_SENSORS = 10_000
START = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)


def counts_for(total: int) -> dict[str, int]:
    """The default fleet's mix (80 bins, 80 lights, 24 bays, 16 monitors per 200) scaled to ``total``."""
    base = sum(DEFAULT_COUNTS.values())
    counts = {k: total * v // base for k, v in DEFAULT_COUNTS.items()}
    counts["bin"] += total - sum(counts.values())
    return counts


def rate(n: int, seconds: float) -> str:
    return f"{n:,} messages in {seconds:.1f} s = {n / seconds:,.0f} msg/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=TARGET_SENSORS)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--step", type=float, default=60.0, help="report interval, seconds")
    parser.add_argument("--message-hours", type=float, default=3.0, help="period for the SimMessage figure")
    parser.add_argument("--format", default="chirpstack_v4", choices=FORMATS)
    parser.add_argument("--encode", type=int, default=100_000, help="messages to encode")
    parser.add_argument("--publish", type=int, default=50_000, help="messages to publish (0: skip)")
    parser.add_argument(
        "--mqtt-url", default=os.environ.get("SENSE311_MQTT_URL", "mqtt://127.0.0.1:1883"), help="broker"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    t0 = time.perf_counter()
    counts = counts_for(args.sensors)
    fleet = build_fleet(args.seed, counts)
    end = START + dt.timedelta(days=args.days)
    sim = Simulation(fleet, default_faults(), START, end, args.step)
    mix = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(f"fleet: {len(fleet):,} sensors ({mix}), {len(sim.plan.episodes):,} fault episodes planned, "
          f"built in {time.perf_counter() - t0:.1f} s")  # fmt: skip

    t0 = time.perf_counter()
    generated = sum(batch.count for batch in sim.batches())
    gen_s = time.perf_counter() - t0
    print(f"generator ({args.days:g} d, step {args.step:g} s): {rate(generated, gen_s)}")
    target = f"target: {TARGET_SENSORS:,} sensors x 1 day at 1/min in < {TARGET_S:.0f} s"
    if args.sensors == TARGET_SENSORS and args.days == 1 and args.step == 60:
        print(f"{target}: {gen_s:.1f} s, {'within' if gen_s < TARGET_S else 'OVER'} target")
    else:
        # Per-step costs do not shrink with the fleet, so a smaller run projects nothing.
        print(f"{target} (run without options to check it)")

    hours = min(args.message_hours, args.days * 24)
    short = Simulation(fleet, default_faults(), START, START + dt.timedelta(hours=hours), args.step)
    t0 = time.perf_counter()
    made = sum(1 for _ in short.messages())
    msg_s = time.perf_counter() - t0
    whole = msg_s * (args.days * 24 / hours)
    print(f"messages (SimMessage, {hours:g} h): {rate(made, msg_s)}; whole period projected at {whole:.0f} s")

    encoder = get_encoder(args.format, fleet, "bench/simulate")
    sample = list(itertools.islice(short.messages(), args.encode))
    t0 = time.perf_counter()
    encoded = [pair for m in sample for pair in encoder.encode(m)]
    enc_s = time.perf_counter() - t0
    print(f"encode {args.format}: {rate(len(encoded), enc_s)}")

    if args.publish <= 0:
        return
    payloads = list(itertools.islice(itertools.cycle(encoded), args.publish))
    try:
        with MqttPublisher(args.mqtt_url, connect_timeout=5, ack_timeout=60) as publisher:
            t0 = time.perf_counter()
            for topic, payload in payloads:
                publisher.publish(topic, payload)
            publisher.flush()
            pub_s = time.perf_counter() - t0
        where = f"via {publisher.address} (QoS 1, all acknowledged)"
        print(f"publish {args.format} {where}: {rate(len(payloads), pub_s)}")
    except PublishError as exc:
        print(f"publish: skipped: {exc}")


if __name__ == "__main__":
    main()
