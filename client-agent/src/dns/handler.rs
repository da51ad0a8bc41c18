//! hickory `RequestHandler` over the catalog view: request checks, the stale-view policy,
//! forwarding to recursors, and wire framing around the pure [`Zone::answer`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Edns, Header, Message, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Protocol, Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::time::Instant;

use super::answer::{self, Limits, ResponseParts, Zone};
use super::recursor::Recursors;
use super::View;
use crate::catalog_cache::CatalogSnapshot;

/// Answers DNS requests from the latest catalog snapshot.
///
/// hickory has already decoded the message, answered undecodable ones with FORMERR and
/// rejected messages with other than one question; we see exactly one question here.
pub(crate) struct Handler {
    zone: Zone,
    view: View,
    recursors: Recursors,
    /// Served instead of the view once it is too stale: "no catalog", hence SERVFAIL.
    no_catalog: Arc<CatalogSnapshot>,
    /// The last [`Freshness`] seen, so each transition is logged once, not per query.
    freshness: AtomicU8,
}

/// Whether the view may be served, as last logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Freshness {
    /// The servers answer (or none was ever reached yet).
    Current = 0,
    /// The servers are unreachable; the view is within the stale bound.
    Stale = 1,
    /// The servers are unreachable and the view is too old (or may not be served stale).
    Expired = 2,
}

/// Which catalog view an answer was built from: its index, its ACL filtering
/// ([`CatalogSnapshot::view`]), and the snapshot's address so that a different view with
/// an equal index (a restore) is still told apart.
pub(super) type Generation = (u64, u64, usize);

fn generation_of(snapshot: &Arc<CatalogSnapshot>) -> Generation {
    (
        snapshot.index,
        snapshot.view,
        Arc::as_ptr(snapshot) as usize,
    )
}

/// A response before encoding.
struct Reply {
    header: Header,
    edns: Option<Edns>,
    parts: ResponseParts,
}

impl Handler {
    pub(crate) fn new(zone: Zone, view: View) -> Self {
        let config = zone.config();
        let recursors = Recursors::new(config.recursors.clone(), config.recursor_timeout);
        Handler {
            zone,
            view,
            recursors,
            no_catalog: Arc::new(CatalogSnapshot::default()),
            freshness: AtomicU8::new(Freshness::Current as u8),
        }
    }

    /// The snapshot to answer from: the view while the servers answer or while it is within
    /// the stale bound, else an empty one (lookups get SERVFAIL).
    fn snapshot(&self) -> Arc<CatalogSnapshot> {
        let contact = *self.view.contact.borrow();
        let stale_for = contact.stale_for(Instant::now());
        let bound = self.zone.config().stale_bound();
        let freshness = match stale_for {
            None => Freshness::Current,
            Some(age) if bound.is_some_and(|bound| age <= bound) => Freshness::Stale,
            Some(_) => Freshness::Expired,
        };
        // Load first: an unconditional swap would write the shared cache line on every
        // query from every thread.
        let changed = self.freshness.load(Ordering::Relaxed) != freshness as u8
            && self.freshness.swap(freshness as u8, Ordering::Relaxed) != freshness as u8;
        // Never reached a server yet: nothing was served, so nothing went stale.
        if changed && contact.current_at.is_some() {
            let age = stale_for.unwrap_or_default();
            match freshness {
                Freshness::Current => {
                    tracing::info!("catalog servers reachable again: DNS answers are current")
                }
                Freshness::Stale => tracing::warn!(
                    ?age,
                    ?bound,
                    "catalog servers unreachable: DNS answers from the last catalog view (stale)"
                ),
                Freshness::Expired => tracing::error!(
                    ?age,
                    ?bound,
                    "catalog servers unreachable and the last view is too stale: DNS catalog lookups get SERVFAIL"
                ),
            }
        }
        match freshness {
            Freshness::Current | Freshness::Stale => self.view.catalog.borrow().clone(),
            Freshness::Expired => self.no_catalog.clone(),
        }
    }

