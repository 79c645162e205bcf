"""A backtest as one self-contained HTML file: inline SVG plots and tables, no scripts, no CDN.

For each rule, the sensors with the most detections (and, given a ground truth, those with
missed episodes) get one plot: the metric's readings, the condition's and clear condition's
thresholds, the pending / firing / recovering spans, the detections, and the ground-truth
episodes, on one time axis. Then the would-be tickets, the per-rule counts and the scores.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from rules.backtest import BacktestResult
from rules.instants import to_us
from rules.loader import RuleSet
from rules.model import ANY_METRIC, Rule
from sense311.durations import format_duration

__all__ = ["Episode", "Plot", "collect_plots", "render_report"]

#: Sensors plotted per rule: enough to see a pattern, few enough for a file that opens quickly.
MAX_SENSORS_PER_RULE = 12
#: Points per series: about one per horizontal pixel (min and max of each bucket are kept).
MAX_POINTS = 1600
_W, _H = 960, 220
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 64, 12, 14, 26
_COLOURS = {"pending": "#f6d365", "firing": "#e4572e", "recovering": "#f4a582"}


@dataclass(frozen=True, slots=True)
class Episode:
    """A ground-truth fault episode: kind, sensors, ``[start, end)`` (UTC)."""

    kind: str
    sensors: tuple[str, ...]
    start: datetime
    end: datetime


@dataclass
class Plot:
    rule: Rule
    sensor_id: str
    times: np.ndarray  # µs
    values: np.ndarray
    episodes: list[Episode] = field(default_factory=list)


def _downsample(times: np.ndarray, values: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    if len(times) <= MAX_POINTS:
        return times, values
    buckets = MAX_POINTS // 2
    b = np.minimum(((times - lo) * buckets) // max(hi - lo, 1), buckets - 1)
    keep: list[int] = []
    bounds = np.searchsorted(b, np.arange(buckets + 1))
    for i in range(buckets):
        s, e = bounds[i], bounds[i + 1]
        if e <= s:
            continue
        seg = values[s:e]
        keep.extend(sorted({s + int(np.nanargmin(seg)), s + int(np.nanargmax(seg))}))
    idx = np.array(keep, dtype=np.int64)
    return times[idx], values[idx]


def collect_plots(
    conn: psycopg.Connection,
    ruleset: RuleSet,
    result: BacktestResult,
    episodes: Iterable[Episode] = (),
    max_sensors: int = MAX_SENSORS_PER_RULE,
) -> list[Plot]:
    """The series to plot: per rule, its most-detected sensors and those with missed episodes."""
    episodes = list(episodes)
    plots: list[Plot] = []
    lo, hi = to_us(result.start), to_us(result.end)
    for summary in result.rules:
        rule = ruleset.get(summary.rule_id)
        counts = Counter(
            d.sensor_id
            for d in result.detections
            if d.rule_id.split(":")[0] == rule.id and d.kind == "detection"
        )
        chosen = [s for s, _ in counts.most_common(max_sensors)]
        targets = set(rule.targets or ())
        if targets:
            detected = set(counts)
            for e in episodes:
                if e.kind in targets and len(chosen) < max_sensors:
                    chosen.extend(s for s in e.sensors if s not in detected and s not in chosen)
            chosen = chosen[:max_sensors]
        for sensor_id in chosen:
            if rule.detector is not None:
                if conn.execute("SELECT to_regclass('detector_scores') IS NULL").fetchone()[0]:
                    rows: list[Any] = []
                else:
                    rows = conn.execute(
                        "SELECT time, score FROM detector_scores WHERE sensor_id = %s AND detector = %s "
                        "AND time > %s AND time <= %s ORDER BY time",
                        (sensor_id, rule.detector, result.start - rule.window, result.end),
                    ).fetchall()
            else:
                metric_clause = "" if rule.metric == ANY_METRIC else "AND metric = %s"
                params: tuple[Any, ...] = (sensor_id, result.start - rule.window, result.end)
                if metric_clause:
                    params = (*params, rule.metric)
                rows = conn.execute(
                    f"SELECT time, value FROM readings WHERE sensor_id = %s AND time > %s AND time <= %s "
                    f"{metric_clause} ORDER BY time",
                    params,
                ).fetchall()
            times = np.array([to_us(r[0]) for r in rows], dtype=np.int64)
            values = np.array([r[1] for r in rows], dtype=np.float64)
            times, values = _downsample(times, values, lo, hi)
            mine = [e for e in episodes if sensor_id in e.sensors]
            plots.append(Plot(rule, sensor_id, times, values, mine))
    return plots


def _svg(plot: Plot, result: BacktestResult) -> str:
    lo, hi = to_us(result.start), to_us(result.end)
    span = max(hi - lo, 1)
    rule = plot.rule
    bounds = list(rule.condition.threshold) + (list(rule.clear.threshold) if rule.clear else [])
    finite = plot.values[np.isfinite(plot.values)] if len(plot.values) else np.empty(0)
    ys = np.concatenate([finite, np.array(bounds, dtype=np.float64)])
    y_lo, y_hi = (float(ys.min()), float(ys.max())) if len(ys) else (0.0, 1.0)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 1.0, y_hi + 1.0
    margin = (y_hi - y_lo) * 0.08
    y_lo, y_hi = y_lo - margin, y_hi + margin
    inner_w = _W - _PAD_L - _PAD_R
    inner_h = _H - _PAD_T - _PAD_B

    def x(t: int | float) -> float:
        return _PAD_L + (min(max(t, lo), hi) - lo) / span * inner_w

    def y(v: float) -> float:
        return _PAD_T + (y_hi - v) / (y_hi - y_lo) * inner_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'role="img" aria-label="{html.escape(rule.metric)} of {html.escape(plot.sensor_id)}">',
        f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{inner_w}" height="{inner_h}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    for e in plot.episodes:
        x0, x1 = x(to_us(e.start)), x(to_us(e.end))
        parts.append(
            f'<rect x="{x0:.1f}" y="{_PAD_T}" width="{max(x1 - x0, 1):.1f}" height="{inner_h}" '
            f'fill="#7b68ee" fill-opacity="0.12"><title>ground truth: {html.escape(e.kind)} '
            f"{e.start:%Y-%m-%d %H:%M} – {e.end:%Y-%m-%d %H:%M} UTC</title></rect>"
        )
        parts.append(
            f'<rect x="{x0:.1f}" y="{_H - _PAD_B + 3}" width="{max(x1 - x0, 1):.1f}" height="5" '
            'fill="#7b68ee"/>'
        )
        parts.append(
            f'<text x="{x0 + 3:.1f}" y="{_H - _PAD_B - 4}" font-size="10" fill="#5a4fcf">'
            f"{html.escape(e.kind)}</text>"
        )
    for s in result.spans:
        if s.sensor_id != plot.sensor_id or s.rule_id.split(":")[0] != rule.id:
            continue
        x0 = x(to_us(s.start))
        x1 = x(to_us(s.end)) if s.end else x(hi)
        parts.append(
            f'<rect x="{x0:.1f}" y="{_PAD_T}" width="{max(x1 - x0, 1):.1f}" height="8" '
            f'fill="{_COLOURS[s.state]}"><title>{html.escape(s.rule_id)} {s.state} from '
            f"{s.start:%Y-%m-%d %H:%M} UTC</title></rect>"
        )
        if s.state == "firing":
            parts.append(
                f'<rect x="{x0:.1f}" y="{_PAD_T}" width="{max(x1 - x0, 1):.1f}" height="{inner_h}" '
                f'fill="{_COLOURS["firing"]}" fill-opacity="0.08"/>'
            )
    for value, colour, label in [(b, "#e4572e", "condition") for b in rule.condition.threshold] + [
        (b, "#2a9d8f", "clear") for b in (rule.clear.threshold if rule.clear else ())
    ]:
        parts.append(
            f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{colour}" '
            f'stroke-dasharray="6 4"><title>{label} {value:g}</title></line>'
        )
    if len(plot.times):
        points = " ".join(
            f"{x(int(t)):.1f},{y(float(v)):.1f}"
            for t, v in zip(plot.times, plot.values, strict=True)
            if np.isfinite(v)
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="#1d3557" stroke-width="1.2"/>')
    for d in result.detections:
        if d.sensor_id != plot.sensor_id or d.rule_id.split(":")[0] != rule.id:
            continue
        px = x(to_us(d.fired_at))
        colour = "#e4572e" if d.kind == "detection" else "#2a9d8f"
        parts.append(
            f'<path d="M{px:.1f},{_PAD_T + 10} l-5,9 h10 z" fill="{colour}"><title>{d.kind} '
            f"{d.fired_at:%Y-%m-%d %H:%M} UTC</title></path>"
        )
    parts.append(
        f'<text x="{_PAD_L - 6}" y="{_PAD_T + 10}" text-anchor="end" font-size="11">{y_hi:.3g}</text>'
    )
    middle = _PAD_T + inner_h // 2
    parts.append(
        f'<text x="14" y="{middle}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {middle})">'
        f"{html.escape(rule.metric)}</text>"
    )
    parts.append(
        f'<text x="{_PAD_L - 6}" y="{_H - _PAD_B}" text-anchor="end" font-size="11">{y_lo:.3g}</text>'
    )
    parts.append(f'<text x="{_PAD_L}" y="{_H - 4}" font-size="11">{result.start:%Y-%m-%d %H:%M} UTC</text>')
    parts.append(
        f'<text x="{_W - _PAD_R}" y="{_H - 4}" text-anchor="end" font-size="11">'
        f"{result.end:%Y-%m-%d %H:%M} UTC</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; } h3 { font-size: 14px; margin: 14px 0 2px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f0f0f0; text-align: left; } .legend span { display: inline-block; margin-right: 14px; }
.sw { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin-right: 4px; }
"""


