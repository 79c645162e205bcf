"""Grouping decisions: pure functions of candidates, place and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ticketing.grouping import Candidate, choose_ticket, distance_m

T0 = datetime(2024, 6, 1, 22, 0, tzinfo=UTC)
WINDOW = timedelta(hours=2)


def test_distance_matches_known_geometry() -> None:
    # One degree of latitude is 111.2 km on the mean sphere; 0.00044° of longitude at 52.37° N is ~30 m.
    assert distance_m(52.0, 4.0, 53.0, 4.0) == pytest.approx(111_195, rel=1e-3)
    assert distance_m(52.37, 4.89, 52.37, 4.89044) == pytest.approx(29.9, abs=0.2)
    assert distance_m(52.37, 4.89, 52.37, 4.89) == 0


def test_nearest_member_in_reach_wins() -> None:
    candidates = [
        Candidate(1, T0, 52.3700, 4.8900),
        Candidate(2, T0, 52.3700, 4.8910),  # ~68 m east
        Candidate(2, T0, 52.3700, 4.8904),  # ~27 m east: ticket 2's nearest member
    ]
    assert choose_ticket(candidates, 52.3700, 4.8905, T0, distance=150, window=WINDOW) == 2


def test_out_of_reach_or_out_of_window_is_a_new_ticket() -> None:
    near = [Candidate(1, T0, 52.37, 4.89)]
    assert choose_ticket(near, 52.3727, 4.89, T0, distance=150, window=WINDOW) is None  # 300 m
    assert choose_ticket(near, 52.37, 4.8901, T0 + timedelta(hours=3), distance=150, window=WINDOW) is None
    assert choose_ticket(near, 52.37, 4.8901, T0 + timedelta(hours=1), distance=150, window=WINDOW) == 1


def test_without_a_location_nothing_groups() -> None:
    near = [Candidate(1, T0, 52.37, 4.89), Candidate(2, T0, None, None)]
    assert choose_ticket(near, None, None, T0, distance=150, window=WINDOW) is None
    assert choose_ticket(near[1:], 52.37, 4.89, T0, distance=150, window=WINDOW) is None
    assert choose_ticket(near, 52.37, 4.89, T0, distance=0, window=WINDOW) is None


def test_ties_go_to_the_older_ticket() -> None:
    candidates = [Candidate(7, T0 + timedelta(minutes=5), 52.37, 4.89), Candidate(3, T0, 52.37, 4.89)]
    assert choose_ticket(candidates, 52.37, 4.89, T0, distance=150, window=WINDOW) == 3