    /// Builds the response synchronously: the snapshot `Arc` is cloned out of the watch
    /// channel (its read lock released at once) and the thread-local RNG never lives across
    /// an await.
    fn reply(&self, request: &Request) -> Reply {
        let mut header = Header::response_from_request(request.header());
        // Echo EDNS when the client used it (RFC 6891 §7); the payload we advertise is the
        // size we fill, which is also what hickory's UDP encoder caps the response at.
        let edns = request.edns().map(|theirs| {
            let mut ours = Edns::new();
            ours.set_max_payload(answer::udp_payload(theirs.max_payload()));
            ours
        });

        let parts = if request.op_code() != OpCode::Query {
            // NOTIFY, UPDATE, STATUS: the zone is read-only and synthesised.
            ResponseParts::error(ResponseCode::NotImp)
        } else if request.edns().is_some_and(|theirs| theirs.version() > 0) {
            ResponseParts::error(ResponseCode::BADVERS)
        } else {
            let edns_payload = request.edns().map(Edns::max_payload);
            let limits = match request.protocol() {
                Protocol::Udp => Limits::udp(self.zone.config().udp_answer_limit, edns_payload),
                _ => Limits::tcp(edns.is_some()),
            };
            let snapshot = self.snapshot();
            self.zone.answer(
                &snapshot,
                request.query().original(),
                limits,
                &mut rand::thread_rng(),
            )
        };

        header.set_authoritative(parts.authoritative);
        header.set_truncated(parts.truncated);
        header.set_response_code(parts.rcode);
        // As Consul: RA only when there is somewhere to recurse to.
        header.set_recursion_available(!self.recursors.is_empty());
        Reply {
            header,
            edns,
            parts,
        }
    }

    /// Identifies the catalog view queries are answered from now: an answer built from one
    /// view may be replayed while this stays the same (see `udp::AnswerCache`).
    pub(super) fn generation(&self) -> Generation {
        generation_of(&self.snapshot())
    }

    /// The encoded response to a query this server answers itself, and the generation of
    /// the view it was built from; `None` when the name goes to the recursors (the caller
    /// then answers through [`RequestHandler::handle_request`]).
    pub(super) fn local_answer(&self, request: &Request) -> Option<(Generation, Vec<u8>)> {
        // The generation is read first: should the view change meanwhile, the answer is
        // filed under the older one, which the next lookup already finds outdated.
        let generation = self.generation();
        let Reply {
            header,
            edns,
            parts,
        } = self.reply(request);
        if parts.recurse {
            return None;
        }
        // As hickory's `ResponseHandle` sizes it: over UDP the EDNS payload we echo, else
        // its receive buffer size (our own fitting already kept plain UDP within 512 bytes);
        // over TCP the most a length prefix can say.
        let max_size = match request.protocol() {
            Protocol::Udp => edns.as_ref().map_or(
                hickory_proto::udp::MAX_RECEIVE_BUFFER_SIZE as u16,
                Edns::max_payload,
            ),
            _ => u16::MAX,
        };
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = edns {
            builder.edns(edns);
        }
        let response = builder.build(
            header,
            parts.answers.iter(),
            parts.authority.iter(),
            std::iter::empty::<&Record>(),
            parts.additionals.iter(),
        );
        let mut buffer = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buffer);
        encoder.set_max_size(max_size);
        match response.destructive_emit(&mut encoder) {
            Ok(_) => Some((generation, buffer)),
            Err(e) => {
                tracing::warn!(error = %e, "encoding a DNS response failed");
                None
            }
        }
    }

    /// Forwards a name that is not ours; `None` when every recursor failed.
    async fn recurse(&self, request: &Request) -> Option<Message> {
        let tcp = !matches!(request.protocol(), Protocol::Udp);
        self.recursors
            .forward(
                request.query().original(),
                request.header().recursion_desired(),
                request.edns(),
                tcp,
            )
            .await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let Reply {
            mut header,
            edns,
            mut parts,
        } = self.reply(request);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let forwarded = if parts.recurse && !self.recursors.is_empty() {
            let answer = self.recurse(request).await;
            if answer.is_none() {
                // Every recursor failed: SERVFAIL, as Consul.
                parts = ResponseParts::error(ResponseCode::ServFail);
                header.set_authoritative(false);
                header.set_response_code(ResponseCode::ServFail);
            }
            answer
        } else {
            None
        };
        let (answers, authority, additionals) = match &forwarded {
            Some(answer) => {
                // The recursor's answer under the client's id and flags, with its rcode,
                // AA/TC/AD bits and sections.
                let theirs = answer.header();
                header.set_response_code(theirs.response_code());
                header.set_authoritative(theirs.authoritative());
                header.set_truncated(theirs.truncated());
                header.set_authentic_data(theirs.authentic_data());
                (
                    answer.answers(),
                    answer.name_servers(),
                    answer.additionals(),
                )
            }
            None => (
                parts.answers.as_slice(),
                parts.authority.as_slice(),
                parts.additionals.as_slice(),
            ),
        };
        if let Some(edns) = edns {
            builder.edns(edns);
        }
        let response = builder.build(
            header,
            answers.iter(),
            authority.iter(),
            std::iter::empty::<&Record>(),
            additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                // The client gets nothing (the socket failed); report SERVFAIL to hickory.
                tracing::warn!(%error, "failed to send DNS response");
                let mut failed = header;
                failed.set_response_code(ResponseCode::ServFail);
                failed.into()
            }
        }
    }
}
