// Service detail: instances (node, address:port, checks with output, tags, meta), the
// proxies that front it and their upstreams, and the intentions that apply to it.

import { h, fill, link, defs, tags } from "../dom.js";
import { watchAll } from "../api.js";
import { badge, summarize, countBadges } from "../model.js";
import { intentionTable } from "./intentions.js";

/** The tab bar shared by the service pages (topology included). */
export function serviceTabs(ctx, name, current) {
  const base = `/ui/${encodeURIComponent(ctx.dc)}/services/${encodeURIComponent(name)}`;
  return h("nav", { class: "tabs", "aria-label": "Service" }, h("ul", {},
    [["instances", "Instances"], ["intentions", "Intentions"], ["topology", "Topology"]].map(([key, label]) =>
      h("li", {}, link(`${base}/${key}`, label, { "aria-current": key === current ? "page" : null })))));
}

export function serviceHeader(ctx, name, tab) {
  return [
    h("p", { class: "crumbs" }, link(`/ui/${encodeURIComponent(ctx.dc)}/services`, "Services"), " / "),
    h("div", { class: "page-head" }, h("h1", {}, name)),
    serviceTabs(ctx, name, tab),
  ];
}

function checkList(checks) {
  if (!checks.length) return h("p", { class: "muted" }, "No health checks.");
  return h("ul", { class: "checks" }, checks.map((c) => h("li", { class: "check", "data-check": c.CheckID, "data-status": c.Status },
    h("div", { class: "check-head" }, badge(c.Status), " ", h("strong", {}, c.Name || c.CheckID),
      h("span", { class: "muted" }, ` ${c.Type || (c.ServiceID ? "service" : "node")} check`)),
    c.Output ? h("pre", { class: "output" }, c.Output) : null)));
}

function upstreamList(upstreams, dc) {
  if (!upstreams?.length) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "plain" }, upstreams.map((u) => h("li", {},
    link(`/ui/${encodeURIComponent(dc)}/services/${encodeURIComponent(u.DestinationName)}/instances`, u.DestinationName),
    u.LocalBindPort ? h("span", { class: "muted" }, ` on :${u.LocalBindPort}`) : null)));
}

function instanceCard(entry, ctx) {
  const svc = entry.Service;
  const node = entry.Node;
  const address = `${svc.Address || node.Address}:${svc.Port}`;
  const { status } = summarize(entry.Checks || []);
  const meta = Object.entries(svc.Meta || {});
  return h("article", { class: "card instance", "data-instance": svc.ID, "data-status": status },
    h("h2", {}, svc.ID, " ", badge(status)),
    defs([
      ["Node", link(`/ui/${encodeURIComponent(ctx.dc)}/nodes/${encodeURIComponent(node.Node)}`, node.Node)],
      ["Address", address],
      ["Kind", svc.Kind || null],
      ["Proxy for", svc.Proxy?.DestinationServiceName || null],
      ["Upstreams", svc.Kind === "connect-proxy" ? upstreamList(svc.Proxy?.Upstreams, ctx.dc) : null],
      ["Tags", tags(svc.Tags)],
      ["Meta", meta.length ? h("ul", { class: "plain" }, meta.map(([k, v]) => h("li", {}, h("code", {}, k), " = ", v))) : null],
    ]),
    h("h3", {}, "Health checks"),
    checkList(entry.Checks || []));
}

export function render(main, { name, tab }, ctx) {
  const q = encodeURIComponent(name);
  const body = h("div", { class: "detail" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, serviceHeader(ctx, name, tab), body);
  if (tab === "intentions") {
    watchAll({ intentions: "/v1/connect/intentions" }, ({ intentions }) => {
      const applies = (intentions || []).filter((i) =>
        i.SourceName === name || i.DestinationName === name || i.SourceName === "*" || i.DestinationName === "*");
      fill(body, h("p", {}, link(`/ui/${encodeURIComponent(ctx.dc)}/intentions/create?destination=${q}`, "Create intention", { class: "button write" })),
        intentionTable(applies, ctx));
      main.dataset.loaded = "service-intentions";
    }, ctx);
    return;
  }
  watchAll({
    health: { path: `/v1/health/service/${q}`, missingOk: true },
    proxies: { path: `/v1/health/connect/${q}`, missingOk: true },
  }, ({ health, proxies }) => {
    const entries = health || [];
    const all = summarize(entries.flatMap((e) => e.Checks || []));
    const fronting = proxies || [];
    fill(body,
      h("p", { class: "summary" }, `${entries.length} instance${entries.length === 1 ? "" : "s"} `, countBadges(all.counts)),
      entries.length ? h("div", { class: "cards" }, entries.map((e) => instanceCard(e, ctx)))
        : h("p", { class: "muted" }, "This service has no instances."),
      h("section", { "aria-labelledby": "proxies-h" },
        h("h2", { id: "proxies-h" }, "Proxies and upstreams"),
        fronting.length
          ? h("table", { class: "list" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Proxy"), h("th", { scope: "col" }, "Node"),
              h("th", { scope: "col" }, "Health"), h("th", { scope: "col" }, "Upstreams"))),
            h("tbody", {}, fronting.map((p) => h("tr", { "data-proxy": p.Service.ID },
              h("th", { scope: "row" }, p.Service.ID),
              h("td", {}, p.Node.Node),
              h("td", {}, countBadges(summarize(p.Checks || []).counts)),
              h("td", {}, upstreamList(p.Service.Proxy?.Upstreams, ctx.dc))))))
          : h("p", { class: "muted" }, "No Connect proxy fronts this service.")));
    main.dataset.loaded = "service";
  }, ctx);
}
