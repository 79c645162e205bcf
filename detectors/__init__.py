"""Statistical and scikit-learn anomaly detectors: scores in [0, 1] per sensor and instant.

::

    d = get_detector("seasonal", period="day")     # ConfigError with a suggestion when misspelt
    scores = d.score_series(timestamps, values)      # causal: score i uses observations 0..i
    available_detectors()                            # the registered names

``DetectorSettings`` configures the jobs that train models and write ``detector_scores`` (read by
rules as ``metric: detector.<job name>``); ``train_models`` and ``score_instants`` are those jobs,
``evaluate`` measures detectors on a simulated city with ground truth.
"""

from detectors.base import Detector, Scored, Scores
from detectors.evaluation import evaluate
from detectors.jobs import score_instants, train_models
from detectors.registry import available_detectors, get_detector
from detectors.settings import DetectorSettings

__all__ = [
    "Detector",
    "DetectorSettings",
    "Scored",
    "Scores",
    "available_detectors",
    "evaluate",
    "get_detector",
    "score_instants",
    "train_models",
]
