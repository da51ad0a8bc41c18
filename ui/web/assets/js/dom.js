// DOM helpers. Everything is built with createElement and text nodes, never innerHTML, so a
// service name or a KV value can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element: h("a", {href}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link the client-side router follows. */
export function link(href, text, attrs = {}) {
  return h("a", { ...attrs, href, "data-link": "" }, text);
}

/** A `<dl>` of label/value pairs, skipping empty values. */
export function defs(pairs) {
  return h("dl", { class: "defs" },
    pairs.filter(([, v]) => v != null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** Tag chips. */
export function tags(list) {
  if (!list || list.length === 0) return h("span", { class: "muted" }, "—");
  return h("ul", { class: "tags", "aria-label": "Tags" }, list.map((t) => h("li", {}, t)));
}

/** Says something to screen readers (and tests) without moving focus. */
export function announce(text) {
  const el = document.getElementById("announce");
  if (el) el.textContent = text;
}

/** A form field with its label. */
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint" }, hint) : null);
}

/** An inline error or notice box. */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}
