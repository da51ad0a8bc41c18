// The one door to the agent: Consul's public HTTP API (`/v1/...`), with the ACL token from
// the login box, and blocking queries (`?index=&wait=`) that keep views live without polling.

const TOKEN_KEY = "concord.token";

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
  document.body.classList.remove("read-only");
}

/** A failed request: the HTTP status and Consul's plain-text reason. */
export class ApiError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
  }
}

/**
 * One request. Resolves to `{ data, index }` (`data` parsed as JSON when it is JSON).
 * `missingOk` turns a 404 into `{ data: null }` (an absent KV key or empty prefix).
 */
export async function request(method, path, { body, signal, missingOk } = {}) {
  const headers = {};
  const t = token();
  if (t) headers["X-Consul-Token"] = t;
  const response = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  const index = Number(response.headers.get("X-Consul-Index") || 0);
  const text = await response.text();
  if (response.status === 404 && missingOk) return { data: null, index };
  if (!response.ok) {
    // Without write permission, write buttons go away (CSS hides `.write` under `.read-only`).
    if (response.status === 403 && method !== "GET") document.body.classList.add("read-only");
    throw new ApiError(response.status, text.trim());
  }
  let data = text;
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    data = text === "" ? null : JSON.parse(text);
  }
  return { data, index };
}

export const get = (path, opts) => request("GET", path, opts).then((r) => r.data);
export const put = (path, body, opts) => request("PUT", path, { ...opts, body });
export const del = (path, opts) => request("DELETE", path, opts);

/** Path segment escaping that keeps `/` (KV keys). */
export function keyPath(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/**
 * Follows `path` with blocking queries until `signal` aborts: calls `onData(data)` first and
 * then each time the result's index moves. Consul's client rules: an index that goes
 * backwards (a snapshot restore, a new leader) restarts from 0; errors back off up to 10 s.
 */
export function watch(path, onData, { signal, onError, missingOk, wait = "5m" } = {}) {
  let index = 0;
  let backoff = 0;
  (async () => {
    while (!signal?.aborted) {
      const sep = path.includes("?") ? "&" : "?";
      const url = index > 0 ? `${path}${sep}index=${index}&wait=${wait}` : path;
      try {
        const r = await request("GET", url, { signal, missingOk });
        if (signal?.aborted) return;
        backoff = 0;
        const next = r.index < index ? 0 : r.index;
        if (index === 0 || next !== index) onData(r.data);
        index = next;
        // A server without indexes would make every call return at once: pace it.
        if (next === 0) await sleep(1000, signal);
      } catch (e) {
        if (signal?.aborted) return;
        onError?.(e);
        backoff = Math.min(10000, backoff ? backoff * 2 : 250);
        await sleep(backoff, signal);
        index = 0;
      }
    }
  })();
}

/**
 * Several watches feeding one render: `render(state)` runs as soon as all have answered,
 * then on every change, coalescing changes that arrive together into one render.
 */
export function watchAll(sources, render, { signal, onError }) {
  const state = {};
  let pending = false;
  let first = true;
  const names = Object.keys(sources);
  const schedule = () => {
    if (pending || !names.every((n) => n in state)) return;
    if (first) {
      first = false;
      render(state);
      return;
    }
    pending = true;
    setTimeout(() => { pending = false; if (!signal.aborted) render(state); }, 0);
  };
  for (const name of names) {
    const src = sources[name];
    const opts = typeof src === "string" ? { path: src } : src;
    watch(opts.path, (data) => { state[name] = data; schedule(); },
      { signal, onError, missingOk: opts.missingOk });
  }
  return () => schedule();
}
