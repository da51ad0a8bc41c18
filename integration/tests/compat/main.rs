//! Real Consul client libraries against `concord agent -dev`: the py-consul package (PyPI)
//! under pytest and the npm `consul` package under `node --test`. The suites live in
//! `integration/compat/`; `run.sh` installs the clients on first use (a venv and
//! `node_modules`, cached between runs). A missing `python3` or `npm`/`node` skips a suite on
//! a developer's machine and fails it under CI (see `concord_integration::tools`).

use std::process::Command;

use concord_integration::tools;

fn run_suite(suite: &str, programs: &[&str]) {
    let what = format!("the {suite} compatibility suite");
    if !programs
        .iter()
        .all(|program| tools::require(program, &["--version"], &what))
    {
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
    run_suite("py", &["python3"]);
}

#[test]
fn node_consul_suite() {
    run_suite("node", &["npm", "node"]);
}
