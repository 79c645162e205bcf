"""The live service: APScheduler only ticks; a bad edit keeps the last good rule set running."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from rules import RuleSource
from rules.service import JOB_ID, RuleService
from sense311.settings import Settings
from tests.rules.rulehelp import T0, add_readings, add_sensors, detections_in_db, minutes

RULES = """\
rules:
  - {id: full, problem: bin_overflow, select: {kind: bin}, metric: fill_level, aggregate: last,
     window: 5m, condition: "> 0.9", for: 0, lateness: 0s}
"""


def test_ticks_evaluate_and_a_bad_reload_keeps_the_last_good_rules(
    conn: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    add_sensors(conn, ["bin-1"])
    add_readings(
        conn, [(T0 + minutes(m) + timedelta(seconds=5), "bin-1", "fill_level", 0.2) for m in range(10)]
    )
    add_readings(
        conn, [(T0 + minutes(m) + timedelta(seconds=5), "bin-1", "fill_level", 0.95) for m in range(10, 20)]
    )
    service = RuleService(settings, RuleSource(path), tick=timedelta(seconds=5))
    service.start()
    report = service.tick(T0)
    assert report is not None and report.runs[0].instants == [T0]

    path.write_text(RULES.replace("for: 0", "for: soon"), encoding="utf-8")
    os.utime(path, ns=(1, 1))
    report = service.tick(T0 + minutes(15))
    assert service.source.last_error is not None and "'for'" in str(service.source.last_error)
    assert report is not None and [d.fired_at for d in report.detections] == [T0 + minutes(11)]
    assert len(detections_in_db(conn)) == 1


def test_the_scheduler_job_coalesces_and_never_overlaps(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    service = RuleService(settings, RuleSource(path), tick=timedelta(seconds=7))
    scheduler = BackgroundScheduler()
    job = service.schedule(scheduler)
    assert job.id == JOB_ID
    assert job.coalesce is True and job.max_instances == 1
    assert job.trigger.interval == timedelta(seconds=7)
