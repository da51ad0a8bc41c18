//! A fake CA for tests: roots behind a watch that reads block on as servers do, and a
//! signer that records the requests and answers with a 72 h certificate (no crypto).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use concord_api::connect::{CaRoot, CaRoots, IssuedCert, SignRequest};
use concord_api::rpc::{
    Query, QueryMeta, QueryOptions, QueryResult, ReadResponse, RpcError, WriteRequest,
    WriteResponse, WriteResult,
};
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

use crate::rpc_client::ServerRpc;

/// Roots behind a watch (reads block on `min_index` as servers do); signing counts calls
/// and answers with a 72 h certificate at the roots' index.
#[derive(Debug)]
pub(crate) struct FakeCa {
    pub(crate) roots: watch::Sender<(u64, CaRoots)>,
    pub(crate) signed: AtomicUsize,
    pub(crate) csrs: Mutex<Vec<SignRequest>>,
}

impl FakeCa {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(FakeCa {
            roots: watch::Sender::new((1, CaRoots::default())),
            signed: AtomicUsize::new(0),
            csrs: Mutex::new(Vec::new()),
        })
    }

    /// Makes `id` the only, active root at `index`.
    pub(crate) fn set_active(&self, index: u64, id: &str) {
        self.roots.send_replace((
            index,
            CaRoots {
                active_root_id: id.to_string(),
                trust_domain: "td.consul".to_string(),
                roots: vec![CaRoot {
                    id: id.to_string(),
                    active: true,
                    ..CaRoot::default()
                }],
            },
        ));
    }
}

#[async_trait::async_trait]
impl ServerRpc for FakeCa {
    async fn read(&self, query: Query, options: QueryOptions) -> Result<ReadResponse, RpcError> {
        assert_eq!(query, Query::CaRoots);
        let mut rx = self.roots.subscribe();
        if let Some(wait) = options.blocking_wait() {
            let min = options.min_index;
            let _ = tokio::time::timeout(wait, rx.wait_for(|(i, _)| *i > min)).await;
        }
        let (index, roots) = rx.borrow().clone();
        Ok(ReadResponse {
            meta: QueryMeta {
                index,
                known_leader: true,
                last_contact_ms: 0,
                results_filtered_by_acls: false,
            },
            result: QueryResult::CaRoots(roots),
        })
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        let WriteRequest::CaSign(sign) = request else {
            return Err(RpcError::Internal("fake: only CaSign".into()));
        };
        let n = self.signed.fetch_add(1, Ordering::SeqCst) + 1;
        self.csrs.lock().unwrap().push(sign.clone());
        let index = self.roots.borrow().0;
        let now = time::OffsetDateTime::now_utc();
        Ok(WriteResponse {
            index,
            result: WriteResult::CaLeaf(IssuedCert {
                serial_number: format!("{n:02x}"),
                cert_pem: "cert".into(),
                service: sign.service,
                valid_after: now.format(&Rfc3339).unwrap(),
                valid_before: (now + time::Duration::hours(72)).format(&Rfc3339).unwrap(),
                create_index: index,
                modify_index: index,
                ..IssuedCert::default()
            }),
        })
    }
}
