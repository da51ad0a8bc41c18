// Intentions: list, create, edit and delete (`/v1/connect/intentions`, `.../exact`), with
// source and destination picked from the catalog's services, allow/deny or L7 permissions,
// and a "can A talk to B?" check (`/v1/connect/intentions/check`).

import { h, fill, link, field, notice, announce } from "../dom.js";
import { watch, watchAll, get, put, del, request } from "../api.js";

function exactQuery(source, destination) {
  return `source=${encodeURIComponent(source)}&destination=${encodeURIComponent(destination)}`;
}

function decision(i) {
  if (i.Permissions?.length) return h("span", { class: "badge l7" }, `L7: ${i.Permissions.length} permission${i.Permissions.length === 1 ? "" : "s"}`);
  const allow = i.Action === "allow";
  return h("span", { class: `badge ${allow ? "passing" : "critical"}` }, h("span", { "aria-hidden": "true" }, allow ? "✓" : "✕"), ` ${i.Action}`);
}

/** The intentions table (also on a service's Intentions tab). */
export function intentionTable(list, ctx) {
  if (!list.length) return h("p", { class: "muted" }, "No intentions.");
  const sorted = [...list].sort((a, b) => (b.Precedence ?? 0) - (a.Precedence ?? 0)
    || a.SourceName.localeCompare(b.SourceName) || a.DestinationName.localeCompare(b.DestinationName));
  const base = `/ui/${encodeURIComponent(ctx.dc)}/intentions`;
  return h("div", { class: "table-wrap" }, h("table", { class: "list intentions" },
    h("thead", {}, h("tr", {}, ["Source", "Destination", "Decision", "Precedence", "Description"].map((c) => h("th", { scope: "col" }, c)),
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    h("tbody", {}, sorted.map((i) => {
      const row = h("tr", { "data-intention": `${i.SourceName}->${i.DestinationName}`, "data-action": i.Permissions?.length ? "l7" : i.Action },
        h("td", {}, i.SourceName), h("td", {}, i.DestinationName), h("td", {}, decision(i)),
        h("td", { class: "num" }, String(i.Precedence ?? "")), h("td", {}, i.Description || ""),
        h("td", { class: "actions" },
          link(`${base}/create?${exactQuery(i.SourceName, i.DestinationName)}`, "Edit", { class: "button secondary write" }), " ",
          h("button", { type: "button", class: "danger write", onclick: async (e) => {
            e.target.disabled = true;
            try {
              await del(`/v1/connect/intentions/exact?${exactQuery(i.SourceName, i.DestinationName)}`);
              announce(`Deleted ${i.SourceName} to ${i.DestinationName}`);
              row.remove();
            } catch (err) {
              e.target.disabled = false;
              row.after(h("tr", {}, h("td", { colspan: 6 }, notice("error", `Could not delete: ${err.message}`))));
            }
          } }, "Delete")));
      return row;
    }))));
}

/** `<datalist>` of the catalog's service names plus `*`, refreshed live. */
function servicePicker(ctx, id) {
  const list = h("datalist", { id });
  watch("/v1/catalog/services", (services) => {
    fill(list, h("option", { value: "*" }), Object.keys(services || {}).sort().map((n) => h("option", { value: n })));
  }, { signal: ctx.signal });
  return list;
}

function checkForm(ctx) {
  const source = h("input", { name: "check-source", list: "ixn-services", required: true, autocomplete: "off" });
  const destination = h("input", { name: "check-destination", list: "ixn-services", required: true, autocomplete: "off" });
  const result = h("div", { class: "check-result", "aria-live": "polite" });
  const form = h("form", { class: "card check-form" }, h("h2", {}, "Can A talk to B?"),
    h("div", { class: "row" }, field("Source", source), field("Destination", destination)),
    h("button", { type: "submit" }, "Check"), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await get(`/v1/connect/intentions/check?${exactQuery(source.value.trim(), destination.value.trim())}`);
      fill(result, h("p", { class: `notice ${r.Allowed ? "ok" : "error"}`, "data-allowed": String(r.Allowed) },
        `${source.value.trim()} → ${destination.value.trim()}: ${r.Allowed ? "allowed" : "denied"}`));
    } catch (err) {
      fill(result, notice("error", err.message));
    }
  });
  return form;
}

