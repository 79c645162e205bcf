"""The API keeps its OpenAPI contract: schemathesis generates valid and invalid requests for every
documented operation and checks each answer — never a 5xx, a documented status and content type,
a body matching the documented schema.

Bounded so the whole suite stays fast: a fixed seed, at most 20 examples per operation, no
stateful phase. Requests carry an admin token, so write operations are exercised too (auth
itself is tested in test_tokens.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed (pip install schemathesis)"
)

from schemathesis import Case, SerializationContext, serializer  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from sense311.api import create_app  # noqa: E402
from sense311.settings import load_settings  # noqa: E402
from tests.api.conftest import Api, add_incident, add_sensors, add_ticket  # noqa: E402

#: Examples per operation: generating them dominates the run (about 45 ms each), so 10 keeps
#: the module near 20 s while still meeting each parameter's edge cases.
MAX_EXAMPLES = 10

CONFIG = {
    "seed": 311,
    "generation": {"max-examples": MAX_EXAMPLES},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "checks": {
        # Valid by the schema but refused by a runtime limit (api.max_page_size, a range too
        # long, an id with spaces) is a documented 422, not a contract breach.
        "positive_data_acceptance": {"enabled": False},
        # Its "invalid" query values are text all the same (a query string has no types), and
        # unknown query parameters are ignored on purpose; typed bodies are checked by hand
        # in the other modules (e.g. a boolean for a longitude is a 422).
        "negative_data_rejection": {"enabled": False},
    },
}


@serializer("text/csv")
def _csv(ctx: SerializationContext, value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else str(value).encode("utf-8")


@serializer("application/geo+json")
def _geojson(ctx: SerializationContext, value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


@pytest.fixture
def contract_api(api: Api) -> Api:
    # Rows for the read operations to find, so answers with bodies are checked as well as 404s.
    add_sensors(api.db, {"id": "bin-1", "kind": "bin", "lat": 52.37, "lon": 4.89})
    incident = add_incident(api.db, "bin-1")
    add_ticket(api.db, [incident])
    return api


@pytest.fixture(scope="module")
def http_session() -> Iterator[Any]:
    # One keep-alive session for every generated request: a new connection each time costs more
    # than the request itself.
    import requests

    with requests.Session() as session:
        yield session


def _schema() -> Any:
    # The document comes from the app itself (no database needed to build it); the test's server
    # answers the calls.
    settings = load_settings(database_url="postgresql://contract@127.0.0.1:1/unused")
    document = create_app(settings).openapi()
    loaded = schemathesis.openapi.from_dict(document, config=SchemathesisConfig.from_dict(CONFIG))
    # The backtest runs every rule over its period: keep generated periods from costing seconds each.
    return loaded.exclude(path="/api/v1/rules/backtest")


schema = _schema()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_operation_keeps_its_contract(case: Case, contract_api: Api, http_session: Any) -> None:
    case.call_and_validate(
        base_url=contract_api.url, headers=contract_api.auth("admin"), session=http_session
    )
