"""Fixtures for detector tests: a migrated schema per test, synthetic series, a small city."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from sense311.db import connect, migrate
from sense311.settings import Settings, load_settings


@pytest.fixture
def settings(database_url: str, db_schema: str) -> Settings:
    return load_settings(database_url=database_url, storage={"schema": db_schema})


@pytest.fixture
def conn(settings: Settings) -> Iterator[psycopg.Connection]:
    """An autocommit connection on a freshly migrated schema."""
    with connect(settings, "sense311-test-detectors", autocommit=True) as c:
        migrate(c, settings)
        yield c


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260302)
