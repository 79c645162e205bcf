"""Load rule files into a ``RuleSet``: a file or a directory of files, validated as a whole.

Every problem names its file, line and field — ``rules/bins.yaml:14: 'for': expected a duration
like '15m', got '15'`` — and a misspelt field, aggregate, severity or mode gets a "did you mean".
One invalid file rejects the whole set (a service keeps its last good set: ``RuleSource``).
Line numbers come from PyYAML's node tree (``compose``), whose marks record where each key and
item starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rules.errors import Problem, RuleFileError, UnknownRuleError
from rules.model import (
    CityModel,
    GuardModel,
    Rule,
    RuleDefaults,
    RuleFile,
    ScheduleModel,
    Selector,
    SilentModel,
    TimeWindowModel,
    did_you_mean,
    rule_version,
)
from rules.schedule import City

__all__ = ["BUILTIN_PACKS", "RuleSet", "RuleSource", "load_rules", "resolve_path"]

log = logging.getLogger(__name__)

#: Built-in rule packs, addressed as ``builtin:<name>`` on the command line.
BUILTIN_PACKS = Path(__file__).parent / "packs"
_SUFFIXES = (".yaml", ".yml")
Path_ = tuple[str | int, ...]

# The model a mapping at a given path (ints standing for list items) is validated against: used to
# suggest the field a misspelt key meant.
_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Rule,
    ("select",): Selector,
    ("active",): ScheduleModel,
    ("active", "times", "#"): TimeWindowModel,
    ("silent",): SilentModel,
    ("unless",): GuardModel,
}
_FILE_MODELS: dict[tuple[str, ...], type[BaseModel]] = {
    (): RuleFile,
    ("city",): CityModel,
    ("defaults",): RuleDefaults,
    ("defaults", "select"): Selector,
    ("defaults", "active"): ScheduleModel,
    ("defaults", "active", "times", "#"): TimeWindowModel,
}


def resolve_path(path: str | Path) -> Path:
    """``builtin:city`` → the built-in pack's file; anything else is a path."""
    text = str(path)
    if text.startswith("builtin:"):
        name = text.split(":", 1)[1]
        found = BUILTIN_PACKS / f"{name}.yaml"
        if not found.exists():
            packs = sorted(p.stem for p in BUILTIN_PACKS.glob("*.yaml"))
            problem = Problem(
                text, None, None, f"no built-in rule pack named '{name}'{did_you_mean(name, packs)}"
            )
            raise RuleFileError([problem])
        return found
    return Path(path)


