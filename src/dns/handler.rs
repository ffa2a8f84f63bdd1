//! The full DNS handler: TCP queries, and the UDP queries the fast path passes on. One scan of
//! the wire bytes (the fast path's, when it made one), one parse of the header and question,
//! [`answer`], and one encode against the transport's size limit. Synchronous: nothing here
//! waits on anything.
use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Edns, Header, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tokio::time::Instant;
use tracing::debug;

use super::counters::Transport;
use super::dnssec;
use super::snapshot::Snapshot;
use super::wire::{self, Malformed, OptIn, Scanned};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::routing::answer::answer;
use crate::routing::query::{Client, Decision, Query, Reason};
use crate::routing::table::{Family, ZoneId};
use crate::routing::trace::NoTrace;

/// The client a query is routed for: its ECS subnet when it sent one with a non-zero source
/// prefix, else the packet's source (IPv4-mapped IPv6 taken as IPv4).
pub fn client_of(src: IpAddr, scanned: &Scanned) -> Client {
    match scanned.edns.and_then(|e| e.ecs) {
        Some(ecs) if ecs.source_prefix > 0 => Client {
            addr: ecs.addr,
            ecs_source: Some(ecs.source_prefix),
        },
        _ => Client {
            addr: src.to_canonical(),
            ecs_source: None,
        },
    }
}

/// The UDP size limit for a response (RFC 6891 6.2.5): 512 without EDNS, else the smaller of
/// the requestor's size and ours.
pub fn udp_limit(scanned: &Scanned, ours: u16) -> usize {
    scanned.edns.map_or(512, |e| e.payload.min(ours)) as usize
}

/// The full handler for one UDP datagram (see [`respond`]).
pub fn respond_udp(
    snap: &Snapshot,
    raw: &[u8],
    src: SocketAddr,
    metrics: &Metrics,
) -> Option<Vec<u8>> {
    respond(snap, raw, None, src, Transport::Udp, metrics)
}

/// Answers one message off the wire and counts it. `scanned` is the fast path's scan of the
/// same bytes, when it made one. The checks a server makes before its handler come first:
/// what has no header or is a response is dropped (`None`); what does not parse gets a
/// header-only FORMERR.
pub fn respond(
    snap: &Snapshot,
    raw: &[u8],
    scanned: Option<Scanned>,
    src: SocketAddr,
    transport: Transport,
    metrics: &Metrics,
) -> Option<Vec<u8>> {
    respond_decided(snap, raw, scanned, src, transport, metrics).0
}

/// [`respond`], with the routing decision behind a traffic-managed answer (for dnstap).
pub fn respond_decided(
    snap: &Snapshot,
    raw: &[u8],
    scanned: Option<Scanned>,
    src: SocketAddr,
    transport: Transport,
    metrics: &Metrics,
) -> (Option<Vec<u8>>, Option<Decision>) {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return (None, None);
    }
    let start = Instant::now();
    let scan = scanned.map_or_else(|| wire::scan(raw), Ok);
    let ours = snap.table.compiled.settings.max_udp_payload;
    let Some(request) = Parsed::read(raw, &scan) else {
        snap.counters
            .count_query(None, RecordType::NULL, ResponseCode::FormErr, transport);
        let opt = wire::opt_in(raw);
        return (
            Some(header_only(raw, ResponseCode::FormErr, opt, ours)),
            None,
        );
    };
    let reply = match scan {
        Ok(scanned) => respond_to(snap, raw, &request, &scanned, src, transport),
        Err(why) => malformed(raw, &request, why, ours, transport),
    };
    let qtype = request
        .queries
        .queries()
        .first()
        .map_or(RecordType::NULL, |q| q.query_type());
    snap.counters
        .count_query(reply.zone, qtype, reply.rcode, transport);
    if let Some(d) = &reply.decision {
        snap.counters.count_answer(d);
        if let (Some(client), Some(family)) = (reply.client, Family::of_record_type(qtype)) {
            let q = Query {
                service: d.service,
                family,
                client,
            };
            snap.sample.record(snap.sample_tag, &q);
        }
    }
    if request.ecs {
        metrics.ecs_queries.inc();
    }
    if let Some(code) = reply.ede {
        metrics.extended_error(code);
    }
    let elapsed = start.elapsed().as_secs_f64();
    match transport {
        Transport::Udp => metrics.udp_duration.observe(elapsed),
        Transport::Tcp => metrics.tcp_duration.observe(elapsed),
    }
    (reply.bytes, reply.decision)
}

