"""Rule errors.

::

    Sense311Error
     └── RulesError
          ├── RuleFileError     a rule file is invalid: file, line and field (CLI exit code 2)
          ├── UnknownRuleError  no rule by that id in the set (exit code 2; says what was meant)
          └── EvaluationError   a rule failed at an instant: rule id, version and instant
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sense311.errors import Sense311Error

__all__ = ["EvaluationError", "Problem", "RuleFileError", "RulesError", "UnknownRuleError"]


class RulesError(Sense311Error):
    """Base of the errors the rules package raises."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a rule file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" '{self.field}':" if self.field else ""
        return f"{where}:{field} {self.message}"


class RuleFileError(RulesError):
    """A rule file (or a set of them) is invalid and was rejected as a whole.

    ``problems`` lists every problem found; the message is the first one, plus how many more.
    ``file``, ``line`` and ``field`` are the first problem's.
    """

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("RuleFileError needs at least one problem")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")
        self.problems = list(problems)
        self.file = problems[0].file
        self.line = problems[0].line
        self.field = problems[0].field


class UnknownRuleError(RulesError, LookupError):
    """A rule id that the rule set does not hold."""

    exit_code = 2


class EvaluationError(RulesError):
    """Evaluating one rule failed; the other rules go on."""

    def __init__(self, message: str, *, rule_id: str, rule_version: str, instant: datetime | None) -> None:
        at = f" at {instant.isoformat()}" if instant is not None else ""
        super().__init__(f"rule {rule_id} (version {rule_version}){at}: {message}")
        self.rule_id = rule_id
        self.rule_version = rule_version
        self.instant = instant
