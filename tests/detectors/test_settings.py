"""Detector settings: defaults, validation with the setting's location, job look-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from detectors import DetectorSettings
from detectors.seasonal import SeasonalBaseline
from sense311.errors import ConfigError


def test_default_jobs_are_valid_and_named_for_rules() -> None:
    settings = DetectorSettings()
    names = [j.name for j in settings.jobs]
    assert len(names) == len(set(names))
    assert "peer_dark" in names
    for job in settings.jobs:
        assert job.build("Europe/Amsterdam") is not None


def test_the_timezone_reaches_the_detectors() -> None:
    settings = DetectorSettings(timezone="Europe/Amsterdam")
    detector = settings.job("lamp_power_low").build(settings.timezone)
    assert isinstance(detector, SeasonalBaseline) and detector.timezone == "Europe/Amsterdam"


def test_a_misspelt_detector_is_reported_where_it_is() -> None:
    with pytest.raises(ValidationError) as info:
        DetectorSettings(jobs=[{"name": "x", "detector": "seasonl", "metrics": ["power_w"]}])
    error = info.value.errors()[0]
    assert error["loc"] == ("jobs", 0, "detector")
    assert "did you mean 'seasonal'" in error["msg"]


def test_bad_parameters_and_duplicates_are_refused() -> None:
    with pytest.raises(ValidationError, match="has no parameter 'windoww'; did you mean 'window'"):
        DetectorSettings(
            jobs=[{"name": "x", "detector": "spike", "metrics": ["pm25"], "params": {"windoww": 3}}]
        )
    with pytest.raises(ValidationError, match="x appears twice"):
        DetectorSettings(jobs=[{"name": "x", "detector": "spike", "metrics": ["a"]}] * 2)
    with pytest.raises(ValidationError, match="reads no neighbours"):
        DetectorSettings(jobs=[{"name": "x", "detector": "spike", "metrics": ["a"], "peers": {"k": 3}}])
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        DetectorSettings(timezone="Mars/Olympus")


def test_job_lookup_suggests() -> None:
    with pytest.raises(ConfigError, match="no detector job named 'peer_drak'; did you mean 'peer_dark'"):
        DetectorSettings().job("peer_drak")


def test_a_plain_section_is_validated_with_its_location() -> None:
    from types import SimpleNamespace

    from detectors.settings import detector_settings

    assert detector_settings(SimpleNamespace(detectors={})).jobs
    assert (
        detector_settings(SimpleNamespace(detectors={"timezone": "Europe/Amsterdam"})).timezone
        == "Europe/Amsterdam"
    )
    with pytest.raises(
        ConfigError, match=r"^invalid setting detectors\.jobs\.0\.detector: .*did you mean 'spike'"
    ):
        detector_settings(
            SimpleNamespace(detectors={"jobs": [{"name": "x", "detector": "spikee", "metrics": ["a"]}]})
        )
