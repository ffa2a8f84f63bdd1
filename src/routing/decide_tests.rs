//! `decide()` and `answer()` on tables compiled from config text with the City fixture
//! (geoip-fixtures/README.md lists the networks the clients below fall in).
use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};

use crate::routing::RoutingTable;
use crate::routing::query::{Client, Reason};
use crate::routing::table::Family;
use crate::routing::test_support::{
    GEOIP, ZONE, addresses, answer_name, candidates, candidates_family, compile, ecs, ip, order,
    record, region_name, run, run_family, src,
};
use crate::routing::trace::{Outcome, Rank, Step};

/// Five regions, one of each kind: `us` lists the US, `na` and `eu` list continents, `ap`
/// has only a location and `nowhere` has nothing. The default order is the reverse of how
/// a US client ranks them, so a test can tell the tiers from the tie-break.
const CONFIG: &str = r#"
[routing]
default_order = ["nowhere", "ap", "eu", "na", "us"]

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60, ttl = 300 }
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "@", type = "MX", data = "10 mail" },
  { name = "@", type = "MX", data = "20 mail" },
  { name = "mail", type = "A", data = "192.0.2.25" },
  { name = "mail", type = "AAAA", data = "2001:db8::25" },
  { name = "_sip._udp", type = "SRV", data = "0 5 5060 ns1" },
  { name = "_sip._udp", type = "SRV", data = "0 5 5060 elsewhere.org." },
  { name = "@", type = "TXT", data = "v=spf1 -all" },
  { name = "a.b", type = "TXT", data = "deep" },
  { name = "shop", type = "CNAME", data = "geo" },
  { name = "alias", type = "CNAME", data = "shop" },
  { name = "out", type = "CNAME", data = "elsewhere.org." },
  { name = "todel", type = "CNAME", data = "host.sub" },
  { name = "*.loop", type = "CNAME", data = "x.loop" },
  { name = "dangling", type = "CNAME", data = "nothing" },
  { name = "*.wild", type = "A", data = "192.0.2.77" },
  { name = "real.wild", type = "TXT", data = "exists" },
  { name = "a.ent.wild", type = "TXT", data = "below an empty non-terminal" },
  { name = "*.alias", type = "CNAME", data = "mail" },
  { name = "sub", type = "NS", data = "ns.sub" },
  { name = "ns.sub", type = "A", data = "192.0.2.54" },
]

[[regions]]
name = "us"
location = { lat = 39.0, lon = -77.5 }
countries = ["US"]

[[regions]]
name = "na"
location = { lat = 43.7, lon = -79.4 }
continents = ["NA"]

[[regions]]
name = "eu"
location = { lat = 50.1, lon = 8.7 }
continents = ["EU"]

[[regions]]
name = "ap"
location = { lat = 1.35, lon = 103.8 }

[[regions]]
name = "nowhere"

[[services]]
name = "geo.example.com."
ttl = 45
endpoints = [
  { region = "us", address = "192.0.2.1" },
  { region = "na", address = "192.0.2.2" },
  { region = "na", address = "2001:db8:a::2" },
  { region = "eu", address = "192.0.2.3" },
  { region = "eu", address = "2001:db8:a::3" },
  { region = "ap", address = "192.0.2.4" },
  { region = "nowhere", address = "192.0.2.5" },
]

[[services]]
name = "*.cdn.example.com."
endpoints = [
  { region = "us", address = "192.0.2.60" },
  { region = "eu", address = "192.0.2.61" },
]

[[services]]
name = "www.cdn.example.com."
endpoints = [{ region = "us", address = "192.0.2.62" }]

[[services]]
name = "multi.example.com."
answers = 2
endpoints = [
  { region = "us", address = "192.0.2.10" },
  { region = "us", address = "192.0.2.11" },
  { region = "us", address = "192.0.2.12" },
  { region = "eu", address = "192.0.2.20" },
  { region = "eu", address = "192.0.2.21" },
]

[[services]]
name = "v4only.example.com."
endpoints = [
  { region = "us", address = "192.0.2.30" },
  { region = "eu", address = "192.0.2.31" },
]

[[services]]
name = "single.example.com."
endpoints = [
  { region = "us", address = "192.0.2.40" },
  { region = "us", address = "2001:db8:b::40" },
]

