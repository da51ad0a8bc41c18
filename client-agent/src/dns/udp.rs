//! The UDP loop of the DNS server, in place of hickory's own: hickory drops a packet whose
//! header it cannot decode, so this loop hands every datagram to the shared `packet`
//! [`Responder`], which answers those NOTIMP and replays kept answers inline; only the
//! queries the handler must answer are spawned.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use hickory_proto::udp::MAX_RECEIVE_BUFFER_SIZE;
use hickory_proto::xfer::BufDnsStreamHandle;
use hickory_server::server::Protocol;
use tokio::task::JoinSet;

use super::packet::Responder;

/// Serves DNS queries arriving on `socket` until `shutdown` resolves; answers in flight
/// then are abandoned.
///
/// A repeated question is answered from the kept answers right here: one receive buffer
/// and one reply buffer serve every query, and the reply goes straight to the socket.
/// Everything else goes through the `packet` triage with a hickory stream handle; its
/// messages are sent by this loop before it reads the next query.
pub(super) async fn serve(
    socket: tokio::net::UdpSocket,
    responder: Arc<Responder>,
    shutdown: impl Future<Output = ()>,
) {
    // The remote address given here is never used: replies go to each query's source.
    let (handle, mut outbound) = BufDnsStreamHandle::new(([127, 255, 255, 254], 0).into());
    let mut in_flight = JoinSet::new();
    // As large as hickory's receive buffer: longer datagrams are cut short as there.
    let mut query = vec![0u8; MAX_RECEIVE_BUFFER_SIZE];
    let mut reply = Vec::with_capacity(MAX_RECEIVE_BUFFER_SIZE);
    tokio::pin!(shutdown);
    loop {
        let (len, src) = tokio::select! {
            // Replies waiting are sent before the next query is read, as hickory's stream.
            biased;
            Some(message) = outbound.next() => {
                send(&socket, message.bytes(), message.addr()).await;
                continue;
            }
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
