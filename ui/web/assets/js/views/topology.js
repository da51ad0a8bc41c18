// Topology: a service's downstreams and upstreams as an SVG diagram. Edges come from the
// proxies' `Proxy.Upstreams` in the catalog (A's sidecar lists B: edge A -> B) and from
// intentions naming the service (dashed when no upstream is configured). Each edge is
// coloured by `/v1/connect/intentions/check` and labelled allow/deny, so colour is never the
// only cue; a table below carries the same facts for screen readers. Request rate, error
// rate and p99 are read from `/v1/agent/metrics` when sidecars report them there.

import { h, s, fill, link } from "../dom.js";
import { get, watch } from "../api.js";
import { watchCatalog } from "../model.js";
import { serviceHeader } from "./service.js";

/** Upstream edges `[from, to, configured]` around `name`. */
function edgesOf(model, intentions, name) {
  const up = new Map();
  const down = new Map();
  for (const inst of model.instances) {
    if (inst.Kind !== "connect-proxy") continue;
    const owner = inst.Proxy?.DestinationServiceName || inst.Service;
    for (const u of inst.Proxy?.Upstreams || []) {
      const target = u.DestinationName;
      if (!target) continue;
      if (owner === name) up.set(target, true);
      if (target === name) down.set(owner, true);
    }
  }
  for (const i of intentions || []) {
    if (i.DestinationName === name && i.SourceName !== "*" && i.SourceName !== name && !down.has(i.SourceName)) {
      down.set(i.SourceName, false);
    }
  }
  return {
    downstreams: [...down.entries()].sort(([a], [b]) => a.localeCompare(b)),
    upstreams: [...up.entries()].sort(([a], [b]) => a.localeCompare(b)),
  };
}

/** Sidecar metrics for the edge `from -> to`, when a metric's labels name both ends. The
 * agent reports an edge from both sidecars when both run on it (the source's outbound and the
 * destination's inbound counters): the outbound side counts, the inbound side only when it
 * is all there is. */
function edgeMetrics(metrics, from, to) {
  if (!metrics) return null;
  const names = (labels) => {
    const l = labels || {};
    const src = l.source || l.downstream || l.service || l.local_service || l.source_service;
    const dst = l.destination || l.upstream || l.destination_service || l.upstream_service;
    return src === from && dst === to;
  };
  const bySide = { outbound: {}, inbound: {} };
  const side = (labels) => bySide[labels?.direction === "inbound" ? "inbound" : "outbound"];
  for (const c of metrics.Counters || []) {
    if (!names(c.Labels)) continue;
    const found = side(c.Labels);
    if (/error|5xx|fail/i.test(c.Name) || c.Labels?.class === "5xx") found.errors = (found.errors || 0) + (c.Rate ?? 0);
    if (/request|rq/i.test(c.Name)) found.rate = (found.rate || 0) + (c.Rate ?? 0);
  }
  for (const g of [...(metrics.Gauges || []), ...(metrics.Samples || [])]) {
    if (!names(g.Labels)) continue;
    if (/p99|quantile/i.test(g.Name) || g.Labels?.quantile === "0.99") side(g.Labels).p99 = g.Value ?? g.Max;
  }
  for (const found of [bySide.outbound, bySide.inbound]) {
    if (Object.keys(found).length) return found;
  }
  return null;
}

function metricText(m) {
  if (!m) return "no metrics";
  const parts = [];
  if (m.rate != null) parts.push(`${m.rate.toFixed(1)} req/s`);
  if (m.errors != null) parts.push(`${m.errors.toFixed(1)} err/s`);
  if (m.p99 != null) parts.push(`p99 ${Number(m.p99).toFixed(0)} ms`);
  return parts.join(" · ");
}

const W = 960;
const BOX_W = 220;
const BOX_H = 44;
const GAP = 70;
const COLS = [20, (W - BOX_W) / 2, W - BOX_W - 20];

function box(x, y, label, href, current) {
  const g = s("g", { class: `box${current ? " current" : ""}` },
    s("rect", { x, y, width: BOX_W, height: BOX_H, rx: 6 }),
    s("text", { x: x + BOX_W / 2, y: y + BOX_H / 2 + 5, "text-anchor": "middle" }, label.length > 26 ? `${label.slice(0, 25)}…` : label));
  return href ? s("a", { href, "data-link": "" }, s("title", {}, label), g) : g;
}

