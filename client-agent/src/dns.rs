//! The agent's DNS interface: Consul's `<svc>.service.consul`, `<node>.node.consul` and
//! `<hex>.addr.consul` names, answered from the agent's cached catalog view.
//!
//! A query never costs a server round-trip: each one takes the current
//! [`CatalogSnapshot`](crate::catalog_cache::CatalogSnapshot) (an `Arc` clone out of the watch
//! channel) and builds the answer from it synchronously.
//!
//! # Layout (outermost first)
//! - [`serve`]: starts the `udp` and `tcp` loops on the caller's sockets.
//! - `handler`: our `RequestHandler`. Checks opcode and EDNS version, picks size limits from the
//!   transport, decides whether the cached view is still fresh enough to serve
//!   (`allow_stale`/`max_stale`), sends names that are not ours to `recursor`, and turns the
//!   pure answer into a hickory response.
//! - `udp`, `tcp`: the two transports' loops (in place of hickory's, which drop opcodes
//!   they cannot decode); every message goes to `packet`.
//! - `packet`: one message, either transport: NOTIMP for opcodes hickory cannot decode and
//!   FORMERR for undecodable queries (from the raw header), a kept answer from the shared
//!   answer cache, or the decoded query for `handler`.
//! - `recursor`: forwarding to the configured recursors over UDP or TCP, in order, with a
//!   timeout each.
//! - `answer`: pure answer building (names → records, health filtering, shuffling, SOA, size
//!   trimming), table-tested against hand-built snapshots.
//! - `name`: pure query-name parsing (`[tag.]svc.service[.dc]`, RFC 2782, node, addr,
//!   `in-addr.arpa`/`ip6.arpa` reverse names).
//! - [`acl`]: with ACLs on, the view DNS answers from is the catalog as the agent's default
//!   token may read it (hidden names answer NXDOMAIN), rebuilt on every catalog or ACL change.
//! - `fixtures` and `socket_tests` (tests only): hand-built snapshots, and `serve` over
//!   real sockets driven by hickory-client and raw packets.
//!
//! # Differences from Consul
//! - `enable_truncate` defaults to `true` (see [`DnsConfig::enable_truncate`]), and TC is set
//!   whenever trimming leaves no answer at all.
//! - Not served yet: prepared queries (`<q>.query.<domain>` gets NXDOMAIN, Consul's answer
//!   for an unknown prepared query), `.connect`/`.virtual`/`.ingress`,
//!   namespaces/partitions/peers, node-meta TXT in Additional, EDNS client-subnet echo. Those
//!   in-domain forms get NXDOMAIN.
//! - `max_stale` bounds the age of the agent's cached view while the servers are unreachable
//!   (Consul: how far a server may lag its leader before a read is retried on the leader);
//!   past it catalog lookups get SERVFAIL. `use_cache` + `cache_max_age` tighten that bound.
//! - PTR answers carry `node_ttl` (nodes) or the service's TTL (service addresses) where
//!   Consul sends TTL 0; the defaults are 0 either way.
//! - A forwarded UDP query that comes back truncated is passed to the client with TC (as
//!   Consul), which retries over TCP, forwarded over TCP.
//! - Names parse the same way whatever the query type, so `_web._tcp.consul` (RFC 2782 without
//!   the `service` label) also answers A/AAAA where Consul only parses it for SRV; `_udp`, like
//!   `_tcp`, means "no tag filter".
//! - The 512-byte UDP limit is checked against the compressed wire size (Consul measures the
//!   uncompressed size), so a plain-UDP answer can carry slightly more.
//! - Before the first catalog snapshot arrives, service and node lookups get SERVFAIL rather
//!   than a cacheable NXDOMAIN.
//! - NS names `ns.<domain>` (glued to [`DnsConfig::advertise_addr`] when set) rather than up
//!   to three random servers' `<node>.node.<dc>.<domain>`: every agent answers for the zone
//!   itself, so naming servers would point resolvers at hosts that may not serve DNS.
//! - A service whose address equals its node's gets the node-name SRV target.
//! - A service whose address is a hostname is left out of A/AAAA answers (no CNAME chains);
//!   its SRV target is the hostname.
//! - Packets shorter than a DNS header are dropped, as miekg/dns does. Every other opcode
//!   than QUERY gets NOTIMP over UDP and TCP, as miekg/dns answers them; EDNS versions above 0 BADVERS, classes other than
//!   IN/ANY REFUSED.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::error::ProtoError;

use crate::catalog_cache::{CatalogView, ContactView, FollowOptions};

pub mod acl;
mod answer;
mod handler;
mod name;
mod packet;
mod recursor;
mod tcp;
mod udp;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod socket_tests;

