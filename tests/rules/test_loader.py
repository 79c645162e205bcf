"""Rule files: valid sets load whole; invalid ones are refused with file, line and field."""

from __future__ import annotations

import os
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from rules import RuleFileError, RuleSource, load_rules
from rules.loader import BUILTIN_PACKS

GOOD = """\
city: {lat: 52.37, lon: 4.89, timezone: Europe/Amsterdam}
defaults:
  interval: 5m
rules:
  - id: bin-overflow
    problem: bin_overflow
    select: {kind: bin, district: [Centrum, Oost]}
    metric: fill_level
    aggregate: mean
    window: 30m
    condition: "> 0.9"
    for: 30m
    clear: "< 0.6"
    clear_for: 10m
    no_data: keep_last
  - id: lamp-out
    problem: lamp_out
    select: {kind: light, tags: [main]}
    metric: power_w
    aggregate: max
    window: 10m
    condition: {op: "<", value: 1}
    active: {sun: night, sun_elevation: [-0.833, -4], times: [{from: 22:00, to: "06:00", days: [mon]}]}
    severity: high
"""


def write(tmp_path: Path, text: str, name: str = "bins.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(RuleFileError) as info:
        load_rules(path)
    return [str(p) for p in info.value.problems]


def test_a_good_file_loads_with_defaults_and_versions(tmp_path: Path) -> None:
    ruleset = load_rules(write(tmp_path, GOOD))
    assert ruleset.ids == ["bin-overflow", "lamp-out"]
    overflow = ruleset.get("bin-overflow")
    assert overflow.interval == timedelta(minutes=5)  # from defaults
    assert overflow.for_ == timedelta(minutes=30)
    assert overflow.select.district == ["Centrum", "Oost"]
    lamp = ruleset.get("lamp-out")
    assert lamp.schedule.dusk == -0.833 and lamp.schedule.dawn == -4
    assert lamp.schedule.windows[0].start.hour == 22  # an unquoted 22:00 is still a time
    assert len(overflow.version or "") == 12
    assert ruleset.sources["lamp-out"][1] == 16


def test_the_version_follows_the_definition_not_the_description(tmp_path: Path) -> None:
    base = load_rules(write(tmp_path, GOOD)).get("bin-overflow").version
    described = load_rules(
        write(tmp_path, GOOD.replace("aggregate: mean", "aggregate: mean\n    description: x"))
    )
    changed = load_rules(write(tmp_path, GOOD.replace('"> 0.9"', '"> 0.95"')))
    assert described.get("bin-overflow").version == base
    assert changed.get("bin-overflow").version != base
    explicit = load_rules(
        write(tmp_path, GOOD.replace("aggregate: mean", "aggregate: mean\n    version: v7"))
    )
    assert explicit.get("bin-overflow").version == "v7"


def test_the_documented_error_format(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("for: 30m", "for: '15'"))
    assert problems(path) == [f"{path}:12: 'for': expected a duration like '15m', got '15'"]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("aggregate: mean", "aggregate: maen", 9, "'aggregate': unknown aggregate 'maen'; did you mean"),
        ("for: 30m", "fro: 30m", 12, "'fro': unknown field; did you mean 'for'?"),
        ("no_data: keep_last", "no_data: keep_lst", 15, "did you mean 'keep_last'?"),
        ("severity: high", "severity: hihg", 24, "'severity': unknown severity 'hihg'; did you mean 'high'?"),
        ('condition: "> 0.9"', 'condition: "> x"', 11, "'condition': expected a condition like"),
        ("window: 30m", "window: 0", 10, "'window': expected a window > 0, got '0s'"),
        ("sun: night", "sun: nite", 23, "'active.sun': unknown sun phase 'nite'; did you mean 'night'?"),
        ("select: {kind: bin, district", "select: {knd: bin, district", 7,
         "'select.knd': unknown field; did you mean 'kind'?"),
        ("    metric: fill_level\n", "", 5, "'metric': required field is missing"),
        ("aggregate: max", "aggregate: fraction_above", 20, "'fraction_above' needs a level"),
        ("severity: high", "severity: high\n    unless: {metrc: voltage, condition: '< 1'}", 25,
         "'unless.metrc': unknown field; did you mean 'metric'?"),
        ("severity: high", "severity: high\n    timestamp: arrival", 25,
         "'timestamp': unknown timestamp 'arrival' (expected one of: event, received)"),
    ],
)  # fmt: skip
def test_each_problem_names_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    [problem] = problems(path)
    assert problem.startswith(f"{path}:{line}: ")
    assert message in problem


