// The app shell: client-side routing on Consul's UI URLs, the navigation, the token box.
// Each view is `render(main, params, ctx)`; `ctx.signal` aborts its blocking queries when
// the user leaves it.

import { h, fill, announce, notice } from "./dom.js";
import { get, setToken, token } from "./api.js";
import * as services from "./views/services.js";
import * as service from "./views/service.js";
import * as nodes from "./views/nodes.js";
import * as kv from "./views/kv.js";
import * as intentions from "./views/intentions.js";
import * as topology from "./views/topology.js";

let dc = "dc1";
let controller = null;
let first = true;

const SECTIONS = [
  ["services", "Services"],
  ["nodes", "Nodes"],
  ["kv", "Key/Value"],
  ["intentions", "Intentions"],
];

const dec = decodeURIComponent;

// [pattern, section, view, params from the match]. The first group is always the datacenter.
const ROUTES = [
  [/^\/ui\/([^/]+)\/services\/?$/, "services", services.render, () => ({})],
  [/^\/ui\/([^/]+)\/services\/([^/]+)\/topology\/?$/, "services", topology.render, (m) => ({ name: dec(m[2]) })],
  [/^\/ui\/([^/]+)\/services\/([^/]+)\/(instances|intentions)\/?$/, "services", service.render,
    (m) => ({ name: dec(m[2]), tab: m[3] })],
  [/^\/ui\/([^/]+)\/nodes\/?$/, "nodes", nodes.render, () => ({})],
  [/^\/ui\/([^/]+)\/nodes\/([^/]+)(\/.*)?$/, "nodes", nodes.renderNode, (m) => ({ node: dec(m[2]) })],
  [/^\/ui\/([^/]+)\/kv(\/.*)?$/, "kv", kv.render, (m) => ({ path: (m[2] || "/").slice(1) })],
  [/^\/ui\/([^/]+)\/intentions(\/.*)?$/, "intentions", intentions.render, (m) => ({ sub: (m[2] || "/").slice(1) })],
];

/** Where a path that names no view goes (`/ui/`, `/ui/dc1`, `/ui/dc1/services/web`). */
function redirectFor(path) {
  let m = path.match(/^\/ui\/([^/]+)\/services\/([^/]+)\/?$/);
  if (m) return `/ui/${m[1]}/services/${m[2]}/instances`;
  m = path.match(/^\/ui\/([^/]+)\/?$/);
  if (m) return `/ui/${m[1]}/services`;
  if (/^\/ui\/?$/.test(path)) return `/ui/${encodeURIComponent(dc)}/services`;
  return null;
}

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  route();
}

function renderNav(section) {
  fill(document.getElementById("nav-list"), SECTIONS.map(([key, label]) => h("li", {},
    h("a", {
      href: `/ui/${encodeURIComponent(dc)}/${key}`,
      "data-link": "",
      "aria-current": key === section ? "page" : null,
    }, label))));
}

function route() {
  const path = location.pathname;
  const target = redirectFor(path);
  if (target) {
    history.replaceState(null, "", target + location.search);
    return route();
  }
  controller?.abort();
  controller = new AbortController();
  const main = document.getElementById("main");
  for (const [pattern, section, view, params] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    renderNav(section);
    const ctx = {
      dc: dec(m[1]),
      signal: controller.signal,
      navigate,
      query: new URLSearchParams(location.search),
      setQuery(params) {
        const q = new URLSearchParams();
        for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
        const qs = q.toString();
        history.replaceState(null, "", location.pathname + (qs ? `?${qs}` : ""));
      },
      onError(e) { showError(main, e); },
    };
    fill(main);
    view(main, params(m), ctx);
    if (!first) main.focus({ preventScroll: true });
    first = false;
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} - Concord` : "Concord";
    return;
  }
  renderNav("");
  fill(main, h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", { href: "/ui/", "data-link": "" }, "Back to services")));
}

/** A watch failed: one error line at the top of the view, replaced by the next. */
function showError(main, e) {
  let box = main.querySelector(":scope > .load-error");
  if (!box) {
    box = h("div", { class: "load-error" });
    main.prepend(box);
  }
  fill(box, notice("error", `Could not load from the agent: ${e.message}. Retrying…`));
  announce(`Error: ${e.message}`);
}

function setupShell() {
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[data-link]");
    if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui/")) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
    document.getElementById("nav").classList.remove("open");
    document.getElementById("menu").setAttribute("aria-expanded", "false");
  });
  window.addEventListener("popstate", route);
  // A browser allows 6 connections per host and each watch holds one open. Leaving the page
  // (even into the back-forward cache) must hand them back, or the next page's requests queue
  // behind the old page's blocking queries; coming back from that cache starts them again.
  window.addEventListener("pagehide", () => controller?.abort());
  window.addEventListener("pageshow", (e) => { if (e.persisted) route(); });
  const menu = document.getElementById("menu");
  menu.addEventListener("click", () => {
    const open = document.getElementById("nav").classList.toggle("open");
    menu.setAttribute("aria-expanded", String(open));
  });
  const input = document.getElementById("token");
  input.value = token();
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    announce(input.value.trim() ? "Token saved" : "Token cleared");
    route();
  });
}

/** A bug in a view shows on the page (and to tests) rather than leaving it blank. */
function reportBug(message) {
  document.body.dataset.error = message;
  const main = document.getElementById("main");
  main.prepend(notice("error", `Something went wrong in the UI: ${message}`));
}

async function start() {
  window.addEventListener("error", (e) => reportBug(e.message));
  window.addEventListener("unhandledrejection", (e) => reportBug(String(e.reason?.stack || e.reason)));
  setupShell();
  // A URL that names its datacenter renders at once; only `/ui/` waits to learn the agent's.
  const named = location.pathname.match(/^\/ui\/([^/]+)/);
  if (named) dc = dec(named[1]);
  const self = get("/v1/agent/self").then((s) => s?.Config?.Datacenter).catch(() => null);
  if (!named) dc = (await self) || dc;
  route();
}

start();
