//! The UDP loop of the DNS server, in place of hickory's own: hickory drops a packet whose
//! header it cannot decode, so this loop hands every datagram to the shared `packet`
//! [`Responder`], which answers those NOTIMP and replays kept answers inline; only the
//! queries the handler must answer are spawned.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use hickory_proto::udp::UdpStream;
use hickory_server::server::Protocol;
use tokio::task::JoinSet;

use super::packet::Responder;

/// Serves DNS queries arriving on `socket` until `shutdown` resolves; answers in flight
/// then are abandoned.
pub(super) async fn serve(
    socket: tokio::net::UdpSocket,
    responder: Arc<Responder>,
    shutdown: impl Future<Output = ()>,
) {
    // The remote address given here is never used: replies go to each query's source.
    let (mut stream, handle) = UdpStream::with_bound(socket, ([127, 255, 255, 254], 0).into());
    let mut in_flight = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            message = stream.next() => match message {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "DNS: UDP receive failed");
                    continue;
                }
                None => break,
            },
            () = &mut shutdown => break,
        };
        while in_flight.try_join_next().is_some() {}
        let src = message.addr();
        // Port 0 cannot be answered (hickory's `sanitize_src_address`).
        if src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        let mut reply_to = handle.with_remote_addr(src);
        if let Some(pending) = responder.triage(message.bytes(), src, Protocol::Udp, &mut reply_to)
        {
            let responder = responder.clone();
            in_flight.spawn(async move { pending.run(&responder, reply_to).await });
        }
    }
    in_flight.abort_all();
}
