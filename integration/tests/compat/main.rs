//! Real Consul client libraries against `concord agent -dev`: the py-consul package (PyPI)
//! under pytest and the npm `consul` package under `node --test`. The suites live in
//! `integration/compat/`; `run.sh` installs the clients on first use (a venv and
//! `node_modules`, cached between runs).

use std::process::Command;

fn run_suite(suite: &str, tool: &str) {
    if Command::new(tool).arg("--version").output().is_err() {
        // Both tools are on the project's machines; a bare developer box may lack one.
        eprintln!("{tool} not installed; skipping the {suite} compatibility suite");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/compat/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(suite)
        .env("CONCORD_BIN", concord_integration::concord_bin())
        .output()
        .expect("running compat/run.sh");
    assert!(
        out.status.success(),
        "{suite} compatibility suite failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn py_consul_suite() {
    run_suite("py", "python3");
}

#[test]
fn node_consul_suite() {
    run_suite("node", "npm");
}
