//! The agent's Connect CA cache: the CA roots, followed with one blocking query, and one
//! leaf certificate per service, made here and kept fresh.
//!
//! For a leaf the agent makes the key pair (ECDSA P-256) and a CSR naming the service's
//! SPIFFE identity; a server checks and signs the CSR. The private key never leaves this
//! agent. Each cached leaf has a task that renews it at a random point between 60% and 90%
//! of its lifetime (Consul's spread, so a fleet does not renew at once) and at once when the
//! active root changes, so new leaves always come from the active root.
//!
//! Both feeds are `watch` channels: `?index=` blocking on `/v1/agent/connect/ca/roots` and
//! on `/v1/agent/connect/ca/leaf/:service` waits on them, never on a server round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use concord_api::connect::{spiffe_service_uri, CaRoots, IssuedCert, SignRequest};
use concord_api::rpc::{QueryMeta, QueryOptions, RpcError};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rpc_client::ServerRpc;

/// How long a roots blocking query waits at the servers.
const ROOTS_WAIT: Duration = Duration::from_secs(300);
/// First retry delay after a failed fetch; doubles up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_millis(500);
/// Longest retry delay.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Never renew sooner than this after an issue (a clock far off must not make a hot loop).
const MIN_RENEW: Duration = Duration::from_secs(1);

/// The roots as last fetched, with the read's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct RootsView {
    /// Index and leader information of the read.
    pub meta: QueryMeta,
    /// The roots.
    pub roots: CaRoots,
}

/// One service's leaf as the HTTP handler sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeafView {
    /// The current certificate (with its key), once one was issued.
    pub cert: Option<IssuedCert>,
    /// Why the last attempt failed, while no certificate is held.
    pub error: Option<String>,
}

/// The cache. One per agent ([`crate::agent::AgentCore::connect`]).
pub struct ConnectCa {
    rpc: Arc<dyn ServerRpc>,
    datacenter: String,
    roots: watch::Sender<Option<RootsView>>,
    // A std mutex: held only to look up or insert an entry, never across an await.
    leaves: Mutex<HashMap<String, Leaf>>,
}