[[services]]
name = "pool.example.com."
endpoints = [
  { region = "us", address = "192.0.2.50" },
  { region = "us", address = "192.0.2.51" },
]
"#;

fn table() -> RoutingTable {
    compile(&format!("{GEOIP}{CONFIG}"))
}

// ---- decide() ----

#[test]
fn country_beats_continent_beats_distance_beats_default_order() {
    let t = table();
    // 11.0.130.7: US, North America, near Washington.
    let cands = candidates(&t, "geo.example.com.", src("11.0.130.7"));
    assert_eq!(order(&cands), ["us", "na", "eu", "ap", "nowhere"]);
    assert_eq!(cands[0].1, Rank::Country);
    assert_eq!(cands[1].1, Rank::Continent);
    let (Rank::Distance { km: eu }, Rank::Distance { km: ap }) = (cands[2].1, cands[3].1) else {
        panic!("eu and ap rank by distance: {cands:?}");
    };
    assert!(
        (6_000..7_000).contains(&eu) && (15_000..16_500).contains(&ap),
        "{eu} {ap}"
    );
    assert_eq!(cands[4].1, Rank::DefaultOrder { position: 0 });
    let d = run(&t, "geo.example.com.", src("11.0.130.7"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("us"));
    assert_eq!(addresses(&t, &d), [ip("192.0.2.1")]);
    assert_eq!(d.ttl, 45);
    assert_eq!(d.reason, Reason::Geo);

    // Canada is not in `us`'s countries: its continent wins over the nearer `us`.
    let d = run(&t, "geo.example.com.", src("11.2.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("na"));
    // Germany: continent.
    let d = run(&t, "geo.example.com.", src("12.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu"));
    // Japan: no region lists Asia, so the nearest region.
    let cands = candidates(&t, "geo.example.com.", src("13.0.0.1"));
    assert_eq!(order(&cands), ["ap", "eu", "na", "us", "nowhere"]);
    assert!(
        cands[..4]
            .iter()
            .all(|c| matches!(c.1, Rank::Distance { .. }))
    );
    assert_eq!(cands[0].2, Outcome::Chosen);
}

#[test]
fn ties_are_broken_by_default_order() {
    let t = compile(
        &[
            GEOIP,
            ZONE,
            r#"
[routing]
default_order = ["c", "a", "b"]

[[regions]]
name = "a"
location = { lat = 10.0, lon = 10.0 }
countries = ["US"]
continents = ["EU"]

[[regions]]
name = "b"
location = { lat = 10.0, lon = 10.0 }
countries = ["US"]
continents = ["EU"]

[[regions]]
name = "c"
location = { lat = 10.0, lon = 10.0 }
countries = ["US"]
continents = ["EU"]

[[services]]
name = "www.example.com."
endpoints = [
  { region = "a", address = "192.0.2.1" },
  { region = "b", address = "192.0.2.2" },
  { region = "c", address = "192.0.2.3" },
]
"#,
        ]
        .concat(),
    );
    // The same country (US), the same continent (DE is EU) and the same distance (JP).
    for client in ["11.0.130.7", "12.0.0.1", "13.0.0.1"] {
        let cands = candidates(&t, "www.example.com.", src(client));
        assert_eq!(order(&cands), ["c", "a", "b"], "{client}: {cands:?}");
        let d = run(&t, "www.example.com.", src(client));
        assert_eq!(addresses(&t, &d), [ip("192.0.2.3")], "{client}");
    }
}

#[test]
fn client_not_in_database_follows_default_order() {
    let t = table();
    let cands = candidates(&t, "geo.example.com.", src("127.0.0.1"));
    assert_eq!(order(&cands), ["nowhere", "ap", "eu", "na", "us"]);
    let ranks: Vec<Rank> = cands.iter().map(|c| c.1).collect();
    assert_eq!(
        ranks,
        (0..5)
            .map(|position| Rank::DefaultOrder { position })
            .collect::<Vec<_>>()
    );
    let d = run(&t, "geo.example.com.", src("127.0.0.1"));
    assert_eq!(region_name(&t, &d).as_deref(), Some("nowhere"));
    assert_eq!(d.reason, Reason::NoGeo);
    assert_eq!(addresses(&t, &d), [ip("192.0.2.5")]);
}

#[test]
fn client_without_location_goes_by_continent() {
    let t = table();
    // 18.0.0.0/16 is Mexico (North America) with no location: `na` by continent, then the
    // rest cannot be ranked by distance and fall back to the default order.
    let cands = candidates(&t, "geo.example.com.", src("18.0.0.1"));
    assert_eq!(order(&cands), ["na", "nowhere", "ap", "eu", "us"]);
    assert_eq!(cands[0].1, Rank::Continent);
    assert_eq!(cands[0].2, Outcome::Chosen);
    assert!(
        cands[1..]
            .iter()
            .all(|c| matches!(c.1, Rank::DefaultOrder { .. }))
    );
}

#[test]
fn aaaa_skips_regions_without_ipv6() {
    let t = table();
    let client = ecs("2001:db8:1::", 48); // US
    let cands = candidates_family(&t, "geo.example.com.", Family::V6, client);
    assert_eq!(
        cands,
        [
            (
                "us".to_string(),
                Rank::Country,
                Outcome::NoEndpointsOfFamily
            ),
            ("na".to_string(), Rank::Continent, Outcome::Chosen),
            ("eu".to_string(), cands[2].1, Outcome::NotNeeded),
            // Regions after the chosen one still say why they could not have answered.
            ("ap".to_string(), cands[3].1, Outcome::NoEndpointsOfFamily),
            (
                "nowhere".to_string(),
                Rank::DefaultOrder { position: 0 },
                Outcome::NoEndpointsOfFamily
            ),
        ]
    );
    let d = run_family(&t, "geo.example.com.", Family::V6, client);
    assert_eq!(region_name(&t, &d).as_deref(), Some("na"));
    assert_eq!(addresses(&t, &d), [ip("2001:db8:a::2")]);
}

#[test]
fn no_endpoint_of_the_family_gives_an_empty_decision() {
    let t = table();
    let d = run_family(&t, "v4only.example.com.", Family::V6, src("11.0.130.7"));
    assert_eq!(d.region, None);
    assert_eq!(d.reason, Reason::NoEndpoints);
    assert!(d.endpoints.as_slice().is_empty());
    let cands = candidates_family(&t, "v4only.example.com.", Family::V6, src("11.0.130.7"));
    assert_eq!(cands.len(), 2);
    assert!(
        cands.iter().all(|c| c.2 == Outcome::NoEndpointsOfFamily),
        "{cands:?}"
    );
}

#[test]
fn answers_two_gives_two_distinct_endpoints_of_the_chosen_region() {
    let t = table();
    let us: HashSet<IpAddr> = ["192.0.2.10", "192.0.2.11", "192.0.2.12"].map(ip).into();
    let eu: HashSet<IpAddr> = ["192.0.2.20", "192.0.2.21"].map(ip).into();
    for (client, region, pool) in [
        (src("11.0.130.7"), "us", &us),
        (src("11.1.0.1"), "us", &us),
        (ecs("11.0.0.0", 24), "us", &us),
        (src("12.0.0.1"), "eu", &eu),
        (src("16.0.0.1"), "eu", &eu),
    ] {
        let d = run(&t, "multi.example.com.", client);
        assert_eq!(region_name(&t, &d).as_deref(), Some(region), "{client:?}");
        let got = addresses(&t, &d);
        assert_eq!(got.len(), 2, "{client:?}: {got:?}");
        assert_ne!(got[0], got[1], "{client:?}: {got:?}");
        assert!(got.iter().all(|a| pool.contains(a)), "{client:?}: {got:?}");
        assert!(
            d.endpoints
                .as_slice()
                .iter()
                .all(|id| d.region == Some(t.compiled.endpoint(*id).region))
        );
    }
}

#[test]
fn rotation_is_stable_per_network_and_varies_across_networks() {
    let t = table();
    let picks = |c: Client| addresses(&t, &run(&t, "multi.example.com.", c));
    // Same GeoIP network (11.0.128.0/20), with and without ECS: the same answer.
    let first = picks(src("11.0.130.7"));
    for c in [
        src("11.0.130.7"),
        src("11.0.140.200"),
        src("11.0.128.1"),
        ecs("11.0.131.0", 24),
        ecs("11.0.128.0", 20),
    ] {
        assert_eq!(picks(c), first, "{c:?}");
    }
    // Different US networks spread over the region's endpoints.
    let clients = [
        "11.0.130.7",
        "11.0.0.1",
        "11.0.64.1",
        "11.0.32.1",
        "11.1.0.1",
        "2001:db8:1::1",
    ];
    let answers: HashSet<Vec<IpAddr>> = clients.iter().map(|c| picks(src(c))).collect();
    assert!(answers.len() > 1, "every network got {answers:?}");
}

#[test]
fn scope_is_the_geoip_network_even_past_the_ecs_source() {
    let t = table();
    let scope = |svc: &str, family: Family, c: Client| run_family(&t, svc, family, c).scope;
    let geo = "geo.example.com.";
    // 11.0.130.x lies in the fixture's 11.0.128.0/20.
    assert_eq!(scope(geo, Family::V4, ecs("11.0.130.0", 24)), 20);
    // A /18 source is not specific enough for a /20 network: the scope says so (RFC 7871
    // 7.2.1) rather than let the resolver reuse the answer across the /18.
    assert_eq!(scope(geo, Family::V4, ecs("11.0.128.0", 18)), 20);
    assert_eq!(scope(geo, Family::V4, src("11.0.130.7")), 20);
    assert_eq!(scope(geo, Family::V4, ecs("12.0.0.0", 24)), 16);
    assert_eq!(scope(geo, Family::V4, ecs("12.0.0.0", 8)), 16);
    assert_eq!(scope(geo, Family::V6, ecs("2001:db8:3::", 56)), 48);
    assert_eq!(scope(geo, Family::V6, ecs("2001:db8::", 40)), 48);
    // One region whose endpoints all fit in `answers`: nobody gets a different answer.
    for c in [
        ecs("11.0.130.0", 24),
        src("12.0.0.1"),
        ecs("2001:db8:3::", 56),
    ] {
        assert_eq!(scope("single.example.com.", Family::V4, c), 0, "{c:?}");
        assert_eq!(scope("single.example.com.", Family::V6, c), 0, "{c:?}");
    }
    // One region but more endpoints than `answers`: the rotation depends on the network.
    assert_eq!(
        scope("pool.example.com.", Family::V4, ecs("11.0.130.0", 24)),
        20
    );
}

#[test]
fn recorder_lists_every_step_in_order() {
    let t = table();
    let client = ecs("11.0.130.0", 24);
    let (d, rec) = record(&t, "geo.example.com.", Family::V4, client);
    assert_eq!(rec.steps.len(), 1 + 5 + 1, "{:?}", rec.steps);
    match &rec.steps[0] {
        Step::Geo { client: c, geo } => {
            assert_eq!(*c, client);
            assert!(geo.found);
            assert_eq!(geo.country.map(|c| c.to_string()).as_deref(), Some("US"));
            assert_eq!(geo.network_prefix, 20);
        }
        other => panic!("first step {other:?}"),
    }
    let steps: Vec<(String, Outcome)> = rec.steps[1..6]
        .iter()
        .map(|s| match s {
            Step::Candidate {
                region, outcome, ..
            } => (t.compiled.region(*region).name.clone(), *outcome),
            other => panic!("candidate expected, got {other:?}"),
        })
        .collect();
    let want: Vec<(String, Outcome)> = [
        ("us", Outcome::Chosen),
        ("na", Outcome::NotNeeded),
        ("eu", Outcome::NotNeeded),
        ("ap", Outcome::NotNeeded),
        ("nowhere", Outcome::NotNeeded),
    ]
    .map(|(r, o)| (r.to_string(), o))
    .into();
    assert_eq!(steps, want);
    match &rec.steps[6] {
        Step::Decided(got) => assert_eq!(*got, d),
        other => panic!("last step {other:?}"),
    }
}

// ---- answer() ----

#[test]
fn nxdomain_nodata_and_empty_non_terminal() {
    let t = table();
    let client = src("11.0.130.7");
    let zone = &t.compiled.zones[0];

    let a = answer_name(&t, "nope.example.com.", RecordType::A, &client);
    assert_eq!(a.rcode, ResponseCode::NXDomain);
    assert!(a.authoritative);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority, [&zone.negative_soa]);
    assert_eq!(a.authority[0].ttl, 60, "min(SOA TTL 300, minimum 60)");

    // Below a name that exists is still NXDOMAIN.
    let a = answer_name(&t, "x.ns1.example.com.", RecordType::A, &client);
    assert_eq!(a.rcode, ResponseCode::NXDomain);

    // NODATA: the name exists, the type does not.
    let a = answer_name(&t, "ns1.example.com.", RecordType::MX, &client);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.authoritative);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority, [&zone.negative_soa]);

    // b.example.com exists only because a.b.example.com does: NODATA, not NXDOMAIN.
    for qtype in [RecordType::A, RecordType::TXT] {
        let a = answer_name(&t, "b.example.com.", qtype, &client);
        assert_eq!(a.rcode, ResponseCode::NoError, "{qtype}");
        assert!(a.authoritative);
        assert!(a.answers.is_empty());
        assert_eq!(a.authority, [&zone.negative_soa]);
    }

    // A static answer carries no routing decision and scope 0.
    let a = answer_name(&t, "a.b.example.com.", RecordType::TXT, &client);
    assert_eq!(a.answers.len(), 1);
    assert!(a.authority.is_empty());
    assert_eq!(a.decision, None);
    assert_eq!(a.ecs_scope(), 0);
}

