"""MQTT subscriber → decoders → validation → batch writer → dead letters.

The entry points: ``IngestWorker`` (one consuming process), ``Pipeline`` (decode and validate
without MQTT or a database), ``get_decoder`` / ``available_decoders`` (decoders by name).
"""

from ingest.decoders import available_decoders, get_decoder
from ingest.pipeline import Pipeline
from ingest.worker import IngestWorker

__all__ = ["IngestWorker", "Pipeline", "available_decoders", "get_decoder"]
