//! The control side: follows the local agent's public HTTP API with blocking queries and
//! publishes what the data side reads: TLS material ([`TlsMaterial`]), the intentions for
//! this service, and per upstream its discovery chain and healthy endpoints
//! ([`UpstreamSnapshot`]). Every follower retries with backoff, so an agent restart or a
//! slow server only delays updates; the data side keeps serving from the last snapshot.
//!
//! What is followed, each by its own task:
//! - `/v1/agent/connect/ca/roots` and `/v1/agent/connect/ca/leaf/<service>` (the agent
//!   renews the leaf; a rotation reaches us through the blocking query);
//! - `/v1/connect/intentions/match?by=destination&name=<service>` (highest precedence
//!   first);
//! - per upstream `/v1/discovery-chain/<dest>`, and per chain target
//!   `/v1/health/connect/<target service>?passing[&filter=<subset filter>]`;
//! - the proxy's own registration (`/v1/agent/service/<id>`, hash-blocking on its
//!   `ContentHash`) and, when the registration names no protocol, the service's own
//!   discovery chain for it (`/v1/discovery-chain/<service>`, as the upstreams follow theirs).

pub mod agent;
pub mod spec;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use concord_api::connect::{CaRoots, IssuedCert};
use concord_api::intention::Intention;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{IntentionSnapshot, UpstreamSnapshot};
use crate::tls::TlsMaterial;
use agent::AgentClient;
pub use spec::{ProxySpec, UpstreamSpec};

/// Why the control side could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The agent could not be reached.
    #[error("agent unreachable: {0}")]
    Transport(String),
    /// The agent answered with an error.
    #[error("GET {path}: status {code}: {body}")]
    Status {
        /// Request path.
        path: String,
        /// HTTP status.
        code: u16,
        /// Plain-text body.
        body: String,
    },
    /// The agent's answer was not what the endpoint returns.
    #[error("decoding the agent's answer: {0}")]
    Decode(String),
    /// The registration cannot be proxied as it is.
    #[error("{0}")]
    Config(String),
}

/// First retry delay of a failed query; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the registration is re-read if the agent sends no `X-Consul-ContentHash` to
/// block on (an agent without hash blocking); Concord's and Consul's agents always send it.
const SERVICE_POLL: Duration = Duration::from_secs(1);

