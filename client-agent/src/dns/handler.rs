//! hickory `RequestHandler` over the catalog view: request checks and wire framing around
//! the pure [`Zone::answer`].

use hickory_proto::op::{Edns, Header, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Protocol, Request, RequestHandler, ResponseHandler, ResponseInfo};

use super::answer::{self, Limits, ResponseParts, Zone};
use crate::catalog_cache::CatalogView;

/// Answers DNS requests from the latest catalog snapshot.
///
/// hickory has already decoded the message, answered undecodable ones with FORMERR and
/// rejected messages with other than one question; we see exactly one question here.
pub(crate) struct Handler {
    zone: Zone,
    view: CatalogView,
}

/// A response before encoding.
struct Reply {
    header: Header,
    edns: Option<Edns>,
    parts: ResponseParts,
}

impl Handler {
    pub(crate) fn new(zone: Zone, view: CatalogView) -> Self {
        Handler { zone, view }
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
            let snapshot = self.view.borrow().clone();
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
        Reply {
            header,
            edns,
            parts,
        }
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
            header,
            edns,
            parts,
        } = self.reply(request);
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
