"""Each package's public surface is its ``__all__``, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "ingest": {"IngestWorker", "Pipeline", "available_decoders", "get_decoder"},
    "sense311.db": {
        "apply_policies", "connect", "ensure_partitions", "has_timescaledb", "is_transient", "maintain",
        "make_conninfo", "migrate", "open_pool", "storage_info", "storage_mode",
    },
    "sense311.errors": {
        "ConfigError", "DatabaseError", "NotSupportedError", "RetryError", "Sense311Error",
        "TransientDatabaseError",
    },
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_the_public_surface(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert getattr(mod, name) is not None
