//! Page load of the web UI's services view with many registered services: a real
//! `concord agent -dev`, N services on a second catalog node (each with a passing check, a
//! tag and a port), headless Chromium at 1280x800. Each run opens `/ui/dc1/services` afresh
//! and reads, in the page, the `services-rendered` performance mark the view sets when the
//! full list is in the DOM: milliseconds from navigation start, so it counts fetching the
//! HTML, the modules, the API calls and rendering, as a user waits for them.
//!
//! Usage: `bench/ui/run.sh` (sets `CONCORD_BIN`), or
//! `CONCORD_BIN=target/debug/concord ui_load [SERVICES] [RUNS]` (default 1000 and 15).
//! Prints a markdown table (docs/benchmarks.md, section "Web UI").
// A benchmark's output is its report.
#![allow(clippy::print_stdout)]

use anyhow::{bail, Context};
use concord_integration::browser::Browser;
use concord_integration::TestAgent;
use futures::stream::{self, StreamExt};
use serde_json::json;

const GOAL_MS: f64 = 300.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("CONCORD_BIN").is_none() {
        bail!("set CONCORD_BIN to the concord binary (bench/ui/run.sh does)");
    }
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(15), |a| a.parse())?;

    let agent = TestAgent::dev().await?;
    eprintln!("registering {services} services");
    let registered = stream::iter(0..services)
        .map(|i| {
            let agent = &agent;
            async move {
                let body = json!({
                    "Node": "bench-node", "Address": "10.0.0.9",
                    "Service": {"ID": format!("svc-{i:04}"), "Service": format!("svc-{i:04}"),
                                "Port": 10000 + i, "Tags": [format!("t{}", i % 10)]},
                    "Check": {"CheckID": format!("svc-{i:04}-check"), "Name": "alive",
                              "ServiceID": format!("svc-{i:04}"), "Status": "passing"},
                });
                agent.put("/v1/catalog/register", body.to_string()).await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for r in registered {
        let (status, text) = r?;
        if status != 200 {
            bail!("register: {status} {text}");
        }
    }
    let (_, _, listed) = agent.get_json("/v1/catalog/services").await?;
    let total = listed.as_object().map_or(0, |m| m.len());
    eprintln!("catalog lists {total} services");

    let browser = Browser::start(1280, 800).await?;
    let url = agent.url("/ui/dc1/services");
    let mut times = Vec::with_capacity(runs);
    // One warm-up load: the first start of a browser profile is not what a user waits for.
    for run in 0..=runs {
        browser.client.goto("about:blank").await?;
        browser.open(&url, "services").await?;
        let result = browser
            .client
            .execute(
                r#"return [performance.getEntriesByName("services-rendered")[0].startTime,
                           document.querySelectorAll("table.services tbody tr").length];"#,
                vec![],
            )
            .await?;
        let ms = result[0].as_f64().context("services-rendered mark")?;
        let rows = result[1].as_u64().unwrap_or(0) as usize;
        if rows != total {
            bail!("run {run}: {rows} rows rendered, want {total}");
        }
        if run > 0 {
            times.push(ms);
        }
        if run == runs && std::env::var_os("UI_BENCH_DETAIL").is_some() {
            // Where the last load's time went: each request's start and end (ms from
            // navigation start).
            let detail = browser
                .client
                .execute(
                    r#"return performance.getEntriesByType("resource").map(e =>
                         `${e.startTime.toFixed(0)}..${e.responseEnd.toFixed(0)} ${e.name.replace(location.origin, "")}`)
                         .concat(performance.getEntriesByType("mark").map(m => `${m.startTime.toFixed(0)} mark ${m.name}`))
                         .join("\n");"#,
                    vec![],
                )
                .await?;
            eprintln!("{}", detail.as_str().unwrap_or_default());
        }
    }
    browser.close().await;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!("| services | runs | min ms | median ms | p90 ms | max ms | goal |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {total} | {runs} | {:.0} | {:.0} | {:.0} | {:.0} | median < {GOAL_MS:.0} ms: {} |",
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0),
        if at(0.5) < GOAL_MS { "met" } else { "missed" }
    );
    Ok(())
}