def render_report(
    result: BacktestResult,
    plots: list[Plot],
    *,
    title: str = "sense311 rule backtest",
    compare: str | None = None,
) -> str:
    """The report as one HTML document (UTF-8 text)."""
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{result.start:%Y-%m-%d %H:%M} – {result.end:%Y-%m-%d %H:%M} UTC · {len(result.rules)} rules · "
        f"{sum(r.detections for r in result.rules)} detections · {len(result.incidents)} incidents · "
        f"{len(result.tickets)} tickets · {result.sensor_steps:,} sensor-steps in {result.seconds:.1f} s</p>",
        "<h2>Rules</h2>",
        _table(
            ["rule", "version", "problem", "sensors", "instants", "detections", "resolutions"],
            [
                (r.rule_id, r.version, r.problem, r.sensors, r.instants, r.detections, r.resolutions)
                for r in result.rules
            ],
        ),
    ]
    if result.score:
        out.append("<h2>Against the ground truth</h2>")
        out.append(
            _table(
                ["fault kind", "episodes", "detected", "recall", "detections", "precision", "median TTD (s)"],
                [
                    (
                        k,
                        s["episodes"],
                        s["detected"],
                        s["recall"],
                        s["detections"],
                        s["precision"],
                        s["median_ttd_s"],
                    )
                    for k, s in result.score.get("kinds", {}).items()
                ],
            )
        )
    if compare:
        out.append("<h2>Compared with the previous rules</h2>")
        out.append(compare)
    out.append("<h2>Would-be tickets</h2>")
    out.append(
        _table(
            ["opened", "problem", "sensors", "severity", "closed"],
            [
                (t.opened_at, t.problem, ", ".join(t.sensors), t.to_json()["severity"], t.closed_at)
                for t in result.tickets
            ],
        )
    )
    out.append("<h2>Sensors</h2>")
    out.append(
        "<p class='legend'>"
        "<span><i class='sw' style='background:#1d3557'></i>readings</span>"
        f"<span><i class='sw' style='background:{_COLOURS['pending']}'></i>pending</span>"
        f"<span><i class='sw' style='background:{_COLOURS['firing']}'></i>firing</span>"
        f"<span><i class='sw' style='background:{_COLOURS['recovering']}'></i>recovering</span>"
        "<span><i class='sw' style='background:#7b68ee;opacity:.5'></i>ground-truth episode</span>"
        "<span>dashed: red condition, green clear · ▲ red detection, green resolution</span></p>"
    )
    for plot in plots:
        r = plot.rule
        out.append(
            f"<h3>{html.escape(r.id)} · {html.escape(plot.sensor_id)} · {html.escape(str(r.aggregate))}"
            f"({html.escape(r.metric)}, {format_duration(r.window)}) {html.escape(str(r.condition))}</h3>"
        )
        out.append(_svg(plot, result))
    out.append("</body></html>")
    return "\n".join(out)
