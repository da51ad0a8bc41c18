//! What both DNS transports (the `udp` and `tcp` loops) do with one message: read its raw
//! header, answer opcodes hickory cannot decode (1, 3, 6-15) NOTIMP as Consul (miekg/dns)
//! does, replay a kept answer, or hand the decoded [`Request`] to the [`Handler`] exactly as
//! hickory's own loops do (same [`Request`], same [`ResponseHandle`], so EDNS sizing and
//! truncation are unchanged).
//!
//! The [`AnswerCache`] keeps the encoded answers to the queries this server answered itself,
//! for as long as the catalog view they came from is current. Building an answer (matching
//! instances, shuffling, name compression) costs far more than copying one, and a busy agent
//! sees the same few questions over and over; a repeat costs a lookup, a copy and two bytes
//! of ID. One cache serves both transports, each with its own answers (a UDP answer is
//! trimmed to fit a datagram, a TCP one is whole).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hickory_proto::op::ResponseCode;
use hickory_proto::serialize::binary::BinDecodable;
use hickory_proto::xfer::{BufDnsStreamHandle, DnsStreamHandle, SerialMessage};
use hickory_server::authority::MessageRequest;
use hickory_server::server::{Protocol, Request, RequestHandler, ResponseHandle};

use super::handler::{Generation, Handler};

/// Length of a DNS header.
const HEADER_LEN: usize = 12;

/// The handler and the answer cache both transports share.
pub(super) struct Responder {
    handler: Arc<Handler>,
    cache: AnswerCache,
}

/// A decoded query the handler has to answer (a cache miss, or a name for the recursors).
pub(super) struct Pending {
    request: MessageRequest,
    /// The query's bytes, to file the answer under.
    key: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
}

impl Responder {
    pub(super) fn new(handler: Arc<Handler>) -> Self {
        Responder {
            handler,
            cache: AnswerCache::default(),
        }
    }

    /// Answers at once what needs no handler run (ignored packets, error replies, kept
    /// answers) through `reply_to`; returns the rest for [`Pending::run`].
    pub(super) fn triage(
        &self,
        bytes: &[u8],
        src: SocketAddr,
        protocol: Protocol,
        reply_to: &mut BufDnsStreamHandle,
    ) -> Option<Pending> {
        let reply = match classify(bytes) {
            Packet::Ignore => return None,
            Packet::Refuse(code) => error_reply(bytes, code),
            Packet::Query => match MessageRequest::from_bytes(bytes) {
                Ok(request) => match self.cache.get(protocol, self.handler.generation(), bytes) {
                    Some(kept) => Some(kept),
                    None => {
                        return Some(Pending {
                            request,
                            key: bytes.to_vec(),
                            src,
                            protocol,
                        })
                    }
                },
                Err(e) => {
                    tracing::debug!(error = %e, client = %src, "DNS: malformed query");
                    error_reply(bytes, ResponseCode::FormErr)
                }
            },
        };
        if let Some(reply) = reply {
            send(reply_to, reply, src, protocol);
        }
        None
    }
}

impl Responder {
    /// Writes the kept answer to `query` over `protocol` into `out`, when there is one, with
    /// the query's ID: the path of a repeated question, with no decoding, no allocation once
    /// `out` has grown, and no hand-off. `false` (and `out` empty) otherwise; the query then
    /// goes to [`triage`](Self::triage).
    ///
    /// Answers are kept only for queries that decoded and that this server answered itself,
    /// under the bytes after the ID; the same bytes decode to the same query, so replaying
    /// before decoding answers exactly what `triage` would.
    pub(super) fn replay(&self, query: &[u8], protocol: Protocol, out: &mut Vec<u8>) -> bool {
        classify(query) == Packet::Query
            && self
                .cache
                .get_into(protocol, self.handler.generation(), query, out)
    }
}

impl Pending {
    /// Builds the answer (keeping it when this server answered itself) and sends it.
    pub(super) async fn run(self, responder: &Responder, mut reply_to: BufDnsStreamHandle) {
        let Pending {
            request,
            key,
            src,
            protocol,
        } = self;
        let request = Request::new(request, src, protocol);
        match responder.handler.local_answer(&request) {
            Some((generation, reply)) => {
                responder.cache.put(protocol, generation, &key, &reply);
                send(&mut reply_to, reply, src, protocol);
            }
            None => {
                let response = ResponseHandle::new(src, reply_to, protocol);
                responder.handler.handle_request(&request, response).await;
            }
        }
    }
}

