// Key/Value: folders by prefix (`?keys&separator=/`), a key's value with its indexes and
// session lock, create, edit and delete. Saves use `?cas=<ModifyIndex as loaded>`, so when
// someone else changed the key in between, the save fails and says so instead of silently
// overwriting their value.

import { h, fill, link, defs, field, notice, announce } from "../dom.js";
import { watch, put, del, get, keyPath } from "../api.js";

function decodeValue(b64) {
  if (b64 == null) return { text: "", binary: false };
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes), binary: false };
  } catch {
    return { text: b64, binary: true };
  }
}

/** A `?cas` write answers `false` when the index did not match. */
function refused(r) {
  return String(r.data).trim() === "false";
}

function kvHref(ctx, key) {
  return `/ui/${encodeURIComponent(ctx.dc)}/kv/${keyPath(key)}`;
}

function crumbs(ctx, key) {
  const parts = key.split("/").filter(Boolean);
  const items = [link(`/ui/${encodeURIComponent(ctx.dc)}/kv/`, "Key/Value")];
  let acc = "";
  const folders = key.endsWith("/") ? parts : parts.slice(0, -1);
  for (const p of folders) {
    acc += `${p}/`;
    items.push(" / ", link(kvHref(ctx, acc), p));
  }
  return h("p", { class: "crumbs" }, items, " /");
}

/** A delete button that asks once more in place (no modal dialog to trap focus). */
function deleteButton(label, onConfirm) {
  const button = h("button", { type: "button", class: "danger write" }, label);
  let armed = false;
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = `Confirm: ${label.toLowerCase()}`;
      button.setAttribute("aria-live", "polite");
      return;
    }
    button.disabled = true;
    await onConfirm();
  });
  button.addEventListener("blur", () => {
    if (armed && !button.disabled) { armed = false; button.textContent = label; }
  });
  return button;
}

export function render(main, { path }, ctx) {
  const key = path.split("/").map(decodeURIComponent).join("/");
  if (key === "" || key.endsWith("/")) folder(main, key, ctx);
  else keyView(main, key, ctx);
}

function folder(main, prefix, ctx) {
  const title = prefix ? prefix.replace(/\/$/, "").split("/").pop() : "Key/Value";
  const body = h("tbody");
  const message = h("div", { class: "messages" });
  const nameInput = h("input", { name: "key", required: true, autocomplete: "off", spellcheck: "false" });
  const valueInput = h("textarea", { name: "value", rows: 4, spellcheck: "false" });
  const form = h("form", { class: "card write create-kv" },
    h("h2", {}, "Create"),
    field("Key or folder", nameInput, `Under ${prefix || "the root"}; end with / to make a folder.`),
    field("Value", valueInput),
    h("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = nameInput.value.trim().replace(/^\/+/, "");
    if (!name) return;
    const full = prefix + name;
    try {
      const r = await put(`/v1/kv/${keyPath(full)}?cas=0`, full.endsWith("/") ? "" : valueInput.value);
      if (refused(r)) {
        fill(message, notice("error", `${full} already exists.`));
        return;
      }
      announce(`Created ${full}`);
      ctx.navigate(kvHref(ctx, full.endsWith("/") ? full : prefix));
      nameInput.value = "";
      valueInput.value = "";
    } catch (err) {
      fill(message, notice("error", `Could not create ${full}: ${err.message}`));
    }
  });
  fill(main, crumbs(ctx, prefix),
    h("div", { class: "page-head" }, h("h1", {}, title),
      prefix ? deleteButton("Delete folder", async () => {
        try {
          await del(`/v1/kv/${keyPath(prefix)}?recurse`);
          const parent = prefix.replace(/[^/]*\/$/, "");
          ctx.navigate(kvHref(ctx, parent));
        } catch (err) { fill(message, notice("error", `Could not delete: ${err.message}`)); }
      }) : null),
    message,
    h("div", { class: "table-wrap" }, h("table", { class: "list kv" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Type"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
      body)),
    form);
  watch(`/v1/kv/${keyPath(prefix)}?keys&separator=/`, (keys) => {
    const list = (keys || []).filter((k) => k !== prefix).sort();
    if (!list.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "Nothing here yet.")));
    } else {
      body.replaceChildren(...list.map((k) => {
        const isFolder = k.endsWith("/");
        const name = k.slice(prefix.length);
        return h("tr", { "data-key": k },
          h("th", { scope: "row" }, link(kvHref(ctx, k), name)),
          h("td", {}, isFolder ? "folder" : "key"),
          h("td", { class: "actions" }, deleteButton("Delete", async () => {
            try {
              await del(`/v1/kv/${keyPath(k)}${isFolder ? "?recurse" : ""}`);
              announce(`Deleted ${k}`);
            } catch (err) { fill(message, notice("error", `Could not delete ${k}: ${err.message}`)); }
          })));
      }));
    }
    main.dataset.loaded = "kv-folder";
  }, { signal: ctx.signal, onError: ctx.onError, missingOk: true });
}

