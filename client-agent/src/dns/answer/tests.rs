//! Answer building against a hand-built catalog.

use std::collections::BTreeSet;
use std::net::IpAddr;

use concord_api::catalog::CheckStatus;
use hickory_proto::op::Message;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::dns::fixtures::{instance, many, node, snapshot};

/// The catalog most tests ask about:
/// - `web`: n1 (node address, passing, tags v1/Primary), n2 (own address 192.168.0.2,
///   warning, weights 10/2), n3 (IPv6 node), n4 (node check critical).
/// - `api`: n1 only (IPv4 only). `down`: critical only. `db`: on a node whose address is a
///   hostname. `cache`: two instances on the same address and port.
fn catalog() -> CatalogSnapshot {
    let mut n1 = node("n1", "10.0.0.1");
    n1.meta.insert("rack".into(), "r1".into());
    n1.meta.insert("rfc1035-spf".into(), "v=spf1 -all".into());
    let n2 = node("n2", "10.0.0.2");
    let n3 = node("n3", "2001:db8::3");
    let n4 = node("n4", "10.0.0.4");
    let n5 = node("n5", "db.example.com");
    let instances = vec![
        instance(&n1, "web1", "web").tags(&["v1", "Primary"]),
        instance(&n2, "web2", "web")
            .address("192.168.0.2")
            .tags(&["v2"])
            .weights(10, 2)
            .check(CheckStatus::Warning),
        instance(&n3, "web3", "web").check(CheckStatus::Passing),
        instance(&n4, "web4", "web")
            .check(CheckStatus::Passing)
            .node_check(CheckStatus::Critical),
        instance(&n1, "api1", "api").port(9000),
        instance(&n2, "down1", "down").check(CheckStatus::Critical),
        instance(&n5, "db1", "db").port(5432),
        instance(&n1, "cache1", "cache").port(6379),
        instance(&n1, "cache2", "cache").port(6379),
    ];
    snapshot(vec![n1, n2, n3, n4, n5], instances)
}

fn zone() -> Zone {
    Zone::new(DnsConfig::default()).unwrap()
}

fn query(name: &str, qtype: RecordType) -> Query {
    Query::query(Name::from_ascii(name).unwrap(), qtype)
}

/// Asks over TCP (no trimming) with a fixed seed.
fn ask(zone: &Zone, catalog: &CatalogSnapshot, name: &str, qtype: RecordType) -> ResponseParts {
    ask_with(zone, catalog, name, qtype, Limits::tcp(false))
}

fn ask_with(
    zone: &Zone,
    catalog: &CatalogSnapshot,
    name: &str,
    qtype: RecordType,
    limits: Limits,
) -> ResponseParts {
    let mut rng = StdRng::seed_from_u64(7);
    zone.answer(catalog, &query(name, qtype), limits, &mut rng)
}