fn send(reply_to: &mut BufDnsStreamHandle, reply: Vec<u8>, src: SocketAddr, protocol: Protocol) {
    if let Err(e) = reply_to.send(SerialMessage::new(reply, src)) {
        tracing::debug!(error = %e, client = %src, %protocol, "DNS: reply failed");
    }
}

/// Encoded answers to the queries this server answered itself, per transport, valid for one
/// catalog view (a [`Generation`]); a new view empties it.
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
    /// UDP answers, then TCP ones ([`slot`]).
    answers: [HashMap<Vec<u8>, Variants>; 2],
}

/// The transport's map in [`CacheInner::answers`].
fn slot(protocol: Protocol) -> usize {
    usize::from(!matches!(protocol, Protocol::Udp))
}

#[derive(Debug, Default)]
struct Variants {
    replies: Vec<Vec<u8>>,
    next: usize,
}

/// Differently shuffled answers kept per question.
const VARIANTS: usize = 4;
/// Most questions kept per view (both transports together); beyond it new questions are
/// answered but not kept.
const MAX_QUESTIONS: usize = 10_000;

impl AnswerCache {
    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // Every critical section leaves the maps consistent; a poisoned lock still holds
        // valid (at worst outdated) answers, which the generation check guards.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kept answer to `query` over `protocol` built from `generation`, with the query's
    /// ID.
    fn get(&self, protocol: Protocol, generation: Generation, query: &[u8]) -> Option<Vec<u8>> {
        let mut reply = Vec::new();
        self.get_into(protocol, generation, query, &mut reply)
            .then_some(reply)
    }

    /// [`get`](Self::get) into `out` (cleared first), reusing its allocation; `false` and
    /// `out` empty when no answer is kept.
    fn get_into(
        &self,
        protocol: Protocol,
        generation: Generation,
        query: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let (Some(id), Some(key)) = (query.get(..2), query.get(2..)) else {
            return false;
        };
        let mut inner = self.lock();
        if inner.generation != Some(generation) {
            inner.generation = Some(generation);
            inner.answers.iter_mut().for_each(HashMap::clear);
            return false;
        }
        let Some(variants) = inner.answers[slot(protocol)].get_mut(key) else {
            return false;
        };
        if variants.replies.len() < VARIANTS {
            // Still collecting shuffles: build another.
            return false;
        }
        out.extend_from_slice(&variants.replies[variants.next % VARIANTS]);
        variants.next = variants.next.wrapping_add(1);
        drop(inner);
        match out.get_mut(..2) {
            Some(head) => {
                head.copy_from_slice(id);
                true
            }
            None => {
                out.clear();
                false
            }
        }
    }

    /// Keeps `reply` (built from `generation`) as an answer to `query` over `protocol`.
    fn put(&self, protocol: Protocol, generation: Generation, query: &[u8], reply: &[u8]) {
        let Some(key) = query.get(2..) else {
            return;
        };
        let mut inner = self.lock();
        if inner.generation != Some(generation) {
            // Built from a view that is no longer (or not yet) the cached one.
            return;
        }
        let kept: usize = inner.answers.iter().map(HashMap::len).sum();
        let answers = &mut inner.answers[slot(protocol)];
        if !answers.contains_key(key) && kept >= MAX_QUESTIONS {
            return;
        }
        let variants = answers.entry(key.to_vec()).or_default();
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
        let udp = Protocol::Udp;
        assert_eq!(
            cache.get(udp, view, &query(1)),
            None,
            "empty; the view is adopted"
        );
        for n in 0..VARIANTS {
            cache.put(udp, view, &query(1), &reply(n as u8));
        }
        assert_eq!(
            cache.get(Protocol::Tcp, view, &query(1)),
            None,
            "UDP answers are not TCP answers"
        );
        let served: Vec<Vec<u8>> = (0..VARIANTS)
            .map(|i| cache.get(udp, view, &query(9 + i as u8)).unwrap())
            .collect();
        for (i, r) in served.iter().enumerate() {
            assert_eq!(r[..2], [0xab, 9 + i as u8], "the query's ID");
            assert_eq!(r[3], i as u8, "the variants in turn");
        }
        let mut other = query(1);
        other[HEADER_LEN] = 1;
        assert_eq!(cache.get(udp, view, &other), None, "another question");
        assert_eq!(
            cache.get(udp, (8, 0, 1), &query(1)),
            None,
            "a new view empties it"
        );
        cache.put(udp, view, &query(1), &reply(0));
        assert_eq!(
            cache.get(udp, (8, 0, 1), &query(1)),
            None,
            "answers of an old view are not kept"
        );
        cache.put(udp, (8, 0, 1), &query(1), &reply(0));
        assert_eq!(
            cache.get(udp, (8, 1, 1), &query(1)),
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