def test_every_problem_is_reported_and_the_set_is_refused(tmp_path: Path) -> None:
    bad = GOOD.replace("for: 30m", "for: 30").replace("severity: high", "severity: loud")
    path = write(tmp_path, bad)
    with pytest.raises(RuleFileError) as info:
        load_rules(path)
    assert len(info.value.problems) == 2
    assert "(and 1 more)" in str(info.value)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 12, "for")


def test_yaml_errors_and_duplicates(tmp_path: Path) -> None:
    broken = write(tmp_path, "rules:\n  - id: x\n    problem: [unclosed\n", "broken.yaml")
    [problem] = problems(broken)
    assert problem.startswith(f"{broken}:") and "invalid YAML" in problem
    twice = write(
        tmp_path, GOOD.replace("    aggregate: mean\n", "    aggregate: mean\n    aggregate: max\n")
    )
    assert any("duplicate key" in p and ":10:" in p for p in problems(twice))


def test_a_directory_is_one_rule_set(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("city: {lat: 52.37, lon: 4.89, timezone: Europe/Amsterdam}\n", ""), "b.yml")
    with pytest.raises(RuleFileError) as info:
        load_rules(tmp_path)
    messages = [str(p) for p in info.value.problems]
    assert all("duplicate rule id" in m and "b.yml" in m for m in messages) and len(messages) == 2


def test_a_schedule_needs_the_city(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("city: {lat: 52.37, lon: 4.89, timezone: Europe/Amsterdam}\n", ""))
    assert any("'active': a schedule needs the city" in p for p in problems(path))


def test_reserved_detector_metrics_and_silent_settings(tmp_path: Path) -> None:
    text = GOOD.replace("metric: fill_level", "metric: detector.iforest").replace(
        "no_data: keep_last", "no_data: silent\n    silent: {problem: bin_silent, for: 2h}"
    )
    rule = load_rules(write(tmp_path, text)).get("bin-overflow")
    assert rule.detector == "iforest"
    assert rule.silent_settings is not None and rule.silent_settings.problem == "bin_silent"
    wrong = GOOD.replace("no_data: keep_last", "silent: {for: 2h}")
    assert any("'silent' settings need 'no_data: silent'" in p for p in problems(write(tmp_path, wrong)))


def test_the_builtin_pack_is_valid() -> None:
    ruleset = load_rules("builtin:city")
    assert len(ruleset) >= 7 and ruleset.city is not None
    assert all(r.targets for r in ruleset)
    with pytest.raises(RuleFileError, match="did you mean 'city'"):
        load_rules("builtin:cty")
    assert (BUILTIN_PACKS / "README.md").exists()


def test_a_service_keeps_its_last_good_rule_set(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    source = RuleSource(path)
    first = source.load()
    assert source.reload() is False  # unchanged
    path.write_text(GOOD.replace("for: 30m", "for: 30"), encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a new stamp even within the file system's time resolution
    assert source.reload() is False
    assert source.current is first and source.last_error is not None
    assert "'for'" in str(source.last_error)
    path.write_text(GOOD.replace("for: 30m", "for: 20m"), encoding="utf-8")
    os.utime(path, ns=(2, 2))
    assert source.reload() is True
    assert source.current is not None and source.current.get("bin-overflow").for_ == timedelta(minutes=20)
    assert source.last_error is None
