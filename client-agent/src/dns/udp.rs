//! The UDP loop of the DNS server, in place of hickory's own: hickory drops a packet whose
//! header it cannot decode, so this loop hands every datagram to the shared `packet`
//! [`Responder`], which answers those NOTIMP and replays kept answers inline; only the
//! queries the handler must answer are spawned.
//!
//! The loop runs on an OS thread of its own with a current-thread runtime ([`spawn`]), not
//! on the agent's runtime: a query then never waits behind the agent's other tasks (HTTP,
//! gossip, anti-entropy, the catalog watch) or for a hand-off between runtime workers.
//! Forwarded queries (recursors) run on that thread's runtime too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use hickory_proto::udp::MAX_RECEIVE_BUFFER_SIZE;
use hickory_proto::xfer::BufDnsStreamHandle;
use hickory_server::server::Protocol;
use tokio::task::JoinSet;

use super::packet::Responder;

/// Starts [`serve`] on a thread of its own (named `dns-udp`) with its own current-thread
/// runtime; the returned future resolves when that thread's loop has ended, after
/// `shutdown` or because it panicked.
pub(super) fn spawn(
    socket: tokio::net::UdpSocket,
    responder: Arc<Responder>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<impl Future<Output = ()>> {
    // Deregistered from the caller's runtime here, registered with the thread's below.
    let socket = socket.into_std()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Dropped when the thread ends, however it ends.
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("dns-udp".to_owned())
        .spawn(move || {
            let _ended = ended_tx;
            runtime.block_on(async move {
                match tokio::net::UdpSocket::from_std(socket) {
                    Ok(socket) => serve(socket, responder, shutdown).await,
                    Err(e) => tracing::error!(error = %e, "DNS: UDP socket unusable"),
                }
            });
        })?;
    Ok(async move {
        let _ = ended_rx.await;
    })
}

/// Serves DNS queries arriving on `socket` until `shutdown` resolves; answers in flight
/// then are abandoned.
///
/// A repeated question is answered from the kept answers right here: one receive buffer
/// and one reply buffer serve every query, and the reply goes straight to the socket.
/// Everything else goes through the `packet` triage with a hickory stream handle whose
/// messages a second task sends.
async fn serve(
    socket: tokio::net::UdpSocket,
    responder: Arc<Responder>,
    shutdown: impl Future<Output = ()>,
) {
    let socket = Arc::new(socket);
    // The remote address given here is never used: replies go to each query's source.
    let (handle, mut outbound) = BufDnsStreamHandle::new(([127, 255, 255, 254], 0).into());
    let mut in_flight = JoinSet::new();
    let sender = socket.clone();
    in_flight.spawn(async move {
        while let Some(message) = outbound.next().await {
            send(&sender, message.bytes(), message.addr()).await;
        }
    });
    // As large as hickory's receive buffer: longer datagrams are cut short as there.
    let mut query = vec![0u8; MAX_RECEIVE_BUFFER_SIZE];
    let mut reply = Vec::with_capacity(MAX_RECEIVE_BUFFER_SIZE);
    tokio::pin!(shutdown);
    loop {
        let (len, src) = tokio::select! {
            received = socket.recv_from(&mut query) => match received {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS: UDP receive failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Port 0 cannot be answered (hickory's `sanitize_src_address`).
        if src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        let bytes = &query[..len];
        if responder.replay(bytes, Protocol::Udp, &mut reply) {
            send(&socket, &reply, src).await;
            continue;
        }
        while in_flight.try_join_next().is_some() {}
        let mut reply_to = handle.with_remote_addr(src);
        if let Some(pending) = responder.triage(bytes, src, Protocol::Udp, &mut reply_to) {
            let responder = responder.clone();
            in_flight.spawn(async move { pending.run(&responder, reply_to).await });
        }
    }
    in_flight.abort_all();
}

/// Sends one reply; a failure loses only that reply (the client asks again).
async fn send(socket: &tokio::net::UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(reply, to).await {
        tracing::debug!(error = %e, client = %to, "DNS: UDP reply failed");
    }
}
