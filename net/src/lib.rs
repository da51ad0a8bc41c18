//! What Concord's servers and client agents share at run time (as opposed to `concord-api`,
//! which holds only wire types): the one way to make a server RPC call over HTTP, and (to
//! come) LAN gossip membership. Neither `server` nor `client-agent` depends on the other;
//! both depend on this crate.
//!
//! # Layout
//! - [`rpc`]: [`rpc::RpcHttp`], "POST JSON, decode the reply or the peer's `RpcError`", used
//!   by the agent's server client, a follower forwarding to its leader, and Raft's network.

pub mod rpc;
