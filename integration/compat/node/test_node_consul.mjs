// Compatibility tests: the real npm `consul` client (silas/node-consul, v2, promise API)
// against `concord agent -dev`.
//
// Every test starts its own dev agent (binary from $CONCORD_BIN) on OS-chosen ports, so tests
// share no state. Assertions follow Consul's documented HTTP API behaviour (and, where noted,
// what node-consul's own acceptance suite asserts against real Consul).
//
// Run:  CONCORD_BIN=/path/to/concord node --test test_node_consul.mjs

import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

import Consul from "consul";

const READY_TIMEOUT_MS = 60_000; // CI shares 2 cores with compilers
const POLL_MS = 50;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------
// Harness

function concordBin() {
  const bin = process.env.CONCORD_BIN;
  if (!bin) throw new Error("CONCORD_BIN must be set to the path of the concord binary");
  fs.accessSync(bin, fs.constants.X_OK);
  return bin;
}

async function eventually(fn, { timeout = 15_000, message = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) {
      throw new assert.AssertionError({
        message: `${message}: not met within ${timeout}ms; last value: ${JSON.stringify(last)}`,
      });
    }
    await sleep(POLL_MS);
  }
}

async function startAgent() {
  const node = `compat-${process.pid}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "concord-compat-"));
  const logPath = path.join(dir, "agent.log");
  const log = fs.openSync(logPath, "w");
  const args = [
    "agent", "-dev",
    "-http-port", "0", "-dns-port", "0", "-server-port", "0", "-serf-lan-port", "0",
    "-node", node,
  ];
  const proc = spawn(concordBin(), args, { stdio: ["ignore", "pipe", log] });
  fs.closeSync(log);
  let exited = null;
  proc.on("exit", (code, signal) => {
    exited = { code, signal };
  });
  const logTail = () => {
    try {
      return fs.readFileSync(logPath, "utf8").split("\n").slice(-80).join("\n");
    } catch {
      return "<no log>";
    }
  };

  // Banner line: "       Client Addr: [127.0.0.1] (HTTP: 41234, DNS: 41235)". Keep draining
  // stdout for the life of the process so it never blocks on a full pipe.
  const httpPort = await new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout });
    const timer = setTimeout(() => reject(new Error(`no 'Client Addr:' banner line\n${logTail()}`)), READY_TIMEOUT_MS);
    rl.on("line", (line) => {
      const m = line.includes("Client Addr:") && line.match(/HTTP:\s*(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`concord agent exited (${code}) before its banner\n${logTail()}`));
    });
  });

  const base = `http://127.0.0.1:${httpPort}`;
  const agent = {
    proc,
    node,
    httpPort,
    base,
    dir,
    logTail,
    client: () => new Consul({ host: "127.0.0.1", port: httpPort }),
    async stop() {
      if (exited === null) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await done;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await eventually(
      async () => {
        if (exited !== null) throw new Error(`concord agent exited (${exited.code})\n${logTail()}`);
        try {
          const leader = await fetch(`${base}/v1/status/leader`);
          if (leader.status !== 200) return false;
          const l = await leader.json();
          if (typeof l !== "string" || l === "") return false;
          const n = await fetch(`${base}/v1/catalog/node/${node}`);
          return n.status === 200 && (await n.json()) !== null;
        } catch {
          return false;
        }
      },
      { timeout: READY_TIMEOUT_MS, message: "agent ready (leader + own node in catalog)" },
    );
  } catch (e) {
    await agent.stop();
    throw e;
  }
  return agent;
}

// One fresh agent + client per test.
function withAgent() {
  const ctx = {};
  beforeEach(async () => {
    ctx.agent = await startAgent();
    ctx.consul = ctx.agent.client();
  });
  afterEach(async (t) => {
    ctx.consul.destroy();
    if (process.env.CONCORD_COMPAT_VERBOSE) t.diagnostic(ctx.agent.logTail());
    await ctx.agent.stop();
  });
  return ctx;
}

// `ctx` for a node-consul call that also returns the HTTP response: [res, body].
function withResponse() {
  const e = new EventEmitter();
  e.includeResponse = true;
  return e;
}

// node-consul v2 resolves a JSON `false` body to `undefined` (papi treats a falsy result as
// "no value"), so a refused CAS/lock is read through the raw response body instead.
async function bodyOf(call, opts) {
  const [res, body] = await call({ ...opts, ctx: withResponse() });
  assert.equal(res.statusCode, 200);
  return body;
}

async function checkStatus(consul, id) {
  const checks = await consul.agent.checks();
  return checks[id] ? checks[id].Status : undefined;
}

async function healthIds(consul, opts) {
  const entries = await consul.health.service(opts);
  return entries.map((e) => e.Service.ID).sort();
}

// ------------------------------------------------------------------------------------------
// KV

describe("kv", () => {
  const t = withAgent();

  it("get returns one pair with Consul's exact keys", async () => {
    assert.equal(await t.consul.kv.set("hello", "world"), true);
    const data = await t.consul.kv.get("hello");
    // node-consul's acceptance suite asserts exactly these keys (no Session when unlocked).
    assert.deepEqual(Object.keys(data).sort(), ["CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Value"]);
    assert.equal(data.Key, "hello");
    assert.equal(data.Flags, 0);
    assert.equal(data.Value, "world");
    assert.equal(data.LockIndex, 0);
    assert.equal(data.CreateIndex, data.ModifyIndex);
  });

  it("missing key is undefined and still carries X-Consul-Index", async () => {
    assert.equal(await t.consul.kv.get("none"), undefined);
    const [res, body] = await t.consul.kv.get({ key: "none", ctx: withResponse() });
    assert.equal(res.statusCode, 404);
    assert.equal(body, undefined);
    assert.ok(BigInt(res.headers["x-consul-index"]) > 0n);
  });

  it("raw get returns the bytes", async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 254]);
    await t.consul.kv.set("bin", bytes);
    const data = await t.consul.kv.get({ key: "bin", raw: true });
    assert.ok(Buffer.isBuffer(data));
    assert.deepEqual(data, bytes);
    const decoded = await t.consul.kv.get({ key: "bin", buffer: true });
    assert.deepEqual(decoded.Value, bytes);
  });

  it("null value is stored as empty and read back as null", async () => {
    assert.equal(await t.consul.kv.set("one", null), true);
    const data = await t.consul.kv.get("one");
    assert.deepEqual(Object.keys(data).sort(), ["CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Value"]);
    assert.equal(data.Value, null);
  });

  it("recurse lists a prefix in key order", async () => {
    await t.consul.kv.set("r/b", "2");
    await t.consul.kv.set("r/a", "1");
    await t.consul.kv.set("r/c/d", "3");
    await t.consul.kv.set("rx", "other");
    const data = await t.consul.kv.get({ key: "r/", recurse: true });
    assert.deepEqual(data.map((d) => d.Key), ["r/a", "r/b", "r/c/d"]);
    assert.deepEqual(data.map((d) => d.Value), ["1", "2", "3"]);
    const all = await t.consul.kv.get({ recurse: true });
    assert.equal(all.length, 4);
    assert.equal(await t.consul.kv.get({ key: "nothing/", recurse: true }), undefined);
  });

  it("keys, keys with separator, all keys", async () => {
    const keys = ["a/x/1", "a/y/2", "a/z/3"];
    await Promise.all(keys.map((k) => t.consul.kv.set(k, "value")));
    await t.consul.kv.set("hello", "world");
    assert.deepEqual(await t.consul.kv.keys("a"), keys);
    assert.deepEqual(await t.consul.kv.keys({ key: "a/", separator: "/" }), ["a/x/", "a/y/", "a/z/"]);
    const all = await t.consul.kv.keys();
    assert.equal(all.length, 4);
  });

  it("blocking get waits for an update", async () => {
    await t.consul.kv.set("hello", "world");
    const before = await t.consul.kv.get("hello");
    const started = Date.now();
    const waiting = t.consul.kv.get({ key: "hello", index: before.ModifyIndex, wait: "20s" });
    await sleep(300);
    await t.consul.kv.set("hello", "new-value");
    const after = await waiting;
    assert.equal(after.Value, "new-value");
    assert.ok(after.ModifyIndex > before.ModifyIndex);
    assert.ok(Date.now() - started < 15_000, "blocking get did not wake on the write");
  });

  it("blocking get with nothing changing returns after wait with the same index", async () => {
    await t.consul.kv.set("idle", "v");
    const [res1] = await t.consul.kv.get({ key: "idle", ctx: withResponse() });
    const index = res1.headers["x-consul-index"];
    const started = Date.now();
    const [res2, data] = await t.consul.kv.get({ key: "idle", index, wait: "1s", ctx: withResponse() });
    const elapsed = Date.now() - started;
    assert.equal(res2.headers["x-consul-index"], index);
    assert.equal(data.Value, "v");
    assert.ok(elapsed >= 900 && elapsed < 5000, `returned after ${elapsed}ms for wait=1s`);
  });

  it("cas and flags", async () => {
    assert.equal(await t.consul.kv.set({ key: "c", value: "1", cas: 0 }), true);
    assert.equal(await bodyOf(t.consul.kv.set.bind(t.consul.kv), { key: "c", value: "2", cas: 0 }), false);
    const d = await t.consul.kv.get("c");
    assert.equal(await bodyOf(t.consul.kv.set.bind(t.consul.kv), { key: "c", value: "3", cas: d.ModifyIndex + 1000 }), false);
    assert.equal(await t.consul.kv.set({ key: "c", value: "3", cas: d.ModifyIndex }), true);
    assert.equal((await t.consul.kv.get("c")).Value, "3");

    assert.equal(await t.consul.kv.set("f", "v", { flags: 42 }), true);
    assert.equal((await t.consul.kv.get("f")).Flags, 42);

    const cur = await t.consul.kv.get("c");
    assert.equal(await bodyOf(t.consul.kv.del.bind(t.consul.kv), { key: "c", cas: cur.ModifyIndex + 1000 }), false);
    assert.equal(await t.consul.kv.del({ key: "c", cas: cur.ModifyIndex }), true);
    assert.equal(await t.consul.kv.get("c"), undefined);
  });

  it("del and recursive del", async () => {
    await t.consul.kv.set("hello", "world");
    await t.consul.kv.set("d/1", "x");
    await t.consul.kv.set("d/2", "x");
    assert.equal(await t.consul.kv.del("hello"), true);
    assert.equal(await t.consul.kv.get("hello"), undefined);
    assert.equal(await t.consul.kv.del({ key: "d/", recurse: true }), true);
    assert.equal(await t.consul.kv.get({ key: "d/", recurse: true }), undefined);
    assert.equal(await t.consul.kv.del({ recurse: true }), true); // everything
    assert.deepEqual(await t.consul.kv.keys(), []);
  });

  it("lock acquire and release with sessions", async () => {
    const { ID: s1 } = await t.consul.session.create({ name: "s1" });
    const { ID: s2 } = await t.consul.session.create({ name: "s2" });
    assert.equal(await t.consul.kv.set({ key: "lock", value: "a", acquire: s1 }), true);
    assert.equal(await bodyOf(t.consul.kv.set.bind(t.consul.kv), { key: "lock", value: "b", acquire: s2 }), false);
    let d = await t.consul.kv.get("lock");
    assert.equal(d.Session, s1);
    assert.equal(d.LockIndex, 1);
    assert.equal(d.Value, "a");
    assert.equal(await bodyOf(t.consul.kv.set.bind(t.consul.kv), { key: "lock", value: "c", release: s2 }), false);
    assert.equal(await t.consul.kv.set({ key: "lock", value: "c", release: s1 }), true);
    d = await t.consul.kv.get("lock");
    assert.equal(d.Session, undefined);
    assert.equal(d.Value, "c");
    await assert.rejects(t.consul.kv.set({ key: "lock", value: "x", acquire: "not-a-session" }));
  });

  it("unknown datacenter is an error", async () => {
    await assert.rejects(t.consul.kv.get({ key: "x", dc: "dc2" }), (err) => err.statusCode >= 400);
  });
});