function keyView(main, key, ctx) {
  const message = h("div", { class: "messages" });
  const info = h("div");
  const lock = h("div");
  const value = h("textarea", { name: "value", rows: 12, spellcheck: "false" });
  const save = h("button", { type: "submit" }, "Save");
  let loaded = null; // the entry the editor shows, whose ModifyIndex a save must match
  let dirty = false;
  value.addEventListener("input", () => { dirty = true; });
  const form = h("form", { class: "editor" }, field("Value", value), h("div", { class: "buttons write" }, save,
    deleteButton("Delete", async () => {
      try {
        const r = await del(`/v1/kv/${keyPath(key)}?cas=${loaded?.ModifyIndex ?? 0}`);
        if (refused(r)) {
          fill(message, notice("error", "Not deleted: the key changed since you opened it. Reload to see the new value."));
          return;
        }
        ctx.navigate(kvHref(ctx, key.replace(/[^/]*$/, "")));
      } catch (err) { fill(message, notice("error", `Could not delete: ${err.message}`)); }
    })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const cas = loaded ? loaded.ModifyIndex : 0;
    try {
      const r = await put(`/v1/kv/${keyPath(key)}?cas=${cas}`, value.value);
      if (refused(r)) {
        fill(message, notice("error", "Not saved: someone else changed this key since you opened it. Your text is still here; reload to see their value, then save again."),
          h("button", { type: "button", class: "secondary", onclick: () => { dirty = false; loaded = null; ctx.navigate(location.pathname, { replace: true }); } }, "Reload"));
        announce("Save conflict");
        return;
      }
      dirty = false;
      fill(message, notice("ok", "Saved."));
      announce("Saved");
    } catch (err) {
      fill(message, notice("error", `Could not save: ${err.message}`));
    }
  });
  fill(main, crumbs(ctx, key), h("div", { class: "page-head" }, h("h1", {}, key.split("/").pop())), message, info, lock, form);
  watch(`/v1/kv/${keyPath(key)}`, async (entries) => {
    const entry = entries?.[0] || null;
    if (!dirty || !loaded) {
      loaded = entry;
      const decoded = decodeValue(entry?.Value);
      value.value = decoded.text;
      value.readOnly = decoded.binary;
      if (decoded.binary) fill(message, notice("warn", "The value is not UTF-8 text; shown as base64, read-only."));
    } else if (entry?.ModifyIndex !== loaded.ModifyIndex) {
      fill(message, notice("warn", "This key changed on the server while you were editing. Saving will fail; reload to see the new value."));
    }
    fill(info, entry ? defs([
      ["Key", h("code", {}, key)],
      ["Modify index", String(entry.ModifyIndex)],
      ["Create index", String(entry.CreateIndex)],
      ["Flags", String(entry.Flags ?? 0)],
      ["Lock index", String(entry.LockIndex ?? 0)],
    ]) : notice("warn", "This key does not exist (yet). Saving creates it."));
    if (entry?.Session) {
      fill(lock, notice("info", `Locked by session ${entry.Session}`));
      try {
        const sessions = await get(`/v1/session/info/${encodeURIComponent(entry.Session)}`, { signal: ctx.signal });
        const s = sessions?.[0];
        if (s) fill(lock, h("div", { class: "notice info lock", role: "status" }, "Locked by session ",
          h("code", {}, s.ID), s.Name ? ` (${s.Name})` : "", " held by node ", link(`/ui/${encodeURIComponent(ctx.dc)}/nodes/${encodeURIComponent(s.Node)}`, s.Node)));
      } catch { /* the session id alone is still shown */ }
    } else {
      fill(lock);
    }
    main.dataset.loaded = "kv-key";
  }, { signal: ctx.signal, onError: ctx.onError, missingOk: true });
}
