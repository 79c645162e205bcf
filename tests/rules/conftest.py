"""Fixtures for rule tests: a migrated schema per test and helpers to fill it."""

from __future__ import annotations

from collections.abc import Iterator

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
    with connect(settings, "sense311-test-rules", autocommit=True) as c:
        migrate(c, settings)
        yield c
