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
    /// `<service>.connect[.<dc>]`: the Connect-capable endpoints of a service (the proxies
    /// that front it, and Connect-native instances of it).
    Connect {
        /// Service name, lowercased; compared case-insensitively.
        service: String,
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

/// The address a reverse-lookup name (`4.3.2.1.in-addr.arpa.`, 32 nibbles `.ip6.arpa.`)
/// stands for; `None` for any other name, including partial reverse names (`2.1.in-addr.arpa.`)
/// that name a network rather than an address.
pub(crate) fn parse_reverse(name: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let lower = |l: &[u8]| l.to_ascii_lowercase();
    match labels.as_slice() {
        [a, b, c, d, in_addr, arpa] if lower(in_addr) == b"in-addr" && lower(arpa) == b"arpa" => {
            let octet = |l: &[u8]| std::str::from_utf8(l).ok()?.parse::<u8>().ok();
            // A leading zero is not the canonical spelling of an octet; such names name nothing.
            let canonical = [a, b, c, d]
                .iter()
                .all(|l| l.len() == 1 || l.first() != Some(&b'0'));
            if !canonical {
                return None;
            }
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(d)?,
                octet(c)?,
                octet(b)?,
                octet(a)?,
            )))
        }
        [nibbles @ .., ip6, arpa]
            if nibbles.len() == 32 && lower(ip6) == b"ip6" && lower(arpa) == b"arpa" =>
        {
            let mut value: u128 = 0;
            // Least significant nibble first.
            for label in nibbles.iter().rev() {
                let [digit] = label else { return None };
                let digit = char::from(*digit).to_digit(16)?;
                value = (value << 4) | u128::from(digit);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

/// Whether `name` is in the reverse-lookup trees (`in-addr.arpa.` or `ip6.arpa.`).
pub(crate) fn is_reverse(name: &Name) -> bool {
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.as_slice() {
        [.., kind, arpa] => {
            arpa.eq_ignore_ascii_case(b"arpa")
                && (kind.eq_ignore_ascii_case(b"in-addr") || kind.eq_ignore_ascii_case(b"ip6"))
        }
        _ => false,
    }
}

/// Consul lookup kinds we recognise but do not serve yet.
const UNSUPPORTED_KINDS: [&str; 4] = ["virtual", "ingress", "query", "peer"];

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
            "service" | "connect" | "node" | "addr" => Some((i, Kind::Named)),
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
            "connect" => match query {
                [service] => Lookup::Connect {
                    service: service.clone(),
                },
                _ => return Parsed::Invalid,
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
            (
                "web.connect.consul.",
                Parsed::Local(Lookup::Connect {
                    service: "web".into(),
                }),
            ),
            ("v1.web.connect.consul.", Parsed::Invalid),
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
    fn reverse_names() {
        let rev = |s: &str| parse_reverse(&Name::from_ascii(s).unwrap());
        assert_eq!(rev("1.0.0.127.in-addr.arpa."), Some(ip("127.0.0.1")));
        assert_eq!(rev("4.3.2.10.IN-ADDR.ARPA."), Some(ip("10.2.3.4")));
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        assert_eq!(rev(v6), Some(ip("2001:db8::1")));
        for bad in [
            "2.1.in-addr.arpa.",
            "in-addr.arpa.",
            "256.0.0.127.in-addr.arpa.",
            "01.0.0.127.in-addr.arpa.",
            "x.0.0.127.in-addr.arpa.",
            "1.0.0.127.in-addr.arpa.example.",
            "1.0.ip6.arpa.",
            "web.service.consul.",
        ] {
            assert_eq!(rev(bad), None, "{bad}");
        }
        assert!(is_reverse(&Name::from_ascii("2.1.in-addr.arpa.").unwrap()));
        assert!(is_reverse(&Name::from_ascii("f.IP6.arpa.").unwrap()));
        assert!(!is_reverse(&Name::from_ascii("arpa.").unwrap()));
        assert!(!is_reverse(&Name::from_ascii("consul.").unwrap()));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
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
