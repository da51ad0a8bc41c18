//! Query-name parsing: what a name inside our domain asks for.
//!
//! Pure and independent of the query type, so a name either exists for every type or for
//! none (NXDOMAIN means "no such name", RFC 8020), and the grammar is table-testable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

/// A name inside our domain that we answer for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The domain apex itself: SOA and NS.
    Apex,
    /// `ns.<domain>`: the name server our SOA and NS records name.
    NameServer,
    /// `[<tag>.]<service>.service[.<dc>]` or `_<service>._<tag>[.service][.<dc>]`.
    Service {
        /// Service name, lowercased; compared case-insensitively.
        service: String,
        /// Tag filter, lowercased; `None` for no filter.
        tag: Option<String>,
    },
    /// `<node>.node[.<dc>]`.
    Node {
        /// Node name, lowercased; labels re-joined with dots so dotted node names match.
        node: String,
    },
    /// `<hex>.addr[.<dc>]`: an address spelled in hex (8 digits IPv4, 32 digits IPv6).
    Addr(IpAddr),
}

/// Outcome of parsing a query name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A name in our domain and datacenter.
    Local(Lookup),
    /// In our domain, but names another datacenter (none exist yet): NXDOMAIN.
    OtherDatacenter(String),
    /// In our domain, but a Consul form we do not serve yet (`.connect`, `.query`, ...): NXDOMAIN.
    Unsupported(&'static str),
    /// In our domain, but not a well-formed name: NXDOMAIN.
    Invalid,
    /// Not in our domain: REFUSED (no recursors).
    OutOfZone,
}

/// Consul lookup kinds we recognise but do not serve yet.
const UNSUPPORTED_KINDS: [&str; 5] = ["connect", "virtual", "ingress", "query", "peer"];

/// Parses `name` against our `domain` (lowercase, fully qualified) and `datacenter`.
///
/// Mirrors Consul's dispatch: scan labels right to left for the first lookup kind
/// (`service`, `node`, `addr`, ...); labels left of it are the query, labels right of it the
/// datacenter (`<dc>` or `<dc>.dc`). An `_`-prefixed label found first starts the RFC 2782
/// form, whose `service` label is optional.
pub(crate) fn parse(name: &Name, domain: &Name, datacenter: &str) -> Parsed {
    if !domain.zone_of(name) {
        return Parsed::OutOfZone;
    }
    // Count raw labels: `num_labels` discounts a leading `*`, which would make `*.consul.`
    // look like the apex.
    let prefix_len = name.iter().count().saturating_sub(domain.iter().count());
    let mut labels = Vec::with_capacity(prefix_len);
    for label in name.iter().take(prefix_len) {
        match std::str::from_utf8(label) {
            Ok(label) => labels.push(label.to_ascii_lowercase()),
            // Catalog names are strings; a non-UTF-8 label can name nothing.
            Err(_) => return Parsed::Invalid,
        }
    }

    match labels.as_slice() {
        [] => return Parsed::Local(Lookup::Apex),
        [only] if only == "ns" => return Parsed::Local(Lookup::NameServer),
        _ => {}
    }

    let Some((kind_at, kind)) = labels
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, label)| match label.as_str() {
            "service" | "node" | "addr" => Some((i, Kind::Named)),
            other if UNSUPPORTED_KINDS.contains(&other) => Some((i, Kind::Named)),
            other if other.starts_with('_') => Some((i, Kind::Rfc2782)),
            _ => None,
        })
    else {
        return Parsed::Invalid;
    };

    // For the RFC 2782 form the `_tag` label itself is part of the query.
    let (query, suffix) = match kind {
        Kind::Named => (&labels[..kind_at], &labels[kind_at + 1..]),
        Kind::Rfc2782 => (&labels[..=kind_at], &labels[kind_at + 1..]),
    };
    let dc = match suffix {
        [] => None,
        [dc] => Some(dc),
        [dc, literal] if literal == "dc" => Some(dc),
        _ => return Parsed::Invalid,
    };
    if let Some(dc) = dc {
        if !dc.eq_ignore_ascii_case(datacenter) {
            return Parsed::OtherDatacenter(dc.clone());
        }
    }

    let lookup = match kind {
        Kind::Rfc2782 => match rfc2782(query) {
            Some(lookup) => lookup,
            None => return Parsed::Invalid,
        },
        Kind::Named => match labels[kind_at].as_str() {
            "service" => match service(query) {
                Some(lookup) => lookup,
                None => return Parsed::Invalid,
            },
            "node" if !query.is_empty() => Lookup::Node {
                node: query.join("."),
            },
            "addr" => match query {
                [hex] => match parse_hex_addr(hex) {
                    Some(addr) => Lookup::Addr(addr),
                    None => return Parsed::Invalid,
                },
                _ => return Parsed::Invalid,
            },
            other => {
                return match UNSUPPORTED_KINDS.iter().find(|k| **k == other) {
                    Some(kind) => Parsed::Unsupported(kind),
                    None => Parsed::Invalid,
                }
            }
        },
    };
    Parsed::Local(lookup)
}

