"""Compatibility tests: the real `py-consul` client (PyPI) against `concord agent -dev`.

Every test starts its own dev agent (binary from $CONCORD_BIN) on OS-chosen ports, so tests
share no state. Assertions follow Consul's documented HTTP API behaviour (and, where noted,
what py-consul's own upstream suite asserts against real Consul), not whatever Concord does.

Run:  CONCORD_BIN=/path/to/concord pytest integration/compat/py
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import os
import queue
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

import consul
from consul import Check

READY_TIMEOUT = 60.0  # seconds; CI shares 2 cores with compilers
POLL = 0.05
LEADER_RE = re.compile(r"^127\.0\.0\.1:\d+$")


# --------------------------------------------------------------------------------------------
# Harness


@dataclasses.dataclass
class Agent:
    proc: subprocess.Popen
    http_port: int
    dns_port: int | None
    node: str
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self) -> consul.Consul:
        return consul.Consul(host="127.0.0.1", port=self.http_port)

    def log_tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"


def eventually(fn, timeout: float = 15.0, interval: float = POLL, message: str = "condition"):
    """Polls `fn` until it returns a truthy value (which is returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not met within {timeout}s; last value: {last!r}")
        time.sleep(interval)


def _concord_bin() -> str:
    path = os.environ.get("CONCORD_BIN")
    if not path:
        pytest.fail("CONCORD_BIN must be set to the path of the concord binary", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"CONCORD_BIN={path!r} is not an executable file", pytrace=False)
    return path


def _stop(agent_proc: subprocess.Popen) -> None:
    if agent_proc.poll() is None:
        agent_proc.terminate()
        try:
            agent_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            agent_proc.kill()
            agent_proc.wait()


def _start_agent(tmp_path: Path) -> Agent:
    node = f"compat-{os.getpid()}"
    log_path = tmp_path / "concord-agent.log"
    args = [
        _concord_bin(), "agent", "-dev",
        "-http-port", "0", "-dns-port", "0", "-server-port", "0", "-serf-lan-port", "0",
        "-node", node,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        # Keep reading (and logging) stdout for the life of the process so it never blocks.
        with open(tmp_path / "concord-agent.stdout", "wb") as out:
            for raw in iter(proc.stdout.readline, b""):
                out.write(raw)
                out.flush()
                lines.put(raw.decode(errors="replace"))

    threading.Thread(target=drain, daemon=True).start()

    # Banner line: "       Client Addr: [127.0.0.1] (HTTP: 41234, DNS: 41235)"
    http_port = dns_port = None
    deadline = time.monotonic() + READY_TIMEOUT
    while http_port is None:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            _stop(proc)
            raise RuntimeError(
                f"concord agent printed no 'Client Addr:' banner line (exit {proc.returncode}); "
                f"stderr:\n{log_path.read_text(errors='replace')[-4000:]}"
            )
        try:
            line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if "Client Addr:" in line:
            m = re.search(r"HTTP:\s*(\d+)", line)
            http_port = int(m.group(1)) if m else None
            m = re.search(r"DNS:\s*(\d+)", line)
            dns_port = int(m.group(1)) if m else None

    agent = Agent(proc=proc, http_port=http_port, dns_port=dns_port, node=node, log_path=log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"concord agent exited ({proc.returncode}); log:\n{agent.log_tail()}")
        try:
            r = requests.get(f"{agent.base}/v1/status/leader", timeout=2)
            leader = r.json() if r.status_code == 200 else None
            if not isinstance(leader, str) or not leader:
                return False
            r = requests.get(f"{agent.base}/v1/catalog/node/{node}", timeout=2)
            return r.status_code == 200 and r.json() is not None
        except (requests.RequestException, ValueError):
            return False

    try:
        eventually(ready, timeout=READY_TIMEOUT, message="agent ready (leader + own node in catalog)")
    except BaseException:
        _stop(proc)
        raise
    return agent


@pytest.fixture
def agent(tmp_path, monkeypatch) -> Agent:
    # py-consul reads these; a developer's shell must not redirect the client.
    for var in ("CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY"):
        monkeypatch.delenv(var, raising=False)
    a = _start_agent(tmp_path)
    yield a
    _stop(a.proc)
    print(f"---- concord agent log (tail) {a.log_path} ----\n{a.log_tail()}")  # shown on failure


@pytest.fixture
def c(agent) -> consul.Consul:
    return agent.client()


@pytest.fixture
def status_server():
    """A local HTTP server: GET /status/<code> answers with that status code."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            m = re.match(r"^/status/(\d{3})$", self.path)
            code = int(m.group(1)) if m else 404
            location = None
            if self.path == "/redirect":
                code, location = 301, "/status/200"
            elif self.path == "/needs-header":
                code = 200 if self.headers.get("X-Probe") == "yes" else 401
            body = f"status {code}\n".encode()
            self.send_response(code)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def check_status(c: consul.Consul, check_id: str):
    chk = c.agent.checks().get(check_id)
    return chk["Status"] if chk else None


def health_ids(c: consul.Consul, service: str, **kw) -> list[str]:
    _, nodes = c.health.service(service, **kw)
    return sorted(n["Service"]["ID"] for n in nodes)


# --------------------------------------------------------------------------------------------
# KV


class TestKV:
    def test_put_get_roundtrip_and_index_header(self, c):
        idx, data = c.kv.get("app/missing")
        # Missing key: 404 -> None, but X-Consul-Index is still set (py-consul raises otherwise).
        assert data is None
        assert int(idx) > 0

        assert c.kv.put("app/config", "hello") is True
        idx, data = c.kv.get("app/config")
        assert data["Key"] == "app/config"
        assert data["Value"] == b"hello"
        assert data["Flags"] == 0
        assert data["LockIndex"] == 0
        assert "Session" not in data
        assert data["CreateIndex"] == data["ModifyIndex"]
        assert int(idx) >= data["ModifyIndex"] > 0

        # Overwrite keeps CreateIndex, bumps ModifyIndex.
        assert c.kv.put("app/config", "world") is True
        _, data2 = c.kv.get("app/config")
        assert data2["Value"] == b"world"
        assert data2["CreateIndex"] == data["CreateIndex"]
        assert data2["ModifyIndex"] > data["ModifyIndex"]

    def test_binary_unicode_and_empty_values(self, c):
        c.kv.put("enc/bin", struct.pack("i", 1000))
        _, data = c.kv.get("enc/bin")
        assert struct.unpack("i", data["Value"]) == (1000,)

        c.kv.put("enc/utf8", "grüße ✓")
        _, data = c.kv.get("enc/utf8")
        assert data["Value"].decode("utf-8") == "grüße ✓"

        # An empty value comes back as JSON null (py-consul's own suite asserts this on Consul).
        c.kv.put("enc/empty", "")
        _, data = c.kv.get("enc/empty")
        assert data["Value"] is None
        c.kv.put("enc/none", None)
        _, data = c.kv.get("enc/none")
        assert data["Value"] is None

    def test_keys_with_special_characters(self, c):
        key = "weird/key with spaces/and+plus/ünï"
        assert c.kv.put(key, "v") is True
        _, data = c.kv.get(key)
        assert data["Key"] == key
        assert data["Value"] == b"v"

    def test_blocking_get_returns_on_change(self, agent, c):
        c.kv.put("block/key", "v1")
        idx, data = c.kv.get("block/key")
        assert data["Value"] == b"v1"

        def writer():
            time.sleep(0.5)
            agent.client().kv.put("block/key", "v2")

        t = threading.Thread(target=writer)
        t.start()
        start = time.monotonic()
        idx2, data2 = c.kv.get("block/key", index=idx, wait="20s")
        elapsed = time.monotonic() - start
        t.join()
        assert data2["Value"] == b"v2"
        assert int(idx2) > int(idx)
        assert elapsed >= 0.3, f"blocking query returned after {elapsed:.3f}s, before the write"
        assert elapsed < 15, f"blocking query did not wake on the write ({elapsed:.3f}s)"

    def test_blocking_get_times_out_with_same_index(self, c):
        c.kv.put("block/idle", "v")
        idx, _ = c.kv.get("block/idle")
        start = time.monotonic()
        idx2, data = c.kv.get("block/idle", index=idx, wait="1s")
        elapsed = time.monotonic() - start
        assert idx2 == idx
        assert data["Value"] == b"v"
        # wait plus up to wait/16 jitter; generous upper bound for a loaded CI box.
        assert 0.9 <= elapsed < 5, f"returned after {elapsed:.3f}s for wait=1s"

    def test_blocking_get_on_missing_key_wakes_on_create(self, agent, c):
        idx, data = c.kv.get("block/later")
        assert data is None

        def writer():
            time.sleep(0.3)
            agent.client().kv.put("block/later", "now")

        t = threading.Thread(target=writer)
        t.start()
        idx2, data = c.kv.get("block/later", index=idx, wait="20s")
        t.join()
        assert data is not None and data["Value"] == b"now"
        assert int(idx2) > int(idx)

    def test_recurse(self, c):
        _, data = c.kv.get("tree/", recurse=True)
        assert data is None

        c.kv.put("tree/", None)
        c.kv.put("tree/b", "2")
        c.kv.put("tree/a", "1")
        c.kv.put("tree/sub/c", "3")
        c.kv.put("treehouse", "x")  # shares the string prefix "tree"
        _, data = c.kv.get("tree/", recurse=True)
        assert [d["Key"] for d in data] == ["tree/", "tree/a", "tree/b", "tree/sub/c"]
        assert [d["Value"] for d in data] == [None, b"1", b"2", b"3"]

        _, data = c.kv.get("tree", recurse=True)
        assert [d["Key"] for d in data] == ["tree/", "tree/a", "tree/b", "tree/sub/c", "treehouse"]

    def test_keys_and_separator(self, c):
        c.kv.put("bar", "4")
        c.kv.put("base/foo", "1")
        c.kv.put("base/base/foo", "5")
        c.kv.put("base/base/deeper/x", "6")

        _, keys = c.kv.get("base/", keys=True, separator="/")
        assert keys == ["base/base/", "base/foo"]

        _, keys = c.kv.get("base/", keys=True)
        assert keys == ["base/base/deeper/x", "base/base/foo", "base/foo"]

        _, keys = c.kv.get("", keys=True, separator="/")
        assert keys == ["bar", "base/"]

        _, keys = c.kv.get("nothing-here/", keys=True)
        assert keys is None  # 404 for an empty non-root prefix

    def test_cas(self, c):
        assert c.kv.put("cas/k", "bar", cas=50) is False  # key missing, index != 0
        assert c.kv.put("cas/k", "bar", cas=0) is True  # create-only
        assert c.kv.put("cas/k", "again", cas=0) is False  # exists now
        _, data = c.kv.get("cas/k")
        assert data["Value"] == b"bar"

        assert c.kv.put("cas/k", "bar2", cas=data["ModifyIndex"] - 1) is False
        assert c.kv.put("cas/k", "bar2", cas=data["ModifyIndex"]) is True
        _, data2 = c.kv.get("cas/k")
        assert data2["Value"] == b"bar2"

        assert c.kv.delete("cas/k", cas=data2["ModifyIndex"] - 1) is False
        _, still = c.kv.get("cas/k")
        assert still == data2
        assert c.kv.delete("cas/k", cas=data2["ModifyIndex"]) is True
        _, gone = c.kv.get("cas/k")
        assert gone is None

    def test_flags(self, c):
        c.kv.put("flags/k", "bar")
        _, data = c.kv.get("flags/k")
        assert data["Flags"] == 0

        assert c.kv.put("flags/k", "bar", flags=50) is True
        _, data = c.kv.get("flags/k")
        assert data["Flags"] == 50

        max_u64 = 2**64 - 1  # flags are documented as uint64
        assert c.kv.put("flags/k", "bar", flags=max_u64) is True
        _, data = c.kv.get("flags/k")
        assert data["Flags"] == max_u64

        # A PUT without ?flags stores flags 0.
        assert c.kv.put("flags/k", "baz") is True
        _, data = c.kv.get("flags/k")
        assert data["Flags"] == 0

    def test_delete_and_delete_recurse(self, c):
        for k in ("del/foo1", "del/foo2", "del/foo3", "del/sub/x", "delta"):
            c.kv.put(k, "v")
        assert c.kv.delete("del/foo2") is True
        _, data = c.kv.get("del/", recurse=True)
        assert [d["Key"] for d in data] == ["del/foo1", "del/foo3", "del/sub/x"]

        assert c.kv.delete("del/does-not-exist") is True  # deleting a missing key is not an error

        assert c.kv.delete("del/", recurse=True) is True
        _, data = c.kv.get("del/", recurse=True)
        assert data is None
        _, data = c.kv.get("delta")
        assert data["Value"] == b"v"  # outside the deleted prefix

    def test_consistency_modes(self, c):
        c.kv.put("cons/k", "v")
        for mode in ("consistent", "stale"):
            idx, data = c.kv.get("cons/k", consistency=mode)
            assert data["Value"] == b"v", mode
            assert int(idx) > 0

    def test_value_size_limit(self, c):
        assert c.kv.put("big/ok", b"x" * (512 * 1024)) is True  # 512 KiB is the documented max
        with pytest.raises(consul.ConsulException) as e:
            c.kv.put("big/too-big", b"x" * (512 * 1024 + 1))
        assert "413" in str(e.value)
        _, data = c.kv.get("big/too-big")
        assert data is None

    def test_unknown_datacenter_is_an_error(self, c):
        with pytest.raises(consul.ConsulException):
            c.kv.get("x", dc="dc2")
        with pytest.raises(consul.ConsulException):
            c.kv.put("x", "y", dc="dc2")


# --------------------------------------------------------------------------------------------
# Sessions and locks


class TestSessions:
    def test_create_info_list_node_destroy(self, agent, c):
        sid = c.session.create(name="my-session")
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", sid)

        _, sessions = c.session.list()
        assert [s["Name"] for s in sessions] == ["my-session"]

        _, info = c.session.info(sid)
        assert info["ID"] == sid
        assert info["Name"] == "my-session"
        assert info["Node"] == agent.node
        assert info["Behavior"] == "release"
        assert info["LockDelay"] == 15 * 10**9  # default 15s, in nanoseconds
        assert info["TTL"] == ""
        assert "serfHealth" in info["NodeChecks"]  # the default health check of a session
        assert info["CreateIndex"] > 0

        _, missing = c.session.info("1" * 8 + "-1111-1111-1111-" + "1" * 12)
        assert missing is None

        _, by_node = c.session.node(agent.node)
        assert [s["ID"] for s in by_node] == [sid]
        _, none = c.session.node("no-such-node")
        assert none == []

        assert c.session.destroy(sid) is True
        _, sessions = c.session.list()
        assert sessions == []
        _, info = c.session.info(sid)
        assert info is None

    def test_create_errors(self, c):
        with pytest.raises(consul.ConsulException):
            c.session.create(node="no-such-node")
        with pytest.raises(consul.ConsulException):
            c.session.create(dc="dc2")

    def test_ttl_renew_and_delete_behavior(self, c):
        sid = c.session.create(behavior="delete", ttl=20)
        with pytest.raises(consul.NotFound):
            c.session.renew("1" * 8 + "-1111-1111-1111-" + "1" * 12)

        renewed = c.session.renew(sid)
        assert renewed["ID"] == sid
        assert renewed["Behavior"] == "delete"
        assert renewed["TTL"] == "20s"

        assert c.kv.put("eph/k", "1", acquire=sid) is True
        _, data = c.kv.get("eph/k")
        assert data["Value"] == b"1"
        assert data["Session"] == sid

        assert c.session.destroy(sid) is True
        _, data = c.kv.get("eph/k")
        assert data is None  # behavior=delete removes held keys

    def test_acquire_release(self, c):
        with pytest.raises(consul.ConsulException):
            c.kv.put("lock/k", "bar", acquire="not-a-session")

        s1 = c.session.create(name="s1")
        s2 = c.session.create(name="s2")

        assert c.kv.put("lock/k", "1", acquire=s1) is True
        _, data = c.kv.get("lock/k")
        assert data["Session"] == s1
        assert data["LockIndex"] == 1

        assert c.kv.put("lock/k", "2", acquire=s2) is False
        _, data = c.kv.get("lock/k")
        assert data["Value"] == b"1" and data["Session"] == s1

        assert c.kv.put("lock/k", "1b", acquire=s1) is True  # the holder may update
        _, data = c.kv.get("lock/k")
        assert data["Value"] == b"1b" and data["LockIndex"] == 1

        assert c.kv.put("lock/k", "x", release=s2) is False
        assert c.kv.put("lock/k", "3", release=s1) is True
        _, data = c.kv.get("lock/k")
        assert "Session" not in data
        assert data["LockIndex"] == 1
        assert data["Value"] == b"3"

        # A released (not invalidated) lock has no lock-delay.
        assert c.kv.put("lock/k", "4", acquire=s2) is True
        _, data = c.kv.get("lock/k")
        assert data["Session"] == s2 and data["LockIndex"] == 2

        assert c.session.destroy(s1) is True
        assert c.session.destroy(s2) is True

    def test_lock_delay_after_invalidation(self, c):
        s1 = c.session.create(name="holder")  # default LockDelay 15s
        s2 = c.session.create(name="waiter")
        assert c.kv.put("ld/k", "v", acquire=s1) is True
        assert c.session.destroy(s1) is True
        _, data = c.kv.get("ld/k")
        assert data is not None and "Session" not in data  # released, not deleted
        # Within the lock-delay window nobody may take the lock.
        assert c.kv.put("ld/k", "w", acquire=s2) is False

        s3 = c.session.create(name="fast", lock_delay=0)
        s4 = c.session.create(name="fast-waiter")
        assert c.kv.put("ld/fast", "v", acquire=s3) is True
        assert c.session.destroy(s3) is True
        assert c.kv.put("ld/fast", "w", acquire=s4) is True

    def test_service_check_invalidates_session(self, c):
        # The leader-election pattern: a session tied to the service's health check.
        c.agent.service.register("leader-svc", check=Check.ttl("30s"))
        c.agent.check.ttl_pass("service:leader-svc")

        def check_passing_in_catalog():
            _, cs = c.health.checks("leader-svc")
            return cs and cs[0]["Status"] == "passing"

        eventually(check_passing_in_catalog, message="service check passing in catalog")
        sid = c.session.create(name="leader", checks=["serfHealth", "service:leader-svc"], lock_delay=0)
        assert c.kv.put("election/leader", "me", acquire=sid) is True

        c.agent.check.ttl_fail("service:leader-svc")

        def invalidated():
            _, info = c.session.info(sid)
            return info is None

        eventually(invalidated, message="session invalidated by its critical check")
        _, data = c.kv.get("election/leader")
        assert "Session" not in data  # lock released

    def test_ttl_expiry_invalidates_session(self, c):
        sid = c.session.create(name="short-lived", ttl=10, lock_delay=0)
        assert c.kv.put("ttl/lock", "x", acquire=sid) is True

        def gone():
            _, info = c.session.info(sid)
            return info is None

        # Consul may reap a session up to 2x TTL after its last renewal.
        eventually(gone, timeout=40, interval=0.5, message="TTL session expired")
        _, data = c.kv.get("ttl/lock")
        assert "Session" not in data

    def test_blocking_session_list(self, agent, c):
        idx, sessions = c.session.list()
        assert sessions == []

        def writer():
            time.sleep(0.3)
            agent.client().session.create(name="later")

        t = threading.Thread(target=writer)
        t.start()
        deadline = time.monotonic() + 15
        while not sessions and time.monotonic() < deadline:
            idx, sessions = c.session.list(index=idx, wait="10s")
        t.join()
        assert [s["Name"] for s in sessions] == ["later"]


# --------------------------------------------------------------------------------------------
# Transactions


class TestTxn:
    def test_set_and_get(self, c):
        r = c.txn.put([
            {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64("1")}},
            {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64("2"), "Flags": 7}},
        ])  # fmt: skip
        assert r["Errors"] is None
        assert [x["KV"]["Key"] for x in r["Results"]] == ["txn/a", "txn/b"]
        assert all(x["KV"].get("Value") is None for x in r["Results"])  # values only for reads
        assert r["Results"][1]["KV"]["Flags"] == 7

        r = c.txn.put([{"KV": {"Verb": "get", "Key": "txn/a"}}])
        assert r["Results"][0]["KV"]["Value"] == b64("1")

        _, data = c.kv.get("txn/b")
        assert data["Value"] == b"2" and data["Flags"] == 7

    def test_rollback_is_409_and_atomic(self, c):
        c.kv.put("txn/existing", "x")
        with pytest.raises(consul.ConsulException) as e:
            c.txn.put([
                {"KV": {"Verb": "set", "Key": "txn/new", "Value": b64("n")}},
                {"KV": {"Verb": "cas", "Key": "txn/existing", "Value": b64("y"), "Index": 1}},
            ])  # fmt: skip
        assert "409" in str(e.value)
        _, data = c.kv.get("txn/new")
        assert data is None  # first op rolled back
        _, data = c.kv.get("txn/existing")
        assert data["Value"] == b"x"

    def test_delete_tree_and_check_not_exists(self, c):
        c.kv.put("txd/a", "1")
        c.kv.put("txd/b", "2")
        r = c.txn.put([
            {"KV": {"Verb": "check-not-exists", "Key": "txd/c"}},
            {"KV": {"Verb": "delete-tree", "Key": "txd/"}},
        ])  # fmt: skip
        assert r["Errors"] is None
        _, data = c.kv.get("txd/", recurse=True)
        assert data is None

    def test_get_tree_and_lock_verbs(self, c):
        sid = c.session.create(name="txn-lock")
        r = c.txn.put([
            {"KV": {"Verb": "set", "Key": "tt/a", "Value": b64("1")}},
            {"KV": {"Verb": "lock", "Key": "tt/lock", "Value": b64("held"), "Session": sid}},
            {"KV": {"Verb": "check-session", "Key": "tt/lock", "Session": sid}},
            {"KV": {"Verb": "get-tree", "Key": "tt/"}},
        ])  # fmt: skip
        assert r["Errors"] is None
        tree = [x["KV"] for x in r["Results"][3:]]
        assert [kv["Key"] for kv in tree] == ["tt/a", "tt/lock"]
        assert tree[1]["Session"] == sid
        _, data = c.kv.get("tt/lock")
        assert data["Session"] == sid and data["LockIndex"] == 1


# --------------------------------------------------------------------------------------------
# Agent: services and checks


class TestAgentServices:
    def test_register_minimal_exact_shape(self, c):
        assert c.agent.services() == {}
        assert c.agent.service.register("foo") is True
        # The exact document py-consul's own suite asserts against Consul 1.20–1.22.
        assert c.agent.services() == {
            "foo": {
                "Address": "",
                "Datacenter": "dc1",
                "EnableTagOverride": False,
                "ID": "foo",
                "Meta": {},
                "Port": 0,
                "Service": "foo",
                "Tags": [],
                "Weights": {"Passing": 1, "Warning": 1},
            }
        }
        assert c.agent.service.deregister("foo") is True
        assert c.agent.services() == {}

    def test_register_full_with_ttl_check(self, agent, c):
        assert c.agent.service.register(
            "web",
            service_id="web-1",
            address="10.10.10.1",
            port=8080,
            tags=["v1", "primary"],
            meta={"version": "1.2.3"},
            check=Check.ttl("10s"),
            enable_tag_override=True,
        ) is True  # fmt: skip

        svc = c.agent.services()["web-1"]
        assert svc["ID"] == "web-1"
        assert svc["Service"] == "web"
        assert svc["Address"] == "10.10.10.1"
        assert svc["Port"] == 8080
        assert svc["Tags"] == ["v1", "primary"]
        assert svc["Meta"] == {"version": "1.2.3"}
        assert svc["EnableTagOverride"] is True

        chk = c.agent.checks()["service:web-1"]
        assert chk["Node"] == agent.node
        assert chk["Status"] == "critical"  # TTL checks start critical
        assert chk["ServiceID"] == "web-1"
        assert chk["ServiceName"] == "web"
        assert chk["ServiceTags"] == ["v1", "primary"]
        assert chk["Type"] == "ttl"
        assert chk["Name"] == "Service 'web' check"

        # The catalog follows (anti-entropy syncs the registration).
        def in_catalog():
            _, nodes = c.catalog.service("web")
            return nodes

        nodes = eventually(in_catalog, message="web in catalog")
        assert nodes[0]["ServiceID"] == "web-1"
        assert nodes[0]["ServiceAddress"] == "10.10.10.1"
        assert nodes[0]["ServicePort"] == 8080
        assert nodes[0]["ServiceTags"] == ["v1", "primary"]
        assert nodes[0]["ServiceMeta"] == {"version": "1.2.3"}
        assert nodes[0]["Node"] == agent.node

    def test_reregister_updates_in_place(self, c):
        c.agent.service.register("upd", port=1000, tags=["a"])
        c.agent.service.register("upd", port=2000, tags=["b"], weights={"Passing": 3, "Warning": 1})
        svc = c.agent.services()["upd"]
        assert svc["Port"] == 2000 and svc["Tags"] == ["b"]
        assert svc["Weights"] == {"Passing": 3, "Warning": 1}
        assert list(c.agent.services()) == ["upd"]

        def synced():
            _, nodes = c.catalog.service("upd")
            return len(nodes) == 1 and nodes[0]["ServicePort"] == 2000 and nodes[0]["ServiceTags"] == ["b"]

        eventually(synced, message="catalog shows the re-registered service")

    def test_replace_existing_checks(self, c):
        c.agent.service.register("rep", check=Check.ttl("10s"), extra_checks=[Check.ttl("20s")])
        assert sorted(k for k in c.agent.checks() if "rep" in k) == ["service:rep:1", "service:rep:2"]
        # Without the flag, checks missing from the new definition are kept ...
        c.agent.service.register("rep", check={"ttl": "10s", "CheckID": "rep-a"})
        assert {"rep-a", "service:rep:1", "service:rep:2"} <= set(c.agent.checks())
        # ... with ?replace-existing-checks they are removed.
        c.agent.service.register("rep", check={"ttl": "10s", "CheckID": "rep-a"}, replace_existing_checks=True)
        assert sorted(k for k in c.agent.checks() if "rep" in k) == ["rep-a"]

    def test_service_definition_endpoint(self, c):
        c.agent.service.register("def", service_id="def-1", port=81, tags=["t"])
        d = c.agent.service_definition("def-1")
        assert d["ID"] == "def-1" and d["Service"] == "def" and d["Port"] == 81 and d["Tags"] == ["t"]
        assert isinstance(d["ContentHash"], str) and d["ContentHash"]

    def test_ttl_pass_warn_fail_and_notes(self, c):
        c.agent.service.register("api", check=Check.ttl("10s"))
        cid = "service:api"
        assert check_status(c, cid) == "critical"

        assert c.agent.check.ttl_pass(cid) is True
        assert check_status(c, cid) == "passing"
        assert c.agent.check.ttl_pass(cid, notes="all good") is True
        assert c.agent.checks()[cid]["Output"] == "all good"

        assert c.agent.check.ttl_warn(cid, notes="degraded") is True
        assert check_status(c, cid) == "warning"
        assert c.agent.checks()[cid]["Output"] == "degraded"

        assert c.agent.check.ttl_fail(cid, notes="boom") is True
        assert check_status(c, cid) == "critical"
        assert c.agent.checks()[cid]["Output"] == "boom"

        # Unknown check ID: 404, which py-consul's boolean callback reports as False.
        assert c.agent.check.ttl_pass("no-such-check") is False

    def test_ttl_expiry_turns_critical(self, c):
        c.agent.service.register("short", check=Check.ttl("1s"))
        assert c.agent.check.ttl_pass("service:short") is True
        assert check_status(c, "service:short") == "passing"
        eventually(lambda: check_status(c, "service:short") == "critical", timeout=10, message="TTL expiry")

    def test_passing_filter_follows_ttl(self, c):
        c.agent.service.register("foo", service_id="foo:1", check=Check.ttl("10s"), tags=["tag:foo:1"])
        c.agent.service.register("foo", service_id="foo:2", check=Check.ttl("10s"))

        eventually(lambda: health_ids(c, "foo") == ["foo:1", "foo:2"], message="both instances in health")
        assert health_ids(c, "foo", passing=True) == []

        c.agent.check.ttl_pass("service:foo:1")
        eventually(lambda: health_ids(c, "foo", passing=True) == ["foo:1"], message="foo:1 passing")
        c.agent.check.ttl_pass("service:foo:2")
        eventually(lambda: health_ids(c, "foo", passing=True) == ["foo:1", "foo:2"], message="both passing")

        # A warning instance is not "passing" either.
        c.agent.check.ttl_warn("service:foo:2")
        eventually(lambda: health_ids(c, "foo", passing=True) == ["foo:1"], message="foo:2 warning excluded")

        assert health_ids(c, "foo", tag="tag:foo:1") == ["foo:1"]

    def test_http_check_statuses(self, c, status_server):
        for code, svc in ((200, "http-ok"), (429, "http-busy"), (503, "http-down")):
            assert c.agent.service.register(svc, check=Check.http(f"{status_server}/status/{code}", "1s")) is True
        assert c.agent.checks()["service:http-ok"]["Type"] == "http"

        expected = {"http-ok": "passing", "http-busy": "warning", "http-down": "critical"}

        def statuses():
            checks = c.agent.checks()
            got = {svc: checks[f"service:{svc}"]["Status"] for svc in expected}
            # critical is also the initial state: also require output from a real run
            ran = checks["service:http-down"]["Output"] != ""
            return got == expected and ran

        eventually(statuses, timeout=20, message=f"HTTP check statuses {expected}")
        eventually(lambda: health_ids(c, "http-ok", passing=True) == ["http-ok"], message="http-ok passing")
        assert health_ids(c, "http-down", passing=True) == []

    def test_http_check_follows_redirects_and_sends_headers(self, c, status_server):
        c.agent.service.register("redir", check=Check.http(f"{status_server}/redirect", "1s"))
        hdr = Check.http(f"{status_server}/needs-header", "1s", header={"X-Probe": ["yes"]})
        c.agent.service.register("hdr", check=hdr)

        def passing():
            checks = c.agent.checks()
            return all(checks[f"service:{k}"]["Status"] == "passing" for k in ("redir", "hdr"))

        eventually(passing, timeout=20, message="redirect-following and header HTTP checks passing")

    def test_http_check_disable_redirects(self, c, status_server):
        # DisableRedirects (documented, default false): the 301 itself is the result -> critical.
        c.agent.service.register(
            "redir-off", check={"http": f"{status_server}/redirect", "interval": "1s", "DisableRedirects": True}
        )

        def ran():
            chk = c.agent.checks()["service:redir-off"]
            return chk if chk["Output"] != "" else None

        chk = eventually(ran, timeout=20, message="redir-off check ran")
        assert chk["Status"] == "critical", chk["Output"]

    def test_tcp_check(self, c):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        open_port = listener.getsockname()[1]
        closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        try:
            assert c.agent.service.register("tcp-up", check=Check.tcp("127.0.0.1", open_port, "1s")) is True
            assert c.agent.service.register("tcp-down", check=Check.tcp("127.0.0.1", closed_port, "1s")) is True
            assert c.agent.checks()["service:tcp-up"]["Type"] == "tcp"
            eventually(lambda: check_status(c, "service:tcp-up") == "passing", timeout=20, message="tcp-up")

            def down_ran():
                chk = c.agent.checks()["service:tcp-down"]
                return chk["Status"] == "critical" and chk["Output"] != ""

            eventually(down_ran, timeout=20, message="tcp-down critical with output")
        finally:
            listener.close()

    def test_multiple_checks_ids(self, c, status_server):
        c.agent.service.register(
            "multi",
            check=Check.ttl("10s"),
            extra_checks=[Check.ttl("20s"), Check.http(f"{status_server}/status/200", "1s")],
        )
        ids = sorted(k for k in c.agent.checks() if k.startswith("service:multi"))
        assert ids == ["service:multi:1", "service:multi:2", "service:multi:3"]

        def health_checks():
            _, checks = c.health.checks("multi")
            return sorted(x["CheckID"] for x in checks)

        eventually(lambda: health_checks() == ids, message="all three checks in health/checks")

    def test_standalone_check_register_and_deregister(self, c):
        assert c.agent.check.register("disk", Check.ttl("30s"), notes="disk usage") is True
        chk = c.agent.checks()["disk"]
        assert chk["Name"] == "disk"
        assert chk["Notes"] == "disk usage"
        assert chk["ServiceID"] == ""
        assert c.agent.check.register("named", Check.ttl("30s"), check_id="custom-id") is True
        assert "custom-id" in c.agent.checks()
        assert c.agent.check.deregister("disk") is True
        assert c.agent.check.deregister("custom-id") is True
        assert c.agent.checks() == {}

    def test_check_for_unknown_service_is_rejected(self, c):
        try:
            ok = c.agent.check.register("orphan", Check.ttl("10s"), service_id="no-such-service")
        except consul.ConsulException:
            ok = False
        assert ok is False
        assert c.agent.checks() == {}

    def test_deregister_removes_service_and_checks(self, c):
        c.agent.service.register("gone", check=Check.ttl("10s"))
        eventually(lambda: health_ids(c, "gone") == ["gone"], message="gone in health")
        assert c.agent.service.deregister("gone") is True
        assert "gone" not in c.agent.services()
        assert "service:gone" not in c.agent.checks()
        eventually(lambda: health_ids(c, "gone") == [], message="gone removed from catalog")
        _, checks = c.health.checks("gone")
        assert checks == []
        # Unknown service ID: 404, reported by py-consul as False.
        assert c.agent.service.deregister("gone") is False

    def test_service_id_needing_url_escaping(self, c):
        # https://github.com/cablehead/python-consul/issues/156
        name = "app#127.0.0.1#3000"
        assert c.agent.service.register(name) is True
        eventually(lambda: health_ids(c, name) == [name], message="escaped service in health")
        assert c.agent.service.deregister(name) is True
        eventually(lambda: health_ids(c, name) == [], message="escaped service removed")

    def test_tagged_addresses(self, c):
        assert c.agent.service.register(
            "tagged",
            tagged_addresses={
                "lan": {"address": "10.10.10.1", "port": 8080},
                "wan": {"address": "192.168.1.1", "port": 80},
            },
        ) is True  # fmt: skip
        assert c.agent.services()["tagged"]["TaggedAddresses"] == {
            "lan": {"Address": "10.10.10.1", "Port": 8080},
            "wan": {"Address": "192.168.1.1", "Port": 80},
        }

    def test_service_and_node_maintenance(self, c):
        c.agent.service.register("maint", check=Check.ttl("10s"))
        assert c.agent.service.maintenance("maint", "true", "upgrading") is True
        chk = c.agent.checks()["_service_maintenance:maint"]
        assert chk["Status"] == "critical"
        assert chk["Notes"] == "upgrading"
        assert chk["ServiceID"] == "maint"
        assert c.agent.service.maintenance("maint", "false") is True
        assert "_service_maintenance:maint" not in c.agent.checks()

        assert c.agent.maintenance("true", "node work") is True
        chk = c.agent.checks()["_node_maintenance"]
        assert chk["Status"] == "critical"
        assert chk["Notes"] == "node work"
        assert c.agent.maintenance("false") is True
        assert "_node_maintenance" not in c.agent.checks()

    def test_maintenance_enable_accepts_python_bools(self, c):
        # py-consul types `enable` as bool; requests sends True/False as "True"/"False", which
        # Consul parses with Go's strconv.ParseBool (1, t, T, TRUE, true, True, 0, f, F, ...).
        c.agent.service.register("maint2")
        assert c.agent.service.maintenance("maint2", True, "bool") is True
        assert c.agent.checks()["_service_maintenance:maint2"]["Status"] == "critical"
        assert c.agent.service.maintenance("maint2", False) is True
        assert "_service_maintenance:maint2" not in c.agent.checks()
        assert c.agent.maintenance(True, "bool") is True
        assert "_node_maintenance" in c.agent.checks()
        assert c.agent.maintenance(False) is True
        assert "_node_maintenance" not in c.agent.checks()


# --------------------------------------------------------------------------------------------
# Health


class TestHealth:
    def test_node(self, agent, c):
        _, checks = c.health.node(agent.node)
        serf = [x for x in checks if x["CheckID"] == "serfHealth"]
        assert len(serf) == 1
        assert serf[0]["Node"] == agent.node
        assert serf[0]["Status"] == "passing"
        assert serf[0]["Name"] == "Serf Health Status"
        assert serf[0]["ServiceID"] == ""

        _, none = c.health.node("no-such-node")
        assert none == []

    def test_service_entries_include_node_and_serf_checks(self, agent, c):
        c.agent.service.register("db", service_id="db-1", port=5432, check=Check.ttl("10s"))

        def entries():
            _, nodes = c.health.service("db")
            return nodes

        nodes = eventually(entries, message="db in health")
        assert len(nodes) == 1
        entry = nodes[0]
        assert entry["Node"]["Node"] == agent.node
        assert entry["Node"]["Address"] == "127.0.0.1"
        assert entry["Service"]["ID"] == "db-1"
        assert entry["Service"]["Service"] == "db"
        assert entry["Service"]["Port"] == 5432
        assert sorted(x["CheckID"] for x in entry["Checks"]) == ["serfHealth", "service:db-1"]
        assert {x["ServiceID"] for x in entry["Checks"]} == {"", "db-1"}

        _, nodes = c.health.service("no-such-service")
        assert nodes == []

    def test_checks_for_service(self, c):
        c.agent.service.register("foobar", service_id="foobar", check=Check.ttl("10s"))

        def checks():
            _, cs = c.health.checks("foobar")
            return cs

        cs = eventually(checks, message="foobar checks")
        assert [x["ServiceID"] for x in cs] == ["foobar"]
        assert [x["CheckID"] for x in cs] == ["service:foobar"]
        assert cs[0]["ServiceName"] == "foobar"
        assert cs[0]["Status"] == "critical"

    def test_state(self, c):
        _, any_ = c.health.state("any")
        assert [x["CheckID"] for x in any_] == ["serfHealth"]

        c.agent.service.register("st", service_id="st:1", check=Check.ttl("10s"))
        c.agent.service.register("st", service_id="st:2", check=Check.ttl("10s"))

        def ids(state):
            _, cs = c.health.state(state)
            return {x["ServiceID"] for x in cs}

        eventually(lambda: ids("any") == {"", "st:1", "st:2"}, message="state any")
        assert ids("critical") == {"st:1", "st:2"}
        assert ids("passing") == {""}

        c.agent.check.ttl_pass("service:st:1")
        c.agent.check.ttl_warn("service:st:2")
        eventually(lambda: ids("passing") == {"", "st:1"}, message="state passing")
        eventually(lambda: ids("warning") == {"st:2"}, message="state warning")
        assert ids("critical") == set()

    def test_service_multiple_tags_are_anded(self, c):
        c.agent.service.register("mt", service_id="mt-1", tags=["a", "b"])
        c.agent.service.register("mt", service_id="mt-2", tags=["a"])
        eventually(lambda: health_ids(c, "mt") == ["mt-1", "mt-2"], message="mt instances")
        assert health_ids(c, "mt", tag="a") == ["mt-1", "mt-2"]
        assert health_ids(c, "mt", tag=["a", "b"]) == ["mt-1"]
        assert health_ids(c, "mt", tag="c") == []

    def test_blocking_health_service(self, agent, c):
        c.agent.service.register("watched", check=Check.ttl("10s"))
        eventually(lambda: health_ids(c, "watched") == ["watched"], message="watched in health")
        idx, _ = c.health.service("watched", passing=True)

        def writer():
            time.sleep(0.5)
            agent.client().agent.check.ttl_pass("service:watched")

        t = threading.Thread(target=writer)
        t.start()
        deadline = time.monotonic() + 15
        nodes = []
        # A blocking query may return early (spurious wake-ups are allowed); loop like a watcher.
        while not nodes and time.monotonic() < deadline:
            new_idx, nodes = c.health.service("watched", passing=True, index=idx, wait="10s")
            assert int(new_idx) >= int(idx)
            idx = new_idx
        t.join()
        assert [n["Service"]["ID"] for n in nodes] == ["watched"]


# --------------------------------------------------------------------------------------------
# Catalog


class TestCatalog:
    def test_initial_state(self, agent, c):
        assert c.catalog.datacenters() == ["dc1"]
        _, nodes = c.catalog.nodes()
        assert [n["Node"] for n in nodes] == [agent.node]
        assert nodes[0]["Address"] == "127.0.0.1"
        assert nodes[0]["Datacenter"] == "dc1"
        _, services = c.catalog.services()
        assert services == {"consul": []}  # servers register the "consul" service

        _, node = c.catalog.node(agent.node)
        assert node["Node"]["Node"] == agent.node
        assert "consul" in {s["Service"] for s in node["Services"].values()}

    def test_register_query_deregister(self, agent, c):
        check = {"name": "c1", "status": "passing"}
        assert c.catalog.register("n1", "10.1.10.11", service={"service": "s1"}, check=check) is True
        assert c.catalog.register("n1", "10.1.10.11", service={"service": "s2"}) is True
        assert c.catalog.register("n2", "10.1.10.12", service={"service": "s1", "tags": ["master"]}) is True

        _, nodes = c.catalog.nodes()
        assert sorted(n["Node"] for n in nodes) == sorted(["n1", "n2", agent.node])

        _, services = c.catalog.services()
        assert services == {"s1": ["master"], "s2": [], "consul": []}

        _, node = c.catalog.node("n1")
        assert node["Node"]["Address"] == "10.1.10.11"
        assert set(node["Services"].keys()) == {"s1", "s2"}
        _, node = c.catalog.node("n3")
        assert node is None

        _, nodes = c.catalog.service("s1")
        assert {n["Node"] for n in nodes} == {"n1", "n2"}
        assert {n["Address"] for n in nodes} == {"10.1.10.11", "10.1.10.12"}
        _, nodes = c.catalog.service("s1", tag="master")
        assert [n["Node"] for n in nodes] == ["n2"]
        assert nodes[0]["ServiceTags"] == ["master"]
        _, nodes = c.catalog.service("no-such-service")
        assert nodes == []

        _, checks = c.health.node("n1")
        assert [x["CheckID"] for x in checks] == ["c1"]

        assert c.catalog.deregister("n1", check_id="c1") is True
        _, checks = c.health.node("n1")
        assert checks == []
        assert c.catalog.deregister("n2", service_id="s1") is True
        _, nodes = c.catalog.nodes()
        assert sorted(n["Node"] for n in nodes) == sorted(["n1", "n2", agent.node])  # nodes kept
        _, nodes = c.catalog.service("s1")
        assert [n["Node"] for n in nodes] == ["n1"]

        assert c.catalog.deregister("n1") is True
        assert c.catalog.deregister("n2") is True
        _, nodes = c.catalog.nodes()
        assert [n["Node"] for n in nodes] == [agent.node]

    def test_tagged_addresses_and_node_meta(self, c):
        assert c.catalog.register(
            "n-tagged", "10.1.10.11",
            service={"service": "s-tagged"},
            tagged_addresses={"lan": "10.1.10.11", "wan": "10.1.10.21"},
        ) is True  # fmt: skip
        _, node = c.catalog.node("n-tagged")
        assert node["Node"]["TaggedAddresses"]["lan"] == "10.1.10.11"
        assert node["Node"]["TaggedAddresses"]["wan"] == "10.1.10.21"

    def test_unknown_datacenter_is_an_error(self, c):
        for call in (
            lambda: c.catalog.nodes(dc="dc2"),
            lambda: c.catalog.services(dc="dc2"),
            lambda: c.catalog.service("s1", dc="dc2"),
            lambda: c.catalog.node("n1", dc="dc2"),
        ):
            with pytest.raises(consul.ConsulException):
                call()

    def test_register_in_unknown_datacenter_is_an_error(self, agent, c):
        # py-consul sends the datacenter in the body ("Datacenter", documented for
        # /catalog/register and /catalog/deregister), not as ?dc=.
        with pytest.raises(consul.ConsulException):
            c.catalog.register("foo", "10.1.10.11", dc="dc2")
        _, nodes = c.catalog.nodes()
        assert [n["Node"] for n in nodes] == [agent.node]  # nothing registered in dc1

    def test_deregister_in_unknown_datacenter_is_an_error(self, c):
        assert c.catalog.register("n-dc", "10.1.10.11") is True
        with pytest.raises(consul.ConsulException):
            c.catalog.deregister("n-dc", dc="dc2")
        _, node = c.catalog.node("n-dc")
        assert node is not None  # still there in dc1

    def test_check_without_status_defaults_to_critical(self, c):
        # py-consul's own suite registers {"name": "c1"} without a status against Consul.
        assert c.catalog.register("n-st", "10.1.10.13", service={"service": "s-st"}, check={"name": "c1"}) is True
        _, checks = c.health.node("n-st")
        assert [(x["CheckID"], x["Status"]) for x in checks] == [("c1", "critical")]

    def test_blocking_catalog_services(self, agent, c):
        idx, services = c.catalog.services()
        assert "late" not in services

        def writer():
            time.sleep(0.5)
            agent.client().catalog.register("n-late", "10.1.10.99", service={"service": "late"})

        t = threading.Thread(target=writer)
        t.start()
        deadline = time.monotonic() + 15
        while "late" not in services and time.monotonic() < deadline:
            idx, services = c.catalog.services(index=idx, wait="10s")
        t.join()
        assert "late" in services


# --------------------------------------------------------------------------------------------
# Agent self / members, status


class TestAgentAndStatus:
    def test_self(self, agent, c):
        me = c.agent.self()
        # The key set py-consul's own suite asserts against Consul 1.20–1.22.
        assert set(me.keys()) == {"Member", "xDS", "Stats", "Config", "Coord", "DebugConfig", "Meta"}
        assert me["Config"]["NodeName"] == agent.node
        assert me["Config"]["Datacenter"] == "dc1"
        assert me["Config"]["Server"] is True
        assert isinstance(me["Config"]["Version"], str) and me["Config"]["Version"]
        assert me["Member"]["Name"] == agent.node
        assert me["Member"]["Addr"] == "127.0.0.1"
        assert me["Member"]["Status"] == 1

    def test_members(self, agent, c):
        members = c.agent.members()
        assert [m["Name"] for m in members] == [agent.node]
        m = members[0]
        assert m["Status"] == 1  # serf "alive"
        assert m["Tags"]["role"] == "consul"
        assert m["Tags"]["dc"] == "dc1"
        assert c.agent.self()["Member"] in members

    def test_wan_members(self, agent, c):
        # A server's WAN pool names members "<node>.<datacenter>".
        wan = c.agent.members(wan=True)
        assert [m["Name"] for m in wan] == [f"{agent.node}.dc1"]

    def test_status_leader_and_peers(self, c):
        leader = c.status.leader()
        assert LEADER_RE.match(leader), leader
        assert c.status.peers() == [leader]

    def test_self_stats_consul_leader_addr(self, c):
        # py-consul's own test_status.py compares status.leader() with this field of a server's
        # agent/self (Stats.consul holds server stats: leader, leader_addr, server, ...).
        stats = c.agent.self()["Stats"]
        assert stats["consul"]["leader_addr"] == c.status.leader()
        assert stats["consul"]["server"] == "true"
        assert stats["consul"]["leader"] == "true"


# --------------------------------------------------------------------------------------------
# Wire details real clients rely on (plain requests, for what py-consul hides)


class TestWire:
    def test_index_headers_on_reads(self, agent, c):
        c.kv.put("w/k", "v")
        for path in ("/v1/kv/w/k", "/v1/kv/w/missing", "/v1/catalog/services", "/v1/health/state/any",
                     "/v1/session/list", f"/v1/catalog/node/{agent.node}"):
            r = requests.get(agent.base + path, timeout=5)
            assert r.status_code in (200, 404), (path, r.status_code)
            assert int(r.headers["X-Consul-Index"]) > 0, path
            assert r.headers["X-Consul-KnownLeader"] == "true", path
            assert "X-Consul-LastContact" in r.headers, path

    def test_raw_value(self, agent, c):
        c.kv.put("w/raw", b"\x00\x01binary")
        r = requests.get(f"{agent.base}/v1/kv/w/raw?raw", timeout=5)
        assert r.status_code == 200
        assert r.content == b"\x00\x01binary"