#[test]
fn traffic_managed_name_without_the_family_is_nodata() {
    let t = table();
    let a = answer_name(
        &t,
        "v4only.example.com.",
        RecordType::AAAA,
        &src("11.0.130.7"),
    );
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority, [&t.compiled.zones[0].negative_soa]);
    // Other types at a traffic-managed name: NODATA too.
    let a = answer_name(&t, "geo.example.com.", RecordType::MX, &src("11.0.130.7"));
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority, [&t.compiled.zones[0].negative_soa]);
}

#[test]
fn cname_chain_is_followed_inside_the_zone() {
    let t = table();
    let client = ecs("12.0.0.0", 24); // Germany: eu
    let a = answer_name(&t, "alias.example.com.", RecordType::A, &client);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.authoritative);
    let got: Vec<(String, RecordType, String)> = a
        .answers
        .iter()
        .map(|r| (r.name.to_ascii(), r.record_type(), r.data.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "alias.example.com.".to_string(),
                RecordType::CNAME,
                "shop.example.com.".to_string()
            ),
            (
                "shop.example.com.".to_string(),
                RecordType::CNAME,
                "geo.example.com.".to_string()
            ),
            (
                "geo.example.com.".to_string(),
                RecordType::A,
                "192.0.2.3".to_string()
            ),
        ]
    );
    let d = a.decision.expect("the chain reached a service");
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu"));
    assert_eq!(a.ecs_scope(), 16);

    // A CNAME out of our zones is answered alone; the resolver chases it.
    let a = answer_name(&t, "out.example.com.", RecordType::A, &client);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
    // Asking for the CNAME itself does not follow it.
    let a = answer_name(&t, "shop.example.com.", RecordType::CNAME, &client);
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.decision, None);
}

