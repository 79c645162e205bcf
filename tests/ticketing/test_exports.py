"""The public surface is a list, and this test (httpx's test_exported_members habit)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import ticketing

EXPECTED = {
    "Open311Client",
    "OutboxWorker",
    "TicketingSettings",
    "apply_detection",
    "consume_detections",
    "create_app",
    "create_sink",
    "poll_tickets",
    "register_sink",
    "run_cycle",
}


def test_package_exports_exactly_its_entry_points() -> None:
    assert set(ticketing.__all__) == EXPECTED
    assert ticketing.__all__ == sorted(ticketing.__all__)
    for name in ticketing.__all__:
        value = getattr(ticketing, name)
        assert getattr(value, "__module__", "").startswith("ticketing."), name
    public = {
        n
        for n in dir(ticketing)
        if not n.startswith("_") and not isinstance(getattr(ticketing, n), types.ModuleType)
    }
    assert public - {"annotations", "importlib", "TYPE_CHECKING", "Any"} == EXPECTED


def test_every_module_declares_all_and_defines_it() -> None:
    for info in pkgutil.walk_packages(ticketing.__path__, "ticketing."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ names {name!r}, which it does not define"
