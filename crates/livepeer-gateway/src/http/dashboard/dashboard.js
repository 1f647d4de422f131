// The operator dashboard: reads the admin JSON API every second and draws it. Every value from
// the gateway goes into the page as text (textContent, SVG attributes), never as HTML, since
// orchestrators choose their own error strings and stream names. Everything kept here is
// bounded: the charts hold at most POINTS samples per series and ORCH_SERIES orchestrators.
"use strict";

const POLL_MS = 1000;
const KEYS_EVERY = 10; // polls between two readings of per-key usage
const MAX_KEYS = 20; // keys whose usage is shown
const POINTS = 300; // samples kept per orchestrator latency series (5 minutes)
const ORCH_SERIES = 12;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04",
  "#db2777", "#4b5563", "#65a30d", "#7c3aed", "#0d9488"];
const HISTORY_SPAN_MS = 2 * 60 * 1000; // the charts of 10 s buckets show 2 minutes at least
const SVG = "http://www.w3.org/2000/svg";

const orchLatency = new Map(); // url -> [[t_ms, ms], ...]
let polls = 0;

function token() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("lp-admin-token", hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("lp-admin-token");
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = { accept: "application/json" };
  const t = token();
  if (t) headers.authorization = "Bearer " + t;
  const resp = await fetch(path, { headers, cache: "no-store" });
  if (resp.status === 401) throw new Unauthorized(path);
  if (resp.status === 404 && path === "/keys") return null;
  if (!resp.ok) throw new Error(path + " answered " + resp.status);
  return resp.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setText(id, value) {
  const e = document.getElementById(id);
  if (e) e.textContent = value === null || value === undefined ? "—" : String(value);
}

function fillTable(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  const cols = document.querySelectorAll("#" + id + " thead th").length;
  body.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" },
    el("td", { colSpan: cols }, empty))]));
}

function ms(n) {
  if (n === null || n === undefined) return "—";
  return n < 10 ? n.toFixed(1) : Math.round(n).toString();
}