#[test]
fn a_cname_into_a_delegation_is_authoritative_data_before_the_referral() {
    let t = table();
    let a = answer_name(&t, "todel.example.com.", RecordType::A, &src("11.0.130.7"));
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.authoritative, "the CNAME is our own data: AA set");
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
    let ns: Vec<RecordType> = a.authority.iter().map(|r| r.record_type()).collect();
    assert_eq!(ns, [RecordType::NS], "the referral follows");
}

#[test]
fn any_at_an_alias_is_the_alias_alone() {
    let t = table();
    let client = src("11.0.130.7");
    for name in ["shop.example.com.", "dangling.example.com."] {
        let a = answer_name(&t, name, RecordType::ANY, &client);
        assert_eq!(a.rcode, ResponseCode::NoError, "{name}: the alias exists");
        let got: Vec<RecordType> = a.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(got, [RecordType::CNAME], "{name}: not chased");
        assert_eq!(a.decision, None, "{name}");
    }
}

#[test]
fn a_cname_loop_answers_each_record_once() {
    // `meridian check` refuses static loops; a wildcard can still make one at query time.
    let t = table();
    let a = answer_name(&t, "a.loop.example.com.", RecordType::A, &src("11.0.130.7"));
    assert_eq!(a.rcode, ResponseCode::NoError);
    let got: Vec<String> = sent(&a)
        .iter()
        .map(|r| format!("{} {}", r.0, r.2))
        .collect();
    assert_eq!(
        got,
        [
            "a.loop.example.com. x.loop.example.com.",
            "x.loop.example.com. x.loop.example.com."
        ],
        "each link once"
    );
}

