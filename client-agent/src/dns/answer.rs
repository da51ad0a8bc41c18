//! Pure answer building: one question and one catalog snapshot in, response sections out.
//!
//! No I/O and no hickory server types, so every rule (health filtering, SRV targets, NXDOMAIN
//! vs NODATA, size trimming) is table-tested against hand-built snapshots. Randomness comes in
//! as a parameter for the same reason.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concord_api::catalog::{CheckServiceNode, CheckStatus, NodeService};
use hickory_proto::op::{message, Edns, Header, Query, ResponseCode};
use hickory_proto::rr::domain::Label;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use rand::seq::SliceRandom;
use rand::Rng;

use super::name::{self, Lookup, Parsed};
use super::{DnsConfig, DnsError};
use crate::catalog_cache::CatalogSnapshot;

/// Largest response to a UDP query without EDNS (RFC 1035 §4.2.1).
pub(crate) const PLAIN_UDP_SIZE: u16 = 512;
/// Largest UDP response we build whatever a client advertises (Consul's cap).
pub(crate) const MAX_UDP_PAYLOAD: u16 = 65_467;
/// Consul's hard cap on `udp_answer_limit`.
const MAX_PLAIN_UDP_ANSWERS: usize = 8;
/// Longest `<character-string>` in a TXT record (RFC 1035 §3.3).
const MAX_TXT_STRING: usize = 255;

/// UDP payload size we fill (and advertise back) for a client advertising `advertised` bytes.
pub(crate) fn udp_payload(advertised: u16) -> u16 {
    advertised.clamp(PLAIN_UDP_SIZE, MAX_UDP_PAYLOAD)
}

/// How much of an answer a response may carry, decided by the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most answer records; `None` for no count cap.
    max_answers: Option<usize>,
    /// Largest encoded message in bytes.
    max_bytes: usize,
    /// Whether the response carries an OPT record, which counts towards `max_bytes`.
    edns: bool,
}

impl Limits {
    /// UDP, with the client's advertised EDNS payload size or `None` without EDNS.
    ///
    /// As Consul: the answer count is capped only when the size limit is the classic 512
    /// bytes; a client advertising more gets as many records as fit.
    pub(crate) fn udp(udp_answer_limit: usize, edns_payload: Option<u16>) -> Self {
        let max_bytes = edns_payload.map_or(PLAIN_UDP_SIZE, udp_payload);
        let max_answers =
            (max_bytes == PLAIN_UDP_SIZE).then_some(udp_answer_limit.min(MAX_PLAIN_UDP_ANSWERS));
        Limits {
            max_answers,
            max_bytes: usize::from(max_bytes),
            edns: edns_payload.is_some(),
        }
    }

    /// TCP: everything that fits in one DNS-over-TCP message (64 KiB).
    pub(crate) fn tcp(edns: bool) -> Self {
        Limits {
            max_answers: None,
            max_bytes: usize::from(u16::MAX),
            edns,
        }
    }
}

/// The sections and flags of a response, ready for the wire.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResponseParts {
    /// Response code.
    pub(crate) rcode: ResponseCode,
    /// AA: set for every answer from our own zone.
    pub(crate) authoritative: bool,
    /// TC: the answer section was trimmed to fit the transport.
    pub(crate) truncated: bool,
    /// Answer section.
    pub(crate) answers: Vec<Record>,
    /// Authority section (the SOA of negative answers).
    pub(crate) authority: Vec<Record>,
    /// Additional section (addresses of SRV targets, NS glue).
    pub(crate) additionals: Vec<Record>,
    /// The name is not ours to answer (outside our domains, or a reverse name matching no
    /// node or service): the handler forwards the query to the recursors when any are
    /// configured, and otherwise sends this response (`rcode`) as it is.
    pub(crate) recurse: bool,
}

impl ResponseParts {
    /// A response with no records: REFUSED, NOTIMP, SERVFAIL, BADVERS...
    pub(crate) fn error(rcode: ResponseCode) -> Self {
        ResponseParts {
            rcode,
            authoritative: false,
            truncated: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            recurse: false,
        }
    }

    /// Not ours: forwarded to the recursors if any, else answered with `rcode`.
    fn recurse(rcode: ResponseCode) -> Self {
        ResponseParts {
            recurse: true,
            ..ResponseParts::error(rcode)
        }
    }
}

