"""Statistical and scikit-learn anomaly detectors."""
