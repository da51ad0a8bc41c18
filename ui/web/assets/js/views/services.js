// Services: every service with its instance count, check summary, kind and tags; search by
// name or tag, filter by tag and by health. Live through the catalog model's watches.

import { h, fill, field, tags } from "../dom.js";
import { watchCatalog, countBadges, STATUSES } from "../model.js";

function kindLabel(kind) {
  if (!kind) return h("span", { class: "muted" }, "service");
  return h("span", { class: `kind ${kind}` }, kind);
}

export function render(main, _params, ctx) {
  const dc = encodeURIComponent(ctx.dc);
  const search = h("input", { type: "search", name: "search", value: ctx.query.get("search") || "", placeholder: "Name or tag" });
  const health = h("select", { name: "health" },
    h("option", { value: "" }, "Any"),
    STATUSES.map((s) => h("option", { value: s, selected: ctx.query.get("health") === s }, s)));
  const tag = h("select", { name: "tag" }, h("option", { value: "" }, "Any"));
  const count = h("p", { class: "muted count", "aria-live": "polite" });
  const body = h("tbody");
  const table = h("table", { class: "list services", "aria-describedby": "services-count" },
    h("caption", { class: "visually-hidden" }, "Services"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Service"),
      h("th", { scope: "col" }, "Kind"),
      h("th", { scope: "col", class: "num" }, "Instances"),
      h("th", { scope: "col" }, "Health checks"),
      h("th", { scope: "col" }, "Tags"))),
    body);
  count.id = "services-count";
  fill(main,
    h("div", { class: "page-head" }, h("h1", {}, "Services")),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Search", search), field("Health", health), field("Tag", tag)),
    count,
    h("div", { class: "table-wrap" }, table));

  let model = null;
  let rendered = false;
  const draw = () => {
    if (!model) return;
    const q = search.value.trim().toLowerCase();
    const want = health.value;
    const wantTag = tag.value;
    ctx.setQuery({ search: search.value.trim(), health: want, tag: wantTag });
    const all = [...model.services.values()].sort((a, b) => a.name.localeCompare(b.name));
    // Tag options follow the catalog; the chosen one stays chosen.
    const allTags = [...new Set(all.flatMap((s) => [...s.tags]))].sort();
    const chosen = wantTag || ctx.query.get("tag") || "";
    if (tag.options.length !== allTags.length + 1) {
      fill(tag, h("option", { value: "" }, "Any"), allTags.map((t) => h("option", { value: t, selected: t === chosen }, t)));
    }
    const shown = all.filter((s) =>
      (!q || s.name.toLowerCase().includes(q) || [...s.tags].some((t) => t.toLowerCase().includes(q))) &&
      (!want || s.status === want) &&
      (!tag.value || s.tags.has(tag.value)));
    const rows = document.createDocumentFragment();
    for (const s of shown) {
      rows.append(h("tr", { "data-service": s.name, "data-status": s.status },
        h("th", { scope: "row" }, h("a", { href: `/ui/${dc}/services/${encodeURIComponent(s.name)}/instances`, "data-link": "" }, s.name)),
        h("td", {}, kindLabel(s.kind)),
        h("td", { class: "num" }, String(s.instances.length)),
        h("td", {}, countBadges(s.counts)),
        h("td", {}, tags([...s.tags].sort()))));
    }
    body.replaceChildren(rows);
    count.textContent = shown.length === all.length
      ? `${all.length} services`
      : `${shown.length} of ${all.length} services`;
    if (!rendered) {
      rendered = true;
      main.dataset.loaded = "services";
      // The bench reads this mark: time from navigation start to a rendered list.
      performance.mark("services-rendered");
    }
  };
  for (const input of [search, health, tag]) {
    input.addEventListener("input", draw);
    input.addEventListener("change", draw);
  }
  watchCatalog(ctx, (m) => { model = m; draw(); });
}
