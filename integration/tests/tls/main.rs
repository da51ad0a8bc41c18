//! Agent TLS end to end (issue 17): certificates made by `concord tls ca create` and
//! `concord tls cert create` through the real CLI, an HTTPS API with `verify_incoming`
//! ([`https`]), and agent-to-server RPC over TLS with `verify_server_hostname` on
//! `127.0.42.x` ([`rpc`]).

mod https;
mod rpc;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use concord_integration::concord_bin;

/// One CA's files in a temp dir, made by the CLI.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `concord tls ca create`, then one `-server`, one `-client` and one `-cli` cert.
    fn create() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki { dir };
        tracing::info!("creating a CA and certificates with the CLI");
        let out = pki.run(&["tls", "ca", "create"]);
        assert_eq!(
            out,
            "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
        );
        let out = pki.run(&["tls", "cert", "create", "-server"]);
        assert!(
            out.starts_with("==> WARNING: Server Certificates grants authority"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n\
                 ==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"
            ),
            "{out}"
        );
        pki.run(&["tls", "cert", "create", "-client"]);
        pki.run(&["tls", "cert", "create", "-cli"]);
        pki
    }

    /// Runs `concord ARGS` in the PKI directory; its stdout (it must succeed).
    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(concord_bin())
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("running concord");
        assert!(
            out.status.success(),
            "concord {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("consul-agent-ca.pem")
    }

    /// `(cert, key)` of `<dc1>-<role>-consul-0`.
    fn leaf(&self, role: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("dc1-{role}-consul-0.pem")),
            self.path(&format!("dc1-{role}-consul-0-key.pem")),
        )
    }

    /// A config file with this `tls` stanza (JSON), in the PKI directory.
    fn config(&self, name: &str, tls: serde_json::Value) -> PathBuf {
        let path = self.path(name);
        let text = serde_json::json!({ "tls": tls }).to_string();
        std::fs::write(&path, text).expect("writing config");
        path
    }
}

fn pem_certs(path: &Path) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// A rustls client trusting `ca` and presenting `identity` (cert, key) if given.
fn tls_client(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca) {
        roots.add(cert).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                pem_certs(cert),
                rustls_pki_types::PrivateKeyDer::from_pem_file(key).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A reqwest client over `tls`.
fn https_client(tls: Arc<rustls::ClientConfig>, h2: bool) -> reqwest::Client {
    https_client_resolving(tls, h2, &[])
}

/// [`https_client`], with these host names resolving to these addresses (to dial a server
/// by its certificate name, `server.dc1.consul`).
fn https_client_resolving(
    tls: Arc<rustls::ClientConfig>,
    h2: bool,
    names: &[(&str, std::net::SocketAddr)],
) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
    for (name, addr) in names {
        builder = builder.resolve(name, *addr);
    }
    if h2 {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().expect("HTTPS client")
}
