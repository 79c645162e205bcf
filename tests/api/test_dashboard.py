"""The dashboard: served by the app alone, escaped, and drawn by a real browser (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.api.conftest import T0, Api, add_detection, add_incident, add_readings, add_sensors, add_ticket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Seconds Chromium may take to load the page, run its script and dump the DOM.
BROWSER_TIMEOUT = 90
#: Virtual milliseconds the page's script gets (fetches included) before the DOM is dumped.
VIRTUAL_TIME_BUDGET = 5000
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (apt-get install -y chromium)",
)


def _city(api: Api) -> dict[str, int]:
    add_sensors(
        api.db,
        {"id": "centrum/bin-0001", "kind": "bin", "lat": 52.3731, "lon": 4.8922, "district": "centrum"},
        {"id": "centrum/bin-0002", "kind": "bin", "lat": 52.3745, "lon": 4.8951, "district": "centrum"},
        {"id": "west/light-0001", "kind": "light", "lat": 52.3702, "lon": 4.8790, "district": "west"},
        {"id": "west/light-0002", "kind": "light", "lat": 52.3690, "lon": 4.8770, "district": "west"},
        {"id": "nowhere/bin-9", "kind": "bin"},
    )
    rows = []
    for i in range(24 * 12):
        at = T0 - timedelta(hours=24) + timedelta(minutes=5 * i)
        rows.append((at, "centrum/bin-0001", "fill_level", min(0.99, 0.2 + i / 300)))
        rows.append((at, "centrum/bin-0002", "fill_level", 0.3 + 0.1 * (i % 5) / 5))
        rows.append((at, "west/light-0001", "power_w", 0.0 if i > 200 else 40.0))
    add_readings(api.db, rows)
    incident = add_incident(api.db, "centrum/bin-0001", first_seen=T0 - timedelta(hours=2))
    lamp = add_incident(api.db, "west/light-0001", "lamp_out", severity="high")
    add_ticket(api.db, [incident])
    add_detection(api.db, "centrum/bin-0001", T0 - timedelta(hours=2))
    return {"incident": incident, "lamp": lamp}


def _browse(url: str, tmp_path: Path, *extra: str) -> str:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET}",
        "--window-size=1280,1400",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_page_is_self_contained_and_escaped(api: Api) -> None:
    add_sensors(api.db, {"id": "x", "kind": "bin"})
    add_incident(api.db, "x", "<script>alert(1)</script>")
    page = api.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert (
        "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    )
    # Nothing from elsewhere: every src and href is local.
    for link in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert link.startswith(("/", "data:", "#")), link
    for asset in ("/dashboard/app.js", "/dashboard/app.css"):
        served = api.http.get(asset)
        assert served.status_code == 200 and len(served.content) > 1000
        assert (
            "http://" not in served.text.replace("http://www.w3.org/2000/svg", "")
            and "https://" not in served.text
        )
    assert api.http.get("/dashboard/nope.js").status_code == 404
    panel = api.http.get("/dashboard/panels/incidents")
    assert panel.status_code == 200 and "data-incident-id" in panel.text


def test_page_without_data_when_reads_need_a_token(api_server: Callable[..., Api]) -> None:
    api = api_server(read_requires_token=True)
    add_sensors(api.db, {"id": "secret-bin", "kind": "bin"})
    add_incident(api.db, "secret-bin")
    page = api.http.get("/").text
    assert "secret-bin" not in page and 'data-token-required="true"' in page
    assert api.http.get("/dashboard/panels/incidents").status_code == 401


@needs_chromium
def test_chromium_shows_sensors_incidents_and_a_chart(api: Api, tmp_path: Path) -> None:
    ids = _city(api)
    dom = _browse(f"{api.url}/#sensor=centrum%2Fbin-0001", tmp_path, "--dump-dom")
    # The map: one circle per located sensor, coloured by state, drawn by the script.
    circles = re.findall(r'<circle[^>]*class="sensor state-(\w+)[^"]*"[^>]*data-sensor-id="([^"]+)"', dom)
    assert sorted(circles) == [
        ("firing", "centrum/bin-0001"),
        ("firing", "west/light-0001"),
        ("stale", "centrum/bin-0002"),  # its readings are older than api.stale_after
        ("unknown", "west/light-0002"),
    ]
    # The list holds every sensor, the unlocated one too.
    listed = set(re.findall(r'<li data-sensor-id="([^"]+)"', dom))
    assert listed == {
        "centrum/bin-0001",
        "centrum/bin-0002",
        "west/light-0001",
        "west/light-0002",
        "nowhere/bin-9",
    }
    # The open incidents, with the one that has a ticket.
    assert f'data-incident-id="{ids["incident"]}"' in dom and f'data-incident-id="{ids["lamp"]}"' in dom
    assert "data-ticket-id=" in dom
    # The selected sensor's series, with its detection marked.
    assert '<div class="chart" data-metric="fill_level">' in dom
    assert re.search(r'<polyline points="[\d., ]{200,}" class="line"', dom)
    assert 'class="detection-marker detection"' in dom
    assert "Cannot load" not in dom


@needs_chromium
def test_screenshot(api: Api, tmp_path: Path) -> None:
    _city(api)
    shot = tmp_path / "dashboard.png"
    _browse(f"{api.url}/#sensor=centrum%2Fbin-0001", tmp_path, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 20_000
