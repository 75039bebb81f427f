// wipwatch live board: draws the value stream once from the first snapshot, then updates it from
// Server-Sent Events. Plain browser JavaScript, no dependencies, no build step.
"use strict";

const DASH = "–";
let staleAfterS = 10;
let built = false;
let lastMessageAt = 0;
let connected = false;
let currency = "EUR";

function fmt(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function money(value) {
  if (value === null || value === undefined) return DASH;
  return Number(value).toLocaleString("en", { style: "currency", currency, maximumFractionDigits: 0 });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  if (seconds < 90) return `${fmt(seconds)} s`;
  if (seconds < 5400) return `${fmt(seconds / 60, 1)} min`;
  return `${fmt(seconds / 3600, 1)} h`;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function endpoint(label) {
  const card = el("div", "loc endpoint", label);
  return card;
}

function arrow() { return el("div", "arrow", "→"); }

function locationCard(line, loc) {
  const card = el("div", `loc kind-${loc.kind}`);
  card.dataset.testid = "location";
  card.dataset.line = line.id;
  card.dataset.location = loc.id;
  card.append(el("div", "badge", "BOTTLENECK"), el("div", "alert-mark", "⚠"));
  const name = el("div", "name", loc.name);
  name.title = `${line.id}/${loc.id}`;
  card.append(name, el("div", "kind", loc.kind));
  const row = el("div", "pile-row");
  const pile = el("div", "pile");
  pile.append(el("div", "fill"));
  const numbers = el("div");
  numbers.append(el("div", "wip", DASH), el("div", "cap", loc.cap ? `cap ${loc.cap}` : "no cap"),
    el("div", "growth", ""));
  row.append(pile, numbers);
  card.append(row);
  card.append(el("div", "meta money"), el("div", "meta age"), el("div", "state"));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "trend");
  svg.setAttribute("viewBox", "0 0 100 22");
  svg.setAttribute("preserveAspectRatio", "none");
  for (const shape of ["polygon", "polyline"]) svg.append(document.createElementNS("http://www.w3.org/2000/svg", shape));
  card.append(svg);
  return card;
}

function build(snapshot) {
  currency = snapshot.currency || "EUR";
  document.getElementById("site-name").textContent = snapshot.name;
  document.title = `wipwatch — ${snapshot.name}`;
  const main = document.getElementById("lines");
  main.replaceChildren();
  for (const line of snapshot.lines) {
    const section = el("section", "line");
    section.dataset.line = line.id;
    const head = el("div", "line-head");
    head.append(el("h2", "", line.name), el("div", "kpi throughput"), el("div", "kpi takt"),
                el("div", "kpi benchmark"));
    section.append(head);
    const lead = el("div", "lead");
    for (const [key, label] of [["littles", "Lead time (Little's Law)"], ["measured", "Lead time (measured)"],
                                ["va", "Value-added time"]]) {
      const track = el("div");
      track.append(el("div", `bar ${key}`));
      lead.append(el("div", "label", label), track, el("div", `lead-${key}`, DASH));
    }
    section.append(lead);
    const flow = el("div", "flow");
    flow.append(endpoint("Supplier"), arrow());
    line.locations.forEach((loc, index) => {
      if (index > 0) flow.append(arrow());
      flow.append(locationCard(line, loc));
    });
    flow.append(arrow(), endpoint("Customer"));
    section.append(flow);
    main.append(section);
  }
  built = true;
}

function pileClass(loc, ratio) {
  if (loc.wip === null) return "none";
  if (!loc.cap) return "none";
  if (ratio >= 1) return "bad";
  if (ratio >= 0.8) return "warn";
  return "";
}

function sparkline(svg, trend) {
  const polyline = svg.querySelector("polyline");
  const area = svg.querySelector("polygon");
  // WIP over the last hour of event time, as a filled area from zero up to the line's own maximum
  const indexed = trend.map((v, i) => [i, v]).filter(([, v]) => v !== null);
  if (indexed.length < 2) {
    polyline.setAttribute("points", "");
    area.setAttribute("points", "");
    return;
  }
  const max = Math.max(1, ...indexed.map(([, v]) => v));
  const step = 100 / Math.max(1, trend.length - 1);
  const x = (i) => (i * step).toFixed(1);
  const y = (v) => (21 - (v / max) * 19).toFixed(1);
  const points = indexed.map(([i, v]) => `${x(i)},${y(v)}`);
  polyline.setAttribute("points", points.join(" "));
  points.push(`${x(indexed[indexed.length - 1][0])},22`, `${x(indexed[0][0])},22`);
  area.setAttribute("points", points.join(" "));
}

function updateLocation(card, loc, lineMax) {
  card.querySelector(".wip").textContent = loc.wip === null ? DASH : String(loc.wip);
  const scale = loc.cap || lineMax || 1;
  const ratio = loc.wip === null ? 0 : loc.wip / scale;
  const fill = card.querySelector(".fill");
  fill.style.height = `${Math.min(100, ratio * 100)}%`;
  fill.className = `fill ${pileClass(loc, loc.cap ? loc.wip / loc.cap : 0)}`;
  const growth = card.querySelector(".growth");
  if (loc.growth_per_hour === null) {
    growth.textContent = `${DASH}/h`;
    growth.className = "growth";
  } else {
    const up = loc.growth_per_hour > 0;
    growth.textContent = `${up ? "▲ +" : loc.growth_per_hour < 0 ? "▼ " : ""}${fmt(loc.growth_per_hour, 1)}/h`;
    growth.className = `growth ${up ? "up" : loc.growth_per_hour < 0 ? "down" : ""}`;
  }
  card.querySelector(".money").innerHTML = `tied up <b>${money(loc.value)}</b>`;
  card.querySelector(".age").innerHTML = `oldest <b>${duration(loc.oldest_age_s)}</b>`;
  const state = card.querySelector(".state");
  if (loc.kind === "station") {
    state.textContent = loc.state || DASH;
    state.className = `state ${loc.state || ""}`;
  }
  card.classList.toggle("bottleneck", loc.bottleneck === true);
  for (const severity of ["critical", "warning", "info"]) card.classList.toggle(`alert-${severity}`, loc.alert === severity);
  card.dataset.alert = loc.alert || "";
  sparkline(card.querySelector("svg.trend"), loc.trend || []);
}

function updateLine(section, line) {
  section.querySelector(".throughput").innerHTML =
    `throughput <b>${fmt(line.throughput_per_hour, 1)}</b> / demand <b>${fmt(line.demand_per_hour, 1)}</b> parts/h`;
  section.querySelector(".takt").innerHTML = `takt <b>${duration(line.takt_s)}</b>`;
  const bench = line.benchmark || {};
  const region = bench.region ? ` <span class="region ${bench.region}">${bench.region} region</span>` : "";
  const bm = section.querySelector(".benchmark");
  bm.innerHTML = `WIP <b>${fmt(bench.wip, 0)}</b> / W0 <b>${fmt(bench.w0, 1)}</b>` +
    ` · r_b <b>${fmt(bench.r_b_per_hour, 1)}</b>/h · PWC here <b>${fmt(bench.pwc_throughput_per_hour, 1)}</b>/h` +
    region + (bench.wip_needed !== null && bench.wip_needed !== undefined
      ? ` · <b>${bench.wip_needed}</b> parts would keep 95 %` : "");
  bm.title = bench.verdict || "Factory Physics benchmark (docs/benchmarking.md): no operating point yet";
  const va = line.value_added_ratio !== null && line.measured_lead_s !== null
    ? line.value_added_ratio * line.measured_lead_s : null;
  const values = { littles: line.littles_law_s, measured: line.measured_lead_s, va };
  const max = Math.max(1, ...Object.values(values).filter((v) => v !== null));
  for (const [key, value] of Object.entries(values)) {
    section.querySelector(`.bar.${key}`).style.width = value === null ? "0" : `${(value / max) * 100}%`;
    section.querySelector(`.lead-${key}`).textContent = duration(value);
  }
  section.dataset.alert = line.alert || "";
  const lineMax = Math.max(...line.locations.map((l) => l.wip || 0));
  for (const loc of line.locations) {
    const card = section.querySelector(`.loc[data-location="${CSS.escape(loc.id)}"]`);
    if (card) updateLocation(card, loc, lineMax);
  }
}

function renderAlerts(alerts) {
  const list = document.getElementById("alerts");
  list.replaceChildren();
  list.classList.toggle("none", alerts.length === 0);
  if (alerts.length === 0) {
    list.append(el("span", "quiet", "no active alerts"));
    return;
  }
  for (const alert of alerts) {
    const item = el("div", `alert ${alert.severity}`);
    item.dataset.testid = "alert";
    item.dataset.rule = alert.rule;
    item.dataset.location = alert.location;
    const since = alert.since_us ? new Date(alert.since_us / 1000).toLocaleTimeString("en-GB", { hour12: false }) : DASH;
    item.append(el("b", "", alert.severity.toUpperCase()), el("span", "", ` ${alert.summary} `),
      el("span", "since", `since ${since}`));
    list.append(item);
  }
}

function setStatus(state, text) {
  const status = document.getElementById("status");
  status.className = `status ${state}`;
  status.dataset.state = state;
  status.textContent = text;
}

function render(snapshot) {
  if (!built) build(snapshot);
  staleAfterS = snapshot.stale_after_s || staleAfterS;
  document.getElementById("total-wip").textContent = fmt(snapshot.totals.wip);
  document.getElementById("total-money").textContent = money(snapshot.totals.tied_up);
  document.getElementById("data-time").textContent = snapshot.data_time_us
    ? new Date(snapshot.data_time_us / 1000).toLocaleString("en-GB", { hour12: false }) : DASH;
  for (const line of snapshot.lines) {
    const section = document.querySelector(`section.line[data-line="${CSS.escape(line.id)}"]`);
    if (section) updateLine(section, line);
  }
  renderAlerts(snapshot.alerts || []);
  if (snapshot.influx_error) setStatus("down", "InfluxDB unreachable");
  else if (snapshot.stale_s === null) setStatus("waiting", "waiting for data");
  else if (snapshot.stale_s > staleAfterS) setStatus("stale", `no data for ${Math.round(snapshot.stale_s)} s`);
  else setStatus("live", "live");
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("snapshot", (event) => {
    connected = true;
    lastMessageAt = Date.now();
    render(JSON.parse(event.data));
  });
  source.onerror = () => { connected = false; };
}

// The server pushes every second; silence means the board server itself is gone.
setInterval(() => {
  const silent = (Date.now() - lastMessageAt) / 1000;
  if (lastMessageAt && silent > Math.max(staleAfterS, 5)) setStatus("down", `board disconnected ${Math.round(silent)} s ago`);
  else if (!connected && lastMessageAt) setStatus("down", "reconnecting…");
}, 1000);

connect();