/// The header and questions of a request, parsed once.
struct Parsed {
    metadata: Metadata,
    queries: Queries,
    /// The query carried an ECS option.
    ecs: bool,
}

impl Parsed {
    /// Reads the header and questions. A message the scan passed needs no more (the scan has
    /// read its EDNS); for one it refused, the records are parsed too, so that what cannot be
    /// read at all gets a header-only FORMERR and the rest a FORMERR (or NOTIMP) that echoes
    /// the question.
    fn read(raw: &[u8], scan: &Result<Scanned, Malformed>) -> Option<Parsed> {
        let mut decoder = BinDecoder::new(raw);
        let header = Header::read(&mut decoder).ok()?;
        let queries = Queries::read(&mut decoder, usize::from(header.counts.queries)).ok()?;
        let ecs = match scan {
            Ok(scanned) => scanned.edns.is_some_and(|e| e.ecs.is_some()),
            Err(_) => {
                let (op, counts) = (header.metadata.op_code, header.counts);
                let mut section = |count: u16, additional: bool| {
                    Message::read_records(&mut decoder, usize::from(count), additional, op).ok()
                };
                section(counts.answers, false)?;
                section(counts.authorities, false)?;
                let (_, edns, _) = section(counts.additionals, true)?;
                edns.is_some_and(|e| e.option(EdnsCode::Subnet).is_some())
            }
        };
        Some(Parsed {
            metadata: header.metadata,
            queries,
            ecs,
        })
    }
}

/// What [`respond`] sends (`None`: nothing, when the response cannot be encoded within the
/// transport's limit), with what the counters need.
struct Reply {
    bytes: Option<Vec<u8>>,
    /// The Extended DNS Error code sent, if any.
    ede: Option<u16>,
    rcode: ResponseCode,
    zone: Option<ZoneId>,
    decision: Option<Decision>,
    /// Who the decision was for (sampled with it).
    client: Option<Client>,
}

impl Reply {
    fn plain(bytes: Option<Vec<u8>>, rcode: ResponseCode) -> Reply {
        Reply {
            bytes,
            ede: None,
            rcode,
            zone: None,
            decision: None,
            client: None,
        }
    }
}