/// Records found for a name that exists; empty `answers` means NODATA.
#[derive(Default)]
struct Records {
    answers: Vec<Record>,
    additionals: Vec<Record>,
    /// For answer `i`, the index in `additionals` of the record it needs (an SRV or NS
    /// target's address), if any; missing entries mean none. Kept as indices so trimming
    /// never compares names (hickory hashes and compares names label by label, lowercasing
    /// each: the hot spot of large answers).
    glue: Vec<Option<usize>>,
}

impl Records {
    /// Adds an answer that needs `glue` (an index into `additionals`).
    fn push_glued(&mut self, answer: Record, glue: Option<usize>) {
        self.glue.resize(self.answers.len(), None);
        self.answers.push(answer);
        self.glue.push(glue);
    }

    /// Adds an additional record; returns its index for [`push_glued`](Self::push_glued).
    fn push_additional(&mut self, record: Record) -> usize {
        self.additionals.push(record);
        self.additionals.len() - 1
    }

    /// The additionals the first `count` answers need, in their original order.
    fn glue_of(&self, count: usize) -> Vec<&Record> {
        let mut wanted = vec![false; self.additionals.len()];
        for glue in self.glue.iter().take(count).flatten() {
            wanted[*glue] = true;
        }
        self.additionals
            .iter()
            .zip(wanted)
            .filter_map(|(record, wanted)| wanted.then_some(record))
            .collect()
    }
}

/// The names of one domain we answer for, derived once at startup.
#[derive(Debug)]
struct DomainNames {
    /// The domain, lowercase and fully qualified.
    domain: Name,
    /// `ns.<domain>`: SOA mname and NS target.
    ns_name: Name,
    /// `hostmaster.<domain>`: SOA rname.
    hostmaster: Name,
}

impl DomainNames {
    /// Validates `configured` (a missing trailing dot is implied) and derives its names.
    fn new(configured: &str) -> Result<Self, DnsError> {
        let invalid_domain = |source| DnsError::InvalidDomain {
            domain: configured.to_owned(),
            source,
        };
        let mut domain = Name::from_ascii(configured).map_err(invalid_domain)?;
        if domain.is_root() {
            return Err(invalid_domain("the root cannot be our domain".into()));
        }
        domain.set_fqdn(true);
        let domain = domain.to_lowercase();
        let prefixed = |label: &str| {
            Name::from_labels([label.as_bytes()])
                .and_then(|name| name.append_domain(&domain))
                .map_err(invalid_domain)
        };
        Ok(DomainNames {
            ns_name: prefixed("ns")?,
            hostmaster: prefixed("hostmaster")?,
            domain,
        })
    }

    /// `labels` followed by this domain; `None` if they do not form a valid name.
    fn in_zone<'a>(&self, labels: impl IntoIterator<Item = &'a str>) -> Option<Name> {
        Name::from_labels(labels.into_iter().map(str::as_bytes))
            .and_then(|name| name.append_domain(&self.domain))
            .ok()
    }
}

/// Our zone: the validated config plus the names derived from it once, at startup.
#[derive(Debug)]
pub(crate) struct Zone {
    config: DnsConfig,
    /// The primary domain first, then `alt_domain` if configured. Answers use the domain the
    /// query named; reverse (PTR) answers always use the primary, as Consul's.
    domains: Vec<DomainNames>,
    /// `service_ttl_overrides` with exact (non-`*`) keys, lowercased, in seconds.
    ttl_exact: HashMap<String, u32>,
    /// `service_ttl_overrides` prefixes (`*` stripped, lowercased), longest first, in seconds.
    ttl_prefixes: Vec<(String, u32)>,
}