function duration(msTotal) {
  const s = Math.floor(msTotal / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function when(atMs) {
  return new Date(atMs).toLocaleTimeString();
}

function short(url) {
  return String(url || "").replace(/^https?:\/\//, "").replace(/\/$/, "");
}

// --- the pool ---------------------------------------------------------------------------

function renderStatus(status) {
  setText("version", status.version);
  setText("uptime", duration(status.uptime_ms));
  setText("count-orchestrators", status.pool.orchestrators);
  setText("count-healthy", status.pool.healthy);
  setText("count-ejected", status.pool.ejected);
  setText("count-unreachable", status.pool.unreachable);
  renderPayments(status.payments);
}

function ejections(o) {
  const items = [];
  if (o.state !== "healthy" && o.last_error) {
    const left = o.cooldown_left_ms ? " (" + duration(o.cooldown_left_ms) + " left)" : "";
    items.push(el("li", { class: "reason" }, "all jobs: " + o.last_error.message + left));
  }
  for (const j of o.jobs || []) {
    if (j.state === "healthy") continue;
    const why = j.last_error ? j.last_error.message : j.state;
    items.push(el("li", { class: "reason" }, j.job + ": " + why));
  }
  return items.length ? el("ul", { class: "reasons" }, ...items) : "none";
}

// The distinct prices of its models (wei per unit, exact), else its base price.
function prices(o) {
  const distinct = [...new Set(o.models.map((m) => m.price).filter((p) => p !== null))];
  if (distinct.length === 0) return o.price === null ? "—" : o.price;
  return distinct.join(", ");
}

function renderPool(body) {
  const rows = body.orchestrators.map((o) => {
    const state = o.transcoder === null ? "unreachable" : o.state;
    const warm = o.models.filter((m) => m.warm).map((m) => m.pipeline + " " + m.model);
    const cold = o.models.filter((m) => !m.warm).map((m) => m.pipeline + " " + m.model);
    const models = el("td", { class: "models", title: warm.concat(cold).join("\n") },
      warm.length + " / " + cold.length,
      warm.length ? el("div", { class: "small" }, warm.join(", ")) : null,
      cold.length ? el("div", { class: "small cold" }, "cold: " + cold.join(", ")) : null);
    return el("tr", { "data-orch": o.url, class: "state-" + state },
      el("td", { class: "url" }, short(o.url)),
      el("td", { class: "state" }, state),
      models,
      el("td", { class: "price" }, prices(o)),
      el("td", { class: "latency" }, ms(o.latency_ewma_ms)),
      el("td", { class: "in-flight" }, o.in_flight),
      el("td", {}, o.selections),
      el("td", { class: "failures" }, o.consecutive_failures),
      el("td", { class: "ejections" }, ejections(o)));
  });
  fillTable("pool-table", rows, "no orchestrators configured");
  const now = Date.now();
  for (const o of body.orchestrators) {
    if (!orchLatency.has(o.url) && orchLatency.size >= ORCH_SERIES) continue;
    const series = orchLatency.get(o.url) || [];
    series.push([now, o.latency_ewma_ms || 0]);
    while (series.length > POINTS) series.shift();
    orchLatency.set(o.url, series);
  }
  const names = new Set(body.orchestrators.map((o) => o.url));
  for (const url of orchLatency.keys()) if (!names.has(url)) orchLatency.delete(url);
  const series = [...orchLatency.entries()].map(([url, points], i) =>
    ({ name: short(url), color: COLORS[i % COLORS.length], points }));
  drawChart("orch-latency-chart", series, "ms", 30 * 1000);
}

// --- streams ----------------------------------------------------------------------------

function renderLive(body) {
  const rows = body.streams.map((s) => el("tr", { "data-stream": s.stream },
    el("td", {}, s.stream), el("td", {}, s.pipeline), el("td", { class: "state" }, s.state),
    el("td", { class: "fps" }, s.input.fps.toFixed(1) + " / " + s.output.fps.toFixed(1)),
    el("td", {}, short(s.orchestrator)), el("td", { class: "swaps" }, s.swaps.length),
    el("td", {}, duration(s.uptime_ms))));
  fillTable("live-table", rows, "no live streams");
}

function renderByoc(body) {
  const rows = body.streams.map((s) => el("tr", { "data-stream": s.stream_id },
    el("td", {}, s.stream_id), el("td", {}, s.capability), el("td", { class: "state" }, s.state),
    el("td", {}, s.input_segments + " / " + s.output_segments),
    el("td", {}, short(s.orchestrator_url || s.orchestrator)),
    el("td", { class: "swaps" }, (s.swaps || []).length),
    el("td", {}, s.payments ? s.payments.ev_wei : "—")));
  fillTable("byoc-table", rows, "no BYOC streams");
}

function renderTranscode(body) {
  const rows = body.streams.map((s) => el("tr", { "data-stream": s.manifest_id },
    el("td", {}, s.manifest_id),
    el("td", {}, s.segments_in + " / " + s.segments_transcoded + " / " + s.segments_source_only),
    el("td", {}, s.ingest ? Math.round(s.ingest.bitrate_bps / 1000) + " kbit/s" : "—"),
    el("td", {}, short(s.orchestrator)), el("td", {}, s.orchestrator_swaps),
    el("td", {}, s.retries)));
  fillTable("transcode-table", rows, "no transcoding streams");
}

// --- failures, payments, customers -------------------------------------------------------

function renderFailures(body) {
  setText("failures-max", body.max);
  const rows = body.failures.map((f) => {
    const attempts = f.attempts.map((a, i) => el("li", {},
      short(a.orchestrator) + " — " + a.latency_ms + " ms — " + (a.error || "ok")));
    const list = attempts.length ? el("ol", { class: "attempts" }, ...attempts)
      : el("span", { class: "small" }, f.error || "no attempt");
    return el("tr", { "data-request": f.id },
      el("td", {}, when(f.at_ms)), el("td", { class: "mono" }, f.id),
      el("td", {}, f.pipeline + (f.model ? " " + f.model : "")),
      el("td", { class: "outcome" }, f.outcome), el("td", {}, f.latency_ms),
      el("td", {}, list));
  });
  fillTable("failures-table", rows, "no failed requests");
}

function renderPayments(payments) {
  const dl = document.getElementById("payment-state");
  const item = (name, value, id) =>
    [el("dt", {}, name), el("dd", id ? { id } : {}, value === null || value === undefined ? "—" : value)];
  if (!payments) {
    dl.replaceChildren(...item("payments", "off-chain: the gateway has no key and pays nobody", "pay-mode"));
    fillTable("sessions-table", [], "no payment sessions");
    return;
  }
  const f = payments.funds;
  dl.replaceChildren(
    ...item("sender", payments.sender, "pay-sender"),
    ...item("deposit, wei", f ? f.deposit_wei : "not known (no chain)", "pay-deposit"),
    ...item("reserve, wei", f ? f.reserve_wei : "not known (no chain)", "pay-reserve"),
    ...item("unlocking", f ? (f.unlocking ? "yes, withdraw round " + f.withdraw_round
      + (f.unlocks_soon ? " (payments stopped)" : "") : "no") : "—", "pay-unlocking"),
    ...reserveOutlook(payments.reserve, item));
  const rows = (payments.sessions || []).map((s) => el("tr", {},
    el("td", {}, short(s.orchestrator)),
    el("td", { class: "session", title: "ticket EV " + s.ticket_ev_wei + " wei, credit " + s.credit_wei + " wei" },
      s.job + ": price " + s.price + ", ticket EV " + wholeWei(s.ticket_ev_wei) + " wei, nonces "
      + s.nonces_used + ", credit " + wholeWei(s.credit_wei) + " wei")));
  fillTable("sessions-table", rows, "no payment sessions yet");
}

// An exact amount of wei ("123" or "num/den") as whole wei, rounded, marked "≈" when not exact:
// tickets' EV and credit have denominators of some 77 digits, unreadable and wider than the page
// (the exact value is in the cell's title).
function wholeWei(v) {
  const [n, d] = String(v).split("/");
  if (!d) return n;
  try {
    const num = BigInt(n);
    const den = BigInt(d);
    const q = (2n * num + den) / (2n * den);
    return (q * den === num ? "" : "≈") + q;
  } catch (e) {
    return String(v);
  }
}

// The reserve's hours at the spend of the last hour, and the gateway's warning when short.
function reserveOutlook(r, item) {
  if (!r) return item("reserve lasts", "not known (no chain)", "pay-hours");
  const hours = r.reserve_hours === null ? "for ever (no spend in the last hour)"
    : r.reserve_hours + " h at " + r.spend_per_hour_wei + " wei an hour";
  const out = item("reserve lasts", hours, "pay-hours");
  if (r.warning) out.push(...item("warning", r.warning, "pay-warning"));
  return out;
}

async function renderKeys() {
  const body = await api("/keys");
  if (body === null) {
    setText("keys-state", "Customer keys are off (start the gateway with --auth keys).");
    fillTable("usage-table", [], "keys off");
    return;
  }
  const keys = body.keys.slice(0, MAX_KEYS);
  setText("keys-state", body.keys.length + " keys" + (body.keys.length > MAX_KEYS
    ? " (usage of the first " + MAX_KEYS + ")" : ""));
  const usages = await Promise.all(keys.map((k) => api("/keys/" + encodeURIComponent(k.id) + "/usage")));
  const rows = keys.map((k, i) => {
    const u = usages[i];
    // Exact text from the gateway (nine decimals), not recomputed here.
    const spend = u.charged_usd !== undefined ? u.charged_usd + " USD" : "—";
    return el("tr", { "data-key": k.id }, el("td", { class: "mono" }, k.id), el("td", {}, k.name),
      el("td", {}, u.requests), el("td", {}, u.errors), el("td", { class: "customer-spend" }, spend));
  });
  fillTable("usage-table", rows, "no keys yet");
}

// --- charts -----------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// Draws `series` ({name, color, points: [[t_ms, y], ...]}) as lines on a time axis that ends
// now and spans at least `spanMs`, so that a young gateway's few points are not stretched.
function drawChart(id, series, unit, spanMs) {
  const chart = document.getElementById(id);
  const [W, H, L, R, T, B] = [480, 160, 48, 8, 8, 20];
  const all = series.flatMap((s) => s.points);
  const parts = [svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "plot" })];
  if (all.length === 0) {
    parts.push(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "nodata" }, "no data yet"));
    chart.replaceChildren(...parts);
    chart.dataset.points = "0";
    return;
  }
  const t1 = Math.max(...all.map((p) => p[0]), Date.now());
  const t0 = Math.min(...all.map((p) => p[0]), t1 - spanMs);
  const ymax = Math.max(...all.map((p) => p[1]), 1) * 1.1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / ymax) * (H - T - B);
  parts.push(svg("text", { x: L - 4, y: T + 10, "text-anchor": "end", class: "axis" }, fmt(ymax)));
  parts.push(svg("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "axis" }, "0"));
  parts.push(svg("text", { x: L, y: H - 4, class: "axis" }, when(t0)));
  parts.push(svg("text", { x: W - R, y: H - 4, "text-anchor": "end", class: "axis" }, when(t1)));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    parts.push(svg("polyline", { points: d, fill: "none", stroke: s.color, "stroke-width": 1.5 }));
    if (s.points.length === 1) {
      parts.push(svg("circle", { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 2.5, fill: s.color }));
    }
    parts.push(svg("text", { x: L + 6, y: T + 12 + i * 12, fill: s.color, class: "legend" }, s.name));
  });
  chart.replaceChildren(...parts);
  chart.dataset.points = String(all.length);
  chart.dataset.unit = unit;
}