/// A header-only response: ID, opcode and RD echoed, QR set, `rcode` (at most 15), and our
/// OPT when the query had one.
fn header_only(raw: &[u8], rcode: ResponseCode, opt: Option<OptIn>, ours: u16) -> Vec<u8> {
    let mut out = raw[..12].to_vec();
    out[2] = 0x80 | (raw[2] & 0x79);
    out[3] = rcode.low() & 0x0F;
    out[4..12].fill(0);
    if let Some(opt) = opt {
        out[11] = 1;
        // Root owner, type OPT, our payload size, extended rcode and version 0, DO copied.
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&ours.to_be_bytes());
        out.extend_from_slice(&[0, 0, if opt.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    out
}

/// Our OPT for a response: our payload size, version 0, DO copied from the query.
fn our_edns(ours: u16, dnssec_ok: bool) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(ours);
    edns.set_version(0);
    edns.set_dnssec_ok(dnssec_ok);
    edns
}

/// Extended DNS Error codes Meridian sends (RFC 8914 4).
pub mod ede {
    pub const OTHER: u16 = 0;
    pub const NOT_AUTHORITATIVE: u16 = 20;
    pub const NOT_SUPPORTED: u16 = 21;
}

/// An Extended DNS Error option (RFC 8914 2): the info code, then optional UTF-8 text.
fn ede_option(code: u16, text: &str) -> EdnsOption {
    let mut data = code.to_be_bytes().to_vec();
    data.extend_from_slice(text.as_bytes());
    EdnsOption::Unknown(15, data)
}

/// An error response without records: the question echoed unless `echo` is false, our OPT
/// when the query had one. One that would not fit the transport (several long questions
/// over UDP) goes out header-only rather than not at all.
#[allow(clippy::too_many_arguments)]
fn error_reply(
    raw: &[u8],
    request: &Parsed,
    rcode: ResponseCode,
    echo: bool,
    opt: Option<OptIn>,
    ede: Option<(u16, &str)>,
    ours: u16,
    transport: Transport,
) -> Reply {
    let meta = response_meta(request, rcode);
    let edns = opt.map(|o| {
        let mut edns = our_edns(ours, o.dnssec_ok);
        if let Some((code, text)) = ede {
            edns.options_mut().insert(ede_option(code, text));
        }
        edns
    });
    let limit = match transport {
        Transport::Udp => opt.map_or(512, |o| o.payload.min(ours)),
        Transport::Tcp => u16::MAX,
    };
    let none = Queries::read(&mut BinDecoder::new(&[]), 0).ok();
    let queries = if echo {
        Some(&request.queries)
    } else {
        none.as_ref()
    };
    let bytes = queries.and_then(|queries| {
        let mut builder = MessageResponseBuilder::new(queries, None);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        encode_within(builder.build_no_records(meta), limit)
    });
    let mut reply = Reply::plain(
        Some(bytes.unwrap_or_else(|| header_only(raw, rcode, opt, ours))),
        rcode,
    );
    reply.ede = edns.as_ref().and(ede).map(|(code, _)| code);
    reply
}

/// The EDE text for NOTIMP to another opcode.
fn opcode_not_supported(request: &Parsed) -> String {
    format!("opcode {} is not supported", request.metadata.op_code)
}

fn response_meta(request: &Parsed, rcode: ResponseCode) -> Metadata {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.recursion_available = false;
    meta.authentic_data = false;
    meta.response_code = rcode;
    meta
}

/// A message the scan refused: NOTIMP for another opcode, else FORMERR, echoing the
/// question unless its name is compressed (echoing it would point into our own header).
fn malformed(
    raw: &[u8],
    request: &Parsed,
    why: Malformed,
    ours: u16,
    transport: Transport,
) -> Reply {
    let opt = wire::opt_in(raw);
    if request.metadata.op_code != OpCode::Query {
        let text = opcode_not_supported(request);
        let ede = Some((ede::NOT_SUPPORTED, text.as_str()));
        let rcode = ResponseCode::NotImp;
        return error_reply(raw, request, rcode, true, opt, ede, ours, transport);
    }
    debug!(%why, "FORMERR");
    let echo = !wire::question_compressed(raw);
    error_reply(
        raw,
        request,
        ResponseCode::FormErr,
        echo,
        opt,
        None,
        ours,
        transport,
    )
}

/// Builds the response to a well-formed message.
fn respond_to(
    snap: &Snapshot,
    raw: &[u8],
    request: &Parsed,
    scanned: &Scanned,
    src: SocketAddr,
    transport: Transport,
) -> Reply {
    let settings = &snap.table.compiled.settings;
    if request.metadata.op_code != OpCode::Query {
        let opt = scanned.edns.map(OptIn::from);
        let text = opcode_not_supported(request);
        return error_reply(
            raw,
            request,
            ResponseCode::NotImp,
            true,
            opt,
            Some((ede::NOT_SUPPORTED, &text)),
            settings.max_udp_payload,
            transport,
        );
    }
    let mut meta = response_meta(request, ResponseCode::NoError);
    let builder = MessageResponseBuilder::new(&request.queries, None);
    let query = &request.queries.queries()[0];

    // Our OPT, present only when the query had one; our NSID when it asks (RFC 5001).
    let mut edns = our_edns(
        settings.max_udp_payload,
        scanned.edns.is_some_and(|e| e.dnssec_ok),
    );
    if scanned.edns.is_some_and(|e| e.nsid)
        && let Some(nsid) = &settings.nsid
        && let Ok(payload) = NSIDPayload::new(nsid.to_vec())
    {
        edns.options_mut().insert(EdnsOption::NSID(payload));
    }
    let mut builder = builder;
    let fail = |meta: Metadata, builder: MessageResponseBuilder<'_>, ede: Option<u16>| {
        let rcode = meta.response_code;
        let mut reply = Reply::plain(encode(builder.build_no_records(meta), transport), rcode);
        reply.ede = ede;
        reply
    };
    if scanned.edns.is_some_and(|e| e.version > 0) {
        meta.response_code = ResponseCode::BADVERS;
        builder.edns(&edns);
        return fail(meta, builder, None);
    }

    // No zone transfers: AXFR over UDP is undefined (NOTIMP, RFC 5936 4.2); a transfer
    // over TCP is refused rather than answered as an empty query.
    // QCLASS ANY (RFC 1035 3.2.5) is answered from our IN data, as Knot does.
    let xfr = matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR);
    let class_served = matches!(query.query_class(), DNSClass::IN | DNSClass::ANY);
    if !class_served || xfr {
        meta.response_code = match (query.query_type(), transport) {
            (RecordType::AXFR, Transport::Udp) => ResponseCode::NotImp,
            _ => ResponseCode::Refused,
        };
        let text = if xfr {
            "zone transfers are not supported"
        } else {
            "only class IN is served"
        };
        edns.options_mut()
            .insert(ede_option(ede::NOT_SUPPORTED, text));
        let sent = scanned.edns.is_some().then(|| {
            builder.edns(&edns);
            ede::NOT_SUPPORTED
        });
        return fail(meta, builder, sent);
    }

    let client = client_of(src.ip(), scanned);
    let ans = answer(
        &snap.table,
        query.name(),
        query.query_type(),
        &client,
        &mut NoTrace,
    );
    meta.response_code = ans.rcode;
    meta.authoritative = ans.authoritative;
    let ede = match (ans.rcode, ans.decision) {
        (ResponseCode::Refused, _) => Some((ede::NOT_AUTHORITATIVE, String::new())),
        (ResponseCode::ServFail, Some(d)) => {
            let compiled = &snap.table.compiled;
            let svc = compiled.service(d.service);
            let text = match (d.reason, svc.guard) {
                (Reason::GuardServFail, Some(g)) => format!(
                    "promote_guard {:?} refuses the failover of {} (on_unsafe = servfail)",
                    compiled.checks[g.check.index()].name,
                    svc.name
                ),
                _ => format!(
                    "no healthy region for {} (on_all_down = servfail)",
                    svc.name
                ),
            };
            Some((ede::OTHER, text))
        }
        _ => None,
    };
    let ede_sent = scanned.edns.and(ede.as_ref()).map(|(code, _)| *code);
    if let (Some(_), Some((code, text))) = (scanned.edns, &ede) {
        edns.options_mut().insert(ede_option(*code, text));
    }

    if let Some(e) = scanned.edns {
        if let Some(ecs) = e.ecs {
            let scope = if ecs.source_prefix == 0 {
                0
            } else {
                ans.ecs_scope()
            };
            edns.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(
                    ecs.addr,
                    ecs.source_prefix,
                    scope,
                )));
        }
        builder.edns(&edns);
    }

    let limit = match transport {
        Transport::Udp => udp_limit(scanned, settings.max_udp_payload) as u16,
        Transport::Tcp => u16::MAX,
    };
    let with_edns = scanned.edns.is_some().then_some(&edns);
    // Wildcard answers go out under the name asked for: renamed copies (RFC 4592 3.4).
    let renamed = ans.renamed();
    let renamed_refs: Vec<&Record>;
    let answers: &[&Record] = match &renamed {
        Some(records) => {
            renamed_refs = records.iter().collect();
            &renamed_refs
        }
        None => &ans.answers,
    };
    // DO=1 to a signed zone: RRSIGs and denial (see `dnssec`).
    let proof =
        (scanned.edns.is_some_and(|e| e.dnssec_ok) && snap.table.compiled.signed).then(|| {
            let now = crate::clock::unix_seconds(crate::clock::SystemClock.now());
            dnssec::prove(&snap.table, query.name(), &ans, answers, now)
        });
    let signed_answers: Vec<&Record>;
    let signed_authority: Vec<&Record>;
    let (answers, authority): (&[&Record], &[&Record]) = match &proof {
        Some(p) => {
            if let Some(rcode) = p.rcode {
                meta.response_code = rcode;
            }
            signed_answers = dnssec::Proof::interleave(answers, &p.answer_sigs);
            let mut auth = dnssec::Proof::interleave(&ans.authority, &p.authority_sigs);
            auth.extend(p.ds.iter().copied());
            auth.extend(p.nsec.iter());
            auth.extend(p.more_sigs.iter().flat_map(|s| s.rrsigs.iter()));
            signed_authority = auth;
            (&signed_answers, &signed_authority)
        }
        None => (answers, &ans.authority),
    };
    let rcode = meta.response_code;
    let attempt = |meta: Metadata, extra: bool, limit: u16| {
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(edns) = with_edns {
            builder.edns(edns);
        }
        let extra = if extra { &ans.extra[..] } else { &[] };
        let response = builder.build(
            meta,
            answers.iter().copied(),
            authority.iter().copied(),
            std::iter::empty::<&Record>(),
            ans.additional.iter().chain(extra).copied(),
        );
        encode_within(response, limit)
    };
    // Optional addresses (MX, SRV targets) go first when the response would not fit; the
    // answer is never truncated for them.
    let fitted = attempt(meta, true, limit).or_else(|| {
        (!ans.extra.is_empty())
            .then(|| attempt(meta, false, limit))
            .flatten()
    });
    let bytes = match fitted {
        Some(bytes) => bytes,
        None => {
            // Header, question and OPT only: the client retries over TCP (RFC 6891 7).
            meta.truncation = true;
            let mut builder = MessageResponseBuilder::new(&request.queries, None);
            if let Some(edns) = with_edns {
                builder.edns(edns);
            }
            return Reply {
                bytes: encode(builder.build_no_records(meta), transport),
                ede: ede_sent,
                rcode,
                zone: ans.zone,
                decision: ans.decision,
                client: Some(client),
            };
        }
    };
    Reply {
        bytes: Some(bytes),
        ede: ede_sent,
        rcode,
        zone: ans.zone,
        decision: ans.decision,
        client: Some(client),
    }
}