export function render(main, { sub }, ctx) {
  if (sub.startsWith("create")) return editor(main, ctx);
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Intentions"),
    link(`/ui/${encodeURIComponent(ctx.dc)}/intentions/create`, "Create", { class: "button write" })),
    body, servicePicker(ctx, "ixn-services"), checkForm(ctx));
  watchAll({ intentions: "/v1/connect/intentions" }, ({ intentions }) => {
    fill(body, intentionTable(intentions || [], ctx));
    main.dataset.loaded = "intentions";
  }, ctx);
}

function editor(main, ctx) {
  const q = ctx.query;
  const editing = q.get("source") && q.get("destination");
  const source = h("input", { name: "source", list: "ixn-services", required: true, autocomplete: "off", value: q.get("source") || "" });
  const destination = h("input", { name: "destination", list: "ixn-services", required: true, autocomplete: "off", value: q.get("destination") || "" });
  const radios = ["allow", "deny", "l7"].map((v) => h("input", { type: "radio", name: "action", value: v, id: `action-${v}`, checked: v === "allow" }));
  const labels = { allow: "Allow", deny: "Deny", l7: "Application aware (L7 permissions)" };
  const permissions = h("textarea", { name: "permissions", rows: 8, spellcheck: "false",
    placeholder: '[{"Action":"allow","HTTP":{"PathPrefix":"/api","Methods":["GET"]}},{"Action":"deny","HTTP":{"PathPrefix":"/"}}]' });
  const l7 = h("div", { class: "l7", hidden: true }, field("Permissions (JSON list)", permissions,
    "Each entry: Action allow or deny, and HTTP PathExact, PathPrefix or PathRegex, Methods, Header. The first match decides."));
  const description = h("input", { name: "description", autocomplete: "off" });
  const message = h("div", { class: "messages" });
  const showL7 = () => { l7.hidden = !radios[2].checked; };
  for (const r of radios) r.addEventListener("change", showL7);
  const form = h("form", { class: "card intention-form" },
    h("div", { class: "row" }, field("Source service", source), field("Destination service", destination)),
    h("fieldset", {}, h("legend", {}, "Decision"),
      radios.map((r) => h("div", { class: "radio" }, r, h("label", { for: r.id }, labels[r.value])))),
    l7, field("Description", description),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "write" }, "Save"), " ",
      link(`/ui/${encodeURIComponent(ctx.dc)}/intentions`, "Cancel", { class: "button secondary" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { SourceType: "consul", Description: description.value };
    const action = radios.find((r) => r.checked).value;
    if (action === "l7") {
      try {
        body.Permissions = JSON.parse(permissions.value || "[]");
        if (!Array.isArray(body.Permissions)) throw new Error("want a JSON list");
      } catch (err) {
        fill(message, notice("error", `Permissions: ${err.message}`));
        permissions.focus();
        return;
      }
    } else {
      body.Action = action;
    }
    try {
      await request("PUT", `/v1/connect/intentions/exact?${exactQuery(source.value.trim(), destination.value.trim())}`, { body: JSON.stringify(body) });
      announce("Intention saved");
      ctx.navigate(`/ui/${encodeURIComponent(ctx.dc)}/intentions`);
    } catch (err) {
      fill(message, notice("error", `Could not save: ${err.message}`));
    }
  });
  fill(main, h("p", { class: "crumbs" }, link(`/ui/${encodeURIComponent(ctx.dc)}/intentions`, "Intentions"), " /"),
    h("div", { class: "page-head" }, h("h1", {}, editing ? "Edit intention" : "Create intention")),
    message, form, servicePicker(ctx, "ixn-services"));
  if (editing) {
    source.readOnly = true;
    destination.readOnly = true;
    get(`/v1/connect/intentions/exact?${exactQuery(source.value, destination.value)}`, { signal: ctx.signal }).then((i) => {
      description.value = i.Description || "";
      const kind = i.Permissions?.length ? "l7" : i.Action;
      for (const r of radios) r.checked = r.value === kind;
      if (i.Permissions?.length) permissions.value = JSON.stringify(i.Permissions, null, 2);
      showL7();
      main.dataset.loaded = "intention-edit";
    }).catch((err) => {
      if (err.status === 404) { source.readOnly = false; destination.readOnly = false; main.dataset.loaded = "intention-edit"; return; }
      fill(message, notice("error", err.message));
    });
  } else {
    main.dataset.loaded = "intention-edit";
  }
}
