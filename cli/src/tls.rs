//! `concord tls ca create` and `concord tls cert create`: Consul's built-in helper for agent
//! TLS. Same flags, same file names in the current directory (`consul-agent-ca.pem`,
//! `consul-agent-ca-key.pem`, `dc1-server-consul-0.pem`, `dc1-server-consul-0-key.pem`,
//! the index rising past files that exist), same SANs; the certificates themselves come
//! from [`concord_net::tls::generate`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use concord_net::tls::generate::{self, LeafRequest, Role};

use crate::flags::{flag, parse_flags_with, report_usage, Flag, Kind};
use crate::output::{fail, outln};

const USAGE: &str = "Usage: concord tls <subcommand> [options]

  Creates an agent CA and agent certificates, as consul tls does:

  $ concord tls ca create
  $ concord tls cert create -server
  $ concord tls cert create -client";

const CA_USAGE: &str = "Usage: concord tls ca create [options]

  Creates <domain>-agent-ca.pem and <domain>-agent-ca-key.pem in the current directory.

  -days=<n>                 Days the CA is valid (default 1825).
  -domain=<domain>          Domain of the cluster (default consul).
  -name-constraint          Let the CA sign only names under -domain and localhost
                            (and -additional-name-constraint).
  -additional-name-constraint=<domain>
                            More permitted domains with -name-constraint (repeatable).";

const CERT_USAGE: &str = "Usage: concord tls cert create [options]

  Creates a certificate and key signed by the CA, as
  <dc>-<server|client|cli>-<domain>-<n>.pem and ...-<n>-key.pem (n: the first free index).

  -server | -client | -cli  What the certificate is for (exactly one).
  -ca=<path>                CA certificate (default <domain>-agent-ca.pem).
  -key=<path>               CA key (default <domain>-agent-ca-key.pem).
  -days=<n>                 Days the certificate is valid (default 365).
  -dc=<name>                Datacenter (default dc1).
  -domain=<domain>          Domain (default consul).
  -node=<name>              With -server: also <node>.server.<dc>.<domain>.
  -additional-dnsname=<name>
                            Another DNS name (repeatable).
  -additional-ipaddress=<ip>
                            Another IP address (repeatable).";

const CA_FLAGS: &[Flag] = &[
    flag("days", Kind::Uint),
    flag("domain", Kind::Str),
    flag("name-constraint", Kind::Bool),
    flag("additional-name-constraint", Kind::List),
];

const CERT_FLAGS: &[Flag] = &[
    flag("server", Kind::Bool),
    flag("client", Kind::Bool),
    flag("cli", Kind::Bool),
    flag("ca", Kind::Str),
    flag("key", Kind::Str),
    flag("days", Kind::Uint),
    flag("dc", Kind::Str),
    flag("domain", Kind::Str),
    flag("node", Kind::Str),
    flag("additional-dnsname", Kind::List),
    flag("additional-ipaddress", Kind::List),
];

/// Runs `concord tls ARGS`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<i32> {
    let words: Vec<&str> = args.iter().take(2).map(String::as_str).collect();
    match words.as_slice() {
        ["ca", "create"] => ca_create(&args[2..], Path::new(".")),
        ["cert", "create"] => cert_create(&args[2..], Path::new(".")),
        ["ca"] | ["ca", _] => fail(CA_USAGE),
        ["cert"] | ["cert", _] => fail(CERT_USAGE),
        _ => fail(USAGE),
    }
}

/// A `-days` value: Go's default when absent, at least one day.
fn days(p: &crate::flags::Parsed, default: u32) -> anyhow::Result<u32> {
    match p.value("days") {
        None => Ok(default),
        Some(_) => match u32::try_from(p.uint("days")) {
            Ok(0) | Err(_) => anyhow::bail!("-days must be between 1 and {}", u32::MAX),
            Ok(n) => Ok(n),
        },
    }
}

