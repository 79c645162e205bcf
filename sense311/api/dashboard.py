"""The dashboard at ``/``: a map of the sensors by state, open incidents and tickets, one sensor's series.

The page and its two tables are rendered here (``html.escape`` on every value); a small script
served by the app (``/dashboard/app.js``) draws the map and the charts from /api/v1 and
refreshes the tables from ``/dashboard/panels/…``. Nothing is loaded from elsewhere — no tile
server, no CDN — and the Content-Security-Policy says so to the browser.

When ``api.read_requires_token`` is set the page carries no data: the script asks for a token,
keeps it in the tab's session storage and fetches everything with it.
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Annotated, Any

import psycopg
import psycopg_pool
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from psycopg.rows import dict_row

from sense311 import __version__
from sense311.api.auth import rate_limited, require
from sense311.api.context import AppContext, get_context
from sense311.api.errors import NotFound

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
Ctx = Annotated[AppContext, Depends(get_context)]

#: Rows per table: the newest open problems fit a screen; the API lists the rest.
PANEL_ROWS = 50
#: Ticket statuses shown: those the city has not closed (failed ones need an operator).
OPEN_TICKET_STATUSES = ["pending", "submitted", "open", "sent", "failed"]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f'<time datetime="{_e(value.isoformat())}">{_e(text)}</time>'


def _sensor_button(sensor_id: str) -> str:
    return f'<button type="button" class="link" data-select-sensor="{_e(sensor_id)}">{_e(sensor_id)}</button>'


def incidents_panel(conn: psycopg.Connection[Any]) -> str:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT i.id, i.problem, i.sensor_id, i.sensor_state, i.severity, i.first_seen, i.last_seen,
                      i.detections, m.ticket_id
               FROM incidents i LEFT JOIN ticket_members m ON m.incident_id = i.id
               WHERE i.status = 'open' ORDER BY i.id DESC LIMIT %s""",
            (PANEL_ROWS,),
        ).fetchall()
        total = cur.execute("SELECT count(*) AS n FROM incidents WHERE status = 'open'").fetchone()
    count = total["n"] if total else 0
    if not rows:
        return '<h2>Open incidents <span class="count">0</span></h2><p class="empty">No open incidents.</p>'
    body = "".join(
        f'<tr data-incident-id="{r["id"]}" class="sev-{_e(r["severity"])}">'
        f"<td>{r['id']}</td><td>{_e(r['problem'])}</td><td>{_sensor_button(r['sensor_id'])}</td>"
        f'<td><span class="state state-{_e(r["sensor_state"])}">{_e(r["sensor_state"])}</span></td>'
        f"<td>{_e(r['severity'])}</td><td>{_when(r['first_seen'])}</td><td>{_when(r['last_seen'])}</td>"
        f'<td class="num">{r["detections"]}</td><td>{_e(r["ticket_id"] or "–")}</td></tr>'
        for r in rows
    )
    shown = f" (newest {len(rows)})" if count > len(rows) else ""
    return (
        f'<h2>Open incidents <span class="count">{count}</span>{shown}</h2>'
        "<table><thead><tr><th>#</th><th>Problem</th><th>Sensor</th><th>Rules</th><th>Severity</th>"
        "<th>Since</th><th>Last seen</th><th>Det.</th><th>Ticket</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def tickets_panel(conn: psycopg.Connection[Any]) -> str:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT t.id, t.reference, t.problem, t.status, t.opened_at, t.service_request_id,
                      (SELECT count(*) FROM ticket_members m WHERE m.ticket_id = t.id) AS members
               FROM tickets t WHERE t.status = ANY(%s) ORDER BY t.id DESC LIMIT %s""",
            (OPEN_TICKET_STATUSES, PANEL_ROWS),
        ).fetchall()
    if not rows:
        return '<h2>Open tickets <span class="count">0</span></h2><p class="empty">No open tickets.</p>'
    body = "".join(
        f'<tr data-ticket-id="{r["id"]}"><td>{r["id"]}</td><td><code>{_e(r["reference"])}</code></td>'
        f"<td>{_e(r['problem'])}</td>"
        f'<td><span class="status status-{_e(r["status"])}">{_e(r["status"])}</span></td>'
        f'<td class="num">{r["members"]}</td><td>{_when(r["opened_at"])}</td>'
        f"<td>{_e(r['service_request_id'] or '–')}</td></tr>"
        for r in rows
    )
    return (
        f'<h2>Open tickets <span class="count">{len(rows)}</span></h2>'
        "<table><thead><tr><th>#</th><th>Reference</th><th>Problem</th><th>Status</th><th>Sensors</th>"
        f"<th>Opened</th><th>City request</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _panels(ctx: AppContext) -> tuple[str, str]:
    waiting = '<p class="empty">Loading…</p>'
    if ctx.api.read_requires_token:
        return waiting, waiting
    try:
        with ctx.connection() as conn:
            return incidents_panel(conn), tickets_panel(conn)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        log.warning("dashboard: cannot read incidents and tickets: %s", exc)
        note = '<p class="error">Cannot read the database; see /readyz and the service log.</p>'
        return note, note


def _page(ctx: AppContext) -> str:
    incidents, tickets = _panels(ctx)
    token = "true" if ctx.api.read_requires_token else "false"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sense311</title>
<link rel="stylesheet" href="/dashboard/app.css">
<link rel="icon" href="data:,">
</head>
<body data-api="/api/v1" data-token-required="{token}">
<header>
  <h1>sense311</h1>
  <p id="summary" aria-live="polite"></p>
  <form id="token-form" hidden><label>API token <input id="token" type="password" autocomplete="off"></label>
  <button type="submit">Use</button></form>
  <nav><a href="/docs">API</a> · <a href="/readyz">ready?</a> · v{_e(__version__)}</nav>
</header>
<main>
  <section id="map-panel" class="card">
    <h2>Sensors</h2>
    <ul id="legend" class="legend"></ul>
    <svg id="map" viewBox="0 0 800 480" role="img" aria-label="Map of the sensors coloured by state"></svg>
    <p id="map-note" class="note"></p>
  </section>
  <section id="list-panel" class="card">
    <h2>Sensors <span id="sensor-count" class="count"></span></h2>
    <input id="filter" type="search" placeholder="Filter by id, kind, district or problem">
    <ul id="sensor-list"></ul>
  </section>
  <section id="chart-panel" class="card wide">
    <h2 id="chart-title">Select a sensor on the map or in the list</h2>
    <p id="chart-note" class="note"></p>
    <div id="charts"></div>
  </section>
  <section id="incidents-panel" class="card wide" data-panel="incidents">{incidents}</section>
  <section id="tickets-panel" class="card wide" data-panel="tickets">{tickets}</section>
</main>
<noscript><p class="error">The map and the charts need JavaScript; the tables work without it.</p></noscript>
<script src="/dashboard/app.js"></script>
</body>
</html>
"""


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(rate_limited)])
def page(ctx: Ctx) -> HTMLResponse:
    return HTMLResponse(_page(ctx), headers=_HEADERS)


@router.get(
    "/dashboard/panels/incidents", response_class=HTMLResponse, dependencies=[Depends(require("read"))]
)
def incidents_fragment(ctx: Ctx) -> HTMLResponse:
    with ctx.connection() as conn:
        return HTMLResponse(incidents_panel(conn), headers=_HEADERS)


@router.get("/dashboard/panels/tickets", response_class=HTMLResponse, dependencies=[Depends(require("read"))])
def tickets_fragment(ctx: Ctx) -> HTMLResponse:
    with ctx.connection() as conn:
        return HTMLResponse(tickets_panel(conn), headers=_HEADERS)


@cache
def _asset(name: str) -> bytes:
    return resources.files("sense311.api").joinpath("static", name).read_bytes()


@router.get("/dashboard/{name}")
def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise NotFound(f"no dashboard file {name!r}")
    return Response(
        _asset(name),
        media_type=_ASSETS[name],
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )
