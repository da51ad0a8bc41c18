//! The operator endpoints over a stub server that answers operator RPCs: request parsing,
//! Consul's JSON names and status codes.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use concord_api::operator::{
    AutopilotConfig, OperatorHealth, OperatorQuery, OperatorResult, OperatorWrite,
    RaftConfiguration, RaftServer,
};
use concord_api::rpc::{
    Query, QueryMeta, QueryOptions, QueryResult, ReadResponse, RpcError, WriteRequest,
    WriteResponse, WriteResult,
};
use tower::ServiceExt as _;

use crate::agent::AgentCore;
use crate::catalog_cache::CatalogSnapshot;
use crate::config::Config;
use crate::rpc_client::ServerRpc;

/// Answers operator reads with fixed data and records operator writes.
#[derive(Debug, Default)]
struct Stub {
    writes: Mutex<Vec<OperatorWrite>>,
    healthy: bool,
}

#[async_trait::async_trait]
impl ServerRpc for Stub {
    async fn read(&self, query: Query, _: QueryOptions) -> Result<ReadResponse, RpcError> {
        let Query::Operator(q) = query else {
            return Err(RpcError::Internal("not an operator query".into()));
        };
        let result = match q {
            OperatorQuery::RaftConfiguration => {
                OperatorResult::RaftConfiguration(RaftConfiguration {
                    servers: vec![RaftServer {
                        id: "id-1".into(),
                        node: "s1".into(),
                        address: "127.0.0.1:8300".into(),
                        leader: true,
                        voter: true,
                        protocol_version: "3".into(),
                        last_index: 9,
                    }],
                    index: 4,
                })
            }
            OperatorQuery::AutopilotConfig => {
                OperatorResult::AutopilotConfig(AutopilotConfig::default())
            }
            OperatorQuery::AutopilotHealth | OperatorQuery::AutopilotState => {
                OperatorResult::Health(OperatorHealth {
                    healthy: self.healthy,
                    failure_tolerance: 0,
                    servers: Vec::new(),
                })
            }
        };
        Ok(ReadResponse {
            meta: QueryMeta {
                index: 4,
                known_leader: true,
                last_contact_ms: 0,
                results_filtered_by_acls: false,
            },
            result: QueryResult::Operator(result),
        })
    }

    async fn write(&self, request: WriteRequest) -> Result<WriteResponse, RpcError> {
        let WriteRequest::Operator(op) = request else {
            return Err(RpcError::Internal("not an operator write".into()));
        };
        self.writes.lock().unwrap().push(op);
        Ok(WriteResponse {
            index: 5,
            result: WriteResult::Operator(OperatorResult::Bool(true)),
        })
    }
}

fn app(stub: Arc<Stub>) -> Router {
    let config = Config::new("test-node", Vec::new());
    let (_tx, view) = tokio::sync::watch::channel(Arc::new(CatalogSnapshot::default()));
    let (core, _results) = AgentCore::new(config, stub, view, None);
    crate::http::router(core)
}

async fn call(app: &Router, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn raft_configuration_and_autopilot_config_use_consuls_names() {
    let app = app(Arc::new(Stub::default()));
    let (status, body) = call(&app, Method::GET, "/v1/operator/raft/configuration", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Servers"][0]["ID"], "id-1");
    assert_eq!(v["Servers"][0]["ProtocolVersion"], "3");
    assert_eq!(v["Index"], 4);
    let (_, body) = call(
        &app,
        Method::GET,
        "/v1/operator/autopilot/configuration",
        "",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["LastContactThreshold"], "200ms");
    assert_eq!(v["ServerStabilizationTime"], "10s");
    assert_eq!(v["CleanupDeadServers"], true);
}

#[tokio::test]
async fn changes_parse_their_parameters() {
    let stub = Arc::new(Stub::default());
    let app = app(stub.clone());
    let (status, body) = call(&app, Method::DELETE, "/v1/operator/raft/peer", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &app,
        Method::DELETE,
        "/v1/operator/raft/peer?address=10.0.0.1:8300",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &app,
        Method::PUT,
        "/v1/operator/autopilot/configuration?cas=x",
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = call(
        &app,
        Method::PUT,
        "/v1/operator/autopilot/configuration?cas=3",
        r#"{"MaxTrailingLogs": 7, "LastContactThreshold": "1s"}"#,
    )
    .await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "true"));
    let (_, body) = call(&app, Method::POST, "/v1/operator/raft/transfer-leader", "").await;
    assert_eq!(body.trim(), r#"{"Success":true}"#);
    let writes = stub.writes.lock().unwrap().clone();
    assert_eq!(
        writes[0],
        OperatorWrite::RemovePeer {
            id: None,
            address: Some("10.0.0.1:8300".into())
        }
    );
    match &writes[1] {
        OperatorWrite::SetAutopilotConfig { config, cas } => {
            assert_eq!(*cas, Some(3));
            assert_eq!(config.max_trailing_logs, 7);
            assert_eq!(config.last_contact_threshold.get().as_secs(), 1);
            assert!(
                config.cleanup_dead_servers,
                "unset fields keep the defaults"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(writes[2], OperatorWrite::TransferLeader { id: None });
}

#[tokio::test]
async fn unhealthy_clusters_answer_429() {
    let sick = app(Arc::new(Stub::default()));
    let (status, _) = call(&sick, Method::GET, "/v1/operator/autopilot/health", "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let fine = app(Arc::new(Stub {
        healthy: true,
        ..Stub::default()
    }));
    let (status, _) = call(&fine, Method::GET, "/v1/operator/autopilot/health", "").await;
    assert_eq!(status, StatusCode::OK);
}