impl Zone {
    /// Validates `config` and derives the zone's names.
    pub(crate) fn new(config: DnsConfig) -> Result<Self, DnsError> {
        let mut domains = vec![DomainNames::new(&config.domain)?];
        if let Some(alt) = &config.alt_domain {
            let alt = DomainNames::new(alt)?;
            // Configuring the primary again as alternate is harmless: keep one copy.
            if alt.domain != domains[0].domain {
                domains.push(alt);
            }
        }

        let dc = &config.datacenter;
        if dc.contains('.') || Label::from_raw_bytes(dc.as_bytes()).is_err() {
            return Err(DnsError::InvalidDatacenter {
                datacenter: dc.clone(),
            });
        }
        if config.udp_answer_limit == 0 {
            return Err(DnsError::InvalidUdpAnswerLimit);
        }

        let mut ttl_exact = HashMap::new();
        let mut ttl_prefixes = Vec::new();
        for (key, ttl) in &config.service_ttl_overrides {
            let key = key.to_ascii_lowercase();
            match key.strip_suffix('*') {
                Some(prefix) => ttl_prefixes.push((prefix.to_owned(), secs(*ttl))),
                None => {
                    ttl_exact.insert(key, secs(*ttl));
                }
            }
        }
        ttl_prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));

        Ok(Zone {
            config,
            domains,
            ttl_exact,
            ttl_prefixes,
        })
    }

    /// The primary domain we are authoritative for (lowercase, fully qualified).
    pub(crate) fn domain(&self) -> &Name {
        &self.primary().domain
    }

    /// The primary domain's names.
    fn primary(&self) -> &DomainNames {
        // Invariant: `new` always puts the primary domain first.
        &self.domains[0]
    }

    /// The configuration the zone was built from.
    pub(crate) fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Answers one question from `snapshot`.
    ///
    /// Answer records are owned by the query's name as asked (case preserved); `rng` shuffles
    /// service instances so clients spread over them.
    pub(crate) fn answer(
        &self,
        snapshot: &CatalogSnapshot,
        query: &Query,
        limits: Limits,
        rng: &mut impl Rng,
    ) -> ResponseParts {
        let qname = query.name();
        let qtype = query.query_type();
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            // Our zone only exists in class IN; CHAOS `version.bind` and the like are not ours.
            return ResponseParts::error(ResponseCode::Refused);
        }
        if name::is_reverse(qname) {
            return self.reverse(snapshot, qname, qtype);
        }
        // The most specific domain containing the name wins (an alternate domain may sit
        // inside the primary or the other way round).
        let found = self
            .domains
            .iter()
            .filter(|names| names.domain.zone_of(qname))
            .max_by_key(|names| names.domain.num_labels());
        let Some(names) = found else {
            // Without recursors, Consul (miekg/dns) has no handler for the name: REFUSED.
            return ResponseParts::recurse(ResponseCode::Refused);
        };
        let lookup = match name::parse(qname, &names.domain, &self.config.datacenter) {
            Parsed::Local(lookup) => lookup,
            Parsed::OutOfZone => return ResponseParts::recurse(ResponseCode::Refused),
            Parsed::OtherDatacenter(dc) => {
                tracing::debug!(%qname, %dc, "DNS query for another datacenter");
                return self.negative(names, ResponseCode::NXDomain);
            }
            Parsed::Unsupported(kind) => {
                // `.query` (prepared queries) lands here too: Consul answers an unknown
                // prepared query with NXDOMAIN, and no prepared queries exist yet.
                tracing::debug!(%qname, kind, "DNS lookup kind not supported yet");
                return self.negative(names, ResponseCode::NXDomain);
            }
            Parsed::Invalid => return self.negative(names, ResponseCode::NXDomain),
        };
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // The zone is synthesised per query; there is nothing to transfer.
            return ResponseParts::error(ResponseCode::NotImp);
        }
        let needs_catalog = matches!(
            lookup,
            Lookup::Node { .. } | Lookup::Service { .. } | Lookup::Connect { .. }
        );
        if needs_catalog && snapshot.index == 0 {
            // No catalog fetched yet: NXDOMAIN would be a lie resolvers cache; Consul answers
            // SERVFAIL when it cannot reach the catalog.
            return ResponseParts::error(ResponseCode::ServFail);
        }

        let found = match lookup {
            Lookup::Apex => Some(self.apex(names, qtype)),
            Lookup::NameServer => Some(self.name_server(qname, qtype)),
            Lookup::Addr(ip) => Some(Records {
                answers: address_record(qname, secs(self.config.node_ttl), ip, qtype)
                    .into_iter()
                    .collect(),
                ..Records::default()
            }),
            Lookup::Node { node } => self.node(snapshot, qname, qtype, &node),
            Lookup::Service { service, tag } => {
                let tag = tag.as_deref();
                let select = |i: &CheckServiceNode| {
                    i.service.service.eq_ignore_ascii_case(&service)
                        && tag.is_none_or(|tag| {
                            i.service.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
                        })
                };
                self.service(names, snapshot, qname, qtype, &service, select, rng)
            }
            Lookup::Connect { service } => {
                let select = |i: &CheckServiceNode| fronts(&i.service, &service);
                self.service(names, snapshot, qname, qtype, &service, select, rng)
            }
        };
        match found {
            None => self.negative(names, ResponseCode::NXDomain),
            Some(records) if records.answers.is_empty() => {
                self.negative(names, ResponseCode::NoError)
            }
            Some(records) => self.fit(query, records, limits),
        }
    }

    /// A reverse (PTR) name: the first node whose address it is (`<node>.node.<dc>.<domain>`),
    /// else the first service instance with that service address
    /// (`<service>.service.<dc>.<domain>`), both under the primary domain as Consul answers.
    /// Anything else is not ours: recursors may know it, and without them Consul's recursion
    /// finds no resolver and answers SERVFAIL.
    fn reverse(
        &self,
        snapshot: &CatalogSnapshot,
        qname: &Name,
        qtype: RecordType,
    ) -> ResponseParts {
        let Some(ip) = name::parse_reverse(qname) else {
            return ResponseParts::recurse(ResponseCode::ServFail);
        };
        if snapshot.index == 0 {
            return ResponseParts::error(ResponseCode::ServFail);
        }
        let primary = self.primary();
        let dc = self.config.datacenter.as_str();
        let is_ip = |address: &str| address.parse::<IpAddr>().is_ok_and(|a| a == ip);
        let node = snapshot
            .nodes
            .iter()
            .filter(|node| is_ip(&node.address))
            .find_map(|node| {
                let target = primary.in_zone(node.node.split('.').chain(["node", dc]))?;
                Some((target, secs(self.config.node_ttl)))
            });
        let target = node.or_else(|| {
            snapshot
                .instances
                .iter()
                .filter(|instance| is_ip(&instance.service.address))
                .find_map(|instance| {
                    let service = instance.service.service.as_str();
                    let target = primary.in_zone([service, "service", dc])?;
                    Some((target, self.service_ttl(service)))
                })
        });
        let Some((target, ttl)) = target else {
            return ResponseParts::recurse(ResponseCode::ServFail);
        };
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return self.negative(primary, ResponseCode::NoError);
        }
        ResponseParts {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: vec![Record::from_rdata(
                qname.clone(),
                ttl,
                RData::PTR(PTR(target)),
            )],
            ..ResponseParts::error(ResponseCode::NoError)
        }
    }

    /// NXDOMAIN, or NODATA for `NoError`: no answers, our SOA in Authority so resolvers
    /// know how long to cache the negative answer (RFC 2308).
    fn negative(&self, names: &DomainNames, rcode: ResponseCode) -> ResponseParts {
        ResponseParts {
            rcode,
            authoritative: true,
            authority: vec![self.soa(names)],
            ..ResponseParts::error(rcode)
        }
    }

    /// Our SOA record; the serial is the current unix time, as Consul's.
    fn soa(&self, names: &DomainNames) -> Record {
        let serial = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, secs);
        let config = &self.config;
        let soa = SOA::new(
            names.ns_name.clone(),
            names.hostmaster.clone(),
            serial,
            secs_i32(config.soa_refresh),
            secs_i32(config.soa_retry),
            secs_i32(config.soa_expire),
            secs(config.soa_min_ttl),
        );
        Record::from_rdata(
            names.domain.clone(),
            secs(config.soa_min_ttl),
            RData::SOA(soa),
        )
    }

    /// The apex: SOA, NS (`ns.<domain>` with glue when our address is known), or NODATA.
    fn apex(&self, names: &DomainNames, qtype: RecordType) -> Records {
        let mut records = Records::default();
        if matches!(qtype, RecordType::SOA | RecordType::ANY) {
            records.answers.push(self.soa(names));
        }
        if matches!(qtype, RecordType::NS | RecordType::ANY) {
            let glue = self
                .config
                .advertise_addr
                .and_then(|ip| {
                    address_record(
                        &names.ns_name,
                        secs(self.config.node_ttl),
                        ip,
                        RecordType::ANY,
                    )
                })
                .map(|record| records.push_additional(record));
            let ns = Record::from_rdata(
                names.domain.clone(),
                secs(self.config.node_ttl),
                RData::NS(NS(names.ns_name.clone())),
            );
            records.push_glued(ns, glue);
        }
        records
    }

    /// `ns.<domain>`: our advertise address if configured, else a name without records.
    fn name_server(&self, qname: &Name, qtype: RecordType) -> Records {
        let answers = self
            .config
            .advertise_addr
            .and_then(|ip| address_record(qname, secs(self.config.node_ttl), ip, qtype));
        Records {
            answers: answers.into_iter().collect(),
            ..Records::default()
        }
    }

    /// `<node>.node`: the node's address (CNAME when it is a hostname) and, for TXT/ANY, its
    /// metadata. `None` when no such node exists.
    fn node(
        &self,
        snapshot: &CatalogSnapshot,
        qname: &Name,
        qtype: RecordType,
        node: &str,
    ) -> Option<Records> {
        let node = snapshot
            .nodes
            .iter()
            .find(|n| n.node.eq_ignore_ascii_case(node))?;
        let ttl = secs(self.config.node_ttl);
        let mut answers = Vec::new();
        match node.address.parse::<IpAddr>() {
            Ok(ip) => answers.extend(address_record(qname, ttl, ip, qtype)),
            Err(_) => {
                let wants_cname = matches!(
                    qtype,
                    RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::CNAME
                );
                if let Some(host) = hostname(&node.address).filter(|_| wants_cname) {
                    answers.push(Record::from_rdata(
                        qname.clone(),
                        ttl,
                        RData::CNAME(CNAME(host)),
                    ));
                }
            }
        }
        if matches!(qtype, RecordType::TXT | RecordType::ANY) {
            answers.extend(node.meta.iter().map(|(key, value)| {
                // RFC 1464 `key=value`; Consul's `rfc1035-` keys carry a raw value.
                let text = match key.strip_prefix("rfc1035-") {
                    Some(_) => value.clone(),
                    None => format!("{key}={value}"),
                };
                Record::from_rdata(qname.clone(), ttl, RData::TXT(txt(&text)))
            }));
        }
        Some(Records {
            answers,
            ..Records::default()
        })
    }

    /// `[tag.]svc.service` and `svc.connect`: the addresses of the servable instances that
    /// `select` picks, or SRV records with their targets' addresses in Additional. `None`
    /// (NXDOMAIN) when no instance is servable. `service` names the TTL.
    #[allow(clippy::too_many_arguments)] // one question's parts, each used once
    fn service(
        &self,
        names: &DomainNames,
        snapshot: &CatalogSnapshot,
        qname: &Name,
        qtype: RecordType,
        service: &str,
        select: impl Fn(&CheckServiceNode) -> bool,
        rng: &mut impl Rng,
    ) -> Option<Records> {
        let mut instances: Vec<&CheckServiceNode> = snapshot
            .instances
            .iter()
            .filter(|i| select(i))
            .filter(|i| self.servable(i))
            .collect();
        if instances.is_empty() {
            return None;
        }
        instances.shuffle(rng);
        let ttl = self.service_ttl(service);
        let mut records = Records::default();
        if qtype == RecordType::SRV {
            let mut seen = HashSet::new();
            // Target identity → index of its address in Additional: the target is a function
            // of (node name or own address, address), so no name needs hashing.
            let mut glued: HashMap<(bool, String, IpAddr), usize> = HashMap::new();
            for instance in instances {
                let Some(endpoint) = Endpoint::of(instance) else {
                    continue;
                };
                if !seen.insert((endpoint.key(), instance.service.port)) {
                    continue;
                }
                let Some((target, glue)) = self.srv_target(names, instance, &endpoint) else {
                    continue;
                };
                let weights = instance.service.weights;
                let weight = match instance.aggregate_status() {
                    CheckStatus::Warning => weights.warning,
                    _ => weights.passing,
                };
                let weight = u16::try_from(weight).unwrap_or(u16::MAX);
                let glue = glue.and_then(|ip| {
                    let key = match endpoint {
                        Endpoint::Ip { own: false, .. } => {
                            (false, instance.node.node.to_ascii_lowercase(), ip)
                        }
                        _ => (true, String::new(), ip),
                    };
                    if let Some(index) = glued.get(&key) {
                        return Some(*index);
                    }
                    let record = address_record(&target, ttl, ip, RecordType::ANY)?;
                    let index = records.push_additional(record);
                    glued.insert(key, index);
                    Some(index)
                });
                let srv = SRV::new(1, weight, instance.service.port, target);
                records.push_glued(
                    Record::from_rdata(qname.clone(), ttl, RData::SRV(srv)),
                    glue,
                );
            }
        } else {
            let mut seen = HashSet::new();
            // `a_record_limit` caps address answers on every transport, a deliberate
            // choice rather than a trim, so it never sets TC; shuffling makes the kept
            // ones a random subset.
            let limit = match self.config.a_record_limit {
                0 => usize::MAX,
                n => n,
            };
            for instance in instances {
                if records.answers.len() >= limit {
                    break;
                }
                if let Some(Endpoint::Ip { ip, .. }) = Endpoint::of(instance) {
                    if seen.insert(ip) {
                        records
                            .answers
                            .extend(address_record(qname, ttl, ip, qtype));
                    }
                }
            }
        }
        Some(records)
    }

    /// SRV target for an instance and the address to glue for it, if any:
    /// `<node>.node.<dc>.<domain>` when it uses its node's address, `<hex>.addr.<dc>.<domain>`
    /// when it has its own (or the node name is not a valid DNS name), the hostname itself
    /// (no glue) when the address is one.
    fn srv_target(
        &self,
        names: &DomainNames,
        instance: &CheckServiceNode,
        endpoint: &Endpoint,
    ) -> Option<(Name, Option<IpAddr>)> {
        match endpoint {
            Endpoint::Host(host) => Some((host.clone(), None)),
            Endpoint::Ip { ip, own: false } => {
                let node_target = names.in_zone(
                    instance
                        .node
                        .node
                        .split('.')
                        .chain(["node", self.config.datacenter.as_str()]),
                );
                node_target
                    .or_else(|| self.addr_target(names, *ip))
                    .map(|target| (target, Some(*ip)))
            }
            Endpoint::Ip { ip, own: true } => self
                .addr_target(names, *ip)
                .map(|target| (target, Some(*ip))),
        }
    }

    /// `<hex>.addr.<dc>.<domain>`.
    fn addr_target(&self, names: &DomainNames, ip: IpAddr) -> Option<Name> {
        let hex = name::hex_addr_label(ip);
        names.in_zone([hex.as_str(), "addr", self.config.datacenter.as_str()])
    }

    /// Whether DNS serves an instance: never with a critical check (node checks included),
    /// with a warning unless `only_passing`.
    fn servable(&self, instance: &CheckServiceNode) -> bool {
        match instance.aggregate_status() {
            CheckStatus::Passing => true,
            CheckStatus::Warning => !self.config.only_passing,
            CheckStatus::Critical => false,
        }
    }

    /// TTL in seconds for a service: exact override, else longest `prefix*`, else the default.
    fn service_ttl(&self, service: &str) -> u32 {
        let service = service.to_ascii_lowercase();
        if let Some(ttl) = self.ttl_exact.get(&service) {
            return *ttl;
        }
        self.ttl_prefixes
            .iter()
            .find(|(prefix, _)| service.starts_with(prefix.as_str()))
            .map_or(secs(self.config.service_ttl), |(_, ttl)| *ttl)
    }

    /// Trims a positive answer to `limits`, keeping Additional in step with the answers left.
    ///
    /// The count cap applies first, then the largest answer prefix whose encoded message
    /// fits. Answers were shuffled, so the prefix is a random subset.
    ///
    /// Encoding is the only exact measure with name compression, and hickory's compression
    /// costs time quadratic in the record count, so encodes are avoided where possible: the
    /// uncompressed size is an upper bound (compression only shrinks), which settles most
    /// answers without encoding, and when it does not, the search starts from the prefix the
    /// measured compression ratio predicts, so a trim usually costs two or three encodes.
    fn fit(&self, query: &Query, records: Records, limits: Limits) -> ResponseParts {
        let total = records.answers.len();
        let count = limits.max_answers.map_or(total, |max| total.min(max));
        let max = limits.max_bytes;
        // bounds[k]: upper bound on the size of the message carrying the first k answers
        // (each answer counted with its glue, shared glue counted each time: still a bound).
        let base = message_bound(query, limits.edns);
        let mut bounds = Vec::with_capacity(count + 1);
        bounds.push(base);
        for (i, answer) in records.answers.iter().take(count).enumerate() {
            let glue = records.glue.get(i).copied().flatten();
            let glue_len = glue.map_or(Some(0), |g| record_bound(&records.additionals[g]));
            let len = record_bound(answer).zip(glue_len).map(|(a, g)| a + g);
            let previous = bounds.last().copied().unwrap_or(base);
            bounds.push(len.map_or(usize::MAX, |len| previous.saturating_add(len)));
        }
        let exact = |k: usize| {
            encoded_len(
                query,
                &records.answers[..k],
                &records.glue_of(k),
                limits.edns,
            )
        };
        let fits = |k: usize| bounds[k] <= max || exact(k) <= max;

        // Most answers are settled by the bound alone, without encoding anything.
        let kept = if bounds[count] <= max {
            count
        } else {
            // One encode of everything, noting where each answer ends and how long each
            // additional is, predicts every prefix's size: answers encode the same whatever
            // follows them, and each glue record's owner is its answer's target, which
            // compresses to a pointer into that answer either way.
            let predicted = prefix_sizes(query, &records.answers[..count], &records.additionals)
                .map(|(ends, glue_lens)| {
                    let opt = if limits.edns { OPT_LEN } else { 0 };
                    let mut wanted = vec![false; glue_lens.len()];
                    let mut glue_total = 0;
                    let mut kept = 0;
                    for (k, end) in ends.iter().enumerate().skip(1) {
                        if let Some(g) = records.glue.get(k - 1).copied().flatten() {
                            if !std::mem::replace(&mut wanted[g], true) {
                                glue_total += glue_lens[g];
                            }
                        }
                        if end + glue_total + opt > max {
                            break;
                        }
                        kept = k;
                    }
                    kept
                });
            match predicted {
                // Checked by one exact encode; the prediction is exact for the records we
                // build (tested), the check keeps an oversized response from ever being sent.
                Some(k) if fits(k) => k,
                None if fits(count) => count,
                _ => {
                    // Bisect. Invariant: `fits(lo)` (every prefix within the size bound fits,
                    // and an answer-less message always does), `!fits(hi)` (just checked).
                    let mut lo = bounds.iter().rposition(|b| *b <= max).unwrap_or(0);
                    let mut hi = predicted.unwrap_or(count);
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if fits(mid) {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    lo
                }
            }
        };
        let additionals = records.glue_of(kept).into_iter().cloned().collect();
        let mut answers = records.answers;
        answers.truncate(kept);
        let trimmed = answers.len() < total;
        ResponseParts {
            rcode: ResponseCode::NoError,
            authoritative: true,
            truncated: trimmed && (self.config.enable_truncate || answers.is_empty()),
            answers,
            authority: Vec::new(),
            additionals,
            recurse: false,
        }
    }
}