/// Configuration of the DNS interface (Consul's `dns_config` plus `domain`/`datacenter`).
#[derive(Clone, Debug, PartialEq)]
pub struct DnsConfig {
    /// Domain we are authoritative for, e.g. `consul.` (a missing trailing dot is implied).
    /// Queries outside it are REFUSED; names inside it are matched case-insensitively.
    pub domain: String,
    /// Our datacenter, e.g. `dc1`. Used in SRV targets (`<node>.node.<dc>.<domain>.`); a query
    /// naming any other datacenter gets NXDOMAIN because no other datacenters exist yet.
    pub datacenter: String,
    /// TTL of node and addr answers (`<node>.node`, `<hex>.addr`); whole seconds, default 0 so
    /// clients never cache a stale address (Consul's default).
    pub node_ttl: Duration,
    /// TTL of service answers (A/AAAA/SRV and their additional records) when no entry of
    /// [`service_ttl_overrides`](Self::service_ttl_overrides) matches; whole seconds, default 0.
    pub service_ttl: Duration,
    /// Per-service TTLs, as Consul's `service_ttl` map: keys are service names, or a prefix
    /// ending in `*` (`"web*"`, and `"*"` for every service). An exact name wins over the
    /// longest matching prefix; matching is case-insensitive.
    pub service_ttl_overrides: BTreeMap<String, Duration>,
    /// Most answer records in a UDP response limited to 512 bytes (no EDNS, or EDNS advertising
    /// ≤ 512 bytes). Default 3, capped at 8, both as Consul: keeps plain-DNS responses small
    /// and spreads clients over instances. Must be at least 1. EDNS and TCP responses are
    /// limited by size only.
    pub udp_answer_limit: usize,
    /// Answer only with instances whose checks all pass; `false` (default) also serves
    /// instances in `warning`. Instances with any critical check are never served.
    pub only_passing: bool,
    /// Set the TC bit when a UDP answer was trimmed (by count or size), so clients retry over
    /// TCP and see every instance.
    ///
    /// Concord deliberately defaults this to `true`: Consul defaults to `false` and trims
    /// silently, a long-standing user complaint (clients never learn they saw only part of
    /// the answer). Regardless of this flag, TC is set when trimming left no answer at all,
    /// since an empty NOERROR would falsely claim the name has no such records.
    pub enable_truncate: bool,
    /// SOA refresh field (whole seconds, default 3600). Informational: nobody transfers the zone.
    pub soa_refresh: Duration,
    /// SOA retry field (whole seconds, default 600).
    pub soa_retry: Duration,
    /// SOA expire field (whole seconds, default 86400).
    pub soa_expire: Duration,
    /// SOA minimum field and TTL of the SOA record itself (whole seconds, default 0): bounds
    /// how long resolvers cache NXDOMAIN/NODATA answers (RFC 2308).
    pub soa_min_ttl: Duration,
    /// How long a TCP connection may sit idle between queries before it is closed; bounds the
    /// resources a slow or idle client can hold. Default 8 s, miekg/dns's (Consul's) idle timeout.
    pub tcp_idle_timeout: Duration,
    /// This agent's address, published as glue for the `ns.<domain>` name server in NS
    /// answers and as the answer for `ns.<domain>` itself. `None` (default): no glue, and
    /// `ns.<domain>` has no address records.
    pub advertise_addr: Option<IpAddr>,
    /// A second domain answered exactly like [`domain`](Self::domain) (`-alt-domain`,
    /// `alt_domain`); answers name the domain the query used, reverse (PTR) answers always
    /// the primary one, as Consul's. `None` (default): one domain.
    pub alt_domain: Option<String>,
    /// Most A/AAAA records in a service answer on any transport (`a_record_limit`); 0
    /// (default) for no limit. Unlike size trimming this is a policy, so it never sets TC.
    pub a_record_limit: usize,
    /// Resolvers that names outside our domains (and reverse names matching no node or
    /// service) are forwarded to, tried in order (`-recursor`, `recursors`). Empty (default):
    /// such names get REFUSED (reverse names SERVFAIL), as Consul answers.
    pub recursors: Vec<SocketAddr>,
    /// How long one recursor may take to answer before the next is tried
    /// (`recursor_timeout`, default 2 s as Consul).
    pub recursor_timeout: Duration,
    /// Answer from the cached catalog view while the servers cannot be reached
    /// (`allow_stale`, default `true`), for at most [`max_stale`](Self::max_stale) after the
    /// view was last known current. With `false` the cache follows the leader and lookups get
    /// SERVFAIL as soon as a refresh fails.
    pub allow_stale: bool,
    /// How old the cached view may be while the servers are unreachable before catalog
    /// lookups get SERVFAIL (`max_stale`, default 87600 h as Consul: effectively forever).
    pub max_stale: Duration,
    /// Consul's `use_cache`: Concord's DNS always answers from the agent's cache, so this
    /// only enables [`cache_max_age`](Self::cache_max_age). Default `false`.
    pub use_cache: bool,
    /// With `use_cache`, a tighter bound than `max_stale` on the age of the view served
    /// while the servers are unreachable (`cache_max_age`); 0 (default) for none.
    pub cache_max_age: Duration,
}

