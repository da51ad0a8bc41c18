//! The UDP loop of the DNS server, in place of hickory's own: hickory drops a packet whose
//! header it cannot decode, and its header decoder knows only opcodes 0, 2, 4 and 5, so
//! queries with opcode 1, 3 or 6-15 went unanswered. Consul (miekg/dns) answers them
//! NOTIMP, as it answers NOTIFY and UPDATE; this loop does too, from the raw header, and
//! hands every other packet to the [`Handler`] exactly as hickory's loop does (same
//! [`Request`], same [`ResponseHandle`], so EDNS sizing and truncation are unchanged).
//!
//! It also keeps an [`AnswerCache`]: the encoded answers to the queries it answered itself,
//! for as long as the catalog view they came from is current. Building an answer (matching
//! instances, shuffling, name compression) costs far more than copying one, and a busy
//! agent sees the same few questions over and over; a repeat costs a lookup, a copy and
//! two bytes of ID.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use hickory_proto::op::ResponseCode;
use hickory_proto::serialize::binary::BinDecodable;
use hickory_proto::udp::UdpStream;
use hickory_proto::xfer::{DnsStreamHandle, SerialMessage};
use hickory_server::authority::MessageRequest;
use hickory_server::server::{Protocol, Request, RequestHandler, ResponseHandle};
use tokio::task::JoinSet;

use super::handler::{Generation, Handler};

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
    let cache = Arc::new(AnswerCache::default());
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
                    if let Some(reply) = cache.get(handler.generation(), bytes) {
                        if let Err(e) = reply_to.send(SerialMessage::new(reply, src)) {
                            tracing::debug!(error = %e, client = %src, "DNS: UDP reply failed");
                        }
                        continue;
                    }
                    let handler = handler.clone();
                    let cache = cache.clone();
                    let key = bytes.to_vec();
                    in_flight.spawn(async move {
                        let request = Request::new(request, src, Protocol::Udp);
                        match handler.local_udp(&request) {
                            Some((generation, reply)) => {
                                cache.put(generation, &key, &reply);
                                if let Err(e) = reply_to.send(SerialMessage::new(reply, src)) {
                                    tracing::debug!(error = %e, client = %src, "DNS: UDP reply failed");
                                }
                            }
                            None => {
                                let response = ResponseHandle::new(src, reply_to, Protocol::Udp);
                                handler.handle_request(&request, response).await;
                            }
                        }
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

/// Encoded answers to the UDP queries this server answered itself, valid for one catalog
/// view (a [`Generation`]); a new view empties it.
///
/// Keyed by the query's bytes after its ID (flags, question in the client's letter case,
/// EDNS payload size), which is everything the answer depends on besides the view. Each
/// question keeps up to [`VARIANTS`] answers, built on its first misses and then served in
/// turn, so the shuffled order of instances still varies between clients. Negative answers'
/// SOA keeps the serial of the moment it was built until the view changes.
#[derive(Debug, Default)]
struct AnswerCache {
    /// A std mutex: lookups and inserts are a hash probe and a copy, never an await.
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    generation: Option<Generation>,
    answers: HashMap<Vec<u8>, Variants>,
}

#[derive(Debug, Default)]
struct Variants {
    replies: Vec<Vec<u8>>,
    next: usize,
}

/// Differently shuffled answers kept per question.
const VARIANTS: usize = 4;
/// Most questions kept per view; beyond it new questions are answered but not kept.
const MAX_QUESTIONS: usize = 10_000;

impl AnswerCache {
    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // Every critical section leaves the maps consistent; a poisoned lock still holds
        // valid (at worst outdated) answers, which the generation check guards.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kept answer to `query` built from `generation`, with the query's ID.
    fn get(&self, generation: Generation, query: &[u8]) -> Option<Vec<u8>> {
        let key = query.get(2..)?;
        let mut inner = self.lock();
        if inner.generation != Some(generation) {
            inner.generation = Some(generation);
            inner.answers.clear();
            return None;
        }
        let variants = inner.answers.get_mut(key)?;
        if variants.replies.len() < VARIANTS {
            // Still collecting shuffles: build another.
            return None;
        }
        let mut reply = variants.replies[variants.next % VARIANTS].clone();
        variants.next = variants.next.wrapping_add(1);
        reply.get_mut(..2)?.copy_from_slice(query.get(..2)?);
        Some(reply)
    }

    /// Keeps `reply` (built from `generation`) as an answer to `query`.
    fn put(&self, generation: Generation, query: &[u8], reply: &[u8]) {
        let Some(key) = query.get(2..) else {
            return;
        };
        let mut inner = self.lock();
        if inner.generation != Some(generation) {
            // Built from a view that is no longer (or not yet) the cached one.
            return;
        }
        if !inner.answers.contains_key(key) && inner.answers.len() >= MAX_QUESTIONS {
            return;
        }
        let variants = inner.answers.entry(key.to_vec()).or_default();
        if variants.replies.len() < VARIANTS {
            variants.replies.push(reply.to_vec());
        }
    }
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
    fn kept_answers_serve_the_same_question_for_the_same_view_only() {
        let cache = AnswerCache::default();
        let view = (7, 0, 1);
        let query = |id: u8| {
            let mut q = query(0);
            q[1] = id;
            q
        };
        let reply = |n: u8| vec![0, 0, 0x84, n];
        assert_eq!(
            cache.get(view, &query(1)),
            None,
            "empty; the view is adopted"
        );
        for n in 0..VARIANTS {
            cache.put(view, &query(1), &reply(n as u8));
        }
        let served: Vec<Vec<u8>> = (0..VARIANTS)
            .map(|i| cache.get(view, &query(9 + i as u8)).unwrap())
            .collect();
        for (i, r) in served.iter().enumerate() {
            assert_eq!(r[..2], [0xab, 9 + i as u8], "the query's ID");
            assert_eq!(r[3], i as u8, "the variants in turn");
        }
        let mut other = query(1);
        other[HEADER_LEN] = 1;
        assert_eq!(cache.get(view, &other), None, "another question");
        assert_eq!(
            cache.get((8, 0, 1), &query(1)),
            None,
            "a new view empties it"
        );
        cache.put(view, &query(1), &reply(0));
        assert_eq!(
            cache.get((8, 0, 1), &query(1)),
            None,
            "answers of an old view are not kept"
        );
        cache.put((8, 0, 1), &query(1), &reply(0));
        assert_eq!(
            cache.get((8, 1, 1), &query(1)),
            None,
            "the same index filtered anew (an ACL change) is a new view"
        );
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