// ------------------------------------------------------------------------------------------
// Watch (node-consul's long-poll loop: needs X-Consul-Index on every response)

describe("watch", () => {
  const t = withAgent();

  it("sees every change of a key, including creation and deletion", async () => {
    const changes = [];
    const errors = [];
    const watch = t.consul.watch({ method: t.consul.kv.get, options: { key: "test", wait: "5s" } });
    watch.on("change", (data) => changes.push(data && data.Value));
    watch.on("error", (err) => errors.push(err));
    try {
      const waitFor = (n) =>
        eventually(() => changes.length >= n, { message: `watch change #${n} (errors: ${errors.map(String)})` });
      await waitFor(1); // the initial state: key missing
      await t.consul.kv.set("test", "1");
      await waitFor(2);
      await t.consul.kv.set("test", "2");
      await waitFor(3);
      await t.consul.kv.del("test");
      await waitFor(4);
      assert.deepEqual(changes, [undefined, "1", "2", undefined]);
      assert.deepEqual(errors, []);
      assert.equal(watch.isRunning(), true);
    } finally {
      watch.end();
    }
  });

  it("watches health.service until an instance passes", async () => {
    await t.consul.agent.service.register({ name: "watched", check: { ttl: "30s" } });
    const seen = [];
    const errors = [];
    const watch = t.consul.watch({
      method: t.consul.health.service,
      options: { service: "watched", passing: true, wait: "5s" },
    });
    watch.on("change", (data) => seen.push(data.map((e) => e.Service.ID)));
    watch.on("error", (err) => errors.push(err));
    try {
      await eventually(() => seen.length >= 1, { message: "initial health state" });
      await t.consul.agent.check.pass("service:watched");
      await eventually(() => seen.some((ids) => ids.includes("watched")), { message: "watched passing" });
      assert.deepEqual(errors, []);
    } finally {
      watch.end();
    }
  });
});

