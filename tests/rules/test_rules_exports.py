"""The public surface of the rules package is a list, and this test guards it."""

from __future__ import annotations

import importlib

import rules

MODULES = [
    "aggregates", "backtest", "cli", "conditions", "engine", "errors", "evaluator", "incidents", "instants",
    "loader", "model", "query", "report", "schedule", "service", "state",
]  # fmt: skip


def test_package_exports() -> None:
    assert sorted(rules.__all__) == [
        "BacktestResult",
        "EvaluationReport",
        "RuleFileError",
        "RuleSet",
        "RuleSource",
        "RulesError",
        "backtest",
        "due_instants",
        "evaluate_due",
        "load_rules",
    ]
    for name in rules.__all__:
        assert getattr(rules, name) is not None


def test_every_module_lists_what_it_defines() -> None:
    for name in MODULES:
        module = importlib.import_module(f"rules.{name}")
        exported = set(module.__all__)
        assert exported, name
        for item in exported:
            assert hasattr(module, item), f"rules.{name}.{item}"
