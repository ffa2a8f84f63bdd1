//! Hostname endpoints (`target`): the service answers a CNAME to the endpoint its policy
//! picks, followed into our zones; health, ECS scope and `on_all_down` as for addresses; and
//! what `check` refuses.
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::routing::query::Reason;
use crate::routing::table::{Address, ProbeAddr};
use crate::routing::test_support::{
    GEOIP, answer_name, compile, ecs, load, load_err, region_name, run, src, with_down,
};

/// Three regions by distance; `example.com.` holds the service and an in-zone load
/// balancer with two addresses, `example.org.` another of ours; `example.net.` is not ours.
fn config(services: &str) -> String {
    format!(
        r#"{GEOIP}
[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }}
records = [
  {{ name = "lb-eu", type = "A", data = "198.51.100.7" }},
  {{ name = "lb-eu", type = "A", data = "198.51.100.8" }},
  {{ name = "lb-eu", type = "AAAA", data = "2001:db8::7" }},
  {{ name = "alias", type = "CNAME", data = "www" }},
]

[[zones]]
origin = "example.org."
ns = ["ns1.example.org."]
soa = {{ mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }}
records = [{{ name = "lb-ap", type = "A", data = "203.0.113.7" }}]

[[regions]]
name = "us-east"
location = {{ lat = 39.0, lon = -77.5 }}

[[regions]]
name = "eu-west"
location = {{ lat = 50.1, lon = 8.7 }}

[[regions]]
name = "ap-southeast"
location = {{ lat = 1.35, lon = 103.8 }}

[checks.web]
kind = "http"

{services}"#
    )
}

const GEO: &str = r#"
[[services]]
name = "www.example.com."
check = "web"
endpoints = [
  { region = "us-east", target = "lb-us-1.example.net." },
  { region = "eu-west", target = "lb-eu.example.com." },
  { region = "ap-southeast", target = "lb-ap.example.org" },
]
"#;

/// The answer section as `(owner, type, data)` text.
fn records(a: &crate::routing::answer::Answer<'_>) -> Vec<(String, RecordType, String)> {
    a.answers
        .iter()
        .map(|r| (r.name.to_string(), r.record_type(), r.data.to_string()))
        .collect()
}

fn cname(target: &str) -> (String, RecordType, String) {
    ("www.example.com.".into(), RecordType::CNAME, target.into())
}

#[test]
fn a_and_aaaa_get_a_cname_to_the_chosen_region_s_target() {
    let t = compile(&config(GEO));
    let us = ecs("11.0.130.0", 24);
    for qtype in [RecordType::A, RecordType::AAAA] {
        let a = answer_name(&t, "www.example.com.", qtype, &us);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.authoritative);
        // Out of our zones: the CNAME alone; the resolver follows it.
        assert_eq!(records(&a), [cname("lb-us-1.example.net.")], "{qtype}");
        assert!(a.authority.is_empty(), "{qtype}");
        assert_eq!(a.answers[0].ttl, 30);
        // The scope is the GeoIP network, as for addresses.
        assert_eq!(a.ecs_scope(), 20, "{qtype}");
    }
}

#[test]
fn a_target_in_our_zones_is_followed_to_its_records() {
    let t = compile(&config(GEO));
    let de = ecs("12.0.0.0", 24);
    let a = answer_name(&t, "www.example.com.", RecordType::A, &de);
    assert_eq!(
        records(&a),
        [
            cname("lb-eu.example.com."),
            (
                "lb-eu.example.com.".into(),
                RecordType::A,
                "198.51.100.7".into()
            ),
            (
                "lb-eu.example.com.".into(),
                RecordType::A,
                "198.51.100.8".into()
            ),
        ]
    );
    let a = answer_name(&t, "www.example.com.", RecordType::AAAA, &de);
    assert_eq!(records(&a)[1].2, "2001:db8::7");
    assert_eq!(a.ecs_scope(), 16);

    // In another of our zones too.
    let jp = ecs("13.0.0.0", 24);
    let a = answer_name(&t, "www.example.com.", RecordType::A, &jp);
    assert_eq!(
        records(&a),
        [
            cname("lb-ap.example.org."),
            (
                "lb-ap.example.org.".into(),
                RecordType::A,
                "203.0.113.7".into()
            ),
        ]
    );
    // No AAAA there: NODATA after the CNAME, with that zone's SOA.
    let a = answer_name(&t, "www.example.com.", RecordType::AAAA, &jp);
    assert_eq!(records(&a).len(), 1);
    assert_eq!(a.authority.len(), 1);
    assert_eq!(a.authority[0].name.to_string(), "example.org.");

    // A target in a zone of ours below the service's zone: answered from that zone.
    let text = config(&GEO.replace("lb-ap.example.org", "lb.sub.example.com.")).replacen(
        "[[regions]]",
        "[[zones]]\norigin = \"sub.example.com.\"\nns = [\"ns1.example.com.\"]\n\
         soa = { mname = \"ns1.example.com.\", rname = \"h\", serial = 1, minimum = 60 }\n\
         records = [{ name = \"lb\", type = \"A\", data = \"203.0.113.9\" }]\n\n[[regions]]",
        1,
    );
    let t = compile(&text);
    let a = answer_name(&t, "www.example.com.", RecordType::A, &jp);
    assert_eq!(records(&a)[1].2, "203.0.113.9");
    let a = answer_name(&t, "www.example.com.", RecordType::AAAA, &jp);
    assert_eq!(a.authority[0].name.to_string(), "sub.example.com.");
    let t = compile(&config(GEO));

    // A static CNAME into the service is followed through it.
    let a = answer_name(&t, "alias.example.com.", RecordType::A, &de);
    let got: Vec<RecordType> = records(&a).iter().map(|r| r.1).collect();
    assert_eq!(
        got,
        [
            RecordType::CNAME,
            RecordType::CNAME,
            RecordType::A,
            RecordType::A
        ]
    );
    assert_eq!(a.ecs_scope(), 16, "the answer depends on the decision");
}

#[test]
fn cname_and_any_questions_get_the_cname_alone_other_types_follow_it() {
    let t = compile(&config(GEO));
    let de = ecs("12.0.0.0", 24);
    for qtype in [RecordType::CNAME, RecordType::ANY] {
        let a = answer_name(&t, "www.example.com.", qtype, &de);
        assert_eq!(records(&a), [cname("lb-eu.example.com.")], "{qtype}");
    }
    // MX: the alias, then the target's (missing) MX: NODATA with the SOA.
    let a = answer_name(&t, "www.example.com.", RecordType::MX, &de);
    assert_eq!(records(&a), [cname("lb-eu.example.com.")]);
    assert_eq!(a.authority.len(), 1);
}

#[test]
fn a_target_down_moves_the_answer_to_the_next_region_s_target() {
    let t = with_down(&compile(&config(GEO)), &["lb-us-1.example.net."]);
    let us = src("11.0.0.1");
    let d = run(&t, "www.example.com.", us);
    assert_eq!(d.reason, Reason::Failover);
    assert_eq!(region_name(&t, &d).as_deref(), Some("eu-west"));
    let a = answer_name(&t, "www.example.com.", RecordType::A, &us);
    assert_eq!(records(&a)[0], cname("lb-eu.example.com."));
}

#[test]
fn probes_resolve_the_target_unless_a_check_address_is_given() {
    let c = load(&config(&GEO.replace(
        r#"target = "lb-eu.example.com." }"#,
        r#"target = "lb-eu.example.com.", port = 8443, check_address = "10.0.0.7" }"#,
    )))
    .unwrap();
    let keys: Vec<&str> = c.targets.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "web@lb-us-1.example.net.:80",
            "web@10.0.0.7:8443",
            "web@lb-ap.example.org.:80"
        ]
    );
    assert!(matches!(c.targets[0].addr, ProbeAddr::Host(_, 80)));
    assert!(matches!(c.targets[1].addr, ProbeAddr::Ip(_)));
    assert!(c.services[0].alias);
    assert!(matches!(c.endpoints[0].address, Address::Host(_)));
}

#[test]
fn weighted_and_failover_pick_one_target_among_hostnames() {
    let weighted = r#"
[[services]]
name = "www.example.com."
policy = "weighted"
endpoints = [
  { region = "us-east", target = "a.example.net.", weight = 1 },
  { region = "us-east", target = "b.example.net.", weight = 1 },
]
"#;
    let t = compile(&config(weighted));
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..64 {
        let client = ecs(&format!("20.1.{i}.0"), 24);
        let a = answer_name(&t, "www.example.com.", RecordType::A, &client);
        assert_eq!(a.answers.len(), 1, "one target per answer");
        seen.insert(records(&a)[0].2.clone());
        assert_eq!(a.ecs_scope(), 24);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["a.example.net.", "b.example.net."]
    );

    let failover = r#"
[[services]]
name = "www.example.com."
policy = "failover"
regions = ["eu-west", "us-east"]
check = "web"
endpoints = [
  { region = "us-east", target = "lb-us-1.example.net." },
  { region = "eu-west", target = "lb-eu-1.example.net." },
]
"#;
    let t = compile(&config(failover));
    let a = answer_name(&t, "www.example.com.", RecordType::A, &src("11.0.0.1"));
    assert_eq!(records(&a), [cname("lb-eu-1.example.net.")]);
    assert_eq!(a.ecs_scope(), 0);
    let t = with_down(&t, &["lb-eu-1.example.net."]);
    let a = answer_name(&t, "www.example.com.", RecordType::AAAA, &src("11.0.0.1"));
    assert_eq!(records(&a), [cname("lb-us-1.example.net.")]);
}

