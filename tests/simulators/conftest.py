"""Shared simulations for the simulator tests: one small fleet, a clean and a faulty run.

The runs are session-scoped: they take a few seconds each and every test only reads them.
"""

from __future__ import annotations

import pytest

from simulators import build_fleet, default_faults
from simulators.fleet import Fleet
from tests.simulators.simhelp import END, SEED, START, STEP_S, Run, run


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return build_fleet(SEED)


@pytest.fixture(scope="session")
def clean_run(fleet: Fleet) -> Run:
    """Two days of the default fleet with no faults, one report per 5 minutes."""
    return run(fleet, None, START, END, STEP_S)


@pytest.fixture(scope="session")
def faulty_run(fleet: Fleet) -> Run:
    """The same fleet and period at the default fault rates."""
    return run(fleet, default_faults(), START, END, STEP_S)
