"""City fleet simulators: sensors on streets, labelled faults, every gateway format.

::

    from simulators import Simulation, build_fleet, default_faults

    fleet = build_fleet(seed=7)                                  # 200 sensors around Amsterdam
    sim = Simulation(fleet, default_faults(), start, end, step=60)
    for message in sim.messages(): ...                           # SimMessage, canonical metrics
    sim.ground_truth().write("ground_truth.jsonl")               # labelled fault episodes

``run_simulation(options)`` is the CLI's entry point (``simulators.cli_options`` holds the
options); ``get_encoder(format, fleet)`` turns messages into gateway payloads;
``register_fleet`` and ``backfill`` write the registry and history straight into PostgreSQL;
``score`` measures detections against the ground truth.
"""

from __future__ import annotations

from simulators.backfill import backfill
from simulators.city import CityConfig
from simulators.cli_options import SimulationOptions, parse_options
from simulators.encoders import FORMATS, get_encoder
from simulators.faults import FAULT_KINDS, Episode, FaultRates, default_faults
from simulators.fieldmap import FIELD_MAP
from simulators.fleet import Fleet, build_fleet
from simulators.ground_truth import GroundTruth, read_ground_truth
from simulators.messages import SimMessage
from simulators.registry import register_fleet
from simulators.runner import RunReport, run_simulation
from simulators.scoring import Detection, score
from simulators.simulation import Simulation

__all__ = [
    "FAULT_KINDS",
    "FIELD_MAP",
    "FORMATS",
    "CityConfig",
    "Detection",
    "Episode",
    "FaultRates",
    "Fleet",
    "GroundTruth",
    "RunReport",
    "SimMessage",
    "Simulation",
    "SimulationOptions",
    "backfill",
    "build_fleet",
    "default_faults",
    "get_encoder",
    "parse_options",
    "read_ground_truth",
    "register_fleet",
    "run_simulation",
    "score",
]
