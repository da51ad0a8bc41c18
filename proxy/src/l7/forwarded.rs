//! The headers the inbound side adds for the local app, as Envoy does on a Consul sidecar's
//! public listener:
//! - `X-Forwarded-For`: the downstream's (peer proxy's) address appended;
//! - `X-Forwarded-Proto: https` (the hop in was mTLS);
//! - `X-Forwarded-Client-Cert`: one element appended (Envoy's `APPEND_FORWARD` with every
//!   detail Consul turns on): `By=<our SPIFFE id>;Hash=<sha256 of the peer's certificate
//!   DER, hex>;Cert="<URL-encoded PEM>";Chain="<URL-encoded PEM chain>";Subject="<subject>";
//!   URI=<peer SPIFFE id>[;DNS=<each DNS SAN>]`.
//!
//! The per-connection part (address, the XFCC element) is computed once at accept time
//! ([`Downstream::new`]) and carried as a request extension; this layer only appends it.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http::header::HeaderName;
use http::HeaderValue;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::{forward, Inner, Middleware, Req, ResponseFuture};

/// `X-Forwarded-Client-Cert`.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
/// `X-Forwarded-For`.
pub const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Who sent an inbound connection: a request extension set at accept time. The header
/// values are made once per connection, so a request only shares them (the XFCC element
/// holds the peer's certificates, a kilobyte or more).
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The peer's IP, as an `X-Forwarded-For` element.
    ip_value: Option<HeaderValue>,
    /// This hop's XFCC element as a header value (`None`: not encodable, not forwarded).
    cert_value: Option<HeaderValue>,
}

impl Downstream {
    /// The downstream at `addr` that presented `chain` (leaf first) to us, `by` (our own
    /// SPIFFE id).
    pub fn new(addr: SocketAddr, by: &str, chain: &[CertificateDer<'_>]) -> Downstream {
        Downstream::with_element(addr, &xfcc_element(by, chain))
    }

    /// The downstream at `addr` whose XFCC element is `client_cert`.
    pub fn with_element(addr: SocketAddr, client_cert: &str) -> Downstream {
        Downstream {
            ip_value: HeaderValue::from_str(&addr.ip().to_string()).ok(),
            cert_value: HeaderValue::from_str(client_cert).ok(),
        }
    }
}

/// One XFCC element for a peer that presented `chain`.
pub fn xfcc_element(by: &str, chain: &[CertificateDer<'_>]) -> String {
    let mut out = format!("By={}", value(by));
    let Some(leaf) = chain.first() else {
        return out;
    };
    let hash: String = Sha256::digest(leaf.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    out.push_str(&format!(";Hash={hash}"));
    out.push_str(&format!(";Cert=\"{}\"", url_encode(&pem(leaf))));
    let chain_pem: String = chain.iter().map(|c| pem(c)).collect();
    out.push_str(&format!(";Chain=\"{}\"", url_encode(&chain_pem)));
    let (subject, uris, dns) = names(leaf);
    out.push_str(&format!(";Subject=\"{}\"", subject.replace('"', "\\\"")));
    for uri in uris {
        out.push_str(&format!(";URI={}", value(&uri)));
    }
    for name in dns {
        out.push_str(&format!(";DNS={}", value(&name)));
    }
    out
}

/// A value as XFCC writes it: quoted when it holds `,`, `;` or `=` (quotes escaped).
fn value(v: &str) -> String {
    if v.contains([',', ';', '=', '"']) {
        format!("\"{}\"", v.replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

/// A certificate as PEM.
fn pem(der: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// URL encoding as Envoy writes `Cert`/`Chain`: unreserved characters as they are, every
/// other byte `%XX`.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The leaf's subject, URI SANs and DNS SANs (empty when it does not parse: the handshake
/// already verified it, so that is not expected).
fn names(leaf: &CertificateDer<'_>) -> (String, Vec<String>, Vec<String>) {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return (String::new(), Vec::new(), Vec::new());
    };
    let subject = cert.subject().to_string();
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uris.push((*u).to_string()),
                GeneralName::DNSName(d) => dns.push((*d).to_string()),
                _ => {}
            }
        }
    }
    (subject, uris, dns)
}

/// Appends `value` to a comma-separated header, or sets it.
fn append(req: &mut Req, name: HeaderName, value: Option<&HeaderValue>) {
    let Some(value) = value else {
        tracing::debug!(header = %name, "not forwarding an unencodable header");
        return;
    };
    let joined = match req.headers().get(&name).and_then(|v| v.to_str().ok()) {
        Some(before) if !before.trim().is_empty() => {
            format!("{before},{}", value.to_str().unwrap_or_default())
        }
        // Nothing to join: the connection's value, shared.
        _ => {
            req.headers_mut().insert(name, value.clone());
            return;
        }
    };
    match HeaderValue::from_str(&joined) {
        Ok(v) => {
            req.headers_mut().insert(name, v);
        }
        Err(e) => {
            tracing::debug!(header = %name, error = %e, "not forwarding an unencodable header")
        }
    }
}

/// The layer: appends the [`Downstream`] extension's headers (when there is one).
pub struct Forwarded;

impl Middleware for Forwarded {
    fn call<S: Inner>(self: Arc<Self>, next: S, mut req: Req) -> ResponseFuture {
        let values = req
            .extensions()
            .get::<Downstream>()
            .map(|d| (d.ip_value.clone(), d.cert_value.clone()));
        if let Some((ip, cert)) = values {
            append(&mut req, XFF, ip.as_ref());
            req.headers_mut()
                .insert(XFP, HeaderValue::from_static("https"));
            append(&mut req, XFCC, cert.as_ref());
        }
        forward(next, req)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn xfcc_element_has_envoys_fields() {
        let mut params = rcgen::CertificateParams::new(vec!["web.example".to_string()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://t.consul/ns/default/dc/dc1/svc/web"
                .try_into()
                .unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();
        let by = "spiffe://t.consul/ns/default/dc/dc1/svc/db";
        let e = xfcc_element(by, std::slice::from_ref(&der));
        let hash: String = Sha256::digest(der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            e.starts_with(&format!(
                "By={by};Hash={hash};Cert=\"-----BEGIN%20CERTIFICATE-----%0A"
            )),
            "{e}"
        );
        assert!(e.contains(";Chain=\"-----BEGIN%20CERTIFICATE-----%0A"));
        assert!(e.contains(";Subject=\""));
        assert!(
            e.ends_with(";URI=spiffe://t.consul/ns/default/dc/dc1/svc/web;DNS=web.example"),
            "{e}"
        );
        assert_eq!(value("a=b"), "\"a=b\"");
        assert_eq!(xfcc_element(by, &[]), format!("By={by}"));
    }
}
