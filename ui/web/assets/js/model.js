// The catalog as the list views see it, built from public endpoints only: every instance
// (`/v1/catalog/node/:node` for each node in `/v1/catalog/nodes`) joined with every check
// (`/v1/health/state/any`). Nodes are few and services many, so this is a handful of
// requests where one per service would be a thousand. Blocking queries on the node list,
// the service list and the checks keep it live.

import { get, watch } from "./api.js";
import { h } from "./dom.js";

export const STATUSES = ["passing", "warning", "critical"];
const RANK = { passing: 0, warning: 1, critical: 2, maintenance: 2 };

/** The worse of two check statuses (an empty list is passing). */
export function worse(a, b) {
  return (RANK[b] ?? 0) > (RANK[a] ?? 0) ? b : a;
}

/** `{ passing, warning, critical }` counts and the worst status of a list of checks. */
export function summarize(checks) {
  const counts = { passing: 0, warning: 0, critical: 0 };
  let status = "passing";
  for (const c of checks) {
    const st = c.Status in counts ? c.Status : "critical";
    counts[st] += 1;
    status = worse(status, st);
  }
  return { counts, status };
}

const ICON = { passing: "✓", warning: "!", critical: "✕" };

/** A status badge: colour plus an icon and the word, so colour is never the only cue. */
export function badge(status, count) {
  const text = count == null ? status : `${count} ${status}`;
  return h("span", { class: `badge ${status}` }, h("span", { "aria-hidden": "true" }, ICON[status] || "?"), " ", text);
}

/** Badges for check counts, only the non-zero ones (or "no checks"). */
export function countBadges(counts) {
  const shown = STATUSES.filter((s) => counts[s] > 0).map((s) => badge(s, counts[s]));
  return shown.length ? h("span", { class: "badges" }, shown) : h("span", { class: "muted" }, "no checks");
}

/** Checks that apply to an instance: its own and its node's. */
export function instanceChecks(checks, node, serviceId) {
  return checks.filter((c) => c.Node === node && (c.ServiceID === serviceId || !c.ServiceID));
}

function build(state, instances) {
  const byNodeService = new Map();
  const byNode = new Map();
  for (const c of state.checks || []) {
    const key = c.ServiceID ? `${c.Node}\u0000${c.ServiceID}` : c.Node;
    const map = c.ServiceID ? byNodeService : byNode;
    if (!map.has(key)) map.set(key, []);
    map.get(key).push(c);
  }
  const services = new Map();
  for (const name of Object.keys(state.services || {})) {
    services.set(name, { name, kind: "", tags: new Set(state.services[name] || []), instances: [], checks: [] });
  }
  for (const inst of instances) {
    let svc = services.get(inst.Service);
    if (!svc) {
      svc = { name: inst.Service, kind: "", tags: new Set(), instances: [], checks: [] };
      services.set(inst.Service, svc);
    }
    svc.kind = svc.kind || inst.Kind || "";
    for (const t of inst.Tags || []) svc.tags.add(t);
    const checks = [...(byNode.get(inst.Node) || []), ...(byNodeService.get(`${inst.Node}\u0000${inst.ID}`) || [])];
    svc.instances.push({ inst, checks });
    for (const c of checks) svc.checks.push(c);
  }
  for (const svc of services.values()) Object.assign(svc, summarize(svc.checks));
  return { services, nodes: state.nodes || [], checks: state.checks || [], instances, byNode };
}

/**
 * Calls `onModel(model)` once everything has answered, then on every catalog or health change,
 * until `ctx.signal` aborts. The per-node reads start as soon as the node list is in, in
 * parallel with the checks, since on a first load they are the longest wait.
 */
export function watchCatalog(ctx, onModel) {
  const latest = {};
  let instances = null;
  let fetchSeq = 0;
  let drawn = false;
  let pending = false;
  let fetchedWith; // the service list in hand when the last per-node read started
  const draw = () => {
    if (!instances || !("checks" in latest) || !("services" in latest) || pending) return;
    // The first service list can answer after the per-node reads started, and name a service
    // registered in between: read the nodes again rather than show it without instances.
    if (fetchedWith !== latest.services) {
      const have = new Set(instances.map((i) => i.Service));
      if (Object.keys(latest.services).some((n) => !have.has(n))) { refetch(); return; }
    }
    const run = () => { pending = false; if (!ctx.signal.aborted) onModel(build(latest, instances)); };
    if (!drawn) { drawn = true; run(); return; }
    pending = true;
    setTimeout(run, 0);
  };
  const refetch = async () => {
    const mine = ++fetchSeq;
    fetchedWith = latest.services;
    const perNode = await Promise.all((latest.nodes || []).map((n) =>
      get(`/v1/catalog/node/${encodeURIComponent(n.Node)}`, { signal: ctx.signal }).catch(() => null)));
    if (mine !== fetchSeq || ctx.signal.aborted) return;
    const next = [];
    for (const r of perNode) {
      if (!r || !r.Node) continue;
      for (const svc of Object.values(r.Services || {})) {
        svc.Node = r.Node.Node;
        svc.NodeAddress = r.Node.Address;
        next.push(svc);
      }
    }
    instances = next;
    draw();
  };
  const opts = { signal: ctx.signal, onError: ctx.onError };
  watch("/v1/catalog/nodes", (nodes) => { latest.nodes = nodes || []; refetch(); }, opts);
  watch("/v1/catalog/services", (services) => {
    const first = !("services" in latest);
    latest.services = services || {};
    // The first answer comes with the first node list's fetch; later ones mean instances
    // changed.
    if (!first && "nodes" in latest) refetch();
    else draw();
  }, opts);
  watch("/v1/health/state/any", (checks) => { latest.checks = checks || []; draw(); }, opts);
}