/// Encodes a whole response if it fits in `limit` bytes; `None` when any record had to be
/// left out (the caller truncates) or encoding failed.
fn encode_within<'a>(
    msg: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    limit: u16,
) -> Option<Vec<u8>> {
    // TC set by the caller is intended; set by the encoder, a record did not fit.
    let truncated = msg.metadata().truncation;
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(limit);
    match msg.destructive_emit(&mut enc) {
        Ok(info) if info.truncation == truncated => Some(buf),
        Ok(_) => None,
        Err(error) => {
            debug!(%error, "encoding the response failed");
            None
        }
    }
}

/// Encodes a response within the transport's cap: over UDP, our OPT's size, or 512 without
/// one; over TCP, a frame. `None` if it does not fit (nothing is sent).
fn encode<'a>(
    msg: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    transport: Transport,
) -> Option<Vec<u8>> {
    let cap = match transport {
        Transport::Udp => msg.edns().map_or(512, |e| e.max_payload()),
        Transport::Tcp => u16::MAX,
    };
    encode_within(msg, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::{Ecs, Edns};

    fn scanned(ecs: Option<Ecs>) -> Scanned {
        Scanned {
            edns: Some(Edns {
                payload: 1232,
                version: 0,
                dnssec_ok: false,
                ecs,
                nsid: false,
            }),
            question_end: 0,
            qtype: 1,
            qclass: 1,
        }
    }

    #[test]
    fn routes_on_ecs_unless_its_prefix_is_zero() {
        let src: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let c = client_of(src, &scanned(None));
        assert_eq!(
            c.addr,
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "IPv4-mapped is IPv4"
        );
        assert_eq!(c.ecs_source, None);
        let ecs = Ecs {
            addr: "12.0.0.0".parse().unwrap(),
            source_prefix: 24,
        };
        assert_eq!(client_of(src, &scanned(Some(ecs))).ecs_source, Some(24));
        let zero = Ecs {
            addr: "0.0.0.0".parse().unwrap(),
            source_prefix: 0,
        };
        assert_eq!(client_of(src, &scanned(Some(zero))).ecs_source, None);
    }

    #[test]
    fn udp_limit_is_the_smaller_size() {
        let mut none = scanned(None);
        none.edns = None;
        assert_eq!(udp_limit(&none, 1232), 512);
        assert_eq!(udp_limit(&scanned(None), 1232), 1232);
        let mut small = scanned(None);
        small.edns = small.edns.map(|e| Edns { payload: 700, ..e });
        assert_eq!(udp_limit(&small, 1232), 700);
    }
}
