// Services: every service with its instance count, check summary, kind and tags; search by
// name or tag, filter by tag and by health. Live through the catalog model's watches.

import { h, fill, field } from "../dom.js";
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
  const body = h("tbody", { role: "rowgroup" });
  // Explicit roles: the stylesheet lays rows out as grids (see app.css), which would
  // otherwise drop the table semantics in some browsers.
  const col = (text, cls) => h("th", { scope: "col", role: "columnheader", class: cls }, text);
  const table = h("table", { class: "list services", role: "table", "aria-label": "Services", "aria-describedby": "services-count" },
    h("thead", { role: "rowgroup" }, h("tr", { role: "row" },
      col("Service"), col("Kind"), col("Instances", "num"), col("Health checks"), col("Tags"))),
    body);
  count.id = "services-count";
  fill(main,
    h("div", { class: "page-head" }, h("h1", {}, "Services")),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("Search", search), field("Health", health), field("Tag", tag)),
    count,
    h("div", { class: "table-wrap" }, table));

  const proto = h("tr", { role: "row" }, h("th", { scope: "row", role: "rowheader" }, h("a", { "data-link": "" })),
    h("td", { role: "cell" }), h("td", { role: "cell", class: "num" }), h("td", { role: "cell" }), h("td", { role: "cell" }));
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
    // One prototype row cloned per service: a thousand rows render in a few milliseconds
    // where building each element afresh took tens.
    const rows = document.createDocumentFragment();
    for (const svc of shown) {
      const tr = proto.cloneNode(true);
      tr.dataset.service = svc.name;
      tr.dataset.status = svc.status;
      const [th, kind, count, health, tagCell] = tr.children;
      const a = th.firstChild;
      a.href = `/ui/${dc}/services/${encodeURIComponent(svc.name)}/instances`;
      a.textContent = svc.name;
      kind.append(kindLabel(svc.kind));
      count.textContent = String(svc.instances.length);
      health.append(countBadges(svc.counts));
      // Tags as one line of text: a thousand rows of chips cost more to build than the rest
      // of the row; the detail page shows them as chips.
      tagCell.textContent = [...svc.tags].sort().join(", ");
      rows.append(tr);
    }
    body.replaceChildren(rows);
    count.textContent = shown.length === all.length
      ? `${all.length} services`
      : `${shown.length} of ${all.length} services`;
    if (!rendered) {
      rendered = true;
      performance.mark("services-dom");
      // The bench reads this mark: time from navigation start to the list on screen, taken
      // after the next frame so layout and paint of the rows are counted too.
      requestAnimationFrame(() => setTimeout(() => {
        performance.mark("services-rendered");
        main.dataset.loaded = "services";
      }, 0));
    }
  };
  for (const input of [search, health, tag]) {
    input.addEventListener("input", draw);
    input.addEventListener("change", draw);
  }
  watchCatalog(ctx, (m) => { model = m; draw(); });
}
