//! `concord connect proxy`: runs the built-in sidecar proxy ([`concord_proxy::run`]) for a
//! registered sidecar (`-sidecar-for`, `-proxy-id`) or standalone (`-service`,
//! `-upstream`, `-listen`). Flags only; the proxy crate does the rest.

use std::net::SocketAddr;
use std::time::Duration;

use concord_proxy::control::spec::parse_upstream_flag;
use concord_proxy::{Config, Mode};

use crate::flags::{flag, parse_or_usage, Flag, Kind, Parsed};
use crate::http::{agent_base_url, tls_from_flags, token_from_flags};
use crate::output::fail;

const USAGE: &str = "Usage: concord connect <subcommand> [options]

Subcommands:
    proxy     Runs the built-in mTLS sidecar proxy";

const PROXY_USAGE: &str = "Usage: concord connect proxy [options]

  Runs Concord's sidecar proxy: mTLS between services with the built-in CA, intentions
  enforced per connection, one local listener per upstream.

  -sidecar-for=<service-id>  Run the sidecar registered for this service instance.
  -proxy-id=<id>             Run the connect-proxy registered with this ID.
  -service=<name>            Standalone: the service this proxy is (its identity).
  -service-addr=<addr:port>  Standalone: the local app for inbound traffic.
  -listen=<addr:port>        Standalone: the public mTLS listener.
  -upstream=<name:port>      Standalone: an upstream listener (NAME:PORT or
                             NAME:ADDR:PORT; repeatable).
  -metrics-addr=<addr:port>  Serve Prometheus metrics at http://<addr:port>/metrics.
  -otlp-endpoint=<url>       Send a span per HTTP request to this OTLP/HTTP collector
                             (e.g. http://127.0.0.1:4318).
  -drain-timeout=<secs>      On SIGINT/SIGTERM, seconds open connections may take to
                             finish. Default 5.
  -workers=<n>               Threads serving connections, each with its own
                             single-threaded runtime; a connection stays on one thread
                             for its life (no cross-thread wake-ups per request), and
                             new connections go to the least busy. Default 2 (1 on a
                             one-CPU machine), as haproxy and Envoy use the CPUs.
  -log-level=<level>         trace, debug, info (default), warn or error.";

const PROXY_FLAGS: &[Flag] = &[
    flag("sidecar-for", Kind::Str),
    flag("proxy-id", Kind::Str),
    flag("service", Kind::Str),
    flag("service-addr", Kind::Str),
    flag("listen", Kind::Str),
    flag("upstream", Kind::List),
    flag("metrics-addr", Kind::Str),
    flag("otlp-endpoint", Kind::Str),
    flag("drain-timeout", Kind::Uint),
    flag("workers", Kind::Uint),
    flag("log-level", Kind::Str),
];

/// Connection threads of `connect proxy` when `-workers` is not given: two (one on a
/// one-CPU machine). A burst of requests over many connections then drains on two cores
/// while each connection stays on one thread (docs/benchmarks.md, "Sidecar proxy").
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// How many runtime threads `concord connect ARGS` wants (`None`: not `connect proxy`, the
/// binary's default runtime). The proxy's own runtime is single-threaded: it accepts and
/// follows the agent, and starts the extra connection threads `-workers` asks for
/// (`concord_proxy::workers`), each with a runtime of its own.
pub(crate) fn runtime_workers(args: &[String]) -> Option<usize> {
    let (sub, _) = args.split_first()?;
    (sub == "proxy").then_some(1)
}

/// Runs `concord connect <subcommand> ...`.
pub(crate) async fn run(args: Vec<String>) -> anyhow::Result<i32> {
    match args.split_first() {
        Some((sub, rest)) if sub == "proxy" => proxy(rest).await,
        Some((sub, _)) if matches!(sub.as_str(), "-h" | "-help" | "--help") => {
            eprintln!("{USAGE}");
            Ok(0)
        }
        Some((other, _)) => fail(format!("Unknown subcommand: connect {other}\n\n{USAGE}")),
        None => {
            eprintln!("{USAGE}");
            Ok(1)
        }
    }
}

fn addr_flag(p: &Parsed, name: &str) -> anyhow::Result<Option<SocketAddr>> {
    p.value(name)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("-{name} {v:?}: want ip:port"))
        })
        .transpose()
}