function fmt(v) {
  if (v >= 1e9) return (v / 1e9).toPrecision(3) + "G";
  if (v >= 1e6) return (v / 1e6).toPrecision(3) + "M";
  if (v >= 1e3) return (v / 1e3).toPrecision(3) + "k";
  return v < 10 ? v.toFixed(1) : Math.round(v).toString();
}

// Exact amounts ("123" or "num/den") as numbers for drawing only.
function approx(wei) {
  const [n, d] = String(wei).split("/");
  return Number(n) / (d ? Number(d) : 1);
}

function renderHistory(body) {
  const b = body.buckets;
  const at = (k) => b.filter((x) => x[k] !== null).map((x) => [x.start_ms, x[k]]);
  drawChart("latency-chart", [
    { name: "p50", color: COLORS[0], points: at("p50_ms") },
    { name: "p95", color: COLORS[1], points: at("p95_ms") }], "ms", HISTORY_SPAN_MS);
  drawChart("requests-chart", [
    { name: "requests", color: COLORS[2], points: b.map((x) => [x.start_ms, x.requests]) },
    { name: "failures", color: COLORS[1], points: b.map((x) => [x.start_ms, x.failures]) }], "count", HISTORY_SPAN_MS);
  const spend = [
    { name: "fees", color: COLORS[3], points: b.map((x) => [x.start_ms, approx(x.fee_wei)]) },
    { name: "tickets' EV", color: COLORS[4], points: b.map((x) => [x.start_ms, approx(x.ev_wei)]) }];
  drawChart("spend-chart", spend, "wei", HISTORY_SPAN_MS);
  // Revenue: what customers were charged (customer keys), in USD.
  drawChart("revenue-chart", [
    { name: "revenue", color: COLORS[2], points: b.map((x) => [x.start_ms, x.revenue_nusd / 1e9]) }], "USD", HISTORY_SPAN_MS);
}

