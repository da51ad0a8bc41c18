//! The UDP loop of the DNS server, in place of hickory's own: hickory drops a packet whose
//! header it cannot decode, and its header decoder knows only opcodes 0, 2, 4 and 5, so
//! queries with opcode 1, 3 or 6-15 went unanswered. Consul (miekg/dns) answers them
//! NOTIMP, as it answers NOTIFY and UPDATE; this loop does too, from the raw header, and
//! hands every other packet to the [`Handler`] exactly as hickory's loop does (same
//! [`Request`], same [`ResponseHandle`], so EDNS sizing and truncation are unchanged).

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use hickory_proto::op::ResponseCode;
use hickory_proto::serialize::binary::BinDecodable;
use hickory_proto::udp::UdpStream;
use hickory_proto::xfer::{DnsStreamHandle, SerialMessage};
use hickory_server::authority::MessageRequest;
use hickory_server::server::{Protocol, Request, RequestHandler, ResponseHandle};
use tokio::task::JoinSet;

use super::handler::Handler;

/// Length of a DNS header.
const HEADER_LEN: usize = 12;

/// Serves DNS queries arriving on `socket` until `shutdown` resolves; answers in flight
/// then are abandoned.
pub(super) async fn serve(
    socket: tokio::net::UdpSocket,
    handler: Arc<Handler>,
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
        let bytes = message.bytes();
        match classify(bytes) {
            Packet::Ignore => {}
            Packet::Refuse(code) => {
                if let Some(reply) = error_reply(bytes, code) {
                    if let Err(e) = reply_to.send(SerialMessage::new(reply, src)) {
                        tracing::debug!(error = %e, client = %src, "DNS: UDP reply failed");
                    }
                }
            }
            Packet::Query => match MessageRequest::from_bytes(bytes) {
                Ok(request) => {
                    let handler = handler.clone();
                    in_flight.spawn(async move {
                        let request = Request::new(request, src, Protocol::Udp);
                        let response = ResponseHandle::new(src, reply_to, Protocol::Udp);
                        handler.handle_request(&request, response).await;
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, client = %src, "DNS: malformed query");
                    if let Some(reply) = error_reply(bytes, ResponseCode::FormErr) {
                        let _ = reply_to.send(SerialMessage::new(reply, src));
                    }
                }
            },
        }
    }
    in_flight.abort_all();
}

/// What to do with a packet, from its header alone.
#[derive(Debug, PartialEq, Eq)]
enum Packet {
    /// Too short to answer, or a response (never answered: reflection).
    Ignore,
    /// Answer with this code and no records.
    Refuse(ResponseCode),
    /// Decode it and let the handler answer (it answers NOTIMP to opcodes 2, 4 and 5 too).
    Query,
}

fn classify(bytes: &[u8]) -> Packet {
    if bytes.len() < HEADER_LEN || bytes[2] & 0x80 != 0 {
        return Packet::Ignore;
    }
    match (bytes[2] >> 3) & 0x0f {
        0 | 2 | 4 | 5 => Packet::Query,
        _ => Packet::Refuse(ResponseCode::NotImp),
    }
}

/// A reply carrying only the header: the request's ID, opcode and RD flag, QR set, `code`,
/// every count zero (what hickory's `error_msg` sends).
fn error_reply(request: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    let header = request.get(..HEADER_LEN)?;
    let mut reply = vec![0u8; HEADER_LEN];
    reply[..2].copy_from_slice(&header[..2]);
    // QR, then the request's opcode and RD bits.
    reply[2] = 0x80 | (header[2] & 0x79);
    reply[3] = code.low();
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(opcode: u8) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, (opcode << 3) | 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn unknown_opcodes_get_notimp_and_known_ones_reach_the_handler() {
        for opcode in [1, 3, 6, 9, 15] {
            assert_eq!(
                classify(&query(opcode)),
                Packet::Refuse(ResponseCode::NotImp)
            );
        }
        for opcode in [0, 2, 4, 5] {
            assert_eq!(classify(&query(opcode)), Packet::Query);
        }
        assert_eq!(classify(&[0; 5]), Packet::Ignore);
        let mut response = query(0);
        response[2] |= 0x80;
        assert_eq!(classify(&response), Packet::Ignore);
    }

    #[test]
    fn an_error_reply_echoes_id_opcode_and_rd() {
        let reply = error_reply(&query(3), ResponseCode::NotImp).unwrap();
        assert_eq!(
            reply,
            [
                0xab,
                0xcd,
                0x80 | (3 << 3) | 0x01,
                4,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0
            ]
        );
    }
}
