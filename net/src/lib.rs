//! What Concord's servers and client agents share at run time (as opposed to `concord-api`,
//! which holds only wire types): the one way to make a server RPC call over HTTP, and LAN
//! gossip membership. Neither `server` nor `client-agent` depends on the other; both depend
//! on this crate.
//!
//! # Layout
//! - [`rpc`]: [`rpc::RpcHttp`], "POST JSON, decode the reply or the peer's `RpcError`", used
//!   by the agent's server client, a follower forwarding to its leader, and Raft's network.
//! - [`serve`]: [`serve::serve`], an axum router on a listener with per-client connection
//!   caps, header read timeouts and HTTP/1.1 + HTTP/2 (prior knowledge), optionally over
//!   TLS ([`serve::serve_with`]): the agent's HTTP and HTTPS API and the server RPC port.
//! - [`tls`]: agent TLS (`tls.defaults`, `tls.https`, `tls.internal_rpc`): PEM files to
//!   rustls configs for the HTTPS listener, the RPC port and the RPC client; the
//!   `server.<dc>.<domain>` checks of `verify_server_hostname`; and what the proxy's Connect
//!   TLS shares with it: the one PEM parser ([`tls::pem_certs`], [`tls::pem_key`]) and the
//!   verifiers' handshake signature checks ([`tls::Signatures`]).
//! - [`gossip`]: LAN membership (SWIM via foca; Serf's statuses, tags, user events, keyring,
//!   Vivaldi coordinates): [`gossip::Gossip`] over UDP/TCP, [`gossip::Pool`] sans IO,
//!   [`gossip::memory::SimNetwork`] for tests and simulations.

pub mod gossip;
pub mod rpc;
pub mod serve;
pub mod tls;