#[test]
fn all_down_servfails_or_answers_the_fallback_addresses() {
    let all = [
        "lb-us-1.example.net.",
        "lb-eu.example.com.",
        "lb-ap.example.org.",
    ];
    let us = src("11.0.0.1");
    let t = with_down(&compile(&config(GEO)), &all);
    // fail-open: the client's first region's target, as if all were up.
    let a = answer_name(&t, "www.example.com.", RecordType::A, &us);
    assert_eq!(records(&a), [cname("lb-us-1.example.net.")]);
    assert_eq!(a.decision.unwrap().reason, Reason::FailOpen);

    let servfail = GEO.replace(
        "check = \"web\"",
        "check = \"web\"\non_all_down = \"servfail\"",
    );
    let t = with_down(&compile(&config(&servfail)), &all);
    let a = answer_name(&t, "www.example.com.", RecordType::A, &us);
    assert_eq!(a.rcode, ResponseCode::ServFail);
    assert!(a.answers.is_empty());

    let fallback = GEO.replace(
        "check = \"web\"",
        "check = \"web\"\non_all_down = \"fallback\"\nfallback = [\"192.0.2.99\"]",
    );
    let t = with_down(&compile(&config(&fallback)), &all);
    let a = answer_name(&t, "www.example.com.", RecordType::A, &us);
    assert_eq!(
        records(&a),
        [(
            "www.example.com.".into(),
            RecordType::A,
            "192.0.2.99".into()
        )]
    );
    // No IPv6 fallback: NODATA.
    let a = answer_name(&t, "www.example.com.", RecordType::AAAA, &us);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority.len(), 1);
}

// ---- what `check` refuses ----

fn service(endpoints: &str, extra: &str) -> String {
    config(&format!(
        "[[services]]\nname = \"www.example.com.\"\n{extra}\nendpoints = [\n{endpoints}\n]\n"
    ))
}

fn refused(text: &str, fragment: &str) {
    let errors = load_err(text);
    assert!(errors.contains(fragment), "want {fragment:?} in:\n{errors}");
}

#[test]
fn check_refuses_mixing_addresses_and_hostnames() {
    refused(
        &service(
            r#"{ region = "us-east", address = "192.0.2.1" },
               { region = "eu-west", target = "lb.example.net." },"#,
            "",
        ),
        "all addresses or all hostnames",
    );
    refused(
        &service(
            r#"{ region = "us-east", address = "192.0.2.1", target = "lb.example.net." },"#,
            "",
        ),
        "`address` or `target`, not both",
    );
    refused(
        &service(r#"{ region = "us-east" },"#, ""),
        "needs `address` (an IP address) or `target` (a hostname)",
    );
    refused(
        &service(
            r#"{ region = "us-east", target = "a.example.net." },
               { region = "us-east", target = "b.example.net." },"#,
            "answers = 2",
        ),
        "`answers` must be 1",
    );
}

#[test]
fn check_refuses_bad_target_names() {
    for (target, fragment) in [
        ("192.0.2.1", "is an IP address: give it as `address`"),
        ("bad name.example.net.", "is not a valid name"),
        ("a..example.net.", "is not a valid name"),
        ("*.example.net.", "is a wildcard"),
        (".", "not the root"),
    ] {
        refused(
            &service(
                &format!("{{ region = \"us-east\", target = \"{target}\" }},"),
                "",
            ),
            fragment,
        );
    }
}

#[test]
fn check_refuses_a_target_that_leads_back_to_the_service() {
    // Its own name.
    refused(
        &service(r#"{ region = "us-east", target = "WWW.example.com" },"#, ""),
        "leads back to service www.example.com.: CNAME loop www.example.com. -> WWW.example.com.",
    );
    // Through a static CNAME (`alias` CNAME `www`).
    refused(
        &service(
            r#"{ region = "us-east", target = "alias.example.com." },"#,
            "",
        ),
        "CNAME loop www.example.com. -> alias.example.com. -> www.example.com.",
    );
    // Through another hostname service.
    let text = service(
        r#"{ region = "us-east", target = "api.example.com." },"#,
        "",
    ) + r#"
[[services]]
name = "api.example.com."
endpoints = [
  { region = "us-east", target = "lb.example.net." },
  { region = "eu-west", target = "www.example.com." },
]
"#;
    refused(
        &text,
        "CNAME loop www.example.com. -> api.example.com. -> www.example.com.",
    );
    // A chain that ends is fine.
    let text = service(
        r#"{ region = "us-east", target = "api.example.com." },"#,
        "",
    ) + r#"
[[services]]
name = "api.example.com."
endpoints = [{ region = "us-east", target = "lb.example.net." }]
"#;
    load(&text).unwrap();
}

#[test]
fn check_refuses_other_data_beside_a_hostname_service_and_one_at_the_apex() {
    let text = config(GEO).replace(
        r#"{ name = "alias", type = "CNAME", data = "www" },"#,
        r#"{ name = "www", type = "TXT", data = "hello" },"#,
    );
    refused(&text, "TXT records beside a hostname service");
    let text = config(&GEO.replace("www.example.com.", "example.org."));
    refused(&text, "cannot be at the zone apex");
}

#[test]
fn health_resolver_is_an_ip_and_port() {
    let text = config(GEO) + "\n[health]\nresolver = \"127.0.0.1\"\n";
    refused(
        &text,
        "[health] resolver \"127.0.0.1\" is not an IP:port address",
    );
    let text = config(GEO) + "\n[health]\nresolver = \"[::1]:5300\"\n";
    let c = load(&text).unwrap();
    assert_eq!(
        c.settings.health_resolver,
        Some("[::1]:5300".parse().unwrap())
    );
}
