"""The public surface of every simulator module is its ``__all__``; nothing imports ``ingest``."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import simulators

MODULES = sorted(m.name for m in pkgutil.walk_packages(simulators.__path__, "simulators."))

PACKAGE = {
    "FAULT_KINDS", "FIELD_MAP", "FORMATS", "CityConfig", "Detection", "Episode", "FaultRates", "Fleet",
    "GroundTruth", "RunReport", "SimMessage", "Simulation", "SimulationOptions", "backfill", "build_fleet",
    "default_faults", "get_encoder", "parse_options", "read_ground_truth", "register_fleet", "run_simulation",
    "score",
}  # fmt: skip


def test_the_package_exports_its_entry_points() -> None:
    assert set(simulators.__all__) == PACKAGE
    assert all(getattr(simulators, name) is not None for name in simulators.__all__)


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_the_public_classes_and_functions(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, n) for n in exported)
    defined = {
        n
        for n, obj in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    assert defined <= exported, f"{name}: public but not in __all__: {sorted(defined - exported)}"


@pytest.mark.parametrize("name", MODULES)
def test_no_simulator_module_imports_ingest(name: str) -> None:
    source = Path(importlib.import_module(name).__file__ or "").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "ingest" for a in node.names), name
        if isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] != "ingest", name