/// Writes `text` to `path`; `private` files are readable by their owner only.
fn write(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn ca_create(args: &[String], dir: &Path) -> anyhow::Result<i32> {
    let p = match report_usage(parse_flags_with(args, CA_FLAGS, &[]), CA_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let domain = p.value_or("domain", "consul");
    let days = match days(&p, 1825) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let cert_name = format!("{domain}-agent-ca.pem");
    let key_name = format!("{domain}-agent-ca-key.pem");
    for name in [&cert_name, &key_name] {
        if dir.join(name).exists() {
            return fail(format!("{name} already exists."));
        }
    }
    let constraints: Vec<String> = if p.bool("name-constraint") {
        let mut c = p.list("additional-name-constraint").to_vec();
        c.extend([domain.to_string(), "localhost".to_string()]);
        c
    } else {
        Vec::new()
    };
    let ca = match generate::ca(days, &constraints) {
        Ok(ca) => ca,
        Err(e) => return fail(e),
    };
    write(&dir.join(&cert_name), &ca.cert_pem, false)?;
    outln(&format!("==> Saved {cert_name}"))?;
    write(&dir.join(&key_name), &ca.key_pem, true)?;
    outln(&format!("==> Saved {key_name}"))?;
    Ok(0)
}

/// The first `<prefix>-<n>.pem` / `<prefix>-<n>-key.pem` pair where neither exists.
fn free_names(dir: &Path, prefix: &str) -> Option<(String, String)> {
    (0..=10_000).find_map(|i| {
        let cert = format!("{prefix}-{i}.pem");
        let key = format!("{prefix}-{i}-key.pem");
        (!dir.join(&cert).exists() && !dir.join(&key).exists()).then_some((cert, key))
    })
}

fn cert_create(args: &[String], dir: &Path) -> anyhow::Result<i32> {
    let p = match report_usage(parse_flags_with(args, CERT_FLAGS, &[]), CERT_USAGE) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let role = match (p.bool("server"), p.bool("client"), p.bool("cli")) {
        (true, false, false) => Role::Server,
        (false, true, false) => Role::Client,
        (false, false, true) => Role::Cli,
        _ => return fail("Please provide either -server, -client, or -cli"),
    };
    let node = p.value("node").filter(|n| !n.is_empty());
    if node.is_some() && role != Role::Server {
        return fail("-node requires -server");
    }
    let domain = p.value_or("domain", "consul");
    let dc = p.value_or("dc", "dc1");
    let days = match days(&p, 365) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let ips = match p
        .list("additional-ipaddress")
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| i.trim().parse::<IpAddr>().map_err(|_| i.clone()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(ips) => ips,
        Err(bad) => return fail(format!("Invalid IP address: {bad:?}")),
    };
    let ca_path = PathBuf::from(
        p.value_or("ca", "#DOMAIN#-agent-ca.pem")
            .replacen("#DOMAIN#", domain, 1),
    );
    let key_path = PathBuf::from(
        p.value_or("key", "#DOMAIN#-agent-ca-key.pem")
            .replacen("#DOMAIN#", domain, 1),
    );
    let prefix = format!("{dc}-{}-{domain}", role.label());
    let Some((cert_name, key_name)) = free_names(dir, &prefix) else {
        return fail("Could not find a filename that doesn't already exist");
    };
    let ca_pem = match std::fs::read_to_string(dir.join(&ca_path)) {
        Ok(t) => t,
        Err(e) => return fail(format!("Error reading CA: {e}")),
    };
    let ca_key = match std::fs::read_to_string(dir.join(&key_path)) {
        Ok(t) => t,
        Err(e) => return fail(format!("Error reading CA key: {e}")),
    };
    if role == Role::Server {
        outln(
            "==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys.",
        )?;
    }
    outln(&format!(
        "==> Using {} and {}",
        ca_path.display(),
        key_path.display()
    ))?;
    let request = LeafRequest {
        role,
        datacenter: dc,
        domain,
        node,
        days,
        dns_names: p.list("additional-dnsname"),
        ip_addresses: &ips,
    };
    let leaf = match generate::leaf(&ca_pem, &ca_key, &request) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    write(&dir.join(&cert_name), &leaf.cert_pem, false)?;
    outln(&format!("==> Saved {cert_name}"))?;
    write(&dir.join(&key_name), &leaf.key_pem, true)?;
    outln(&format!("==> Saved {key_name}"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn files_are_named_and_numbered_as_consuls() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(ca_create(&args(&[]), d).unwrap(), 0);
        assert!(
            d.join("consul-agent-ca.pem").exists() && d.join("consul-agent-ca-key.pem").exists()
        );
        assert_eq!(
            ca_create(&args(&[]), d).unwrap(),
            1,
            "a second CA is refused"
        );
        for _ in 0..2 {
            assert_eq!(cert_create(&args(&["-server"]), d).unwrap(), 0);
        }
        assert_eq!(
            cert_create(&args(&["-client", "-dc", "east"]), d).unwrap(),
            0
        );
        for name in [
            "dc1-server-consul-0.pem",
            "dc1-server-consul-0-key.pem",
            "dc1-server-consul-1.pem",
            "dc1-server-consul-1-key.pem",
            "east-client-consul-0.pem",
            "east-client-consul-0-key.pem",
        ] {
            assert!(d.join(name).exists(), "{name}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(d.join("dc1-server-consul-0-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        tracing::info!("the server certificate carries Consul's names");
        let certs = concord_net::tls::load_certs(&d.join("dc1-server-consul-0.pem")).unwrap();
        let peer = concord_net::tls::PeerCertificates(std::sync::Arc::new(certs));
        for name in ["server.dc1.consul", "localhost", "127.0.0.1"] {
            assert!(concord_net::tls::peer_is(Some(&peer), name), "{name}");
        }
        assert!(!concord_net::tls::peer_is(Some(&peer), "client.dc1.consul"));
    }

    #[test]
    fn bad_requests_fail_with_consuls_messages() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(cert_create(&args(&["-server", "-client"]), d).unwrap(), 1);
        assert_eq!(
            cert_create(&args(&["-client", "-node", "n"]), d).unwrap(),
            1
        );
        assert_eq!(cert_create(&args(&["-server"]), d).unwrap(), 1, "no CA yet");
        assert!(!d.join("dc1-server-consul-0.pem").exists());
        assert_eq!(ca_create(&args(&["-days", "0"]), d).unwrap(), 1);
        assert_eq!(
            ca_create(&args(&["-domain", "example", "-name-constraint"]), d).unwrap(),
            0
        );
        assert_eq!(
            cert_create(
                &args(&[
                    "-server",
                    "-domain",
                    "example",
                    "-additional-ipaddress",
                    "x"
                ]),
                d
            )
            .unwrap(),
            1
        );
        assert_eq!(
            cert_create(&args(&["-server", "-domain", "example"]), d).unwrap(),
            0
        );
        assert!(d.join("dc1-server-example-0.pem").exists());
    }
}
