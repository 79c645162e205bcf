"""The detectors package's public surface is its ``__all__``."""

from __future__ import annotations

import detectors
from detectors.cli import detectors_app


def test_all_is_the_public_surface() -> None:
    assert set(detectors.__all__) == {
        "Detector", "DetectorSettings", "Scored", "Scores", "available_detectors", "evaluate", "get_detector",
        "score_instants", "train_models",
    }  # fmt: skip
    for name in detectors.__all__:
        assert getattr(detectors, name) is not None


def test_cli_sub_app_has_its_commands() -> None:
    names = {c.name for c in detectors_app.registered_commands}
    assert names == {"train", "score", "evaluate", "models", "pin"}
