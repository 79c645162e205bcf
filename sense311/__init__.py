"""sense311: city sensor telemetry into 311 service requests.

The core package holds what every other package shares: settings, the database
layer, the shared value types and the errors. It never imports ``ingest``,
``rules``, ``detectors``, ``ticketing`` or ``simulators``; only the CLI, the
service runner and the API wire those together.
"""

__version__ = "0.1.0"