#[test]
fn mx_and_srv_answers_carry_their_in_zone_targets_addresses() {
    let t = table();
    let client = src("11.0.130.7");
    let a = answer_name(&t, "example.com.", RecordType::MX, &client);
    assert_eq!(a.answers.len(), 2);
    let extra: Vec<String> = a.extra.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(
        extra,
        ["192.0.2.25", "2001:db8::25"],
        "each target once, A then AAAA"
    );
    assert!(a.additional.is_empty(), "no glue");
    // SRV: the in-zone target's address; the out-of-zone one has none to add.
    let a = answer_name(&t, "_sip._udp.example.com.", RecordType::SRV, &client);
    let extra: Vec<String> = a.extra.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(extra, ["192.0.2.53"]);
    // Other types add nothing.
    let a = answer_name(&t, "example.com.", RecordType::TXT, &client);
    assert!(a.extra.is_empty());
}

/// What an answer says, as (owner, type, data) with the owners it goes out under.
fn sent(a: &crate::routing::answer::Answer<'_>) -> Vec<(String, RecordType, String)> {
    let owned = a.renamed();
    let records: Vec<&hickory_proto::rr::Record> = match &owned {
        Some(v) => v.iter().collect(),
        None => a.answers.clone(),
    };
    records
        .iter()
        .map(|r| (r.name.to_ascii(), r.record_type(), r.data.to_string()))
        .collect()
}

