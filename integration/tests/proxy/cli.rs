//! `concord connect proxy` refuses what it cannot run, as Consul's command does.

use concord_integration::{init_tracing, TestAgent};

use super::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_for_needs_exactly_one_registered_sidecar() {
    init_tracing();
    let agent = TestAgent::dev().await.unwrap();

    tracing::info!("no sidecar registered for web");
    let out = agent
        .cli(&["connect", "proxy", "-sidecar-for", "web"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("No sidecar proxy registered for web"),
        "{}",
        stderr(&out)
    );

    tracing::info!("two sidecars for web: ambiguous, the IDs are listed");
    for id in ["web-proxy-a", "web-proxy-b"] {
        register_proxy(&agent, id, "web", free_port().unwrap(), 8080, json!([])).await;
    }
    let out = agent
        .cli(&["connect", "proxy", "-sidecar-for", "web"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("More than one sidecar proxy registered for web")
            && err.contains("web-proxy-a, web-proxy-b"),
        "{err}"
    );

    tracing::info!("bad flags are refused before anything runs");
    let out = agent
        .cli(&["connect", "proxy", "-service", "web", "-upstream", "db"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("NAME:PORT"), "{}", stderr(&out));
}
