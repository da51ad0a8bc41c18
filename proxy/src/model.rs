//! The seams between the proxy's control side (what it learns from the agent) and its data
//! side (L4 and L7 traffic). The data side never calls the agent: it reads the latest
//! snapshot from a `tokio::sync::watch` channel and dials through a [`Connector`], so tests
//! drive it with plain TCP and hand-made snapshots.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use concord_api::intention::{evaluate, Decision, HttpRequest, Intention};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a peer (mTLS in production, plain TCP in tests).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// One instance of an upstream target: the public listener of a sidecar proxy that fronts
/// an instance of `service`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Stable key for per-instance state (balancing, outlier ejection): `node/service-id`.
    /// Shared strings: an endpoint is cloned into every request that goes to it.
    pub id: Arc<str>,
    /// Where the proxy listens.
    pub addr: SocketAddr,
    /// The service this instance must prove to be (its SPIFFE id) when dialled.
    pub service: Arc<str>,
}

/// Opens a stream to an endpoint. In production: TCP + TLS with this proxy's leaf
/// certificate, verifying that the peer presents `endpoint.service`'s SPIFFE id.
pub trait Connector: Send + Sync + 'static {
    /// Connects to `endpoint`; a refused or failed handshake is an `io::Error`.
    fn connect(&self, endpoint: &Endpoint) -> BoxFuture<'static, io::Result<BoxIo>>;
}

/// What one upstream routes over.
#[derive(Clone, Debug, Default)]
pub struct UpstreamSnapshot {
    /// The `Chain` object of `/v1/discovery-chain/:service` (`Protocol`, `StartNode`,
    /// `Nodes`, `Targets`).
    pub chain: serde_json::Value,
    /// Healthy endpoints of each target, by target id (the keys of `chain.Targets`).
    pub endpoints: HashMap<String, Vec<Endpoint>>,
}

/// The intentions that name this proxy's service as destination, for local evaluation.
#[derive(Clone, Debug, Default)]
pub struct IntentionSnapshot {
    /// This proxy's service (the destination of every decision).
    pub destination: String,
    /// Intentions matching the destination, highest precedence first.
    pub intentions: Vec<Intention>,
    /// The decision when no intention matches (true without ACLs, as in Consul).
    pub default_allow: bool,
}

impl IntentionSnapshot {
    /// The decision for a new connection from `source` (an L7 intention denies at L4).
    pub fn decide_connection(&self, source: &str) -> Decision {
        evaluate(
            &self.intentions,
            source,
            &self.destination,
            None,
            self.default_allow,
        )
    }

    /// Whether some intention's L7 permission has a header condition (else a request's
    /// headers need not be looked at).
    pub fn reads_headers(&self) -> bool {
        self.intentions.iter().any(|i| {
            i.permissions
                .iter()
                .any(|p| p.http.as_ref().is_some_and(|h| !h.header.is_empty()))
        })
    }

    /// The decision for one HTTP request from `source`.
    pub fn decide_request(&self, source: &str, request: &HttpRequest<'_>) -> Decision {
        evaluate(
            &self.intentions,
            source,
            &self.destination,
            Some(request),
            self.default_allow,
        )
    }
}