/// What the right-to-left scan found.
#[derive(Clone, Copy)]
enum Kind {
    /// A kind label (`service`, `node`, ...).
    Named,
    /// An `_`-prefixed label: the RFC 2782 form without a `service` label.
    Rfc2782,
}

/// `[<tag>.]<service>` left of a `service` label, or the RFC 2782 pair.
fn service(query: &[String]) -> Option<Lookup> {
    if let Some(lookup) = rfc2782(query) {
        return Some(lookup);
    }
    let (service, tag) = query.split_last()?;
    // The tag may itself contain dots: everything left of the service label.
    let tag = (!tag.is_empty()).then(|| tag.join("."));
    Some(Lookup::Service {
        service: service.clone(),
        tag,
    })
}

/// `_<service>._<tag>`; `_tcp`/`_udp` as tag mean "no tag filter" (RFC 2782 protocol labels).
fn rfc2782(query: &[String]) -> Option<Lookup> {
    let [service, tag] = query else {
        return None;
    };
    let service = service.strip_prefix('_')?;
    let tag = tag.strip_prefix('_')?;
    if service.is_empty() || tag.is_empty() {
        return None;
    }
    let tag = (tag != "tcp" && tag != "udp").then(|| tag.to_owned());
    Some(Lookup::Service {
        service: service.to_owned(),
        tag,
    })
}