/// Where an instance is reached.
enum Endpoint {
    /// An IP address; `own` when it is the service's rather than its node's.
    Ip { ip: IpAddr, own: bool },
    /// A hostname (service or node address that is not an IP).
    Host(Name),
}

impl Endpoint {
    /// The service address if set (and different from the node's), else the node address;
    /// `None` when neither is an IP or a valid hostname.
    fn of(instance: &CheckServiceNode) -> Option<Self> {
        let node_addr = instance.node.address.as_str();
        let svc_addr = instance.service.address.as_str();
        let own = !svc_addr.is_empty() && svc_addr != node_addr;
        let addr = if own { svc_addr } else { node_addr };
        match addr.parse::<IpAddr>() {
            Ok(ip) => Some(Endpoint::Ip { ip, own }),
            Err(_) => hostname(addr).map(Endpoint::Host),
        }
    }

    /// Identity for collapsing duplicate SRV records: the address, whoever owns it.
    fn key(&self) -> String {
        match self {
            Endpoint::Ip { ip, .. } => ip.to_string(),
            Endpoint::Host(host) => host.to_lowercase().to_ascii(),
        }
    }
}

/// The A (IPv4) or AAAA (IPv6) record for `ip`, if `qtype` asks for that family.
/// Whether `instance` is a Connect-capable endpoint of `service` (case-insensitive): a
/// `connect-proxy` whose `Proxy.DestinationServiceName` it is, or a Connect-native instance
/// of it, as Consul's `.connect` lookup selects them.
fn fronts(instance: &NodeService, service: &str) -> bool {
    let proxied = instance.kind == "connect-proxy"
        && instance
            .proxy
            .as_ref()
            .and_then(|p| p.get("DestinationServiceName"))
            .and_then(|v| v.as_str())
            .is_some_and(|d| d.eq_ignore_ascii_case(service));
    let native = instance.service.eq_ignore_ascii_case(service)
        && instance
            .connect
            .as_ref()
            .and_then(|c| c.get("Native"))
            .and_then(|v| v.as_bool())
            == Some(true);
    proxied || native
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    let rdata = match ip {
        IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => {
            RData::AAAA(AAAA(v6))
        }
        _ => return None,
    };
    Some(Record::from_rdata(owner.clone(), ttl, rdata))
}

