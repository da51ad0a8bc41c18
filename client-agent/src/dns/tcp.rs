//! The TCP loop of the DNS server, in place of hickory's listener (which, like its UDP
//! loop, drops messages whose opcode it cannot decode): each connection's length-prefixed
//! messages go to the shared `packet` [`Responder`] one at a time, as hickory serves them
//! (a client cannot make one connection cost more than one answer in flight). A connection
//! that sends no complete message within the idle timeout is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hickory_proto::iocompat::AsyncIoTokioAsStd;
use hickory_proto::tcp::TcpStream;
use hickory_server::server::Protocol;
use tokio::task::JoinSet;

use super::packet::Responder;

/// Serves DNS over TCP on `listener` until `shutdown` resolves; open connections are then
/// dropped.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    responder: Arc<Responder>,
    idle_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, src) = tokio::select! {
            accepted = concord_net::serve::accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        if src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        connections.spawn(connection(stream, src, responder.clone(), idle_timeout));
    }
    connections.abort_all();
}

/// Answers one connection's messages in order until it closes, fails or idles out.
async fn connection(
    stream: tokio::net::TcpStream,
    src: SocketAddr,
    responder: Arc<Responder>,
    idle_timeout: Duration,
) {
    // Polling `messages` also writes the replies queued on `reply_to`.
    let (mut messages, reply_to) = TcpStream::from_stream(AsyncIoTokioAsStd(stream), src);
    loop {
        let message = match tokio::time::timeout(idle_timeout, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, client = %src, "DNS: TCP read failed");
                return;
            }
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(client = %src, "DNS: TCP connection idle; closing");
                return;
            }
        };
        let mut handle = reply_to.clone();
        if let Some(pending) = responder.triage(message.bytes(), src, Protocol::Tcp, &mut handle) {
            pending.run(&responder, handle).await;
        }
    }
}