function diagram(ctx, name, edges) {
  const { downstreams, upstreams } = edges;
  const rows = Math.max(1, downstreams.length, upstreams.length);
  const height = rows * GAP + 40;
  const yOf = (i, n) => 20 + (height - 40 - n * GAP) / 2 + i * GAP + (GAP - BOX_H) / 2;
  const cy = height / 2 - BOX_H / 2;
  const svc = (n) => `/ui/${encodeURIComponent(ctx.dc)}/services/${encodeURIComponent(n)}/topology`;
  const parts = [];
  const edge = (x1, y1, x2, y2, e) => {
    const mx = (x1 + x2) / 2;
    const cls = `edge ${e.allowed == null ? "unknown" : e.allowed ? "allow" : "deny"}${e.configured ? "" : " intention-only"}`;
    parts.push(s("g", { class: cls, "data-edge": `${e.from}->${e.to}` },
      s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }),
      s("text", { x: mx, y: (y1 + y2) / 2 - 6, "text-anchor": "middle", class: "edge-label" },
        e.allowed == null ? "…" : e.allowed ? "allow" : "deny"),
      s("text", { x: mx, y: (y1 + y2) / 2 + 12, "text-anchor": "middle", class: "edge-metrics" }, metricText(e.metrics))));
  };
  downstreams.forEach((e, i) => edge(COLS[0] + BOX_W, yOf(i, downstreams.length) + BOX_H / 2, COLS[1], cy + BOX_H / 2, e));
  upstreams.forEach((e, i) => edge(COLS[1] + BOX_W, cy + BOX_H / 2, COLS[2], yOf(i, upstreams.length) + BOX_H / 2, e));
  downstreams.forEach((e, i) => parts.push(box(COLS[0], yOf(i, downstreams.length), e.from, svc(e.from))));
  upstreams.forEach((e, i) => parts.push(box(COLS[2], yOf(i, upstreams.length), e.to, svc(e.to))));
  parts.push(box(COLS[1], cy, name, null, true));
  return s("svg", { class: "topology", viewBox: `0 0 ${W} ${height}`, role: "img", "aria-labelledby": "topo-title" },
    s("title", { id: "topo-title" }, `${name}: ${downstreams.length} downstreams, ${upstreams.length} upstreams`),
    s("text", { x: COLS[0], y: 14, class: "col-head" }, "Downstreams"),
    s("text", { x: COLS[2], y: 14, class: "col-head" }, "Upstreams"),
    parts);
}

function edgeTable(all) {
  if (!all.length) return h("p", { class: "muted" }, "No upstreams or downstreams: no Connect proxy lists this service, and no intention names it.");
  return h("div", { class: "table-wrap" }, h("table", { class: "list edges" },
    h("caption", {}, "Connections"),
    h("thead", {}, h("tr", {}, ["From", "To", "Decision", "Source", "Metrics"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, all.map((e) => h("tr", { "data-edge": `${e.from}->${e.to}`, "data-allowed": String(e.allowed) },
      h("td", {}, e.from), h("td", {}, e.to),
      h("td", {}, h("span", { class: `badge ${e.allowed ? "passing" : "critical"}` }, e.allowed ? "✓ allow" : "✕ deny")),
      h("td", {}, e.configured ? "upstream config" : "intention only"),
      h("td", {}, metricText(e.metrics)))))));
}

export function render(main, { name }, ctx) {
  const body = h("div", { class: "detail" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, serviceHeader(ctx, name, "topology"), body,
    h("p", { class: "legend" }, h("span", { class: "key allow" }, "allow"), h("span", { class: "key deny" }, "deny"),
      h("span", { class: "key intention-only" }, "from an intention only"), " ",
      link(`/ui/${encodeURIComponent(ctx.dc)}/intentions`, "Manage intentions")));
  let model = null;
  let intentions = null;
  let seq = 0;
  const draw = async () => {
    if (!model || !intentions) return;
    const mine = ++seq;
    const { downstreams, upstreams } = edgesOf(model, intentions, name);
    const mk = ([from, to, configured]) => ({ from, to, configured });
    const down = downstreams.map(([n, c]) => mk([n, name, c]));
    const up = upstreams.map(([n, c]) => mk([name, n, c]));
    const all = [...down, ...up];
    const metrics = await get("/v1/agent/metrics", { signal: ctx.signal }).catch(() => null);
    await Promise.all(all.map(async (e) => {
      e.metrics = edgeMetrics(metrics, e.from, e.to);
      try {
        const r = await get(`/v1/connect/intentions/check?source=${encodeURIComponent(e.from)}&destination=${encodeURIComponent(e.to)}`, { signal: ctx.signal });
        e.allowed = Boolean(r?.Allowed);
      } catch {
        e.allowed = null;
      }
    }));
    if (mine !== seq || ctx.signal.aborted) return;
    fill(body, diagram(ctx, name, { downstreams: down, upstreams: up }), edgeTable(all));
    main.dataset.loaded = "topology";
  };
  watchCatalog(ctx, (m) => { model = m; draw(); });
  watch("/v1/connect/intentions", (list) => { intentions = list || []; draw(); }, { signal: ctx.signal, onError: ctx.onError });
  const timer = setInterval(draw, 10000);
  ctx.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}