impl DnsConfig {
    /// How the catalog cache DNS answers from should poll the servers: stale reads when
    /// `allow_stale`, and a long poll no longer than half the stale bound (at least 1 s, at
    /// most 60 s).
    pub fn follow_options(&self) -> FollowOptions {
        let bound = self.stale_bound();
        FollowOptions {
            consistency: if bound.is_some() {
                concord_api::rpc::Consistency::Stale
            } else {
                concord_api::rpc::Consistency::Default
            },
            wait: bound.map_or(Duration::from_secs(60), |b| {
                (b / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
            }),
        }
    }

    /// How old the view may be when served while the servers are unreachable: `None` when it
    /// may not be served stale at all (`allow_stale = false`).
    pub fn stale_bound(&self) -> Option<Duration> {
        if !self.allow_stale {
            return None;
        }
        let cache_bound =
            (self.use_cache && !self.cache_max_age.is_zero()).then_some(self.cache_max_age);
        Some(cache_bound.map_or(self.max_stale, |c| c.min(self.max_stale)))
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "consul.".to_owned(),
            datacenter: "dc1".to_owned(),
            node_ttl: Duration::ZERO,
            service_ttl: Duration::ZERO,
            service_ttl_overrides: BTreeMap::new(),
            udp_answer_limit: 3,
            only_passing: false,
            enable_truncate: true,
            soa_refresh: Duration::from_secs(3600),
            soa_retry: Duration::from_secs(600),
            soa_expire: Duration::from_secs(86400),
            soa_min_ttl: Duration::ZERO,
            tcp_idle_timeout: Duration::from_secs(8),
            advertise_addr: None,
            alt_domain: None,
            a_record_limit: 0,
            recursors: Vec::new(),
            recursor_timeout: Duration::from_secs(2),
            allow_stale: true,
            max_stale: Duration::from_secs(87_600 * 3600),
            use_cache: false,
            cache_max_age: Duration::ZERO,
        }
    }
}

/// Why the DNS interface could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `domain` is not a valid DNS name.
    #[error("invalid DNS domain {domain:?}")]
    InvalidDomain {
        /// The configured domain.
        domain: String,
        /// Why it failed to parse.
        #[source]
        source: ProtoError,
    },
    /// `datacenter` is not a single valid DNS label, so it cannot appear in SRV targets.
    #[error("invalid datacenter {datacenter:?}: must be one DNS label of 1-63 bytes without dots")]
    InvalidDatacenter {
        /// The configured datacenter.
        datacenter: String,
    },
    /// `udp_answer_limit` is 0, which would trim every plain-UDP answer away.
    #[error("udp_answer_limit must be at least 1")]
    InvalidUdpAnswerLimit,
    /// A listener loop ended (panicked) before shutdown was requested.
    #[error("DNS server failed")]
    Server(#[source] ProtoError),
}

/// What DNS answers from: the agent's catalog view and how current it is.
#[derive(Clone, Debug)]
pub struct View {
    /// The latest catalog snapshot.
    pub catalog: CatalogView,
    /// When the snapshot was last known current, and whether the servers fail now.
    pub contact: ContactView,
}

/// Serves DNS on the given bound sockets until `shutdown` completes, answering from `view`.
///
/// The sockets are bound by the caller so tests can bind port 0 and `main` the real port.
/// Returns `Ok(())` after a graceful shutdown (listeners stop accepting, in-flight TCP
/// connections are dropped), or [`DnsError::Server`] if a listener loop died first; a
/// config error is reported before any packet is read.
pub async fn serve(
    config: DnsConfig,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    view: View,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DnsError> {
    let tcp_idle_timeout = config.tcp_idle_timeout;
    let zone = answer::Zone::new(config)?;
    tracing::info!(
        udp = ?udp.local_addr().ok(),
        tcp = ?tcp.local_addr().ok(),
        domain = %zone.domain(),
        "DNS interface listening"
    );
    if !zone.config().recursors.is_empty() {
        tracing::info!(recursors = ?zone.config().recursors, "DNS forwards other names to recursors");
    }
    let handler = Arc::new(handler::Handler::new(zone, view));
    let responder = Arc::new(packet::Responder::new(handler));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(udp::serve(udp, responder.clone(), stopped(stop_rx.clone())));
    loops.spawn(tcp::serve(
        tcp,
        responder,
        tcp_idle_timeout,
        stopped(stop_rx),
    ));
    // The loops only end on the stop signal: one ending first has panicked.
    let died = tokio::select! {
        ended = loops.join_next() => ended,
        () = shutdown => None,
    };
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    match died {
        Some(ended) => Err(DnsError::Server(ProtoError::from(format!(
            "a DNS listener loop ended before shutdown: {ended:?}"
        )))),
        None => {
            tracing::info!("DNS interface shutting down");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_options_follow_the_dns_stale_settings() {
        let dns = DnsConfig::default();
        assert_eq!(dns.follow_options(), FollowOptions::default());
        let dns = DnsConfig {
            max_stale: Duration::from_secs(10),
            ..DnsConfig::default()
        };
        assert_eq!(dns.follow_options().wait, Duration::from_secs(5));
        let dns = DnsConfig {
            allow_stale: false,
            ..DnsConfig::default()
        };
        assert_eq!(
            dns.follow_options().consistency,
            concord_api::rpc::Consistency::Default
        );
    }
}