// --- the loop ---------------------------------------------------------------------------

function showError(message) {
  const e = document.getElementById("error");
  e.hidden = !message;
  e.textContent = message || "";
}

async function poll() {
  try {
    const [status, orchs, live, byoc, transcode, failed, hist] = await Promise.all([
      api("/status"), api("/orchestrators"), api("/live/streams"), api("/byoc/streams"),
      api("/transcode/streams"), api("/requests/failed"), api("/history")]);
    renderStatus(status);
    renderPool(orchs);
    renderLive(live);
    renderByoc(byoc);
    renderTranscode(transcode);
    renderFailures(failed);
    renderHistory(hist);
    if (polls % KEYS_EVERY === 0) await renderKeys();
    polls += 1;
    document.getElementById("token-form").hidden = true;
    setText("updated", new Date().toLocaleTimeString());
    document.body.dataset.polls = String(polls);
    showError(null);
  } catch (e) {
    if (e instanceof Unauthorized) {
      document.getElementById("token-form").hidden = false;
      showError("The admin API refused the token: enter this gateway's --admin-token.");
    } else {
      showError("Cannot read the admin API: " + e.message);
    }
  }
  setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("lp-admin-token", document.getElementById("token").value);
    document.getElementById("token").value = "";
  });
  poll();
});