/// Addresses in a section, sorted.
fn ips(records: &[Record]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = records
        .iter()
        .filter_map(|r| match r.data()? {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// SRV answers as (target, weight, port), sorted.
fn srvs(records: &[Record]) -> Vec<(String, u16, u16)> {
    let mut srvs: Vec<_> = records
        .iter()
        .filter_map(|r| match r.data()? {
            RData::SRV(srv) => Some((srv.target().to_ascii(), srv.weight(), srv.port())),
            _ => None,
        })
        .collect();
    srvs.sort();
    srvs
}

/// Asserts a negative answer: `rcode`, AA, no records, our SOA in Authority.
fn assert_negative(parts: &ResponseParts, rcode: ResponseCode) {
    assert_eq!(parts.rcode, rcode);
    assert!(parts.authoritative);
    assert!(parts.answers.is_empty(), "{:?}", parts.answers);
    assert_eq!(parts.authority.len(), 1);
    assert_eq!(parts.authority[0].record_type(), RecordType::SOA);
}

/// Wire size of the response the handler would send for these parts.
fn wire_len(name: &str, qtype: RecordType, parts: &ResponseParts, edns: bool) -> usize {
    let mut message = Message::new();
    message.add_query(query(name, qtype));
    message.insert_answers(parts.answers.clone());
    message.insert_name_servers(parts.authority.clone());
    message.insert_additionals(parts.additionals.clone());
    if edns {
        message.set_edns(Edns::new());
    }
    message.to_vec().unwrap().len()
}

#[test]
fn service_a_serves_healthy_ipv4_instances() {
    let parts = ask(&zone(), &catalog(), "web.service.consul.", RecordType::A);
    assert_eq!(parts.rcode, ResponseCode::NoError);
    assert!(parts.authoritative);
    assert!(!parts.truncated);
    // n1 by node address, n2 by its own address (warning still served), n3 is IPv6 only,
    // n4 dropped by its critical node check.
    assert_eq!(ips(&parts.answers), [ip("10.0.0.1"), ip("192.168.0.2")]);
    assert!(parts.authority.is_empty());
    assert!(parts.additionals.is_empty());
}

#[test]
fn connect_lookups_answer_with_the_proxies_fronting_the_service() {
    let n1 = node("n1", "10.0.0.1");
    let n2 = node("n2", "10.0.0.2");
    let n3 = node("n3", "10.0.0.3");
    let catalog = snapshot(
        vec![n1.clone(), n2.clone(), n3.clone()],
        vec![
            instance(&n1, "web1", "web").port(8080),
            instance(&n1, "web1-sidecar-proxy", "web-sidecar-proxy")
                .port(21000)
                .proxy_for("web"),
            instance(&n2, "web2-sidecar-proxy", "web-sidecar-proxy")
                .port(21001)
                .proxy_for("web")
                .check(CheckStatus::Critical),
            instance(&n3, "web3", "web").port(9443).native(),
            instance(&n3, "db-sidecar-proxy", "db-sidecar-proxy").proxy_for("db"),
        ],
    );
    let srv = ask(&zone(), &catalog, "Web.connect.consul.", RecordType::SRV);
    assert_eq!(srv.rcode, ResponseCode::NoError);
    // The passing proxy and the native instance; the plain instance, the critical proxy and
    // db's proxy are not Connect endpoints of web.
    assert_eq!(
        srvs(&srv.answers),
        [
            ("n1.node.dc1.consul.".to_string(), 1, 21000),
            ("n3.node.dc1.consul.".to_string(), 1, 9443),
        ]
    );
    let a = ask(&zone(), &catalog, "web.connect.dc1.consul.", RecordType::A);
    assert_eq!(ips(&a.answers), [ip("10.0.0.1"), ip("10.0.0.3")]);
    let none = ask(&zone(), &catalog, "api.connect.consul.", RecordType::A);
    assert_negative(&none, ResponseCode::NXDomain);
}

#[test]
fn service_aaaa_and_any_pick_address_families() {
    let (zone, catalog) = (zone(), catalog());
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::AAAA);
    assert_eq!(ips(&parts.answers), [ip("2001:db8::3")]);
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::ANY);
    assert_eq!(
        ips(&parts.answers),
        [ip("10.0.0.1"), ip("192.168.0.2"), ip("2001:db8::3")]
    );
}

#[test]
fn only_passing_drops_warning_instances() {
    let zone = Zone::new(DnsConfig {
        only_passing: true,
        ..DnsConfig::default()
    })
    .unwrap();
    let parts = ask(&zone, &catalog(), "web.service.consul.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("10.0.0.1")]);
}

#[test]
fn tag_filter_is_case_insensitive() {
    let (zone, catalog) = (zone(), catalog());
    for name in ["v1.web.service.consul.", "primary.WEB.service.consul."] {
        let parts = ask(&zone, &catalog, name, RecordType::A);
        assert_eq!(ips(&parts.answers), [ip("10.0.0.1")], "{name}");
    }
    let parts = ask(&zone, &catalog, "V2.web.service.dc1.consul.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("192.168.0.2")]);
    let parts = ask(&zone, &catalog, "nope.web.service.consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NXDomain);
}

#[test]
fn answers_echo_the_query_name_case() {
    let parts = ask(&zone(), &catalog(), "WEB.Service.CONSUL.", RecordType::A);
    assert_eq!(parts.answers.len(), 2);
    let asked = Name::from_ascii("WEB.Service.CONSUL.").unwrap();
    for record in &parts.answers {
        assert!(record.name().eq_case(&asked), "{}", record.name());
    }
}

#[test]
fn srv_targets_weights_and_additional_addresses() {
    let parts = ask(&zone(), &catalog(), "web.service.consul.", RecordType::SRV);
    assert_eq!(parts.rcode, ResponseCode::NoError);
    assert_eq!(
        srvs(&parts.answers),
        [
            // Own address: hex addr target; aggregate warning: Weights.Warning.
            ("c0a80002.addr.dc1.consul.".to_owned(), 2, 80),
            ("n1.node.dc1.consul.".to_owned(), 1, 80),
            ("n3.node.dc1.consul.".to_owned(), 1, 80),
        ]
    );
    for record in &parts.answers {
        let Some(RData::SRV(srv)) = record.data() else {
            panic!("not SRV: {record}");
        };
        assert_eq!(srv.priority(), 1);
    }
    let mut glue: Vec<(String, IpAddr)> = parts
        .additionals
        .iter()
        .map(|r| (r.name().to_ascii(), ips(std::slice::from_ref(r))[0]))
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            ("c0a80002.addr.dc1.consul.".to_owned(), ip("192.168.0.2")),
            ("n1.node.dc1.consul.".to_owned(), ip("10.0.0.1")),
            ("n3.node.dc1.consul.".to_owned(), ip("2001:db8::3")),
        ]
    );
}

#[test]
fn rfc2782_names() {
    let (zone, catalog) = (zone(), catalog());
    for name in [
        "_web._tcp.service.consul.",
        "_web._tcp.consul.",
        "_web._udp.dc1.consul.",
    ] {
        let parts = ask(&zone, &catalog, name, RecordType::SRV);
        assert_eq!(parts.answers.len(), 3, "{name}");
    }
    let parts = ask(&zone, &catalog, "_web._v1.consul.", RecordType::SRV);
    assert_eq!(
        srvs(&parts.answers),
        [("n1.node.dc1.consul.".to_owned(), 1, 80)]
    );
}

#[test]
fn duplicate_address_and_port_collapse() {
    let (zone, catalog) = (zone(), catalog());
    let parts = ask(&zone, &catalog, "cache.service.consul.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("10.0.0.1")]);
    let parts = ask(&zone, &catalog, "cache.service.consul.", RecordType::SRV);
    assert_eq!(parts.answers.len(), 1);
    assert_eq!(parts.additionals.len(), 1);
}

#[test]
fn hostname_addresses() {
    let (zone, catalog) = (zone(), catalog());
    // SRV points at the hostname itself; we have no address to glue.
    let parts = ask(&zone, &catalog, "db.service.consul.", RecordType::SRV);
    assert_eq!(
        srvs(&parts.answers),
        [("db.example.com.".to_owned(), 1, 5432)]
    );
    assert!(parts.additionals.is_empty());
    // No address record can be made for it: the name exists, so NODATA.
    let parts = ask(&zone, &catalog, "db.service.consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NoError);
    // A node lookup answers with a CNAME.
    let parts = ask(&zone, &catalog, "n5.node.consul.", RecordType::A);
    let Some(RData::CNAME(target)) = parts.answers[0].data() else {
        panic!("not a CNAME: {:?}", parts.answers);
    };
    assert_eq!(target.0.to_ascii(), "db.example.com.");
}

#[test]
fn node_lookups() {
    let (zone, catalog) = (zone(), catalog());
    let parts = ask(&zone, &catalog, "N1.node.consul.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("10.0.0.1")]);
    let parts = ask(&zone, &catalog, "n3.node.dc1.consul.", RecordType::AAAA);
    assert_eq!(ips(&parts.answers), [ip("2001:db8::3")]);

    let txts = |parts: &ResponseParts| -> BTreeSet<String> {
        parts
            .answers
            .iter()
            .filter_map(|r| match r.data()? {
                RData::TXT(txt) => Some(txt.to_string()),
                _ => None,
            })
            .collect()
    };
    let parts = ask(&zone, &catalog, "n1.node.consul.", RecordType::TXT);
    assert_eq!(
        txts(&parts),
        BTreeSet::from(["rack=r1".to_owned(), "v=spf1 -all".to_owned()])
    );
    let parts = ask(&zone, &catalog, "n1.node.consul.", RecordType::ANY);
    assert_eq!(parts.answers.len(), 3);

    // The node exists, it just has no IPv6 address: NODATA, not NXDOMAIN.
    let parts = ask(&zone, &catalog, "n1.node.consul.", RecordType::AAAA);
    assert_negative(&parts, ResponseCode::NoError);
    let parts = ask(&zone, &catalog, "nope.node.consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NXDomain);
}

#[test]
fn long_node_meta_is_split_into_txt_strings() {
    let mut n = node("big", "10.0.0.9");
    n.meta.insert("k".into(), "x".repeat(600));
    let catalog = snapshot(vec![n], vec![]);
    let parts = ask(&zone(), &catalog, "big.node.consul.", RecordType::TXT);
    let Some(RData::TXT(txt)) = parts.answers[0].data() else {
        panic!("not TXT");
    };
    let lens: Vec<usize> = txt.iter().map(|s| s.len()).collect();
    assert_eq!(lens, [255, 255, 92]);
    // And it still encodes.
    assert!(wire_len("big.node.consul.", RecordType::TXT, &parts, false) > 600);
}

#[test]
fn addr_lookups() {
    let (zone, catalog) = (zone(), catalog());
    let parts = ask(&zone, &catalog, "0a000001.addr.consul.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("10.0.0.1")]);
    let parts = ask(
        &zone,
        &catalog,
        "20010db8000000000000000000000003.addr.dc1.consul.",
        RecordType::AAAA,
    );
    assert_eq!(ips(&parts.answers), [ip("2001:db8::3")]);
    let parts = ask(&zone, &catalog, "0a000001.addr.consul.", RecordType::AAAA);
    assert_negative(&parts, ResponseCode::NoError);
    let parts = ask(&zone, &catalog, "0a0001.addr.consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NXDomain);
}

#[test]
fn nxdomain_carries_our_soa() {
    let (zone, catalog) = (zone(), catalog());
    for name in [
        "nope.service.consul.",
        "down.service.consul.",
        "web.service.dc2.consul.",
        "n1.node.dc2.consul.",
        "web.consul.",
        "service.consul.",
        "web.connect.consul.",
    ] {
        let parts = ask(&zone, &catalog, name, RecordType::A);
        assert_negative(&parts, ResponseCode::NXDomain);
    }

    let parts = ask(&zone, &catalog, "nope.service.consul.", RecordType::A);
    let soa_record = &parts.authority[0];
    assert_eq!(soa_record.name().to_ascii(), "consul.");
    assert_eq!(soa_record.ttl(), 0);
    let Some(RData::SOA(soa)) = soa_record.data() else {
        panic!("not SOA");
    };
    assert_eq!(soa.mname().to_ascii(), "ns.consul.");
    assert_eq!(soa.rname().to_ascii(), "hostmaster.consul.");
    assert_eq!(
        (soa.refresh(), soa.retry(), soa.expire(), soa.minimum()),
        (3600, 600, 86400, 0)
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(u64::from(soa.serial()).abs_diff(now) < 60);
}

#[test]
fn nodata_when_the_name_exists_without_that_type() {
    let (zone, catalog) = (zone(), catalog());
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::MX);
    assert_negative(&parts, ResponseCode::NoError);
    let parts = ask(&zone, &catalog, "api.service.consul.", RecordType::AAAA);
    assert_negative(&parts, ResponseCode::NoError);
}

#[test]
fn outside_the_domain_is_refused() {
    let (zone, catalog) = (zone(), catalog());
    let parts = ask(&zone, &catalog, "example.com.", RecordType::A);
    // REFUSED unless recursors take it.
    assert_eq!(parts, ResponseParts::recurse(ResponseCode::Refused));
    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.set_query_class(DNSClass::CH);
    let parts = zone.answer(
        &catalog,
        &chaos,
        Limits::tcp(false),
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(parts.rcode, ResponseCode::Refused);
    assert!(!parts.authoritative);
    assert!(!parts.recurse, "class CH is never forwarded");
}

/// PTR target of a reverse answer.
fn ptr(parts: &ResponseParts) -> String {
    assert_eq!(parts.rcode, ResponseCode::NoError);
    assert!(parts.authoritative);
    let [record] = parts.answers.as_slice() else {
        panic!("want one answer, got {:?}", parts.answers);
    };
    match record.data() {
        Some(RData::PTR(ptr)) => ptr.0.to_ascii(),
        other => panic!("not PTR: {other:?}"),
    }
}

#[test]
fn reverse_lookups_name_nodes_then_service_addresses() {
    let zone = Zone::new(DnsConfig {
        alt_domain: Some("mesh.".into()),
        node_ttl: Duration::from_secs(4),
        ..DnsConfig::default()
    })
    .unwrap();
    let catalog = catalog();
    let parts = ask(&zone, &catalog, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr(&parts), "n1.node.dc1.consul.");
    assert_eq!(parts.answers[0].ttl(), 4);
    assert_eq!(parts.answers[0].name().to_ascii(), "1.0.0.10.in-addr.arpa.");
    // A service's own address names the service.
    let parts = ask(
        &zone,
        &catalog,
        "2.0.168.192.in-addr.arpa.",
        RecordType::ANY,
    );
    assert_eq!(ptr(&parts), "web.service.dc1.consul.");
    let v6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.IP6.ARPA.";
    assert_eq!(
        ptr(&ask(&zone, &catalog, v6, RecordType::PTR)),
        "n3.node.dc1.consul."
    );
    // Known name, other type: NODATA.
    let parts = ask(&zone, &catalog, "1.0.0.10.in-addr.arpa.", RecordType::A);
    assert_negative(&parts, ResponseCode::NoError);

    // Unknown addresses and partial reverse names go to the recursors; without any, SERVFAIL
    // as Consul's recursion with no resolver answers.
    for name in ["9.9.9.9.in-addr.arpa.", "10.in-addr.arpa."] {
        let parts = ask(&zone, &catalog, name, RecordType::PTR);
        assert_eq!(
            parts,
            ResponseParts::recurse(ResponseCode::ServFail),
            "{name}"
        );
    }
    // Before the first snapshot: SERVFAIL, not forwarded.
    let parts = ask(
        &zone,
        &CatalogSnapshot::default(),
        "1.0.0.10.in-addr.arpa.",
        RecordType::PTR,
    );
    assert_eq!(parts, ResponseParts::error(ResponseCode::ServFail));
}

#[test]
fn alt_domain_answers_under_the_domain_asked() {
    let zone = Zone::new(DnsConfig {
        alt_domain: Some("Mesh.Example".into()),
        ..DnsConfig::default()
    })
    .unwrap();
    let catalog = catalog();
    let parts = ask(
        &zone,
        &catalog,
        "web.service.mesh.example.",
        RecordType::SRV,
    );
    let targets: Vec<String> = srvs(&parts.answers)
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert!(
        targets.contains(&"n1.node.dc1.mesh.example.".to_owned()),
        "{targets:?}"
    );
    assert!(
        targets.iter().all(|t| t.ends_with(".mesh.example.")),
        "{targets:?}"
    );
    assert!(parts
        .additionals
        .iter()
        .all(|r| r.name().to_ascii().ends_with(".mesh.example.")));
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::SRV);
    assert!(srvs(&parts.answers)
        .iter()
        .all(|(t, _, _)| t.ends_with(".dc1.consul.")));

    let parts = ask(&zone, &catalog, "nope.service.mesh.example.", RecordType::A);
    assert_negative(&parts, ResponseCode::NXDomain);
    assert_eq!(parts.authority[0].name().to_ascii(), "mesh.example.");
    let parts = ask(&zone, &catalog, "mesh.example.", RecordType::NS);
    let Some(RData::NS(ns)) = parts.answers[0].data() else {
        panic!("not NS");
    };
    assert_eq!(ns.0.to_ascii(), "ns.mesh.example.");
    let parts = ask(&zone, &catalog, "n1.node.mesh.example.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("10.0.0.1")]);
    // Reverse answers use the primary domain.
    let parts = ask(&zone, &catalog, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr(&parts), "n1.node.dc1.consul.");
    // Still REFUSED outside both.
    let parts = ask(&zone, &catalog, "example.com.", RecordType::A);
    assert_eq!(parts.rcode, ResponseCode::Refused);

    let bad = Zone::new(DnsConfig {
        alt_domain: Some("bad..name".into()),
        ..DnsConfig::default()
    });
    assert!(matches!(bad, Err(DnsError::InvalidDomain { .. })));
}

#[test]
fn a_record_limit_caps_address_answers_on_every_transport() {
    let zone = Zone::new(DnsConfig {
        a_record_limit: 2,
        ..DnsConfig::default()
    })
    .unwrap();
    let catalog = many("web", 10);
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::A);
    assert_eq!(parts.answers.len(), 2);
    assert!(!parts.truncated, "a policy cap is not truncation");
    let udp = Limits::udp(3, None);
    let parts = ask_with(&zone, &catalog, "web.service.consul.", RecordType::A, udp);
    assert_eq!(parts.answers.len(), 2);
    assert!(!parts.truncated);
    // SRV answers are not capped by it.
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::SRV);
    assert_eq!(parts.answers.len(), 10);
    // 0: no limit.
    let parts = ask(
        &self::zone(),
        &catalog,
        "web.service.consul.",
        RecordType::A,
    );
    assert_eq!(parts.answers.len(), 10);
}

#[test]
fn prepared_queries_are_unknown() {
    let parts = ask(&zone(), &catalog(), "anything.query.consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NXDomain);
    let parts = ask(
        &zone(),
        &catalog(),
        "anything.query.dc1.consul.",
        RecordType::SRV,
    );
    assert_negative(&parts, ResponseCode::NXDomain);
}

#[test]
fn zone_transfers_are_not_implemented() {
    let parts = ask(&zone(), &catalog(), "consul.", RecordType::AXFR);
    assert_eq!(parts.rcode, ResponseCode::NotImp);
}

#[test]
fn catalog_not_fetched_yet_is_servfail() {
    let zone = zone();
    let empty = CatalogSnapshot::default();
    let parts = ask(&zone, &empty, "web.service.consul.", RecordType::A);
    assert_eq!(parts.rcode, ResponseCode::ServFail);
    // Names that need no catalog still answer.
    let parts = ask(&zone, &empty, "0a000001.addr.consul.", RecordType::A);
    assert_eq!(parts.answers.len(), 1);
}

#[test]
fn apex_soa_and_ns() {
    let zone = Zone::new(DnsConfig {
        advertise_addr: Some(ip("10.0.0.100")),
        ..DnsConfig::default()
    })
    .unwrap();
    let catalog = catalog();
    let parts = ask(&zone, &catalog, "CONSUL.", RecordType::SOA);
    assert_eq!(parts.answers.len(), 1);
    assert_eq!(parts.answers[0].record_type(), RecordType::SOA);

    let parts = ask(&zone, &catalog, "consul.", RecordType::NS);
    let Some(RData::NS(ns)) = parts.answers[0].data() else {
        panic!("not NS");
    };
    assert_eq!(ns.0.to_ascii(), "ns.consul.");
    assert_eq!(parts.additionals.len(), 1);
    assert_eq!(parts.additionals[0].name().to_ascii(), "ns.consul.");
    assert_eq!(ips(&parts.additionals), [ip("10.0.0.100")]);

    let parts = ask(&zone, &catalog, "ns.consul.", RecordType::A);
    assert_eq!(ips(&parts.answers), [ip("10.0.0.100")]);
    let parts = ask(&zone, &catalog, "consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NoError);

    // Without a known address there is no glue, and ns.<domain> has no records.
    let parts = ask(&self::zone(), &catalog, "consul.", RecordType::NS);
    assert_eq!(parts.answers.len(), 1);
    assert!(parts.additionals.is_empty());
    let parts = ask(&self::zone(), &catalog, "ns.consul.", RecordType::A);
    assert_negative(&parts, ResponseCode::NoError);
}

#[test]
fn other_domain_and_datacenter_names() {
    let zone = Zone::new(DnsConfig {
        domain: "Mesh.Example".into(),
        datacenter: "east".into(),
        ..DnsConfig::default()
    })
    .unwrap();
    let catalog = catalog();
    let parts = ask(
        &zone,
        &catalog,
        "web.service.east.mesh.example.",
        RecordType::SRV,
    );
    assert!(srvs(&parts.answers)
        .iter()
        .any(|(target, _, _)| target == "n1.node.east.mesh.example."));
    let parts = ask(
        &zone,
        &catalog,
        "web.service.dc1.mesh.example.",
        RecordType::A,
    );
    assert_negative(&parts, ResponseCode::NXDomain);
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::A);
    assert_eq!(parts.rcode, ResponseCode::Refused);
}

#[test]
fn ttls() {
    let zone = Zone::new(DnsConfig {
        node_ttl: Duration::from_secs(30),
        service_ttl: Duration::from_secs(5),
        service_ttl_overrides: [
            ("*".to_owned(), Duration::from_secs(7)),
            ("we*".to_owned(), Duration::from_secs(8)),
            ("WEB".to_owned(), Duration::from_secs(9)),
        ]
        .into(),
        ..DnsConfig::default()
    })
    .unwrap();
    let catalog = catalog();
    let ttl = |name: &str, qtype| ask(&zone, &catalog, name, qtype).answers[0].ttl();
    assert_eq!(ttl("n1.node.consul.", RecordType::A), 30);
    assert_eq!(ttl("0a000001.addr.consul.", RecordType::A), 30);
    assert_eq!(ttl("web.service.consul.", RecordType::A), 9);
    assert_eq!(ttl("api.service.consul.", RecordType::A), 7);
    let parts = ask(&zone, &catalog, "web.service.consul.", RecordType::SRV);
    assert!(parts.answers.iter().all(|r| r.ttl() == 9));
    assert!(parts.additionals.iter().all(|r| r.ttl() == 9));

    let zone = Zone::new(DnsConfig {
        service_ttl: Duration::from_secs(5),
        ..DnsConfig::default()
    })
    .unwrap();
    let parts = ask(&zone, &catalog, "api.service.consul.", RecordType::A);
    assert_eq!(parts.answers[0].ttl(), 5);
}

#[test]
fn shuffling_reorders_without_losing_records() {
    let zone = zone();
    let catalog = many("web", 20);
    let all: BTreeSet<IpAddr> =
        ips(&ask(&zone, &catalog, "web.service.consul.", RecordType::A).answers)
            .into_iter()
            .collect();
    assert_eq!(all.len(), 20);
    let mut orders = BTreeSet::new();
    for seed in 0..10 {
        let mut rng = StdRng::seed_from_u64(seed);
        let q = query("web.service.consul.", RecordType::A);
        let parts = zone.answer(&catalog, &q, Limits::tcp(false), &mut rng);
        let order: Vec<IpAddr> = parts
            .answers
            .iter()
            .map(|r| ips(std::slice::from_ref(r))[0])
            .collect();
        assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), all);
        orders.insert(order);
    }
    assert!(orders.len() > 1, "ten seeds all gave the same order");
}

#[test]
fn plain_udp_caps_answers_and_sets_tc() {
    let catalog = many("web", 20);
    let udp = Limits::udp(3, None);
    let parts = ask_with(&zone(), &catalog, "web.service.consul.", RecordType::A, udp);
    assert_eq!(parts.answers.len(), 3);
    assert!(parts.truncated);
    assert!(wire_len("web.service.consul.", RecordType::A, &parts, false) <= 512);

    // Consul's silent truncation when asked for it.
    let silent = Zone::new(DnsConfig {
        enable_truncate: false,
        ..DnsConfig::default()
    })
    .unwrap();
    let parts = ask_with(&silent, &catalog, "web.service.consul.", RecordType::A, udp);
    assert_eq!(parts.answers.len(), 3);
    assert!(!parts.truncated);

    // Consul caps the limit at 8.
    let parts = ask_with(
        &zone(),
        &catalog,
        "web.service.consul.",
        RecordType::A,
        Limits::udp(100, None),
    );
    assert_eq!(parts.answers.len(), 8);

    // No trimming needed, no TC.
    let small = many("web", 2);
    let parts = ask_with(&zone(), &small, "web.service.consul.", RecordType::A, udp);
    assert_eq!(parts.answers.len(), 2);
    assert!(!parts.truncated);
}

#[test]
fn plain_udp_srv_keeps_additionals_in_step() {
    let catalog = many("web", 20);
    let parts = ask_with(
        &zone(),
        &catalog,
        "web.service.consul.",
        RecordType::SRV,
        Limits::udp(3, None),
    );
    assert_eq!(parts.answers.len(), 3);
    assert!(parts.truncated);
    let targets: BTreeSet<String> = srvs(&parts.answers).into_iter().map(|s| s.0).collect();
    let glued: BTreeSet<String> = parts
        .additionals
        .iter()
        .map(|r| r.name().to_ascii())
        .collect();
    assert_eq!(targets, glued);
}

#[test]
fn size_limit_trims_below_the_count_cap() {
    // Node names long enough that three SRV answers plus glue exceed 512 bytes.
    let long = "n".repeat(60);
    let nodes: Vec<_> = (0..3)
        .map(|i| node(&format!("{long}{i}.{long}"), &format!("10.0.0.{i}")))
        .collect();
    let instances = nodes.iter().map(|n| instance(n, "web", "web")).collect();
    let catalog = snapshot(nodes, instances);
    let parts = ask_with(
        &zone(),
        &catalog,
        "web.service.consul.",
        RecordType::SRV,
        Limits::udp(3, None),
    );
    assert!(parts.answers.len() < 3, "{} answers", parts.answers.len());
    assert!(!parts.answers.is_empty());
    assert!(parts.truncated);
    assert_eq!(parts.additionals.len(), parts.answers.len());
    assert!(wire_len("web.service.consul.", RecordType::SRV, &parts, false) <= 512);
}

#[test]
fn edns_udp_fills_the_advertised_size() {
    let catalog = many("web", 200);
    let parts = ask_with(
        &zone(),
        &catalog,
        "web.service.consul.",
        RecordType::A,
        Limits::udp(3, Some(1232)),
    );
    // No count cap with EDNS: as many as fit.
    assert!(parts.answers.len() > 8, "{} answers", parts.answers.len());
    assert!(parts.answers.len() < 200);
    assert!(parts.truncated);
    let len = wire_len("web.service.consul.", RecordType::A, &parts, true);
    assert!(len <= 1232, "{len} bytes");
    // One more record would not have fitted (16 bytes per compressed A record).
    assert!(len + 16 > 1232, "{len} bytes");

    // Advertising less than 512 means 512 (RFC 6891 §6.2.5), with Consul's count cap.
    assert_eq!(Limits::udp(3, Some(100)), Limits::udp(3, Some(512)));
    assert_eq!(Limits::udp(3, Some(512)).max_answers, Some(3));
}

#[test]
fn tcp_returns_everything() {
    let catalog = many("web", 200);
    let parts = ask(&zone(), &catalog, "web.service.consul.", RecordType::A);
    assert_eq!(parts.answers.len(), 200);
    assert!(!parts.truncated);
    let parts = ask(&zone(), &catalog, "web.service.consul.", RecordType::SRV);
    assert_eq!(parts.answers.len(), 200);
    assert_eq!(parts.additionals.len(), 200);
}

#[test]
fn answer_that_cannot_fit_at_all_sets_tc_even_when_truncation_is_off() {
    let mut n = node("big", "10.0.0.9");
    n.meta.insert("k".into(), "x".repeat(600));
    let catalog = snapshot(vec![n], vec![]);
    let silent = Zone::new(DnsConfig {
        enable_truncate: false,
        ..DnsConfig::default()
    })
    .unwrap();
    let parts = ask_with(
        &silent,
        &catalog,
        "big.node.consul.",
        RecordType::TXT,
        Limits::udp(3, None),
    );
    assert!(parts.answers.is_empty());
    assert!(parts.truncated);
    assert_eq!(parts.rcode, ResponseCode::NoError);
}

#[test]
fn invalid_configs_are_rejected() {
    let bad = |config: DnsConfig| Zone::new(config).unwrap_err();
    assert!(matches!(
        bad(DnsConfig {
            domain: "bad..domain".into(),
            ..DnsConfig::default()
        }),
        DnsError::InvalidDomain { .. }
    ));
    assert!(matches!(
        bad(DnsConfig {
            domain: ".".into(),
            ..DnsConfig::default()
        }),
        DnsError::InvalidDomain { .. }
    ));
    for datacenter in ["", "dc.1", &"d".repeat(64)] {
        assert!(matches!(
            bad(DnsConfig {
                datacenter: datacenter.into(),
                ..DnsConfig::default()
            }),
            DnsError::InvalidDatacenter { .. }
        ));
    }
    assert!(matches!(
        bad(DnsConfig {
            udp_answer_limit: 0,
            ..DnsConfig::default()
        }),
        DnsError::InvalidUdpAnswerLimit
    ));
    // A domain without the trailing dot is taken as fully qualified.
    let zone = Zone::new(DnsConfig {
        domain: "consul".into(),
        ..DnsConfig::default()
    })
    .unwrap();
    assert_eq!(zone.domain().to_ascii(), "consul.");
}

#[test]
fn trimming_keeps_the_longest_prefix_that_fits() {
    // Whatever shortcut `fit` takes (size bounds, ratio-guided probes), the kept prefix must
    // be exactly the longest one whose encoded response fits.
    let zone = zone();
    let catalog = many("web", 150);
    for qtype in [RecordType::SRV, RecordType::A] {
        // Above 512 bytes no count cap applies, only the size.
        for payload in (600..=4096).step_by(97) {
            let limits = Limits::udp(3, Some(payload));
            let parts = ask_with(&zone, &catalog, "web.service.consul.", qtype, limits);
            let q = query("web.service.consul.", qtype);
            let additionals: Vec<&Record> = parts.additionals.iter().collect();
            let len = encoded_len(&q, &parts.answers, &additionals, true);
            assert!(len <= usize::from(payload), "{qtype} {payload}: {len}");
            if parts.answers.len() < 150 {
                // One more answer (with its glue) would not have fitted.
                let full = ask(&zone, &catalog, "web.service.consul.", qtype);
                let k = parts.answers.len();
                let next = &full.answers[k];
                assert!(parts.truncated);
                let mut answers = parts.answers.clone();
                answers.push(next.clone());
                let mut extra = additionals.clone();
                if let Some(RData::SRV(srv)) = next.data() {
                    extra.extend(full.additionals.iter().filter(|r| r.name() == srv.target()));
                }
                let longer = encoded_len(&q, &answers, &extra, true);
                assert!(
                    longer > usize::from(payload),
                    "{qtype} {payload}: {k} kept, {longer}"
                );
            }
        }
    }
}
