"""Due instants: aligned to the interval in UTC, never past now − lateness, caught up in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rules.instants import aligned_range, due_instants, from_us, latest_due, to_us

MIN = timedelta(minutes=1)
T = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def test_a_new_rule_starts_at_the_latest_due_instant() -> None:
    assert due_instants(None, at(10.5), MIN, MIN) == [at(9)]


def test_nothing_is_due_before_now_minus_lateness() -> None:
    # Instant 12:10 may be evaluated from 12:12 on with 2 minutes of lateness, not a second earlier.
    assert due_instants(at(9), at(12) - timedelta(seconds=1), MIN, 2 * MIN) == []
    assert due_instants(at(9), at(12), MIN, 2 * MIN) == [at(10)]


def test_catch_up_returns_every_missed_instant_in_order() -> None:
    assert due_instants(at(0), at(5), MIN, timedelta(0)) == [at(1), at(2), at(3), at(4), at(5)]


def test_catch_up_is_bounded() -> None:
    due = due_instants(at(0), at(600), MIN, timedelta(0), max_catch_up=timedelta(minutes=10))
    assert due[0] == at(590) and due[-1] == at(600) and len(due) == 11


def test_limit_keeps_the_oldest_for_this_run() -> None:
    assert due_instants(at(0), at(100), MIN, timedelta(0), limit=3) == [at(1), at(2), at(3)]


def test_instants_are_aligned_in_utc_whatever_the_watermark() -> None:
    # The interval changed from 1 to 5 minutes: continue at the next 5-minute mark.
    assert due_instants(at(3), at(12), 5 * MIN, timedelta(0)) == [at(5), at(10)]
    assert latest_due(at(12), 5 * MIN, timedelta(0)) == at(10)


def test_aligned_range_includes_both_aligned_ends() -> None:
    values = aligned_range(at(0.5), at(3), MIN)
    assert [from_us(v) for v in values] == [at(1), at(2), at(3)]


def test_microsecond_round_trip_and_naive_refused() -> None:
    t = datetime(2026, 3, 29, 1, 59, 59, 999_999, tzinfo=UTC)
    assert from_us(to_us(t)) == t
    with pytest.raises(ValueError, match="naive"):
        to_us(datetime(2026, 1, 1))