/// The label of an `addr` lookup for `ip`: 8 (IPv4) or 32 (IPv6) lowercase hex digits.
pub(crate) fn hex_addr_label(ip: IpAddr) -> String {
    let octets: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    octets.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inverse of [`hex_addr_label`]; anything but 8 or 32 hex digits is `None`.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    if !hex.is_ascii() {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    if let Ok(v4) = <[u8; 4]>::try_from(bytes.as_slice()) {
        return (hex.len() == 8).then(|| IpAddr::V4(Ipv4Addr::from(v4)));
    }
    let v6 = <[u8; 16]>::try_from(bytes.as_slice()).ok()?;
    (hex.len() == 32).then(|| IpAddr::V6(Ipv6Addr::from(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(name: &str) -> Parsed {
        let domain = Name::from_ascii("consul.").unwrap();
        parse(&Name::from_ascii(name).unwrap(), &domain, "dc1")
    }

    fn svc(service: &str, tag: Option<&str>) -> Parsed {
        Parsed::Local(Lookup::Service {
            service: service.into(),
            tag: tag.map(Into::into),
        })
    }

    #[test]
    fn service_names() {
        let cases = [
            ("web.service.consul.", svc("web", None)),
            ("WEB.Service.CONSUL.", svc("web", None)),
            ("web.service.dc1.consul.", svc("web", None)),
            ("web.service.DC1.dc.consul.", svc("web", None)),
            ("v1.web.service.consul.", svc("web", Some("v1"))),
            ("a.b.web.service.consul.", svc("web", Some("a.b"))),
            ("_web._tcp.service.consul.", svc("web", None)),
            ("_web._udp.service.dc1.consul.", svc("web", None)),
            ("_web._v1.service.consul.", svc("web", Some("v1"))),
            ("_web._tcp.consul.", svc("web", None)),
            ("_web._V1.dc1.consul.", svc("web", Some("v1"))),
            ("_web._tcp.dc1.dc.consul.", svc("web", None)),
            // The rightmost kind label wins, as in Consul.
            ("service.service.consul.", svc("service", None)),
        ];
        for (name, want) in cases {
            assert_eq!(parse_str(name), want, "{name}");
        }
    }

    #[test]
    fn node_and_addr_names() {
        let cases = [
            ("db1.node.consul.", Lookup::Node { node: "db1".into() }),
            ("DB1.node.dc1.consul.", Lookup::Node { node: "db1".into() }),
            (
                "db1.example.node.consul.",
                Lookup::Node {
                    node: "db1.example".into(),
                },
            ),
            (
                "0a000001.addr.consul.",
                Lookup::Addr("10.0.0.1".parse().unwrap()),
            ),
            (
                "0A000001.addr.dc1.consul.",
                Lookup::Addr("10.0.0.1".parse().unwrap()),
            ),
            (
                "20010db8000000000000000000000001.addr.consul.",
                Lookup::Addr("2001:db8::1".parse().unwrap()),
            ),
            ("consul.", Lookup::Apex),
            ("CONSUL.", Lookup::Apex),
            ("ns.consul.", Lookup::NameServer),
        ];
        for (name, want) in cases {
            assert_eq!(parse_str(name), Parsed::Local(want), "{name}");
        }
    }

    #[test]
    fn rejected_names() {
        let cases = [
            ("example.com.", Parsed::OutOfZone),
            ("consul.example.com.", Parsed::OutOfZone),
            ("1.0.0.127.in-addr.arpa.", Parsed::OutOfZone),
            (
                "web.service.dc2.consul.",
                Parsed::OtherDatacenter("dc2".into()),
            ),
            (
                "_web._tcp.dc2.consul.",
                Parsed::OtherDatacenter("dc2".into()),
            ),
            ("service.consul.", Parsed::Invalid),
            ("*.consul.", Parsed::Invalid),
            ("*.service.consul.", svc("*", None)),
            ("node.consul.", Parsed::Invalid),
            ("web.consul.", Parsed::Invalid),
            ("web.service.dc1.extra.consul.", Parsed::Invalid),
            ("web._tcp.consul.", Parsed::Invalid),
            ("_._tcp.consul.", Parsed::Invalid),
            ("a.b.addr.consul.", Parsed::Invalid),
            ("0a0000.addr.consul.", Parsed::Invalid),
            ("0a00000g.addr.consul.", Parsed::Invalid),
            ("web.connect.consul.", Parsed::Unsupported("connect")),
            ("q.query.consul.", Parsed::Unsupported("query")),
        ];
        for (name, want) in cases {
            assert_eq!(parse_str(name), want, "{name}");
        }
    }

    #[test]
    fn domain_with_several_labels() {
        let domain = Name::from_ascii("mesh.example.").unwrap();
        let name = Name::from_ascii("web.service.mesh.example.").unwrap();
        assert_eq!(parse(&name, &domain, "dc1"), svc("web", None));
        let name = Name::from_ascii("web.service.consul.").unwrap();
        assert_eq!(parse(&name, &domain, "dc1"), Parsed::OutOfZone);
    }

    #[test]
    fn hex_addr_round_trips() {
        for ip in ["10.1.2.3", "255.0.0.1", "2001:db8::ff", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_hex_addr(&hex_addr_label(ip)), Some(ip));
        }
        assert_eq!(hex_addr_label("10.0.0.1".parse().unwrap()), "0a000001");
    }
}
