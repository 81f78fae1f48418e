// pilotfish web console: polls /ui/api every second and redraws. No framework, no build step.
// Data is only ever put into the page as text (textContent / SVG text nodes), never as HTML.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120; // points per chart (two minutes at one poll per second)
const SVG = "http://www.w3.org/2000/svg";

const state = {
  token: null,
  service: null, // the host whose page is open
  last: null, // previous counter reading: {at, pushes, nacks, latencySum, latencyCount, allow, deny}
  history: { latency: [], pushes: [], nacks: [], allow: [], deny: [] },
};

// ---- token: from the URL fragment (#token=...), kept for this tab only ----------------------

function loadToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("pilotfish-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  state.token = sessionStorage.getItem("pilotfish-token");
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token-input").value.trim();
  sessionStorage.setItem("pilotfish-token", state.token);
  document.getElementById("token-input").value = "";
  poll();
});

class Unauthorized extends Error {}

async function api(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const response = await fetch("/ui/api/" + path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized("a valid token is required");
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || response.statusText);
  }
  return response.json();
}

// ---- DOM helpers ----------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function time(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

// ---- the mesh graph: three columns (gateways, services, workloads), edges as curves ----------

const COLUMNS = { gateway: 0, service: 1, workload: 2 };

function drawGraph(graph, proxies) {
  const box = document.getElementById("graph");
  const width = Math.max(box.clientWidth || 900, 600);
  const columnX = [20, width * 0.36, width * 0.72];
  const nodeWidth = Math.min(220, width * 0.26);
  const rows = [0, 0, 0];
  const position = {};
  const proxyState = {};
  for (const proxy of proxies) {
    const ip = proxy.id.split("~")[1];
    proxyState[ip + "|" + proxy.namespace] = proxy.state;
  }
  for (const node of graph.nodes) {
    const column = COLUMNS[node.kind];
    position[node.id] = { x: columnX[column], y: 20 + rows[column] * 34, node };
    rows[column] += 1;
  }
  const height = 40 + Math.max(...rows) * 34;
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  box.style.height = height + "px";
  const edges = svg("g");
  const labels = svg("g");
  const list = [];
  for (const edge of graph.edges) {
    const from = position[edge.source];
    const to = position[edge.target];
    if (!from || !to) continue;
    const secure = !edge.mtls.startsWith("plaintext");
    const x1 = from.x + nodeWidth, y1 = from.y + 12, x2 = to.x, y2 = to.y + 12;
    const bend = Math.max(40, (x2 - x1) / 2);
    const path = from.x < to.x
      ? `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`
      : `M${from.x},${y1} C${from.x - 60},${y1} ${to.x - 60},${y2} ${to.x},${y2}`;
    const line = svg("path", { d: path, class: `edge ${edge.kind} ${secure ? "mtls" : "plain"}` });
    line.append(svg("title", {}, `${edge.source} → ${edge.target}\n${edge.label}\n${edge.mtls}`));
    edges.append(line);
    if (edge.label) {
      labels.append(svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 3, class: "edgelabel", "text-anchor": "middle" }, edge.label));
    }
    list.push(el("li", { "data-kind": edge.kind },
      `${edge.source} → ${edge.target}`, edge.label ? ` [${edge.label}]` : "", ` — ${edge.mtls}`));
  }
  const nodes = svg("g");
  for (const { x, y, node } of Object.values(position)) {
    const group = svg("g", { class: `node ${node.kind}`, "data-id": node.id });
    const colours = { gateway: "#6b4fbb", service: "#1565c0", workload: "#00897b" };
    let fill = colours[node.kind];
    const proxy = node.kind === "workload" ? proxyState[node.address + "|" + node.namespace] : undefined;
    if (proxy === "NACKED") fill = "#b3261e";
    if (proxy === "STALE") fill = "#b26a00";
    group.append(svg("rect", { x, y, width: nodeWidth, height: 24, fill }));
    const text = `${node.label}.${node.namespace}` + (proxy ? ` · ${proxy}` : "");
    group.append(svg("text", { x: x + 8, y: y + 16 }, text));
    group.append(svg("title", {}, node.id));
    if (node.kind === "service") group.addEventListener("click", () => openService(node.host));
    nodes.append(group);
  }
  box.replaceChildren(edges, nodes, labels);
  document.getElementById("edges").replaceChildren(...list);
}

// ---- proxies, services, the service page ------------------------------------------------------

