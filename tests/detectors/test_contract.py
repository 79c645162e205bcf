"""The contract every registered detector keeps (the river checks, for sense311)."""

from __future__ import annotations

import copy
import inspect
import pickle

import numpy as np
import pytest

from detectors import available_detectors, get_detector
from detectors.base import Detector
from detectors.registry import detector_class
from sense311.errors import ConfigError
from tests.detectors.synth import input_for

#: Parameters that keep a detector's warm-up within the six synthetic days.
PARAMS = {"forest": {"grace_period": 288, "window": 24, "stride": 3}}
NAMES = available_detectors()


def make(name: str, seed: int = 0) -> Detector:
    return get_detector(name, seed=seed, **PARAMS.get(name, {}))


def test_registry_lists_every_detector() -> None:
    assert set(NAMES) == {
        "forest", "level_shift", "peer", "peer_dark", "rise_rate", "seasonal", "silent", "spike", "stuck",
    }  # fmt: skip


def test_misspelt_names_get_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="unknown detector 'seasonl'; did you mean 'seasonal'"):
        get_detector("seasonl")
    with pytest.raises(ConfigError, match="has no parameter 'z_halff'; did you mean 'z_half'"):
        get_detector("seasonal", z_halff=3)


@pytest.mark.parametrize("name", NAMES)
def test_documented(name: str) -> None:
    cls = detector_class(name)
    module = inspect.getmodule(cls)
    assert cls.__doc__ and cls.__doc__.strip()
    assert module is not None and module.__doc__ and ">>>" in module.__doc__, "a runnable example"
    assert cls.evidence_keys, "evidence names"


@pytest.mark.parametrize("name", NAMES)
def test_scores_in_range_with_evidence(name: str) -> None:
    d = make(name)
    t, x = input_for(d, seed=1)
    s = d.score_series(t, x)
    assert len(s) == len(t)
    assert np.all((s.score >= 0) & (s.score <= 1))
    assert set(s.evidence) == set(d.evidence_keys)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(name: str) -> None:
    t, x = input_for(make(name), seed=2)
    a = make(name, seed=5).score_series(t, x).score
    b = make(name, seed=5).score_series(t, x).score
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_appending_never_changes_earlier_scores(name: str) -> None:
    t, x = input_for(make(name), seed=3)
    full = make(name).score_series(t, x).score
    cut = len(t) * 2 // 3
    prefix = make(name).score_series(t[:cut], x[:cut]).score
    assert np.array_equal(prefix, full[:cut])


@pytest.mark.parametrize("name", NAMES)
def test_chunks_equal_one_pass(name: str) -> None:
    t, x = input_for(make(name), seed=4)
    whole = make(name).score_series(t, x).score
    d = make(name)
    parts = [
        d.score_series(t[a:b], x[a:b]).score for a, b in ((0, 100), (100, 101), (101, 500), (500, len(t)))
    ]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_equals_one_by_one(name: str) -> None:
    t, x = input_for(make(name), seed=5, days=4)
    whole = make(name).score_series(t, x).score
    d = make(name)
    loop = [d.update_one(float(ti), xi).score for ti, xi in zip(t, x, strict=True)]
    np.testing.assert_allclose(loop, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_score_one_leaves_the_detector_unchanged(name: str) -> None:
    t, x = input_for(make(name), seed=6, days=4)
    d = make(name)
    d.score_series(t[:-1], x[:-1])
    before = pickle.dumps(d)
    scored = d.score_one(float(t[-1]), x[-1])
    assert pickle.dumps(d) == before
    assert scored.score == d.update_one(float(t[-1]), x[-1]).score


@pytest.mark.parametrize("name", NAMES)
def test_picklable_mid_series(name: str) -> None:
    t, x = input_for(make(name), seed=7)
    whole = make(name).score_series(t, x).score
    d = make(name)
    d.score_series(t[:400], x[:400])
    revived = pickle.loads(pickle.dumps(d))
    assert np.array_equal(revived.score_series(t[400:], x[400:]).score, whole[400:])


@pytest.mark.parametrize("name", NAMES)
def test_clean_series_stays_quiet(name: str) -> None:
    t, x = input_for(make(name), seed=8, days=8)
    s = make(name).score_series(t, x)
    assert float(s.score.max()) < 0.5, (
        f"{name} scored a clean series {s.score.max():.2f} at {int(s.score.argmax())}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_params_rebuild_the_detector(name: str) -> None:
    d = make(name, seed=9)
    twin = d.clone()
    assert twin.params() == d.params()
    assert type(twin) is type(d)
    defaults = copy.deepcopy(make(name).params())
    make(name).score_series(*input_for(d, seed=9, days=2))
    assert make(name).params() == defaults, "defaults are not shared mutable state"


@pytest.mark.parametrize("name", NAMES)
def test_grace_period_scores_zero(name: str) -> None:
    params = {**PARAMS.get(name, {}), "grace_period": 400}
    d = get_detector(name, **params)
    t, x = input_for(d, seed=10)
    assert not d.score_series(t, x).score[:400].any()


@pytest.mark.parametrize("name", NAMES)
def test_time_never_goes_back(name: str) -> None:
    d = make(name)
    t, x = input_for(d, seed=11, days=1)
    d.score_series(t[10:20], x[10:20])
    with pytest.raises(ConfigError, match="must not go back in time"):
        d.score_series(t[:5], x[:5])
