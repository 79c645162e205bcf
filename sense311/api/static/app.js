// sense311 dashboard: draws the sensor map and one sensor's series from /api/v1, and refreshes the
// server-rendered tables. Data reaches the page through textContent and SVG attributes only; the
// one HTML inserted is the tables' markup, which the server escaped.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const body = document.body;
  const API = body.dataset.api || "/api/v1";
  const TOKEN_REQUIRED = body.dataset.tokenRequired === "true";
  const TOKEN_KEY = "sense311-token";
  // How often the map and the tables refresh, and the span of the charts.
  const REFRESH_MS = 30000;
  const CHART_SPAN_MS = 24 * 3600 * 1000;
  const CHART_BUCKETS = 288; // 5-minute buckets over 24 h: about one per two pixels
  const MAX_CHARTS = 4;
  const STATES = [
    ["firing", "incident, rules firing"],
    ["resolved", "incident, sensor back to normal"],
    ["ok", "reporting"],
    ["stale", "no recent reading"],
    ["unknown", "no reading yet"],
  ];

  let sensors = [];
  let selected = null;

  function el(tag, attrs, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  async function request(path, accept) {
    const headers = { Accept: accept || "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const response = await fetch(path, { headers });
    if (response.status === 401) {
      document.getElementById("token-form").hidden = false;
      throw new Error("an API token with the read scope is needed");
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return accept === "text/html" ? response.text() : response.json();
  }

  const api = (path) => request(API + path);
  const sensorPath = (id) => encodeURIComponent(id).replace(/%2F/gi, "/");

  // ---- map ------------------------------------------------------------------------------------

  function drawLegend() {
    const legend = document.getElementById("legend");
    legend.replaceChildren();
    for (const [state, label] of STATES) {
      const count = sensors.filter((s) => s.state === state).length;
      const item = el("li");
      item.append(el("span", { class: "dot state-" + state }), label + " (" + count + ")");
      legend.append(item);
    }
  }

  // Equirectangular projection fitted to the sensors' bounding box: at city scale the distortion is
  // negligible, and it needs no tiles.
  function projection(points, width, height, pad) {
    let [minLat, maxLat, minLon, maxLon] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const p of points) {
      minLat = Math.min(minLat, p.lat); maxLat = Math.max(maxLat, p.lat);
      minLon = Math.min(minLon, p.lon); maxLon = Math.max(maxLon, p.lon);
    }
    const kx = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = Math.max((maxLon - minLon) * kx, 1e-4);
    const spanY = Math.max(maxLat - minLat, 1e-4);
    const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
    const offX = (width - spanX * scale) / 2;
    const offY = (height - spanY * scale) / 2;
    return {
      x: (lon) => offX + (lon - minLon) * kx * scale,
      y: (lat) => height - offY - (lat - minLat) * scale,
      bounds: { minLat, maxLat, minLon, maxLon },
    };
  }

  function drawMap() {
    const svg = document.getElementById("map");
    const [width, height] = [800, 480];
    svg.replaceChildren();
    const placed = sensors.filter((s) => s.lat !== null && s.lon !== null);
    const note = document.getElementById("map-note");
    const unplaced = sensors.length - placed.length;
    note.textContent = unplaced ? unplaced + " sensor(s) without a location are only in the list." : "";
    if (!placed.length) {
      svg.append(el("svg:text", { x: 20, y: 40, class: "label" }, "No sensor has a location yet."));
      return;
    }
    const proj = projection(placed, width, height, 24);
    for (let i = 1; i < 4; i++) {
      svg.append(el("svg:line", { x1: (width * i) / 4, y1: 0, x2: (width * i) / 4, y2: height, class: "grid" }));
      svg.append(el("svg:line", { x1: 0, y1: (height * i) / 4, x2: width, y2: (height * i) / 4, class: "grid" }));
    }
    const b = proj.bounds;
    svg.append(el("svg:text", { x: 6, y: height - 6, class: "label" },
      b.minLat.toFixed(4) + ", " + b.minLon.toFixed(4) + " – " + b.maxLat.toFixed(4) + ", " + b.maxLon.toFixed(4)));
    // Problems drawn last, so a firing sensor is never hidden under a healthy neighbour.
    const order = { unknown: 0, stale: 1, ok: 2, resolved: 3, firing: 4 };
    const radius = placed.length > 2000 ? 3 : placed.length > 300 ? 4.5 : 6;
    for (const s of [...placed].sort((a, b) => order[a.state] - order[b.state])) {
      const dot = el("svg:circle", {
        cx: proj.x(s.lon).toFixed(1), cy: proj.y(s.lat).toFixed(1), r: s.state === "firing" ? radius + 2 : radius,
        class: "sensor state-" + s.state + (s.id === selected ? " selected" : ""),
        "data-sensor-id": s.id, tabindex: 0,
      });
      dot.append(el("svg:title", {}, s.id + " · " + s.kind + " · " + s.state + (s.problems.length ? " · " + s.problems.join(", ") : "")));
      svg.append(dot);
    }
  }

  function drawList() {
    const list = document.getElementById("sensor-list");
    const query = document.getElementById("filter").value.trim().toLowerCase();
    list.replaceChildren();
    const shown = sensors.filter((s) => !query ||
      [s.id, s.kind, s.district || "", s.problems.join(" "), s.state].join(" ").toLowerCase().includes(query));
    const rank = { firing: 0, resolved: 1, stale: 2, unknown: 3, ok: 4 };
    shown.sort((a, b) => rank[a.state] - rank[b.state] || a.id.localeCompare(b.id));
    for (const s of shown.slice(0, 500)) {
      const item = el("li", { "data-sensor-id": s.id, class: "sensor-item" + (s.id === selected ? " selected" : "") });
      item.append(el("span", { class: "dot state-" + s.state }), el("span", { class: "id" }, s.id),
        el("span", { class: "meta" }, [s.kind, s.district, s.problems.join(", ")].filter(Boolean).join(" · ")));
      list.append(item);
    }
    if (shown.length > 500) list.append(el("li", { class: "note" }, (shown.length - 500) + " more: filter to find them"));
    document.getElementById("sensor-count").textContent = String(sensors.length);
  }

  function summarise() {
    const firing = sensors.filter((s) => s.state === "firing").length;
    document.getElementById("summary").textContent =
      sensors.length + " sensors · " + firing + " with a firing incident · updated " + new Date().toLocaleTimeString();
  }

  async function loadSensors() {
    try {
      sensors = await api("/sensor-states");
      drawLegend(); drawMap(); drawList(); summarise();
    } catch (error) {
      document.getElementById("map-note").textContent = "Cannot load sensors: " + error.message;
      document.getElementById("map-note").className = "note error";
    }
  }

  // ---- one sensor's series --------------------------------------------------------------------

  function ticks(lo, hi, count) {
    const out = [];
    for (let i = 0; i <= count; i++) out.push(lo + ((hi - lo) * i) / count);
    return out;
  }

  function formatValue(v) {
    const a = Math.abs(v);
    return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(a >= 1 ? 2 : 3);
  }

  function drawChart(metric, buckets, detections, start, end) {
    const [W, H, L, R, T, B] = [960, 190, 56, 12, 10, 24];
    const box = el("div", { class: "chart", "data-metric": metric });
    box.append(el("h3", {}, metric));
    if (!buckets.length) {
      box.append(el("p", { class: "note" }, "No readings in this period."));
      return box;
    }
    const svg = el("svg:svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": metric + " over time" });
    box.append(svg);
    let lo = Math.min(...buckets.map((b) => b.min));
    let hi = Math.max(...buckets.map((b) => b.max));
    for (const d of detections) if (d.value !== null) { lo = Math.min(lo, d.value); hi = Math.max(hi, d.value); }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.06; lo -= pad; hi += pad;
    const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    svg.append(el("svg:line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    for (const v of ticks(lo + pad, hi - pad, 3)) {
      svg.append(el("svg:text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, formatValue(v)));
    }
    ticks(start, end, 4).forEach((t, i, all) => {
      const label = new Date(t).toISOString().slice(11, 16) + " UTC";
      const anchor = i === 0 ? "start" : i === all.length - 1 ? "end" : "middle";
      svg.append(el("svg:text", { x: x(t), y: H - 6, "text-anchor": anchor, class: "tick" }, label));
    });
    const times = buckets.map((b) => Date.parse(b.bucket));
    const upper = buckets.map((b, i) => x(times[i]).toFixed(1) + "," + y(b.max).toFixed(1));
    const lower = buckets.map((b, i) => x(times[i]).toFixed(1) + "," + y(b.min).toFixed(1)).reverse();
    svg.append(el("svg:polygon", { points: upper.concat(lower).join(" "), class: "band" }));
    svg.append(el("svg:polyline", { points: buckets.map((b, i) => x(times[i]).toFixed(1) + "," + y(b.avg).toFixed(1)).join(" "), class: "line" }));
    for (const d of detections) {
      const t = Date.parse(d.fired_at);
      if (t < start || t > end) continue;
      const mark = el("svg:g", { class: "detection-marker " + d.kind, "data-detection-id": d.id });
      mark.append(el("svg:line", { x1: x(t), y1: T, x2: x(t), y2: H - B }));
      mark.append(el("svg:circle", { cx: x(t), cy: d.value !== null ? y(d.value) : T + 6, r: 4.5 }));
      mark.append(el("svg:title", {}, d.kind + " · " + d.rule_id + " · " + d.problem + " · " + d.fired_at +
        (d.value !== null ? " · value " + formatValue(d.value) : "")));
      svg.append(mark);
    }
    return box;
  }

  async function select(id) {
    selected = id;
    history.replaceState(null, "", "#sensor=" + encodeURIComponent(id));
    for (const node of document.querySelectorAll("[data-sensor-id]")) {
      node.classList.toggle("selected", node.getAttribute("data-sensor-id") === id);
    }
    const title = document.getElementById("chart-title");
    const note = document.getElementById("chart-note");
    const charts = document.getElementById("charts");
    title.textContent = id;
    note.textContent = "Loading…";
    charts.replaceChildren();
    try {
      const sensor = await api("/sensors/" + sensorPath(id));
      title.textContent = sensor.id + " · " + sensor.kind + (sensor.address ? " · " + sensor.address : "");
      // The charts end at the latest reading, so replayed or simulated history shows too.
      const latest = sensor.latest.map((r) => Date.parse(r.time));
      const end = latest.length ? Math.max(...latest) : Date.now();
      const start = end - CHART_SPAN_MS;
      const range = "&start=" + new Date(start).toISOString() + "&end=" + new Date(end).toISOString();
      const interval = Math.max(1, Math.round(CHART_SPAN_MS / CHART_BUCKETS / 1000)) + "s";
      const q = "sensor_id=" + encodeURIComponent(id) + range;
      const [detections, ...series] = await Promise.all([
        api("/detections?" + q + "&limit=500"),
        ...sensor.latest.slice(0, MAX_CHARTS).map((r) =>
          api("/readings/buckets?" + q + "&metric=" + encodeURIComponent(r.metric) + "&interval=" + interval)),
      ]);
      const count = detections.items.filter((d) => d.kind === "detection").length;
      note.textContent = sensor.latest.length
        ? "Last 24 h up to the latest reading · " + count + " detection(s)" +
          (sensor.open_problems.length ? " · open: " + sensor.open_problems.join(", ") : "")
        : "No readings yet.";
      for (const s of series) charts.append(drawChart(s.metric, s.items, detections.items, start, end));
    } catch (error) {
      note.textContent = "Cannot load the sensor: " + error.message;
      note.className = "note error";
    }
  }

  // ---- tables ---------------------------------------------------------------------------------

  async function refreshPanels() {
    for (const panel of document.querySelectorAll("[data-panel]")) {
      try {
        panel.innerHTML = await request("/dashboard/panels/" + panel.dataset.panel, "text/html");
      } catch (error) {
        const message = el("p", { class: "error" }, "Cannot refresh: " + error.message);
        panel.replaceChildren(message);
      }
    }
  }

  // ---- wiring ---------------------------------------------------------------------------------

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-sensor-id], [data-select-sensor]");
    if (!target) return;
    select(target.getAttribute("data-sensor-id") || target.getAttribute("data-select-sensor"));
  });
  document.addEventListener("keydown", (event) => {
    const target = event.target.closest && event.target.closest("circle[data-sensor-id]");
    if (target && (event.key === "Enter" || event.key === " ")) select(target.getAttribute("data-sensor-id"));
  });
  document.getElementById("filter").addEventListener("input", drawList);
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    document.getElementById("token-form").hidden = true;
    start();
  });

  async function start() {
    if (TOKEN_REQUIRED && !token()) {
      document.getElementById("token-form").hidden = false;
      return;
    }
    const tasks = [loadSensors()];
    if (TOKEN_REQUIRED) tasks.push(refreshPanels());
    await Promise.all(tasks);
    const wanted = new URLSearchParams(location.hash.slice(1)).get("sensor");
    const firing = sensors.find((s) => s.state === "firing");
    const first = wanted || (firing && firing.id);
    if (first) select(first);
  }

  start();
  setInterval(() => { loadSensors(); refreshPanels(); }, REFRESH_MS);
})();