// Debug by hand: the cached leaves hold private keys, which no log line may print.
impl std::fmt::Debug for ConnectCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectCa")
            .field("datacenter", &self.datacenter)
            .field("leaves", &self.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Leaf {
    view: watch::Sender<LeafView>,
    task: JoinHandle<()>,
}

impl ConnectCa {
    /// An empty cache; nothing runs until [`ConnectCa::run`] and the first leaf request.
    pub fn new(rpc: Arc<dyn ServerRpc>, datacenter: String) -> Arc<Self> {
        Arc::new(ConnectCa {
            rpc,
            datacenter,
            roots: watch::Sender::new(None),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// Follows the roots until `stop` resolves, then stops every leaf task.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::select! {
            () = self.follow_roots() => {}
            () = stop => {}
        }
        let leaves = std::mem::take(&mut *self.lock());
        for leaf in leaves.into_values() {
            leaf.task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Leaf>> {
        self.leaves.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn follow_roots(&self) {
        let mut index = 0;
        let mut retry = MIN_RETRY;
        loop {
            let options = QueryOptions {
                min_index: index,
                max_wait_ms: u64::try_from(ROOTS_WAIT.as_millis()).unwrap_or(u64::MAX),
                ..QueryOptions::default()
            };
            match self.rpc.ca_roots(options).await {
                Ok((meta, roots)) => {
                    retry = MIN_RETRY;
                    // An index that goes backwards means a new cluster or a restore: start
                    // over rather than block forever on an index that will not come.
                    index = if meta.index < index { 0 } else { meta.index };
                    self.roots.send_if_modified(|current| {
                        let changed = current.as_ref().map(|c| (&c.roots, c.meta.index))
                            != Some((&roots, meta.index));
                        if changed {
                            *current = Some(RootsView { meta, roots });
                        }
                        changed
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fetching CA roots failed; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// The cluster's trust domain from the cached roots, once fetched and the CA exists.
    pub fn trust_domain(&self) -> Option<String> {
        self.roots
            .borrow()
            .as_ref()
            .map(|r| r.roots.trust_domain.clone())
            .filter(|td| !td.is_empty())
    }

    /// The roots feed.
    pub fn roots(&self) -> watch::Receiver<Option<RootsView>> {
        self.roots.subscribe()
    }

    /// The leaf feed of `service`, starting its task on first use. The caller has checked
    /// the name ([`concord_api::connect::valid_service_name`]).
    pub fn leaf(self: &Arc<Self>, service: &str) -> watch::Receiver<LeafView> {
        let mut leaves = self.lock();
        if let Some(leaf) = leaves.get(service) {
            return leaf.view.subscribe();
        }
        let view = watch::Sender::new(LeafView::default());
        let rx = view.subscribe();
        let task = tokio::spawn(self.clone().keep_leaf(service.to_string(), view.clone()));
        leaves.insert(service.to_string(), Leaf { view, task });
        rx
    }

    /// Issues the leaf of `service`, then renews it on schedule or on root rotation, forever.
    async fn keep_leaf(self: Arc<Self>, service: String, view: watch::Sender<LeafView>) {
        let mut roots = self.roots();
        let mut retry = MIN_RETRY;
        let mut last_index = 0;
        loop {
            // Wait for roots with an active root: before the CA exists there is nothing to
            // sign with.
            let current = match roots
                .wait_for(|r| {
                    r.as_ref()
                        .is_some_and(|r| !r.roots.active_root_id.is_empty())
                })
                .await
            {
                Ok(r) => r.clone(),
                Err(_) => return,
            };
            let Some(current) = current else { continue };
            let active = current.roots.active_root_id.clone();
            match self.issue(&current.roots.trust_domain, &service).await {
                Ok(mut cert) => {
                    retry = MIN_RETRY;
                    // The index must move with every new certificate, even when the servers'
                    // roots index did not (a scheduled renewal), or a blocked caller would
                    // never see the new one.
                    last_index = cert.modify_index.max(last_index + 1);
                    cert.create_index = last_index;
                    cert.modify_index = last_index;
                    let renew_in = renew_delay(&cert, rand::thread_rng().gen_range(0.6..0.9));
                    view.send_replace(LeafView {
                        cert: Some(cert),
                        error: None,
                    });
                    tokio::select! {
                        () = tokio::time::sleep(renew_in) => {}
                        changed = roots.wait_for(|r| r.as_ref().is_some_and(|r| r.roots.active_root_id != active)) => {
                            if changed.is_err() { return; }
                            tracing::info!(%service, "CA root rotated; renewing leaf");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "could not get a leaf certificate; retrying");
                    view.send_modify(|v| v.error = Some(e.to_string()));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Makes a key and CSR for `service` and has a server sign it.
    async fn issue(&self, trust_domain: &str, service: &str) -> Result<IssuedCert, RpcError> {
        let uri = spiffe_service_uri(trust_domain, &self.datacenter, service);
        let (key_pem, csr_pem) = make_csr(&uri).map_err(RpcError::Internal)?;
        let mut cert = self
            .rpc
            .ca_sign(SignRequest {
                service: service.to_string(),
                csr_pem,
            })
            .await?;
        cert.private_key_pem = key_pem;
        Ok(cert)
    }
}

/// A fresh P-256 key (PKCS#8 PEM) and a CSR (PEM) whose only SAN is `uri`.
pub fn make_csr(uri: &str) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("generating a key: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        uri.to_string()
            .try_into()
            .map_err(|e| format!("SPIFFE URI {uri:?}: {e}"))?,
    )];
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| format!("making a CSR: {e}"))?;
    Ok((key.serialize_pem(), csr))
}

/// How long from now until a certificate should be renewed: at `fraction` of its lifetime
/// after `ValidAfter` (at least [`MIN_RENEW`]). Unparsable times renew soon.
fn renew_delay(cert: &IssuedCert, fraction: f64) -> Duration {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
    let (Some(after), Some(before)) = (parse(&cert.valid_after), parse(&cert.valid_before)) else {
        return MIN_RENEW;
    };
    let lifetime = (before - after).as_seconds_f64().max(0.0);
    let renew_at = after + time::Duration::seconds_f64(lifetime * fraction);
    let from_now = (renew_at - OffsetDateTime::now_utc()).as_seconds_f64();
    Duration::from_secs_f64(from_now.max(0.0)).max(MIN_RENEW)
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