// ------------------------------------------------------------------------------------------
// Agent

describe("agent", () => {
  const t = withAgent();

  it("members: just this agent, alive", async () => {
    const data = await t.consul.agent.members();
    assert.ok(Array.isArray(data));
    assert.equal(data.length, 1);
    assert.equal(data[0].Name, t.agent.node);
    assert.equal(data[0].Status, 1); // node-consul's AGENT_STATUS index of "alive"
  });

  it("self", async () => {
    const data = await t.consul.agent.self();
    assert.equal(data.Config.Server, true);
    assert.equal(data.Config.Datacenter, "dc1");
    assert.equal(data.Config.NodeName, t.agent.node);
    assert.equal(data.Member.Name, t.agent.node);
    assert.equal(data.Member.Addr, "127.0.0.1");
  });

  it("node maintenance on and off", async () => {
    assert.equal((await t.consul.agent.checks())._node_maintenance, undefined);
    await t.consul.agent.maintenance(true);
    const on = await t.consul.agent.checks();
    assert.equal(on._node_maintenance.Status, "critical");
    await t.consul.agent.maintenance({ enable: false, reason: "done" });
    assert.equal((await t.consul.agent.checks())._node_maintenance, undefined);
  });

  it("check register / pass / warn / fail / deregister", async () => {
    const name = "check-a";
    await t.consul.agent.check.register({ name, ttl: "10s", notes: "my notes" });
    const checks = await t.consul.agent.checks();
    assert.equal(checks[name].Status, "critical");
    assert.equal(checks[name].Notes, "my notes");
    assert.equal(checks[name].Name, name);
    await t.consul.agent.check.pass(name);
    assert.equal(await checkStatus(t.consul, name), "passing");
    await t.consul.agent.check.warn({ id: name, note: "hmm" });
    assert.equal(await checkStatus(t.consul, name), "warning");
    assert.equal((await t.consul.agent.checks())[name].Output, "hmm");
    await t.consul.agent.check.fail(name);
    assert.equal(await checkStatus(t.consul, name), "critical");
    await t.consul.agent.check.deregister(name);
    assert.equal(await checkStatus(t.consul, name), undefined);
    await assert.rejects(t.consul.agent.check.pass("no-such-check"), (err) => err.statusCode === 404);
  });

  it("check with explicit id and service id", async () => {
    await t.consul.agent.service.register({ name: "svc", id: "svc-1" });
    await t.consul.agent.check.register({ name: "extra", id: "extra-id", serviceid: "svc-1", ttl: "10s" });
    const checks = await t.consul.agent.checks();
    assert.equal(checks["extra-id"].ServiceID, "svc-1");
    assert.equal(checks["extra-id"].ServiceName, "svc");
  });

  it("service register with tags, port, meta and TTL check; list; deregister", async () => {
    await t.consul.agent.service.register({
      name: "web",
      id: "web-1",
      tags: ["a", "b"],
      port: 8080,
      address: "10.0.0.5",
      meta: { version: "2" },
      check: { ttl: "10s", notes: "ttl notes" },
    });
    const services = await t.consul.agent.services();
    assert.deepEqual(Object.keys(services), ["web-1"]);
    const s = services["web-1"];
    assert.equal(s.Service, "web");
    assert.deepEqual(s.Tags, ["a", "b"]);
    assert.equal(s.Port, 8080);
    assert.equal(s.Address, "10.0.0.5");
    assert.deepEqual(s.Meta, { version: "2" });
    const chk = (await t.consul.agent.checks())["service:web-1"];
    assert.equal(chk.Notes, "ttl notes");
    assert.equal(chk.ServiceID, "web-1");
    assert.equal(chk.Status, "critical");

    await t.consul.agent.service.deregister("web-1");
    assert.deepEqual(await t.consul.agent.services(), {});
    assert.equal((await t.consul.agent.checks())["service:web-1"], undefined);
    await assert.rejects(t.consul.agent.service.deregister("web-1"), (err) => err.statusCode === 404);
  });

  it("service with HTTP check keeps notes and runs the check", async () => {
    const srv = http.createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("ok");
    });
    await new Promise((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${srv.address().port}/health`;
      await t.consul.agent.service.register({
        name: "httpsvc",
        check: { http: url, interval: "1s", notes: "simple http check" },
      });
      const checks = await t.consul.agent.check.list();
      assert.equal(checks["service:httpsvc"].Notes, "simple http check");
      assert.equal(checks["service:httpsvc"].Type, "http");
      await eventually(async () => (await checkStatus(t.consul, "service:httpsvc")) === "passing", {
        timeout: 20_000,
        message: "HTTP check passing",
      });
    } finally {
      srv.close();
    }
  });

  it("service with several checks", async () => {
    await t.consul.agent.service.register({
      name: "multi",
      checks: [{ ttl: "10s" }, { ttl: "20s", name: "second", checkid: "multi-second" }],
    });
    const ids = Object.keys(await t.consul.agent.checks()).sort();
    assert.deepEqual(ids, ["multi-second", "service:multi:1"]);
  });

  it("service maintenance on and off", async () => {
    await t.consul.agent.service.register("maint-svc");
    const id = "_service_maintenance:maint-svc";
    await t.consul.agent.service.maintenance({ id: "maint-svc", enable: true, reason: "deploy" });
    const on = await t.consul.agent.checks();
    assert.equal(on[id].Status, "critical");
    assert.equal(on[id].Notes, "deploy");
    await t.consul.agent.service.maintenance({ id: "maint-svc", enable: false });
    assert.equal((await t.consul.agent.checks())[id], undefined);
  });
});

// ------------------------------------------------------------------------------------------
// Catalog

describe("catalog", () => {
  const t = withAgent();

  async function registerTagged() {
    const service = { name: "service-x", tag: "tag-x" };
    await t.consul.agent.service.register({ name: service.name, tags: [service.tag] });
    await eventually(async () => Object.hasOwn(await t.consul.catalog.services(), service.name), {
      message: "service in catalog",
    });
    return service;
  }

  it("datacenters", async () => {
    assert.deepEqual(await t.consul.catalog.datacenters(), ["dc1"]);
  });

  it("node list (current and named dc)", async () => {
    for (const data of [await t.consul.catalog.node.list(), await t.consul.catalog.nodes("dc1")]) {
      assert.equal(data.length, 1);
      assert.equal(data[0].Node, t.agent.node);
      assert.equal(data[0].Address, "127.0.0.1");
    }
  });

  it("node services", async () => {
    const service = await registerTagged();
    const data = await t.consul.catalog.node.services(t.agent.node);
    const s = data.Services[service.name];
    assert.equal(s.ID, service.name);
    assert.equal(s.Service, service.name);
    assert.deepEqual(s.Tags, [service.tag]);
    assert.equal(data.Node.Node, t.agent.node);
  });

  it("service list is exactly {consul: [], <name>: [<tag>]}", async () => {
    const service = await registerTagged();
    assert.deepEqual(await t.consul.catalog.service.list(), { consul: [], [service.name]: [service.tag] });
  });

  it("service nodes, with tag filter", async () => {
    const service = await registerTagged();
    const data = await t.consul.catalog.service.nodes(service.name);
    assert.deepEqual(data.map((n) => n.Node), [t.agent.node]);
    assert.deepEqual(data[0].ServiceTags, [service.tag]);
    assert.deepEqual(await t.consul.catalog.service.nodes({ service: service.name, tag: "other" }), []);
  });

  it("register and deregister an external node", async () => {
    await t.consul.catalog.register({
      node: "ext-1",
      address: "10.1.2.3",
      service: { service: "ext-svc", port: 9000, tags: ["x"] },
      check: { name: "ext-check", status: "passing", serviceid: "ext-svc" },
    });
    const nodes = await t.consul.catalog.service.nodes("ext-svc");
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0].Node, "ext-1");
    assert.equal(nodes[0].Address, "10.1.2.3");
    assert.equal(nodes[0].ServicePort, 9000);
    const health = await t.consul.health.service({ service: "ext-svc", passing: true });
    assert.equal(health.length, 1);

    await t.consul.catalog.deregister({ node: "ext-1", serviceid: "ext-svc" });
    assert.deepEqual(await t.consul.catalog.service.nodes("ext-svc"), []);
    await t.consul.catalog.deregister("ext-1");
    assert.equal((await t.consul.catalog.node.list()).length, 1);
  });

  it("a catalog check registered without Status defaults to critical", async () => {
    await t.consul.catalog.register({
      node: "ext-2",
      address: "10.1.2.4",
      service: { service: "ext-nostatus" },
      check: { name: "no-status", serviceid: "ext-nostatus" },
    });
    const checks = await t.consul.health.checks("ext-nostatus");
    assert.deepEqual(checks.map((c) => [c.CheckID, c.Status]), [["no-status", "critical"]]);
    assert.deepEqual(await t.consul.health.service({ service: "ext-nostatus", passing: true }), []);
  });
});

// ------------------------------------------------------------------------------------------
// Health

describe("health", () => {
  const t = withAgent();

  async function registerWithTtl() {
    const service = "service-h";
    await t.consul.agent.service.register({ name: service, check: { ttl: "60s" } });
    await eventually(
      async () => (await t.consul.health.node(t.agent.node)).find((c) => c.ServiceName === service),
      { message: "service check on node" },
    );
    return service;
  }

  it("node checks include serfHealth, passing", async () => {
    const data = await t.consul.health.node(t.agent.node);
    const serf = data.find((c) => c.CheckID === "serfHealth");
    assert.ok(serf, JSON.stringify(data));
    assert.equal(serf.Node, t.agent.node);
    assert.equal(serf.Status, "passing");
  });

  it("checks for a service", async () => {
    const service = await registerWithTtl();
    const data = (await t.consul.health.checks(service)).find((c) => c.ServiceName === service);
    assert.equal(data.CheckID, "service:" + service);
    assert.equal(data.Node, t.agent.node);
  });

  it("service entries", async () => {
    const service = await registerWithTtl();
    const data = await t.consul.health.service(service);
    assert.equal(data.length, 1);
    assert.equal(data[0].Node.Node, t.agent.node);
    assert.equal(data[0].Node.Address, "127.0.0.1");
    assert.equal(data[0].Service.ID, service);
    assert.equal(data[0].Service.Service, service);
    assert.deepEqual(data[0].Checks.map((c) => c.CheckID).sort(), ["serfHealth", "service:" + service]);
  });

  it("passing filter follows the TTL check", async () => {
    const service = await registerWithTtl();
    assert.deepEqual(await healthIds(t.consul, { service, passing: true }), []);
    await t.consul.agent.check.pass("service:" + service);
    await eventually(async () => (await healthIds(t.consul, { service, passing: true })).length === 1, {
      message: "instance passing",
    });
  });

  it("state critical and any", async () => {
    const service = await registerWithTtl();
    const critical = await t.consul.health.state("critical");
    assert.equal(critical.length, 1);
    assert.equal(critical[0].ServiceName, service);
    const any = await t.consul.health.state("any");
    assert.equal(any.length, 2);
  });
});

// ------------------------------------------------------------------------------------------
// Session

describe("session", () => {
  const t = withAgent();
  const props = ["CreateIndex", "ID", "Name", "Node", "NodeChecks", "LockDelay", "Behavior", "TTL"];
  const hasProps = (s) => props.forEach((p) => assert.ok(Object.hasOwn(s, p), `session lacks ${p}`));

  it("create returns exactly {ID}", async () => {
    const session = await t.consul.session.create();
    assert.deepEqual(Object.keys(session), ["ID"]);
  });

  it("get, node, list, renew, destroy", async () => {
    const { ID: id } = await t.consul.session.create({ name: "s", ttl: "15s", behavior: "release" });
    const s = await t.consul.session.get(id);
    hasProps(s);
    assert.equal(s.ID, id);
    assert.equal(s.Node, t.agent.node);
    assert.equal(s.TTL, "15s");

    const byNode = await t.consul.session.node(t.agent.node);
    assert.equal(byNode.length, 1);
    byNode.forEach(hasProps);
    assert.deepEqual(await t.consul.session.node("node"), []);

    const list = await t.consul.session.list();
    assert.equal(list.length, 1);
    list.forEach(hasProps);

    const renew = await t.consul.session.renew(id);
    assert.ok(Array.isArray(renew) && renew.length === 1);
    hasProps(renew[0]);

    await t.consul.session.destroy(id);
    assert.equal(await t.consul.session.get(id), undefined);
    await assert.rejects(t.consul.session.renew(id), (err) => err.statusCode === 404);
  });
});

// ------------------------------------------------------------------------------------------
// Status and transactions

describe("status", () => {
  const t = withAgent();

  it("leader and peers", async () => {
    const leader = await t.consul.status.leader();
    assert.match(leader, /^127\.0\.0\.1:\d+$/);
    assert.deepEqual(await t.consul.status.peers(), [leader]);
  });
});

describe("transaction", () => {
  const t = withAgent();

  it("creates two kv pairs", async () => {
    const b64 = (s) => Buffer.from(s).toString("base64");
    const response = await t.consul.transaction.create([
      { KV: { Verb: "set", Key: "key1", Value: b64("value1") } },
      { KV: { Verb: "set", Key: "key2", Value: b64("value2") } },
    ]);
    assert.ok(Array.isArray(response.Results));
    assert.equal(response.Results.length, 2);
    for (const r of response.Results) {
      for (const k of ["CreateIndex", "ModifyIndex", "LockIndex", "Key", "Flags"]) {
        assert.ok(Object.hasOwn(r.KV, k), `txn result lacks ${k}`);
      }
      assert.equal(r.KV.Value ?? null, null); // values are only returned for reads
      assert.equal(r.KV.Session, undefined);
    }
    assert.equal((await t.consul.kv.get("key1")).Value, "value1");
    assert.equal((await t.consul.kv.get("key2")).Value, "value2");
  });

  it("a failed operation rolls back the whole transaction with 409", async () => {
    const b64 = (s) => Buffer.from(s).toString("base64");
    await assert.rejects(
      t.consul.transaction.create([
        { KV: { Verb: "set", Key: "new", Value: b64("x") } },
        { KV: { Verb: "check-index", Key: "missing", Index: 1 } },
      ]),
      (err) => err.statusCode === 409 && Array.isArray(err.response.body.Errors),
    );
    assert.equal(await t.consul.kv.get("new"), undefined);
  });
});