/// Aborts a task when dropped, so followers and listeners die with whoever owns them.
#[derive(Debug)]
pub struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TaskGuard {
    /// Aborts the task and waits until it is gone, so what it owned (a listening socket)
    /// is closed on return: dropping the guard only asks the runtime to drop it later.
    pub async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

/// Spawns `task`, aborted when the guard drops.
pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> TaskGuard {
    TaskGuard(tokio::spawn(task))
}

/// Finds the sidecar whose `Proxy.DestinationServiceID` is `service_id` among the agent's
/// services; an error if there is none or several (as Consul's `-sidecar-for`).
pub async fn find_sidecar(client: &AgentClient, service_id: &str) -> Result<String, ControlError> {
    let (_, services) = client
        .get("/v1/agent/services", &[])
        .await?
        .ok_or_else(|| ControlError::Decode("/v1/agent/services: not found".to_string()))?;
    let mut found: Vec<String> = services
        .as_object()
        .map(|m| {
            m.values()
                .filter(|s| s["Kind"] == "connect-proxy")
                .filter(|s| s["Proxy"]["DestinationServiceID"] == service_id)
                .filter_map(|s| s["ID"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ControlError::Config(format!(
            "No sidecar proxy registered for {service_id}"
        ))),
        many => Err(ControlError::Config(format!(
            "More than one sidecar proxy registered for {service_id}. Start proxy with -proxy-id \
             and one of the following IDs: {}",
            many.join(", ")
        ))),
    }
}

/// Reads the proxy's registration once.
pub async fn read_spec(client: &AgentClient, proxy_id: &str) -> Result<ProxySpec, ControlError> {
    let path = format!("/v1/agent/service/{proxy_id}");
    let (_, svc) = client
        .get(&path, &[])
        .await?
        .ok_or_else(|| ControlError::Config(format!("Unknown proxy service ID: {proxy_id}")))?;
    let mut chain_protocol = None;
    if needs_chain_protocol(&svc) {
        let path = format!(
            "/v1/discovery-chain/{}",
            ProxySpec::from_agent_service(&svc)?.service
        );
        if let Some((_, chain)) = client.get(&path, &[]).await? {
            chain_protocol = chain["Chain"]["Protocol"].as_str().map(str::to_string);
        }
    }
    spec_of(&svc, chain_protocol.as_deref())
}

/// Whether the registration names no protocol, so the service's own (as its discovery
/// chain compiles it: service-defaults, then proxy-defaults, then tcp) applies, as in Consul.
fn needs_chain_protocol(svc: &Value) -> bool {
    svc["Proxy"]["Config"]["protocol"].is_null()
}

/// The spec of a registration, with the chain's protocol when the registration has none.
fn spec_of(svc: &Value, chain_protocol: Option<&str>) -> Result<ProxySpec, ControlError> {
    let mut spec = ProxySpec::from_agent_service(svc)?;
    if let Some(protocol) = chain_protocol.filter(|_| needs_chain_protocol(svc)) {
        spec.protocol = protocol.to_ascii_lowercase();
    }
    Ok(spec)
}

/// Whether the agent denies connections no intention matches (`/v1/agent/self`, as
/// `/v1/agent/connect/authorize` decides); allow when it does not say.
pub async fn default_allow(client: &AgentClient) -> Result<bool, ControlError> {
    let me = client.get("/v1/agent/self", &[]).await?;
    let policy = me
        .as_ref()
        .and_then(|(_, v)| v["DebugConfig"]["DefaultIntentionPolicy"].as_str())
        .unwrap_or("allow");
    Ok(policy != "deny")
}

/// Runs blocking queries on `path` until the task is aborted, calling `apply` with every
/// new answer (the first one included). A 404 counts as `Value::Null`.
async fn follow(
    client: AgentClient,
    what: String,
    path: String,
    query: Vec<(&'static str, String)>,
    apply: impl FnMut(Value) + Send,
) {
    follow_from(client, what, path, query, 0, apply).await;
}

/// [`follow`] from `index`: the caller already applied the answer at that index.
async fn follow_from(
    client: AgentClient,
    what: String,
    path: String,
    query: Vec<(&'static str, String)>,
    mut index: u64,
    mut apply: impl FnMut(Value) + Send,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.blocking(&path, &query, index).await {
            Ok(answer) => {
                backoff = MIN_BACKOFF;
                let (new_index, value) = answer.unwrap_or((0, Value::Null));
                if index == 0 || new_index != index {
                    apply(value);
                }
                // Consul's rule: an index that goes backwards (a restore, another server)
                // restarts from scratch; 0 would not block, so it becomes 1.
                index = if new_index < index {
                    0
                } else {
                    new_index.max(1)
                };
            }
            Err(e) => {
                tracing::warn!(%what, error = %e, retry_in = ?backoff, "agent query failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Fetches until it works (backoff between failures): used for what the proxy cannot
/// serve without (roots and leaf). An agent that is down, a CA still initializing (5xx, no
/// roots yet) are waited out; a refusal (4xx: a bad service name, a token without rights) is
/// returned, since retrying cannot fix it.
async fn fetch_until_ok<T>(
    what: &str,
    mut get: impl FnMut() -> futures::future::BoxFuture<'static, Result<T, ControlError>>,
) -> Result<T, ControlError> {
    let mut backoff = MIN_BACKOFF;
    loop {
        match get().await {
            Ok(v) => return Ok(v),
            Err(e) if is_permanent(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(%what, error = %e, retry_in = ?backoff, "waiting for the agent");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Whether retrying the same request cannot help: a 4xx other than 429.
fn is_permanent(e: &ControlError) -> bool {
    matches!(e, ControlError::Status { code, .. } if (400..500).contains(code) && *code != 429)
}

/// What the control side publishes, and the tasks that keep it current (dropping this
/// stops them).
#[derive(Debug)]
pub struct Published {
    /// Roots and leaf.
    pub tls: Arc<TlsMaterial>,
    /// Intentions for this service.
    pub intentions: watch::Receiver<IntentionSnapshot>,
    _followers: Vec<TaskGuard>,
}

/// Loads the first roots and leaf (waiting for the agent as long as it takes), then starts
/// following them and the intentions for `spec.service` (upstreams: [`upstream`]).
pub async fn start(client: &AgentClient, spec: &ProxySpec) -> Result<Published, ControlError> {
    let tls = TlsMaterial::new();
    let default_allow = {
        let c = client.clone();
        fetch_until_ok("agent self", move || {
            let c = c.clone();
            Box::pin(async move { default_allow(&c).await })
        })
        .await?
    };
    let roots_path = "/v1/agent/connect/ca/roots".to_string();
    let leaf_path = format!("/v1/agent/connect/ca/leaf/{}", spec.service);
    let mut followers = Vec::new();
    for (what, path) in [("CA roots", roots_path), ("leaf certificate", leaf_path)] {
        let index = {
            let c = client.clone();
            let path = path.clone();
            let tls = tls.clone();
            fetch_until_ok(what, move || {
                let (c, path, tls) = (c.clone(), path.clone(), tls.clone());
                Box::pin(async move {
                    let (index, v) = c
                        .get(&path, &[])
                        .await?
                        .ok_or_else(|| ControlError::Decode(format!("{path}: not found")))?;
                    apply_tls(&tls, &path, v)?;
                    Ok(index)
                })
            })
            .await?
        };
        let tls = tls.clone();
        let p = path.clone();
        followers.push(spawn(follow_from(
            client.clone(),
            path.clone(),
            path,
            Vec::new(),
            index.max(1),
            move |v| {
                if let Err(e) = apply_tls(&tls, &p, v) {
                    tracing::warn!(error = %e, "ignoring unusable TLS material; keeping the last one");
                }
            },
        )));
    }

    let (ixn_tx, intentions) = watch::channel(IntentionSnapshot {
        destination: spec.service.clone(),
        intentions: Vec::new(),
        default_allow,
    });
    {
        let service = spec.service.clone();
        followers.push(spawn(follow(
            client.clone(),
            "intentions".to_string(),
            "/v1/connect/intentions/match".to_string(),
            vec![("by", "destination".to_string()), ("name", service.clone())],
            move |v| {
                let list: Vec<Intention> = match serde_json::from_value(v[service.as_str()].clone())
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring undecodable intentions");
                        return;
                    }
                };
                tracing::info!(count = list.len(), "intentions updated");
                ixn_tx.send_modify(|s| s.intentions = list);
            },
        )));
    }

    Ok(Published {
        tls,
        intentions,
        _followers: followers,
    })
}

/// Starts following one upstream's chain and endpoints (until the guard drops).
pub fn upstream(
    client: &AgentClient,
    destination: &str,
) -> (watch::Receiver<UpstreamSnapshot>, TaskGuard) {
    let (tx, rx) = watch::channel(UpstreamSnapshot::default());
    let guard = spawn(follow_upstream(
        client.clone(),
        destination.to_string(),
        Arc::new(tx),
    ));
    (rx, guard)
}

/// Applies a roots or leaf answer to the material.
fn apply_tls(tls: &TlsMaterial, path: &str, v: Value) -> Result<(), ControlError> {
    let bad = |e: String| ControlError::Decode(format!("{path}: {e}"));
    if path.ends_with("/roots") {
        let roots: CaRoots = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        if roots.roots.is_empty() {
            return Err(bad("no roots yet".to_string()));
        }
        tls.set_roots(&roots).map_err(|e| bad(e.to_string()))?;
        tracing::info!(active = %roots.active_root_id, roots = roots.roots.len(), "CA roots updated");
    } else {
        let leaf: IssuedCert = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        tls.set_leaf(&leaf).map_err(|e| bad(e.to_string()))?;
        tracing::info!(serial = %leaf.serial_number, valid_before = %leaf.valid_before, "leaf certificate updated");
    }
    Ok(())
}

/// Follows one upstream's discovery chain, and the healthy endpoints of each of its
/// targets (a task per target, started and stopped as the chain changes).
async fn follow_upstream(
    client: AgentClient,
    destination: String,
    tx: Arc<watch::Sender<UpstreamSnapshot>>,
) {
    let mut targets: HashMap<String, (Value, TaskGuard)> = HashMap::new();
    let c = client.clone();
    let path = format!("/v1/discovery-chain/{destination}");
    follow(
        client,
        format!("discovery chain of {destination}"),
        path,
        Vec::new(),
        move |v| {
            let chain = v["Chain"].clone();
            let wanted: HashMap<String, Value> = chain["Targets"]
                .as_object()
                .map(|m| m.iter().map(|(k, t)| (k.clone(), t.clone())).collect())
                .unwrap_or_default();
            // A target whose definition changed (a new subset filter) is followed afresh;
            // its old endpoints serve until the new follower's first answer replaces them.
            targets.retain(|id, (t, _)| wanted.get(id) == Some(t));
            tx.send_modify(|s| s.endpoints.retain(|id, _| wanted.contains_key(id)));
            for (id, target) in wanted {
                if targets.contains_key(&id) {
                    continue;
                }
                let follower = spawn(follow_target(
                    c.clone(),
                    id.clone(),
                    target.clone(),
                    tx.clone(),
                ));
                targets.insert(id, (target, follower));
            }
            tx.send_modify(|s| s.chain = chain);
        },
    )
    .await;
}

/// Follows the healthy Connect endpoints of one chain target.
async fn follow_target(
    client: AgentClient,
    id: String,
    target: Value,
    tx: Arc<watch::Sender<UpstreamSnapshot>>,
) {
    let service = target["Service"].as_str().unwrap_or_default().to_string();
    let mut query = vec![("passing", String::new())];
    if let Some(filter) = target["Subset"]["Filter"]
        .as_str()
        .filter(|f| !f.is_empty())
    {
        query.push(("filter", filter.to_string()));
    }
    follow(
        client,
        format!("endpoints of {id}"),
        format!("/v1/health/connect/{service}"),
        query,
        move |v| {
            let endpoints: Vec<_> = v
                .as_array()
                .map(|rows| rows.iter().filter_map(spec::endpoint_of).collect())
                .unwrap_or_default();
            tracing::info!(target = %id, endpoints = endpoints.len(), "upstream endpoints updated");
            tx.send_modify(|s| {
                s.endpoints.insert(id.clone(), endpoints);
            });
        },
    )
    .await;
}

/// Follows the proxy's registration (hash-blocking) and, once it names no protocol, the
/// service's discovery chain for the protocol; publishes every changed spec into `tx` (the
/// listeners follow it). A new destination service would need a new identity: that is
/// logged and not applied (restart the proxy). A deregistered proxy keeps its last
/// configuration.
pub async fn watch_registration(
    client: AgentClient,
    proxy_id: String,
    tx: watch::Sender<ProxySpec>,
) {
    let service = tx.borrow().service.clone();
    let (reg_tx, mut registration) = watch::channel(None::<Value>);
    let _registration = spawn(follow_registration(
        client.clone(),
        proxy_id.clone(),
        reg_tx,
    ));
    // `None` until the chain first answers: the current protocol stands until then.
    let (proto_tx, mut chain_protocol) = watch::channel(None::<String>);
    let mut proto_tx = Some(proto_tx);
    let mut _chain = None;
    loop {
        tokio::select! {
            Ok(()) = registration.changed() => {}
            Ok(()) = chain_protocol.changed() => {}
            else => return,
        }
        let Some(svc) = registration.borrow_and_update().clone() else {
            continue;
        };
        if needs_chain_protocol(&svc) {
            if let Some(proto_tx) = proto_tx.take() {
                _chain = Some(spawn(follow(
                    client.clone(),
                    format!("discovery chain of {service}"),
                    format!("/v1/discovery-chain/{service}"),
                    Vec::new(),
                    move |v| {
                        let protocol = v["Chain"]["Protocol"].as_str().map(str::to_string);
                        proto_tx.send_if_modified(|p| {
                            let changed = *p != protocol;
                            *p = protocol.clone();
                            changed
                        });
                    },
                )));
            }
        }
        let current = tx.borrow().clone();
        let protocol = chain_protocol
            .borrow_and_update()
            .clone()
            .unwrap_or_else(|| current.protocol.clone());
        let spec = match spec_of(&svc, Some(&protocol)) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::warn!(%proxy_id, error = %e, "ignoring an unusable registration; keeping the last one");
                continue;
            }
        };
        if spec == current {
            continue;
        }
        if spec.service != current.service {
            tracing::warn!(%proxy_id, from = %current.service, to = %spec.service, "the proxy's destination service changed; restart the proxy to take the new identity");
            continue;
        }
        tracing::info!(%proxy_id, "the proxy's registration changed; applying it");
        let _ = tx.send(spec);
    }
}

/// Follows `/v1/agent/service/<proxy_id>` with hash-blocking queries, publishing every new
/// answer. A 404 (deregistered) or an unreachable agent is retried with backoff.
async fn follow_registration(
    client: AgentClient,
    proxy_id: String,
    tx: watch::Sender<Option<Value>>,
) {
    let path = format!("/v1/agent/service/{proxy_id}");
    let mut hash = String::new();
    let mut backoff = MIN_BACKOFF;
    loop {
        match client.blocking_hash(&path, &hash).await {
            Ok(Some((new_hash, svc))) => {
                backoff = MIN_BACKOFF;
                if new_hash.is_empty() {
                    // Nothing to block on: re-read at an interval instead of spinning.
                    tx.send_replace(Some(svc));
                    tokio::time::sleep(SERVICE_POLL).await;
                } else if new_hash != hash {
                    hash = new_hash;
                    tx.send_replace(Some(svc));
                }
            }
            Ok(None) => {
                tracing::warn!(%proxy_id, retry_in = ?backoff, "the proxy is not registered; keeping its last configuration");
                hash.clear();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => {
                tracing::debug!(%proxy_id, error = %e, retry_in = ?backoff, "reading the proxy's registration");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests;
