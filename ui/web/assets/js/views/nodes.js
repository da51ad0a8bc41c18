// Nodes: address, node health (serfHealth among the checks), the services on each node, the
// gossip member status (`/v1/agent/members`), network coordinates (`/v1/coordinate/nodes`)
// and the Raft leader (`/v1/status/leader`). The catalog parts are live by blocking query;
// members, coordinates and the leader have no index, so they are re-read on every catalog
// change and every 10 s.

import { h, fill, link, defs, tags } from "../dom.js";
import { get } from "../api.js";
import { watchCatalog, badge, summarize, countBadges } from "../model.js";

const MEMBER_STATUS = { 0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed" };

async function extras(signal) {
  const quiet = (p) => p.catch(() => null);
  const [members, coords, leader] = await Promise.all([
    quiet(get("/v1/agent/members", { signal })),
    quiet(get("/v1/coordinate/nodes", { signal })),
    quiet(get("/v1/status/leader", { signal })),
  ]);
  const leaderHost = typeof leader === "string" && leader ? leader.replace(/:\d+$/, "").replace(/^\[|\]$/g, "") : null;
  return {
    members: new Map((members || []).map((m) => [m.Name, m])),
    coords: new Map((coords || []).map((c) => [c.Node, c.Coord])),
    leaderHost,
  };
}

function coordText(coord) {
  if (!coord?.Vec?.length) return h("span", { class: "muted" }, "none yet");
  return h("code", {}, coord.Vec.slice(0, 3).map((v) => v.toFixed(4)).join(", ") + (coord.Vec.length > 3 ? ", …" : ""));
}

function follow(ctx, onData) {
  let model = null;
  let more = null;
  const draw = () => model && more && onData(model, more);
  const refresh = async () => {
    more = await extras(ctx.signal);
    if (!ctx.signal.aborted) draw();
  };
  const timer = setInterval(refresh, 10000);
  ctx.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  watchCatalog(ctx, (m) => { model = m; refresh(); });
}

export function render(main, _params, ctx) {
  const body = h("tbody");
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Nodes")),
    h("div", { class: "table-wrap" }, h("table", { class: "list nodes" },
      h("thead", {}, h("tr", {},
        ["Node", "Address", "Health", "Services", "serfHealth", "Membership", "Coordinates"].map((c) => h("th", { scope: "col" }, c)))),
      body)));
  follow(ctx, (model, more) => {
    const rows = [...model.nodes].sort((a, b) => a.Node.localeCompare(b.Node)).map((n) => {
      const nodeChecks = model.byNode.get(n.Node) || [];
      const serf = nodeChecks.find((c) => c.CheckID === "serfHealth");
      const svcNames = [...new Set(model.instances.filter((i) => i.Node === n.Node).map((i) => i.Service))].sort();
      const member = more.members.get(n.Node);
      const isLeader = more.leaderHost && n.Address === more.leaderHost;
      return h("tr", { "data-node": n.Node },
        h("th", { scope: "row" }, link(`/ui/${encodeURIComponent(ctx.dc)}/nodes/${encodeURIComponent(n.Node)}`, n.Node),
          isLeader ? h("span", { class: "leader", title: "Raft leader" }, " ★ leader") : null),
        h("td", {}, n.Address),
        h("td", {}, countBadges(summarize(nodeChecks).counts)),
        h("td", {}, tags(svcNames)),
        h("td", {}, serf ? badge(serf.Status) : h("span", { class: "muted" }, "—")),
        h("td", {}, member ? MEMBER_STATUS[member.Status] || String(member.Status) : h("span", { class: "muted" }, "not a member")),
        h("td", {}, coordText(more.coords.get(n.Node))));
    });
    body.replaceChildren(...rows);
    main.dataset.loaded = "nodes";
  });
}

export function renderNode(main, { node }, ctx) {
  const body = h("div", { class: "detail" }, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("p", { class: "crumbs" }, link(`/ui/${encodeURIComponent(ctx.dc)}/nodes`, "Nodes"), " / "),
    h("div", { class: "page-head" }, h("h1", {}, node)), body);
  follow(ctx, (model, more) => {
    const n = model.nodes.find((x) => x.Node === node);
    if (!n) {
      fill(body, h("p", {}, "This node is not in the catalog."));
      return;
    }
    const checks = model.checks.filter((c) => c.Node === node);
    const member = more.members.get(node);
    const instances = model.instances.filter((i) => i.Node === node).sort((a, b) => a.ID.localeCompare(b.ID));
    fill(body,
      defs([
        ["Address", n.Address],
        ["Health", countBadges(summarize(checks).counts)],
        ["Membership", member ? MEMBER_STATUS[member.Status] : "not a member"],
        ["Leader", more.leaderHost && n.Address === more.leaderHost ? "yes" : "no"],
        ["Coordinates", coordText(more.coords.get(node))],
        ["Meta", Object.entries(n.Meta || {}).map(([k, v]) => `${k}=${v}`).join(", ") || null],
      ]),
      h("h2", {}, "Services"),
      instances.length ? h("ul", { class: "plain" }, instances.map((i) => h("li", {},
        link(`/ui/${encodeURIComponent(ctx.dc)}/services/${encodeURIComponent(i.Service)}/instances`, i.ID),
        h("span", { class: "muted" }, ` ${i.Address || n.Address}:${i.Port}`)))) : h("p", { class: "muted" }, "None."),
      h("h2", {}, "Health checks"),
      h("ul", { class: "checks" }, checks.map((c) => h("li", { class: "check", "data-check": c.CheckID },
        badge(c.Status), " ", h("strong", {}, c.Name || c.CheckID), c.Output ? h("pre", { class: "output" }, c.Output) : null))));
    main.dataset.loaded = "node";
  });
}