@dataclass(frozen=True)
class RuleSet:
    """Validated rules (each with its version set), the city they run in, and where each came from."""

    rules: tuple[Rule, ...]
    city: City | None = None
    #: rule id → (file, line)
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]

    def get(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise UnknownRuleError(f"no rule '{rule_id}' in the rule set{did_you_mean(rule_id, self.ids)}")

    def only(self, rule_ids: list[str] | None) -> RuleSet:
        """The subset with these ids (all when None); an unknown id raises ``UnknownRuleError``."""
        if not rule_ids:
            return self
        chosen = tuple(self.get(rid) for rid in rule_ids)
        return RuleSet(chosen, self.city, {r.id: self.sources[r.id] for r in chosen if r.id in self.sources})

    @property
    def enabled(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
        if not found:
            raise RuleFileError(
                [Problem(str(path), None, None, "no rule files (*.yaml, *.yml) in this directory")]
            )
        return found
    if not path.exists():
        raise RuleFileError([Problem(str(path), None, None, "no such file or directory")])
    return [path]


class _Marks:
    """Line numbers (1-based) of every key and item of a YAML document, by path."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.duplicates: list[tuple[Path_, int]] = []

    def walk(self, node: yaml.Node, path: Path_) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
                if name in seen:
                    self.duplicates.append(((*path, name), key.start_mark.line + 1))
                seen.add(name)
                self.lines[(*path, name)] = key.start_mark.line + 1
                self.walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, (*path, i))

    def line(self, path: Path_) -> int | None:
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def _field_name(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # Pydantic adds union/validator tags ('function-before[...]', 'list[str]') to some locations.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and not p.startswith("function-")))


def _message(
    error: dict[str, Any], loc: tuple[str | int, ...], models: dict[tuple[str, ...], type[BaseModel]]
) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden" and loc:
        parent = tuple("#" if isinstance(p, int) else p for p in loc[:-1])
        model = models.get(parent)
        if model is not None:
            names = [f.alias or name for name, f in model.model_fields.items()]
            return f"unknown field{did_you_mean(str(loc[-1]), names)}"
        return "unknown field"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _problems(
    exc: ValidationError,
    file: str,
    marks: _Marks,
    base: Path_,
    models: dict[tuple[str, ...], type[BaseModel]],
    origin: dict[str, Path_] | None = None,
) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = _clean_loc(error["loc"])
        path = base + loc
        if origin and loc and isinstance(loc[0], str) and loc[0] in origin:
            path = origin[loc[0]] + loc[1:]
        problems.append(
            Problem(file, marks.line(path), _field_name(loc) or None, _message(error, loc, models))
        )
    return problems


@dataclass
class _Loaded:
    rules: list[tuple[Rule, str, int]] = field(default_factory=list)
    cities: list[tuple[CityModel, str, int]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _load_file(path: Path, out: _Loaded) -> None:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.problems.append(Problem(file, None, None, f"cannot read: {exc}"))
        return
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        out.problems.append(Problem(file, mark.line + 1 if mark else None, None, f"invalid YAML: {problem}"))
        return
    finally:
        loader.dispose()
    if data is None:
        out.problems.append(Problem(file, None, None, "the file is empty; expected 'rules: [...]'"))
        return
    marks = _Marks()
    marks.walk(node, ())
    for dup_path, line in marks.duplicates:
        out.problems.append(Problem(file, line, _field_name(dup_path), "duplicate key"))
    if isinstance(data, list):
        data = {"rules": data}
        marks.lines = {("rules", *k): v for k, v in marks.lines.items()}
    if not isinstance(data, dict):
        out.problems.append(Problem(file, 1, None, "expected a mapping with 'rules: [...]' at the top level"))
        return
    try:
        top = RuleFile.model_validate(data)
    except ValidationError as exc:
        out.problems.extend(_problems(exc, file, marks, (), _FILE_MODELS))
        return
    if top.city is not None:
        out.cities.append((top.city, file, marks.line(("city",)) or 1))
    raw_defaults = data.get("defaults") or {}
    for i, raw in enumerate(data.get("rules") or []):
        if not isinstance(raw, dict):
            out.problems.append(Problem(file, marks.line(("rules", i)), None, "expected a rule (a mapping)"))
            continue
        merged = dict(raw)
        origin: dict[str, Path_] = {}
        for key, value in raw_defaults.items():
            if key not in merged and value is not None:
                merged[key] = value
                origin[key] = ("defaults", key)
        try:
            rule = Rule.model_validate(merged)
        except ValidationError as exc:
            out.problems.extend(_problems(exc, file, marks, ("rules", i), _MODELS, origin))
            continue
        out.rules.append((rule, file, marks.line(("rules", i)) or 1))


def load_rules(*paths: str | Path) -> RuleSet:
    """Validate every rule file under ``paths`` (files or directories, ``builtin:<pack>``).

    Raises ``RuleFileError`` listing every problem when anything is wrong: a rule set is
    accepted whole or not at all.
    """
    if not paths:
        raise RuleFileError([Problem("(no path)", None, None, "no rule file or directory given")])
    loaded = _Loaded()
    files: list[Path] = []
    for path in paths:
        try:
            files.extend(_files(resolve_path(path)))
        except RuleFileError as exc:
            loaded.problems.extend(exc.problems)
    for file in files:
        _load_file(file, loaded)

    city: City | None = None
    if loaded.cities:
        first, first_file, first_line = loaded.cities[0]
        city = first.to_city()
        for other, file, line in loaded.cities[1:]:
            if other != first:
                loaded.problems.append(
                    Problem(file, line, "city", f"differs from the city set at {first_file}:{first_line}")
                )
    seen: dict[str, tuple[str, int]] = {}
    rules: list[Rule] = []
    for rule, file, line in loaded.rules:
        if rule.id in seen:
            where = "{}:{}".format(*seen[rule.id])
            loaded.problems.append(
                Problem(file, line, "id", f"duplicate rule id '{rule.id}' (first at {where})")
            )
            continue
        seen[rule.id] = (file, line)
        if rule.active is not None and not rule.schedule.always and city is None:
            loaded.problems.append(
                Problem(
                    file,
                    line,
                    "active",
                    "a schedule needs the city: add 'city: {lat, lon, timezone}' to a rule file",
                )
            )
            continue
        if rule.version is None:
            rule = rule.model_copy(update={"version": rule_version(rule, city)})
        rules.append(rule)
    if loaded.problems:
        raise RuleFileError(loaded.problems)
    return RuleSet(tuple(rules), city, seen, tuple(str(f) for f in files))


class RuleSource:
    """The rule set a running service uses: reloaded when the files change, kept when a reload fails.

    ``load()`` raises on a bad first load (the service must not start without rules);
    ``reload()`` logs the error and keeps the last good set.
    """

    def __init__(self, *paths: str | Path) -> None:
        self.paths = paths
        self.current: RuleSet | None = None
        self.last_error: RuleFileError | None = None
        self._stamp: tuple[Any, ...] | None = None

    def _fingerprint(self) -> tuple[Any, ...]:
        entries = []
        for path in self.paths:
            try:
                resolved = resolve_path(path)
                files = _files(resolved)
            except RuleFileError:
                entries.append((str(path), None))
                continue
            for f in files:
                try:
                    st = f.stat()
                    entries.append((str(f), st.st_mtime_ns, st.st_size))
                except OSError:
                    entries.append((str(f), None))
        return tuple(entries)

    def load(self) -> RuleSet:
        stamp = self._fingerprint()
        self.current = load_rules(*self.paths)
        self._stamp = stamp
        self.last_error = None
        return self.current

    def reload(self, *, force: bool = False) -> bool:
        """True when a new rule set was loaded; False when unchanged or invalid (the old one stays)."""
        stamp = self._fingerprint()
        if not force and stamp == self._stamp and self.current is not None:
            return False
        try:
            ruleset = load_rules(*self.paths)
        except RuleFileError as exc:
            if stamp != self._stamp or self.last_error is None:
                log.error("rule reload failed, keeping the last good rule set: %s", exc)
            self.last_error = exc
            self._stamp = stamp
            return False
        self.current = ruleset
        self.last_error = None
        self._stamp = stamp
        log.info("loaded %d rules from %s", len(ruleset), ", ".join(str(p) for p in self.paths))
        return True