#[test]
fn wildcards_synthesize_for_names_that_do_not_exist() {
    let t = table();
    let client = src("11.0.130.7");
    let a = |name: &str, qtype| answer_name(&t, name, qtype, &client);
    let row = |owner: &str, rtype, data: &str| (owner.to_string(), rtype, data.to_string());
    // A name that does not exist, one and two labels below the wildcard's parent.
    for name in ["foo.wild.example.com.", "deep.foo.wild.example.com."] {
        let r = a(name, RecordType::A);
        assert_eq!(r.rcode, ResponseCode::NoError, "{name}");
        assert!(r.authoritative, "{name}");
        assert_eq!(sent(&r), [row(name, RecordType::A, "192.0.2.77")], "{name}");
        // NODATA from the wildcard for a type it lacks.
        let r = a(name, RecordType::TXT);
        assert_eq!(r.rcode, ResponseCode::NoError, "{name}");
        assert!(r.answers.is_empty() && r.authority.len() == 1, "{name}");
    }
    // The wildcard asked for by its own name is plain data.
    let r = a("*.wild.example.com.", RecordType::A);
    assert_eq!(r.synthesized, []);
    assert_eq!(
        sent(&r),
        [row("*.wild.example.com.", RecordType::A, "192.0.2.77")]
    );
    // No synthesis at an existing name, below one, or below an empty non-terminal.
    let r = a("real.wild.example.com.", RecordType::A);
    assert_eq!(
        (r.rcode, r.answers.len()),
        (ResponseCode::NoError, 0),
        "NODATA"
    );
    for name in ["x.real.wild.example.com.", "x.ent.wild.example.com."] {
        assert_eq!(
            a(name, RecordType::A).rcode,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    assert_eq!(
        a("ent.wild.example.com.", RecordType::A).rcode,
        ResponseCode::NoError
    );
    // A wildcard CNAME: renamed, then followed inside the zone.
    let r = a("x.alias.example.com.", RecordType::A);
    assert_eq!(
        sent(&r),
        [
            row(
                "x.alias.example.com.",
                RecordType::CNAME,
                "mail.example.com."
            ),
            row("mail.example.com.", RecordType::A, "192.0.2.25"),
        ]
    );
}

#[test]
fn a_wildcard_service_routes_every_name_below_it_and_an_exact_name_wins() {
    let t = table();
    let de = ecs("12.0.0.0", 24);
    let r = answer_name(&t, "tenant1.cdn.example.com.", RecordType::A, &de);
    let d = r.decision.expect("routed by the wildcard service");
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu"));
    assert_eq!(
        sent(&r),
        [(
            "tenant1.cdn.example.com.".to_string(),
            RecordType::A,
            "192.0.2.61".to_string()
        )]
    );
    let r = answer_name(&t, "www.cdn.example.com.", RecordType::A, &de);
    assert_eq!(sent(&r)[0].2, "192.0.2.62", "the exact service wins");
}

#[test]
fn names_outside_every_zone_are_refused() {
    let t = table();
    for name in ["www.example.org.", "com.", "."] {
        let a = answer_name(&t, name, RecordType::A, &src("11.0.130.7"));
        assert_eq!(a.rcode, ResponseCode::Refused, "{name}");
        assert!(!a.authoritative, "{name}");
        assert!(a.answers.is_empty() && a.authority.is_empty() && a.additional.is_empty());
        assert_eq!(a.zone, None);
    }
}

#[test]
fn delegation_gives_a_referral() {
    let t = table();
    for name in [
        "host.sub.example.com.",
        "sub.example.com.",
        "ns.sub.example.com.",
    ] {
        let a = answer_name(&t, name, RecordType::A, &src("11.0.130.7"));
        assert_eq!(a.rcode, ResponseCode::NoError, "{name}");
        assert!(!a.authoritative, "{name}: a referral is not authoritative");
        assert!(a.answers.is_empty(), "{name}");
        let ns: Vec<String> = a.authority.iter().map(|r| r.to_string()).collect();
        assert_eq!(a.authority.len(), 1, "{name}: {ns:?}");
        assert_eq!(
            a.authority[0].name,
            Name::from_ascii("sub.example.com.").expect("name")
        );
        match &a.authority[0].data {
            RData::NS(target) => assert_eq!(target.0.to_ascii(), "ns.sub.example.com."),
            other => panic!("{other:?}"),
        }
        let glue: Vec<String> = a.additional.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(glue, ["192.0.2.54"], "{name}");
    }
}

#[test]
fn any_returns_a_single_rrset() {
    let t = table();
    let client = src("11.0.130.7");
    // The apex holds SOA, NS, MX and TXT.
    let a = answer_name(&t, "example.com.", RecordType::ANY, &client);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(!a.answers.is_empty());
    let types: HashSet<RecordType> = a.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types.len(), 1, "one RRset, got {types:?}");
    // A traffic-managed name answers its routed addresses of one family.
    let a = answer_name(&t, "geo.example.com.", RecordType::ANY, &client);
    let types: HashSet<RecordType> = a.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, [RecordType::A].into());
}