/// A non-IP address as a fully qualified name; `None` if empty or not a valid name.
fn hostname(addr: &str) -> Option<Name> {
    if addr.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(addr).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A TXT record holding `text`, split into 255-byte strings (a longer one cannot be encoded).
fn txt(text: &str) -> TXT {
    TXT::from_bytes(text.as_bytes().chunks(MAX_TXT_STRING).collect())
}

/// Uncompressed wire size of a name: its text length plus the root label (an upper bound).
fn name_bound(name: &Name) -> usize {
    name.len() + 1
}

/// Upper bound on the wire size of a record without name compression; `None` for record
/// types we never build (then only encoding can tell).
fn record_bound(record: &Record) -> Option<usize> {
    let rdata = match record.data()? {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + name_bound(srv.target()),
        RData::NS(ns) => name_bound(&ns.0),
        RData::CNAME(cname) => name_bound(&cname.0),
        RData::PTR(ptr) => name_bound(&ptr.0),
        RData::TXT(txt) => txt.iter().map(|s| 1 + s.len()).sum(),
        RData::SOA(soa) => name_bound(soa.mname()) + name_bound(soa.rname()) + 20,
        _ => return None,
    };
    // Owner name, then type, class, TTL and RDLENGTH (10 bytes).
    Some(name_bound(record.name()) + 10 + rdata)
}

/// Wire size of our OPT record: root owner, type, class, TTL, RDLENGTH, no options
/// (RFC 6891 §6.1.2).
const OPT_LEN: usize = 11;

/// Size of a response without records: header, the question, and the OPT record if any.
fn message_bound(query: &Query, edns: bool) -> usize {
    /// Header (RFC 1035 §4.1.1).
    const HEADER: usize = 12;
    HEADER + name_bound(query.name()) + 4 + if edns { OPT_LEN } else { 0 }
}

/// Encodes header, question, `answers` and `additionals` once, as the response would be
/// (same compression), and returns the offset after the header and question and after each
/// answer (`ends[k]`: size of the first `k` answers with everything before them), and the
/// encoded length of each additional. `None` if something cannot be encoded.
fn prefix_sizes(
    query: &Query,
    answers: &[Record],
    additionals: &[Record],
) -> Option<(Vec<usize>, Vec<usize>)> {
    use hickory_proto::serialize::binary::BinEncodable;
    let mut buffer = Vec::with_capacity(4096);
    let mut encoder = BinEncoder::new(&mut buffer);
    Header::new().emit(&mut encoder).ok()?;
    query.emit(&mut encoder).ok()?;
    let mut ends = Vec::with_capacity(answers.len() + 1);
    ends.push(encoder.offset());
    for answer in answers {
        answer.emit(&mut encoder).ok()?;
        ends.push(encoder.offset());
    }
    let mut lens = Vec::with_capacity(additionals.len());
    for additional in additionals {
        let start = encoder.offset();
        additional.emit(&mut encoder).ok()?;
        lens.push(encoder.offset() - start);
    }
    Some((ends, lens))
}

/// Wire size of a response carrying these sections, with name compression as sent.
fn encoded_len(query: &Query, answers: &[Record], additionals: &[&Record], edns: bool) -> usize {
    let edns = edns.then(Edns::new);
    let mut buffer = Vec::with_capacity(512);
    let emitted = message::emit_message_parts(
        &Header::new(),
        &mut std::iter::once(query),
        &mut answers.iter(),
        &mut std::iter::empty::<&Record>(),
        &mut additionals.iter().copied(),
        edns.as_ref(),
        &[],
        &mut BinEncoder::new(&mut buffer),
    );
    // An unencodable answer can never be sent; count it as not fitting.
    emitted.map_or(usize::MAX, |_| buffer.len())
}

/// Whole seconds of `d`, saturating (TTLs and SOA timers are 32-bit).
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// Whole seconds of `d` for the signed SOA timers, saturating.
fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests;
