"""Rule files, the evaluator and backtests (one state machine for both).

::

    ruleset = load_rules("rules/packs/city.yaml")          # RuleFileError: file:line: 'field': …
    evaluate_due(conn, ruleset, now=datetime.now(UTC))     # live: catch up, persist, emit
    result = backtest(conn, ruleset, start, end)           # the same steps over history
"""

from rules.backtest import BacktestResult, backtest
from rules.errors import RuleFileError, RulesError
from rules.evaluator import EvaluationReport, evaluate_due
from rules.instants import due_instants
from rules.loader import RuleSet, RuleSource, load_rules

__all__ = [
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