function drawProxies(proxies) {
  const rows = proxies.map((p) =>
    el("tr", { "data-proxy": p.id },
      el("td", {}, p.id),
      el("td", {}, p.namespace),
      el("td", { class: `state state-${p.state}` }, p.state),
      el("td", { class: "muted" }, Object.entries(p.types).map(([t, s]) => `${t} ${s}`).join(" · ")),
      el("td", { class: "bad" }, Object.entries(p.nacks).map(([t, m]) => `${t}: ${m}`).join("; "))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no proxy connected (or none you may see)")));
  replaceRows(document.querySelector("#proxies tbody"), rows);
}

function drawServices(services) {
  const items = services.map((s) =>
    el("li", { "data-host": s.host, class: s.host === state.service ? "selected" : "", onclick: () => openService(s.host) },
      `${s.label} (${s.namespace})`));
  document.getElementById("services").replaceChildren(...items);
}

function openService(host) {
  state.service = host;
  document.getElementById("service-host").textContent = host;
  refreshService();
}

function resourceBlock(resource) {
  return el("div", { class: "resource", "data-ref": `${resource.kind}/${resource.namespace}/${resource.name}` },
    el("strong", {}, `${resource.kind} ${resource.namespace}/${resource.name}`), " ",
    el("span", { class: "muted" }, resource.origin),
    el("pre", {}, JSON.stringify(resource.spec, null, 2)));
}

async function refreshService() {
  if (!state.service) return;
  const target = document.getElementById("service");
  let page;
  try {
    page = await api("service?host=" + encodeURIComponent(state.service));
  } catch (error) {
    target.replaceChildren(el("p", { class: "bad" }, error.message));
    return;
  }
  const endpoints = page.endpoints.map((e) =>
    el("tr", {}, el("td", {}, `${e.address}:${e.port}`), el("td", {}, e.workload), el("td", {}, e.health),
      el("td", {}, Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(", ")), el("td", {}, e.mtls)));
  const subsets = page.subsets.map((s) =>
    el("li", {}, `${s.name}: ${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(", ")} (${s.endpoints} endpoints)`));
  const section = (title, items) => [el("h3", {}, title), ...(items.length ? items : [el("p", { class: "muted" }, "none")])];
  target.replaceChildren(
    el("p", {}, `${page.location}, ${page.resolution}; ports ${page.ports.map((p) => `${p.number}/${p.protocol}`).join(", ")}; ${page.mtls}`),
    el("h3", {}, "Endpoints"),
    el("table", { id: "service-endpoints" }, el("thead", {}, el("tr", {}, ...["address", "workload", "health", "labels", "mTLS"].map((h) => el("th", {}, h)))), el("tbody", {}, ...endpoints)),
    ...section("Subsets", subsets.length ? [el("ul", {}, ...subsets)] : []),
    ...section("DestinationRule", page.destinationRules.map(resourceBlock)),
    ...section("VirtualServices", page.virtualServices.map(resourceBlock)),
    ...section("Policies that apply", page.policies.map(resourceBlock)));
}

// ---- live charts, denials, certificates --------------------------------------------------------

function total(series, name, filter) {
  return series.filter((s) => s.name === name && (!filter || filter(s.labels))).reduce((sum, s) => sum + s.value, 0);
}

function push(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

function recordCounters(series, now) {
  const reading = {
    at: now,
    pushes: total(series, "pilotfish_xds_pushes_total"),
    nacks: total(series, "pilotfish_xds_rejects_total"),
    latencySum: total(series, "pilotfish_proxy_convergence_time_seconds_sum"),
    latencyCount: total(series, "pilotfish_proxy_convergence_time_seconds_count"),
    allow: total(series, "pilotfish_authz_checks_total", (l) => l.decision === "allow"),
    deny: total(series, "pilotfish_authz_checks_total", (l) => l.decision === "deny"),
  };
  const last = state.last;
  state.last = reading;
  if (!last) return;
  const dt = Math.max(reading.at - last.at, 0.001);
  const rate = (key) => Math.max(reading[key] - last[key], 0) / dt; // a restart resets counters
  const acks = reading.latencyCount - last.latencyCount;
  push(state.history.latency, acks > 0 ? (reading.latencySum - last.latencySum) / acks : null);
  push(state.history.pushes, rate("pushes"));
  push(state.history.nacks, rate("nacks"));
  push(state.history.allow, rate("allow"));
  push(state.history.deny, rate("deny"));
}

function drawChart(id, lines) {
  const box = document.getElementById(id);
  const width = 300, height = 110;
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  box.setAttribute("preserveAspectRatio", "none");
  const values = lines.flatMap((l) => l.values.filter((v) => v !== null));
  const top = Math.max(...values, 0);
  const max = top > 0 ? top : 1; // all zero: a flat line at the bottom
  const label = top === 0 ? "0" : top < 1 ? top.toPrecision(2) : top.toFixed(1);
  const children = [svg("text", { x: 4, y: 11 }, label), svg("text", { x: 4, y: height - 3 }, "0")];
  for (const line of lines) {
    const points = [];
    line.values.forEach((v, i) => {
      if (v === null) return;
      const x = width - (line.values.length - 1 - i) * (width / (HISTORY - 1));
      points.push(`${x.toFixed(1)},${(height - 4 - (v / max) * (height - 18)).toFixed(1)}`);
    });
    children.push(svg("polyline", { points: points.join(" "), stroke: line.colour }));
  }
  const latest = lines.map((l) => l.values.filter((v) => v !== null).slice(-1)[0]).map((v) => (v === undefined ? "–" : v.toPrecision(3)));
  box.setAttribute("data-latest", latest.join(" "));
  box.replaceChildren(...children);
}

function drawCharts() {
  const h = state.history;
  drawChart("chart-latency", [{ values: h.latency, colour: "#1565c0" }]);
  drawChart("chart-pushes", [{ values: h.pushes, colour: "#1565c0" }]);
  drawChart("chart-nacks", [{ values: h.nacks, colour: "#b3261e" }]);
  drawChart("chart-authz", [{ values: h.allow, colour: "#1f7a3a" }, { values: h.deny, colour: "#b3261e" }]);
}

function drawDenials(denials) {
  const rows = denials.map((d) =>
    el("tr", { "data-policy": d.policy },
      el("td", {}, time(d.at)),
      el("td", { class: "bad" }, d.status),
      el("td", {}, `${d.method} ${d.host}${d.path}`),
      el("td", {}, `${d.workload || "-"}.${d.namespace}`),
      el("td", {}, d.policy || "(no rule matched)"),
      el("td", {}, d.rule ?? "-"),
      el("td", {}, d.reason)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no denials yet")));
  replaceRows(document.querySelector("#denials tbody"), rows);
}

function drawCerts(certificates) {
  const tbody = document.querySelector("#certs tbody");
  if (!certificates) {
    replaceRows(tbody, [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "not permitted"))]);
    return;
  }
  const now = Date.now();
  const rows = certificates.items.map((c) => {
    const start = Date.parse(c.notBefore), end = Date.parse(c.notAfter);
    const left = Math.max(0, Math.min(1, (end - now) / Math.max(end - start, 1)));
    return el("tr", {},
      el("td", {}, c.kind), el("td", {}, c.name), el("td", { class: "muted" }, String(c.serial)),
      el("td", {}, new Date(end).toLocaleString()),
      el("td", {}, el("span", { class: "bar" + (left < 0.25 ? " low" : ""), style: `width:${Math.round(left * 80)}px` }), ` ${Math.round(left * 100)}%`));
  });
  replaceRows(tbody, rows);
}

// ---- the loop ---------------------------------------------------------------------------------

let busy = false;

async function poll() {
  if (busy) return; // the last poll is still waiting: skip a beat rather than pile up
  busy = true;
  const status = document.getElementById("status");
  try {
    const [who, mesh, stats] = await Promise.all([api("whoami"), api("mesh"), api("stats")]);
    document.getElementById("token-form").hidden = true;
    document.getElementById("who").textContent = who.tokens
      ? `signed in as ${who.subject}${who.canWrite ? "" : " (read-only)"}`
      : `${who.subject} (no --admin-tokens)`;
    drawGraph(mesh.graph, mesh.proxies);
    drawProxies(mesh.proxies);
    drawServices(mesh.services);
    recordCounters(stats.series, Date.now() / 1000);
    drawCharts();
    drawDenials(stats.denials);
    drawCerts(stats.certificates);
    await refreshService();
    status.textContent = "live · updated " + new Date().toLocaleTimeString();
    status.className = "muted";
  } catch (error) {
    if (error instanceof Unauthorized) {
      document.getElementById("token-form").hidden = false;
      document.getElementById("token-error").textContent = state.token ? "that token is not valid" : "";
    }
    status.textContent = "error: " + error.message;
    status.className = "bad";
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", () => {
  loadToken();
  poll();
});
loadToken();
poll();
setInterval(poll, POLL_MS);