#[test]
fn a_subdivision_ranks_above_the_country() {
    // The fixture places 11.0.0.0/16 and 11.0.128.0/20 in US-VA, 11.1.0.0/16 in US-CA.
    let text = format!(
        r#"{GEOIP}{ZONE}
[[regions]]
name = "virginia"
location = {{ lat = 1.35, lon = 103.8 }}
subdivisions = ["US-VA"]

[[regions]]
name = "us"
location = {{ lat = 39.0, lon = -77.5 }}
countries = ["US"]

[[services]]
name = "sub.example.com."
endpoints = [
  {{ region = "virginia", address = "192.0.2.91" }},
  {{ region = "us", address = "192.0.2.92" }},
]
residency = [{{ subdivisions = ["US-CA"], regions = ["us"] }}]
"#
    );
    let t = compile(&text);
    let svc = "sub.example.com.";
    // A Virginian goes to the region listing US-VA, however far away it is.
    let cands = candidates(&t, svc, src("11.0.130.7"));
    assert_eq!(order(&cands), ["virginia", "us"]);
    assert_eq!(cands[0].1, Rank::Subdivision);
    // A Californian: residency keeps them in `us`; the rest of the US by country.
    assert_eq!(
        region_name(&t, &run(&t, svc, src("11.1.0.1"))).as_deref(),
        Some("us")
    );
    let cands = candidates(&t, svc, src("11.1.0.1"));
    assert_eq!(
        cands.iter().find(|c| c.0 == "virginia").map(|c| c.2),
        Some(Outcome::Residency)
    );
}
