//! Agent telemetry for `/v1/agent/metrics`: Consul's JSON summary shape, and the Prometheus
//! text format (`?format=prometheus`) rendered with prometheus-client.
//!
//! Counters are plain atomics updated on hot paths; gauges (services, checks by status,
//! catalog index) are read from live state at scrape time, so there is nothing to keep in
//! step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

/// Request counters.
#[derive(Debug, Default)]
pub struct Metrics {
    http_by_method: Mutex<BTreeMap<String, u64>>,
    http_total: AtomicU64,
}

/// Values sampled from the agent at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    /// Locally registered services.
    pub services: u64,
    /// Local checks by status name.
    pub checks: BTreeMap<&'static str, u64>,
    /// Successful anti-entropy syncs.
    pub syncs_ok: u64,
    /// Failed anti-entropy syncs.
    pub syncs_failed: u64,
    /// Raft index of the agent's catalog copy.
    pub catalog_index: u64,
}

impl Metrics {
    /// Counts one HTTP request. The method becomes a label only if it is a standard one;
    /// any other counts as `other`, so a client cannot grow the label set (and memory)
    /// by sending made-up methods.
    pub fn http_request(&self, method: &str) {
        self.http_total.fetch_add(1, Relaxed);
        let label = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "PATCH" | "TRACE"
            | "CONNECT" => method,
            _ => "other",
        };
        let mut map = self
            .http_by_method
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry(label.to_string()).or_default() += 1;
    }

    fn by_method(&self) -> BTreeMap<String, u64> {
        self.http_by_method
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Consul's `/v1/agent/metrics` JSON: `{Timestamp, Gauges, Points, Counters, Samples}`.
    pub fn to_json(&self, sample: &Sample, timestamp: String) -> Value {
        let mut gauges = vec![
            json!({"Name": "concord.agent.services", "Value": sample.services, "Labels": {}}),
            json!({"Name": "concord.agent.catalog_index", "Value": sample.catalog_index, "Labels": {}}),
        ];
        for (status, n) in &sample.checks {
            gauges.push(
                json!({"Name": "concord.agent.checks", "Value": n, "Labels": {"status": status}}),
            );
        }
        let counter = |name: &str, n: u64, labels: Value| json!({"Name": name, "Count": n, "Sum": n, "Min": 1, "Max": 1, "Mean": 1, "Stddev": 0, "Labels": labels});
        let mut counters = vec![
            counter("concord.agent.ae.sync", sample.syncs_ok, json!({})),
            counter(
                "concord.agent.ae.sync_failed",
                sample.syncs_failed,
                json!({}),
            ),
        ];
        for (method, n) in self.by_method() {
            counters.push(counter(
                "concord.http.requests",
                n,
                json!({"method": method}),
            ));
        }
        json!({
            "Timestamp": timestamp,
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": [],
        })
    }

    /// Prometheus text exposition of the same values.
    pub fn to_prometheus(&self, sample: &Sample) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("concord");
        let services = Gauge::<i64>::default();
        services.set(i64::try_from(sample.services).unwrap_or(i64::MAX));
        registry.register(
            "agent_services",
            "Services registered on this agent",
            services,
        );
        let index = Gauge::<i64>::default();
        index.set(i64::try_from(sample.catalog_index).unwrap_or(i64::MAX));
        registry.register(
            "agent_catalog_index",
            "Raft index of the agent's catalog copy",
            index,
        );
        let checks = Family::<Vec<(String, String)>, Gauge>::default();
        for (status, n) in &sample.checks {
            checks
                .get_or_create(&vec![("status".to_string(), status.to_string())])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        registry.register("agent_checks", "Local checks by status", checks);
        let syncs = Family::<Vec<(String, String)>, Counter>::default();
        syncs
            .get_or_create(&vec![("result".to_string(), "ok".to_string())])
            .inc_by(sample.syncs_ok);
        syncs
            .get_or_create(&vec![("result".to_string(), "failed".to_string())])
            .inc_by(sample.syncs_failed);
        registry.register("agent_ae_syncs", "Anti-entropy syncs", syncs);
        let http = Family::<Vec<(String, String)>, Counter>::default();
        for (method, n) in self.by_method() {
            http.get_or_create(&vec![("method".to_string(), method)])
                .inc_by(n);
        }
        registry.register("http_requests", "HTTP API requests", http);
        let mut out = String::new();
        encode(&mut out, &registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_formats() {
        let m = Metrics::default();
        m.http_request("GET");
        m.http_request("GET");
        let mut sample = Sample {
            services: 2,
            ..Sample::default()
        };
        sample.checks.insert("passing", 1);
        let text = m.to_prometheus(&sample).unwrap();
        assert!(text.contains("concord_agent_services 2"), "{text}");
        assert!(
            text.contains("concord_http_requests_total{method=\"GET\"} 2"),
            "{text}"
        );
        let j = m.to_json(&sample, "now".into());
        assert_eq!(j["Gauges"][0]["Value"], 2);
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let m = Metrics::default();
        for i in 0..100 {
            m.http_request(&format!("X{i}"));
        }
        m.http_request("PUT");
        assert_eq!(
            m.by_method(),
            BTreeMap::from([("PUT".to_string(), 1), ("other".to_string(), 100)])
        );
    }
}