/// The proxy's configuration from parsed flags.
fn config(p: &Parsed) -> anyhow::Result<Config> {
    let env = |name: &str| std::env::var(name).ok();
    let given = |name: &str| p.value(name).filter(|v| !v.is_empty());
    let mode = match (given("sidecar-for"), given("proxy-id"), given("service")) {
        (Some(id), None, None) => Mode::SidecarFor(id.to_string()),
        (None, Some(id), None) => Mode::ProxyId(id.to_string()),
        (None, None, Some(service)) => Mode::Standalone {
            service: service.to_string(),
            listen: addr_flag(p, "listen")?,
            local_app: addr_flag(p, "service-addr")?,
            upstreams: p
                .list("upstream")
                .iter()
                .map(|u| parse_upstream_flag(u).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
        },
        (None, None, None) => {
            anyhow::bail!("One of -sidecar-for, -proxy-id or -service must be specified")
        }
        _ => anyhow::bail!("Only one of -sidecar-for, -proxy-id or -service may be specified"),
    };
    let standalone_flags = given("listen").is_some()
        || given("service-addr").is_some()
        || !p.list("upstream").is_empty();
    if standalone_flags && !matches!(mode, Mode::Standalone { .. }) {
        anyhow::bail!("-listen, -service-addr and -upstream are for standalone mode (-service)");
    }
    let drain = match p.value("drain-timeout") {
        Some(_) => Duration::from_secs(p.uint("drain-timeout")),
        None => Duration::from_secs(5),
    };
    let agent_url = agent_base_url(p.value("http-addr"), &env)?;
    // HTTPS to the agent as every command does it (-ca-file, -client-cert, CONSUL_CACERT...).
    let agent_tls = if agent_url.starts_with("https://") {
        Some(tls_from_flags(p, &env)?)
    } else {
        None
    };
    Ok(Config {
        agent_url,
        agent_tls,
        token: token_from_flags(p),
        mode,
        metrics_addr: addr_flag(p, "metrics-addr")?,
        drain_timeout: drain,
        otlp_endpoint: p.value("otlp-endpoint").map(str::to_string),
        workers: p
            .value("workers")
            .map(|_| p.uint("workers"))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_else(default_workers)
            .max(1),
    })
}

async fn proxy(args: &[String]) -> anyhow::Result<i32> {
    let p = match parse_or_usage(args, PROXY_FLAGS, PROXY_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let config = match config(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e}\n\n{PROXY_USAGE}")),
    };
    crate::agent::logging::init_stderr(p.value_or("log-level", "info"))?;
    match concord_proxy::run(config, crate::agent::shutdown_signal()).await {
        Ok(()) => Ok(0),
        Err(e) => fail(format!("Error running the proxy: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::parse_flags;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        config(&parse_flags(&args, PROXY_FLAGS).map_err(|e| anyhow::anyhow!("{e:?}"))?)
    }

    #[test]
    fn modes_from_flags() {
        let c = parse(&["-sidecar-for", "web", "-http-addr", "127.0.0.1:1"]).unwrap();
        assert!(matches!(c.mode, Mode::SidecarFor(ref id) if id == "web"));
        assert_eq!(c.agent_url, "http://127.0.0.1:1");
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
        let c = parse(&[
            "-service",
            "web",
            "-upstream",
            "db:9191",
            "-upstream=cache:127.0.0.2:9192",
            "-listen",
            "127.0.0.1:21000",
            "-service-addr",
            "127.0.0.1:8080",
            "-metrics-addr",
            "127.0.0.1:9102",
            "-drain-timeout",
            "0",
        ])
        .unwrap();
        let Mode::Standalone {
            service, upstreams, ..
        } = &c.mode
        else {
            panic!("standalone expected");
        };
        assert_eq!(service, "web");
        assert_eq!(upstreams.len(), 2);
        assert_eq!(c.drain_timeout, Duration::ZERO);
        assert!(c.metrics_addr.is_some());
    }

    #[test]
    fn the_proxy_runtime_is_single_threaded_and_workers_are_its_connection_threads() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(runtime_workers(&args(&["proxy", "-workers", "4"])), Some(1));
        assert_eq!(runtime_workers(&args(&["other"])), None);
        assert_eq!(runtime_workers(&args(&[])), None);
        let workers = |extra: &[&str]| {
            let mut a = vec!["-sidecar-for", "web"];
            a.extend_from_slice(extra);
            let p = crate::flags::parse_flags(&args(&a), PROXY_FLAGS).unwrap();
            config(&p).unwrap().workers
        };
        assert_eq!(workers(&[]), default_workers());
        assert!((1..=2).contains(&default_workers()));
        assert_eq!(workers(&["-workers", "4"]), 4);
        assert_eq!(workers(&["-workers=0"]), 1);
    }

    #[test]
    fn https_agent_addresses_take_the_tls_flags() {
        // Accepted with a CA (tls/https integration test); here, what is refused and why.
        let c = parse(&["-sidecar-for", "web", "-http-addr", "http://127.0.0.1:1"]).unwrap();
        assert!(c.agent_tls.is_none());
        let err = parse(&["-sidecar-for", "web", "-http-addr", "https://127.0.0.1:1"]).unwrap_err();
        assert!(
            err.to_string().contains("needs ca_file or ca_path"),
            "{err}"
        );
        let err = parse(&[
            "-sidecar-for",
            "web",
            "-http-addr",
            "https://127.0.0.1:1",
            "-ca-file",
            "/nonexistent/ca.pem",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("HTTPS to the agent"), "{err}");
    }

    #[test]
    fn bad_flag_combinations() {
        let err = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(err(&[]).contains("must be specified"));
        assert!(err(&["-sidecar-for", "a", "-service", "b"]).contains("Only one"));
        assert!(err(&["-sidecar-for", "a", "-upstream", "db:1"]).contains("standalone"));
        assert!(err(&["-service", "a", "-upstream", "db"]).contains("NAME:PORT"));
        assert!(err(&["-service", "a", "-listen", "nope"]).contains("ip:port"));
    }
}
