//! `load_str` end to end: a small valid config broken one way per test, each error pinned to
//! its `LINE:COL`, and the shapes a good config compiles to.
use std::path::{Path, PathBuf};

use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use super::{ConfigError, load_str};
use crate::geo::Schema;
use crate::geo::build::writer::{Value, Writer};
use crate::routing::Compiled;

const CITY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/geoip-fixtures/world-city.mmdb"
);
const COUNTRY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/geoip-fixtures/world-country.mmdb"
);
const FLAT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/geoip-fixtures/world-flat.mmdb"
);
const CONFIG_PATH: &str = "/some/dir/meridian.toml";

/// A small valid config. Tests replace one piece of it, so line numbers below stay put.
const BASE: &str = r#"# meridian unit-test config
[server]
dns_listen = ["127.0.0.1:0"]

[geoip]
database = "CITY_DB"

[routing]
default_order = ["us", "eu"]

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = { mname = "ns1", rname = "hostmaster", serial = 1, minimum = 60 }
ttl = 3600
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "@", type = "MX", data = "10 mail" },
]

[[regions]]
name = "us"
location = { lat = 39.0, lon = -77.5 }
countries = ["US"]
continents = ["NA"]

[[regions]]
name = "eu"
location = { lat = 50.1, lon = 8.7 }
continents = ["EU"]

[checks.web]
kind = "http"
interval = "5s"
timeout = "2s"

[[services]]
name = "www.example.com."
ttl = 30
policy = "geo"
answers = 1
check = "web"
endpoints = [
  { region = "us", address = "192.0.2.10" },
  { region = "eu", address = "198.51.100.10" },
]
"#;

fn base() -> String {
    BASE.replace("CITY_DB", CITY)
}

/// The base config with `from` (which must occur exactly once) replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    let text = base();
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replacen(from, to, 1)
}

fn load(text: &str) -> Result<Compiled, Vec<ConfigError>> {
    load_str(text, Path::new(CONFIG_PATH)).map_err(|e| e.0)
}

fn compiled(text: &str) -> Compiled {
    match load(text) {
        Ok(c) => c,
        Err(errors) => panic!("config should load, got:\n{}", render(&errors)),
    }
}

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the config fails with exactly these `(line, col, message fragment)` problems, in
/// this order, each naming the config file.
fn assert_errors(text: &str, want: &[(usize, usize, &str)]) {
    let errors = match load(text) {
        Ok(_) => panic!("config should fail with {want:?}"),
        Err(e) => e,
    };
    let got: Vec<(usize, usize)> = errors
        .iter()
        .map(|e| (e.line, e.col.unwrap_or(0)))
        .collect();
    let expected: Vec<(usize, usize)> = want.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        got,
        expected,
        "positions differ; errors:\n{}",
        render(&errors)
    );
    for (e, (_, _, fragment)) in errors.iter().zip(want) {
        assert!(
            e.message.contains(fragment),
            "{}:{:?}: message {:?} lacks {fragment:?}",
            e.line,
            e.col,
            e.message
        );
        assert_eq!(e.file, Path::new(CONFIG_PATH));
    }
}

fn assert_error(text: &str, line: usize, col: usize, fragment: &str) {
    assert_errors(text, &[(line, col, fragment)]);
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("test name")
}

/// A private directory under target/ for files a test writes.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("config-tests")
        .join(format!("{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn base_config_loads() {
    let c = compiled(&base());
    assert_eq!(c.zones.len(), 1);
    assert_eq!(c.regions.len(), 2);
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.endpoints.len(), 2);
}

// ---- errors, one per test ----

#[test]
fn bad_toml_syntax() {
    let text = edit(r#"kind = "http""#, r#"kind = "http"#);
    let errors = load(&text).expect_err("unterminated string");
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    assert_eq!(
        (errors[0].line, errors[0].col),
        (33, Some(13)),
        "{}",
        render(&errors)
    );
    assert!(
        errors[0].message.contains("invalid basic string"),
        "{}",
        errors[0].message
    );
}

#[test]
fn unknown_top_level_key() {
    let text = edit("# meridian unit-test config", r#"colour = "blue""#);
    assert_error(&text, 1, 1, "unknown field `colour`");
}

#[test]
fn unknown_key_in_a_record() {
    let text = edit(
        r#"{ name = "ns1", type = "A", data = "192.0.2.53" }"#,
        r#"{ name = "ns1", type = "A", data = "192.0.2.53", class = "IN" }"#,
    );
    assert_error(&text, 17, 52, "unknown field `class`");
}

#[test]
fn service_in_no_zone() {
    let text = edit(
        r#"name = "www.example.com.""#,
        r#"name = "www.example.org.""#,
    );
    assert_error(
        &text,
        38,
        8,
        "service www.example.org. is in no configured zone",
    );
}

#[test]
fn endpoint_names_undefined_region() {
    let text = edit(r#"region = "eu""#, r#"region = "mars""#);
    assert_error(&text, 45, 14, r#"endpoint names undefined region "mars""#);
}

#[test]
fn service_names_undefined_check() {
    let text = edit(r#"check = "web""#, r#"check = "nope""#);
    assert_error(&text, 42, 9, r#"service names undefined check "nope""#);
}

#[test]
fn endpoint_names_undefined_check() {
    let text = edit(
        r#"address = "192.0.2.10" }"#,
        r#"address = "192.0.2.10", check = "nope" }"#,
    );
    assert_error(&text, 44, 52, r#"endpoint names undefined check "nope""#);
}

#[test]
fn bad_endpoint_ip() {
    let text = edit(r#""198.51.100.10""#, r#""198.51.100.300""#);
    assert_error(&text, 45, 30, r#""198.51.100.300" is not an IP address"#);
}

#[test]
fn negative_ttl() {
    let text = edit("ttl = 30\n", "ttl = -1\n");
    assert_error(&text, 39, 7, "service TTL -1 is out of range");
}

#[test]
fn ttl_above_rfc_2181_limit() {
    let text = edit("ttl = 3600", "ttl = 2147483648");
    assert_error(
        &text,
        15,
        7,
        "zone TTL 2147483648 is out of range (0 to 2147483647",
    );
    // The limit itself is fine.
    compiled(&edit("ttl = 3600", "ttl = 2147483647"));
}

#[test]
fn duplicate_zone() {
    let text = format!(
        "{}\n[[zones]]\norigin = \"Example.COM.\"\nns = [\"ns1.example.com.\"]\n\
         soa = {{ mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 60 }}\n",
        base()
    );
    assert_error(&text, 49, 10, "zone Example.COM. is defined twice");
}

#[test]
fn duplicate_region() {
    let text = format!("{}\n[[regions]]\nname = \"eu\"\n", base());
    assert_error(&text, 49, 8, "region eu is defined twice");
}

/// The base config with a second `www.example.com.` service (spelt differently) at line 49.
fn duplicate_service_config() -> String {
    format!(
        "{}\n[[services]]\nname = \"WWW.example.com\"\n\
         endpoints = [{{ region = \"us\", address = \"192.0.2.11\" }}]\n",
        base()
    )
}

#[test]
fn duplicate_service() {
    let text = duplicate_service_config();
    assert_error(&text, 49, 8, "is defined twice");
}

#[test]
fn duplicate_service_points_at_the_first_definition_by_line() {
    let text = duplicate_service_config();
    // Every other position in a report is LINE:COL; the first definition (38:8) should be
    // too, not a byte offset nobody can find in an editor.
    let errors = load(&text).expect_err("duplicate service");
    let message = &errors[0].message;
    assert!(
        message.contains("38") && !message.contains("byte"),
        "the first definition should be given as a line, got {message:?}"
    );
}

#[test]
fn duplicate_record() {
    let text = edit(
        r#"{ name = "@", type = "MX", data = "10 mail" }"#,
        r#"{ name = "ns1.example.com.", type = "a", data = "192.0.2.53", ttl = 60 }"#,
    );
    assert_error(
        &text,
        18,
        12,
        "record ns1.example.com. A 192.0.2.53 is given twice",
    );
}

#[test]
fn cname_beside_other_data() {
    let text = edit(
        r#"{ name = "@", type = "MX", data = "10 mail" }"#,
        r#"{ name = "ns1", type = "CNAME", data = "www" }"#,
    );
    assert_error(
        &text,
        18,
        3,
        "ns1.example.com. has a CNAME beside other data",
    );
}

#[test]
fn cname_at_apex() {
    let text = edit(
        r#"{ name = "@", type = "MX", data = "10 mail" }"#,
        r#"{ name = "@", type = "CNAME", data = "www" }"#,
    );
    assert_error(&text, 18, 3, "the zone apex cannot be a CNAME");
}

#[test]
fn record_outside_its_zone() {
    let text = edit(
        r#"name = "ns1", type"#,
        r#"name = "ns1.example.org.", type"#,
    );
    assert_error(
        &text,
        17,
        12,
        "record name ns1.example.org. is outside zone example.com.",
    );
}

#[test]
fn bad_a_data() {
    let text = edit(r#""192.0.2.53""#, r#""300.1.1.1""#);
    assert_error(&text, 17, 38, r#"bad A data "300.1.1.1""#);
}

#[test]
fn mx_without_preference() {
    let text = edit(r#"data = "10 mail""#, r#"data = "mail""#);
    assert_error(&text, 18, 37, r#"bad MX data "mail""#);
}

#[test]
fn unknown_record_type() {
    let text = edit(r#"type = "MX""#, r#"type = "MXX""#);
    assert_error(&text, 18, 24, r#"unknown record type "MXX""#);
}

#[test]
fn record_type_not_served() {
    let text = edit(
        r#"type = "MX", data = "10 mail""#,
        r#"type = "DNAME", data = "other.org.""#,
    );
    assert_error(&text, 18, 24, "record type DNAME is not served here");
}

#[test]
fn unknown_policy() {
    let text = edit(r#"policy = "geo""#, r#"policy = "fastest""#);
    assert_error(&text, 40, 10, r#"unknown policy "fastest""#);
}

#[test]
fn answers_zero() {
    let text = edit("answers = 1", "answers = 0");
    assert_error(&text, 41, 11, "answers must be 1 to 16");
}

#[test]
fn answers_seventeen() {
    let text = edit("answers = 1", "answers = 17");
    assert_error(&text, 41, 11, "answers must be 1 to 16");
    compiled(&edit("answers = 1", "answers = 16"));
}

#[test]
fn bad_country_code() {
    let text = edit(r#"countries = ["US"]"#, r#"countries = ["USA"]"#);
    assert_error(
        &text,
        24,
        14,
        r#""USA" is not a two-letter ISO 3166 country code"#,
    );
}

#[test]
fn bad_continent_code() {
    let text = edit(r#"continents = ["EU"]"#, r#"continents = ["EU", "XX"]"#);
    assert_error(&text, 30, 21, r#""XX" is not a continent code"#);
}

#[test]
fn latitude_out_of_range() {
    let text = edit("lat = 39.0", "lat = 91.0");
    assert_error(&text, 23, 20, "latitude 91 is outside -90..90");
}

#[test]
fn longitude_out_of_range() {
    let text = edit("lon = 8.7", "lon = -180.5");
    assert_error(&text, 29, 32, "longitude -180.5 is outside -180..180");
}

#[test]
fn bad_listen_address() {
    let text = edit(r#"["127.0.0.1:0"]"#, r#"["127.0.0.1:0", "localhost:53"]"#);
    assert_error(
        &text,
        3,
        30,
        r#""localhost:53" is not an IP:port listen address"#,
    );
}

#[test]
fn geoip_database_missing_names_the_path() {
    let text = edit(&format!(r#""{CITY}""#), r#""missing/world.mmdb""#);
    // Relative paths are taken from the config file's directory.
    assert_error(
        &text,
        6,
        12,
        "cannot read GeoIP database /some/dir/missing/world.mmdb",
    );
}

#[test]
fn geoip_database_unreadable() {
    let dir = scratch_dir("garbage");
    let path = dir.join("garbage.mmdb");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).expect("write garbage");
    let text = edit(CITY, &path.display().to_string());
    let fragment = format!("cannot read GeoIP database {}", path.display());
    assert_error(&text, 6, 12, &fragment);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn geoip_database_with_neither_schema() {
    let mut w = Writer::new("Test-Foo");
    w.description("en", "records without a known schema");
    for net in ["11.0.0.0/16", "12.0.0.0/16", "2001:db8:1::/48"] {
        w.insert(
            net.parse().expect("net"),
            Value::Map(vec![("foo".into(), Value::String("bar".into()))]),
        );
    }
    let dir = scratch_dir("foo-schema");
    let path = dir.join("foo.mmdb");
    std::fs::write(&path, w.to_bytes().expect("mmdb")).expect("write mmdb");
    let text = edit(CITY, &path.display().to_string());
    let fragment = format!(
        "GeoIP database {} has neither the MaxMind GeoIP2 schema",
        path.display()
    );
    assert_error(&text, 6, 12, &fragment);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn geo_service_without_geoip() {
    let text = edit("[geoip]\n", "\n").replacen(&format!("database = \"{CITY}\""), "", 1);
    assert_error(
        &text,
        38,
        8,
        "uses policy geo, which needs a [geoip] database",
    );
}

#[test]
fn check_timeout_not_below_interval() {
    let text = edit(r#"timeout = "2s""#, r#"timeout = "5s""#);
    assert_error(
        &text,
        35,
        11,
        "check timeout 5s must be below its interval 5s",
    );
}

#[test]
fn every_error_is_reported_in_file_order() {
    // Sections in an order validation does not visit them in (it goes server, zones,
    // regions, checks, services), so the report must be sorted, not just collected.
    let text = format!(
        r#"[[services]]
name = "www.example.com."
answers = 0
endpoints = [{{ region = "mars", address = "192.0.2.10" }}]

[[regions]]
name = "us"
countries = ["USA"]

[[zones]]
origin = "example.com."
ns = ["ns1.example.com."]
soa = {{ mname = "ns1", rname = "hostmaster", serial = 1, minimum = -5 }}
records = [{{ name = "www2", type = "A", data = "300.1.1.1" }}]

[geoip]
database = "{CITY}"

[server]
dns_listen = ["nowhere"]
"#
    );
    assert_errors(
        &text,
        &[
            (3, 11, "answers must be 1 to 16"),
            (4, 25, r#"endpoint names undefined region "mars""#),
            (8, 14, r#""USA" is not a two-letter ISO 3166 country code"#),
            (13, 68, "SOA minimum -5 is out of range"),
            (14, 48, r#"bad A data "300.1.1.1""#),
            (20, 15, r#""nowhere" is not an IP:port listen address"#),
        ],
    );
}

// ---- what a good config compiles to ----

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/meridian.toml");
    let text = std::fs::read_to_string(&path).expect("example config");
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip-fixtures");
    let text = text.replace("../geoip-fixtures", fixtures);
    let c = match load_str(&text, &path) {
        Ok(c) => c,
        Err(e) => panic!("example config: {e}"),
    };
    assert_eq!(c.zones.len(), 1);
    assert_eq!(c.regions.len(), 4);
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.endpoints.len(), 11);
    assert_eq!(
        c.geo.as_ref().expect("geoip").databases()[0].schema(),
        Schema::MaxMindCity
    );
}

#[test]
fn relative_names_and_apex() {
    let c = compiled(&edit(
        r#"{ name = "@", type = "MX", data = "10 mail" }"#,
        r#"{ name = "@", type = "MX", data = "10 mail" }, { name = "Deep.Sub", type = "CNAME", data = "www" }, { name = "abs.example.com.", type = "CNAME", data = "elsewhere.org." }"#,
    ));
    let zone = &c.zones[0];
    let soa = match &zone.soa.data {
        RData::SOA(soa) => soa,
        other => panic!("{other:?}"),
    };
    assert_eq!(soa.mname, name("ns1.example.com."));
    assert_eq!(soa.rname, name("hostmaster.example.com."));

    let apex = &zone.nodes[&LowerName::new(&name("example.com."))];
    let mx = apex.rrset(RecordType::MX).expect("MX at @");
    match &mx[0].data {
        RData::MX(mx) => {
            assert_eq!(mx.preference, 10);
            assert_eq!(mx.exchange, name("mail.example.com."));
        }
        other => panic!("{other:?}"),
    }
    let ns1 = &zone.nodes[&LowerName::new(&name("ns1.example.com."))];
    assert_eq!(ns1.rrset(RecordType::A).expect("A").len(), 1);

    let deep = &zone.nodes[&LowerName::new(&name("deep.sub.example.com."))];
    match &deep.rrset(RecordType::CNAME).expect("CNAME")[0].data {
        RData::CNAME(t) => assert_eq!(t.0, name("www.example.com.")),
        other => panic!("{other:?}"),
    }
    let abs = &zone.nodes[&LowerName::new(&name("abs.example.com."))];
    match &abs.rrset(RecordType::CNAME).expect("CNAME")[0].data {
        RData::CNAME(t) => assert_eq!(t.0, name("elsewhere.org.")),
        other => panic!("{other:?}"),
    }
}

fn txt_strings(c: &Compiled, owner: &str) -> Vec<Vec<u8>> {
    let node = &c.zones[0].nodes[&LowerName::new(&name(owner))];
    match &node.rrset(RecordType::TXT).expect("TXT")[0].data {
        RData::TXT(t) => t.txt_data.iter().map(|s| s.to_vec()).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn long_txt_is_split_into_255_byte_strings() {
    let long: String = (0..600)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let c = compiled(&edit(
        r#"{ name = "@", type = "MX", data = "10 mail" }"#,
        &format!(r#"{{ name = "@", type = "TXT", data = "{long}" }}"#),
    ));
    let strings = txt_strings(&c, "example.com.");
    let lens: Vec<usize> = strings.iter().map(Vec::len).collect();
    assert_eq!(lens, [255, 255, 90]);
    assert_eq!(strings.concat(), long.as_bytes());
}

#[test]
fn long_non_ascii_txt_keeps_its_bytes() {
    // 200 two-byte characters: byte 255 falls inside one of them.
    let long = "é".repeat(200);
    let c = compiled(&edit(
        r#"{ name = "@", type = "MX", data = "10 mail" }"#,
        &format!(r#"{{ name = "@", type = "TXT", data = "{long}" }}"#),
    ));
    let strings = txt_strings(&c, "example.com.");
    let lens: Vec<usize> = strings.iter().map(Vec::len).collect();
    assert!(
        lens.iter().all(|n| *n <= 255),
        "a TXT string holds at most 255 bytes, got lengths {lens:?}"
    );
    assert_eq!(
        strings.concat(),
        long.as_bytes(),
        "the strings must carry the configured text byte for byte"
    );
}

#[test]
fn default_ttls() {
    let text = edit("ttl = 3600\n", "").replacen("ttl = 30\n", "", 1);
    let c = compiled(&text);
    let zone = &c.zones[0];
    assert_eq!(zone.soa.ttl, 3600, "SOA takes the zone default");
    let apex = &zone.nodes[&LowerName::new(&name("example.com."))];
    assert_eq!(apex.rrset(RecordType::NS).expect("NS")[0].ttl, 3600);
    assert_eq!(apex.rrset(RecordType::MX).expect("MX")[0].ttl, 3600);
    assert_eq!(c.services[0].ttl, 30, "service default");
    assert!(c.endpoints.iter().all(|e| e.record.ttl == 30));

    // A zone TTL becomes the default of its records; a record TTL wins over it.
    let c = compiled(&edit("ttl = 3600", "ttl = 900").replacen(
        r#"data = "10 mail" }"#,
        r#"data = "10 mail", ttl = 120 }"#,
        1,
    ));
    let zone = &c.zones[0];
    assert_eq!(zone.soa.ttl, 900);
    let ns1 = &zone.nodes[&LowerName::new(&name("ns1.example.com."))];
    assert_eq!(ns1.rrset(RecordType::A).expect("A")[0].ttl, 900);
    let apex = &zone.nodes[&LowerName::new(&name("example.com."))];
    assert_eq!(apex.rrset(RecordType::MX).expect("MX")[0].ttl, 120);
    assert_eq!(c.services[0].ttl, 30);
}

#[test]
fn negative_soa_ttl_is_min_of_soa_ttl_and_minimum() {
    let soa = "soa = { mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 60 }";
    let c = compiled(&edit(
        soa,
        "soa = { mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 60, ttl = 300 }",
    ));
    assert_eq!(c.zones[0].soa.ttl, 300);
    assert_eq!(c.zones[0].negative_soa.ttl, 60);

    let c = compiled(&edit(
        soa,
        "soa = { mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 600, ttl = 30 }",
    ));
    assert_eq!(c.zones[0].soa.ttl, 30);
    assert_eq!(c.zones[0].negative_soa.ttl, 30);
    // Without an SOA TTL the zone TTL (3600) is the SOA's.
    let c = compiled(&base());
    assert_eq!(c.zones[0].negative_soa.ttl, 60);
}

#[test]
fn empty_non_terminals_exist() {
    let c = compiled(
        &edit(
            r#"{ name = "@", type = "MX", data = "10 mail" }"#,
            r#"{ name = "a.b.c", type = "TXT", data = "deep" }"#,
        )
        .replace("www.example.com.", "www.eu.geo.example.com."),
    );
    let nodes = &c.zones[0].nodes;
    for ent in [
        "b.c.example.com.",
        "c.example.com.",
        "eu.geo.example.com.",
        "geo.example.com.",
    ] {
        let node = nodes
            .get(&LowerName::new(&name(ent)))
            .unwrap_or_else(|| panic!("{ent} should exist"));
        assert!(node.is_empty(), "{ent} holds nothing");
    }
    assert!(!nodes[&LowerName::new(&name("a.b.c.example.com."))].is_empty());
    assert!(
        nodes[&LowerName::new(&name("www.eu.geo.example.com."))]
            .service
            .is_some()
    );
    assert!(!nodes.contains_key(&LowerName::new(&name("x.c.example.com."))));
    assert!(
        !nodes.contains_key(&LowerName::new(&name("com."))),
        "nothing above the apex"
    );
}

#[test]
fn each_fixture_schema_is_detected() {
    for (db, schema) in [
        (CITY, Schema::MaxMindCity),
        (COUNTRY, Schema::MaxMindCountry),
        (FLAT, Schema::Flat),
    ] {
        let c = compiled(&edit(CITY, db));
        let geo = c.geo.expect("geoip");
        assert_eq!(geo.databases().len(), 1);
        assert_eq!(geo.databases()[0].schema(), schema, "{db}");
        assert_eq!(geo.databases()[0].path(), Path::new(db));
    }
}

#[test]
fn several_database_files_are_asked_in_order_for_their_family() {
    // The Country fixture first, then the City one: both have IPv4 and IPv6 networks, so a
    // client found in the first is answered from it (no location), one only in the second
    // (none here) would fall through.
    let text = edit(
        &format!("database = \"{CITY}\""),
        &format!("database = [\"{COUNTRY}\", \"{CITY}\"]"),
    );
    let c = compiled(&text);
    let geo = c.geo.expect("geoip");
    let paths: Vec<&Path> = geo.databases().iter().map(|d| d.path()).collect();
    assert_eq!(paths, [Path::new(COUNTRY), Path::new(CITY)]);
    let (info, from) = geo.lookup_in("11.0.130.7".parse().unwrap());
    assert!(
        info.found && info.location.is_none(),
        "the Country file answers first"
    );
    assert_eq!(from.map(|d| d.path()), Some(Path::new(COUNTRY)));
    // An empty list is refused.
    assert_error(
        &edit(&format!("database = \"{CITY}\""), "database = []"),
        6,
        12,
        "lists no file",
    );
}

#[test]
fn config_hash_is_stable() {
    use super::config_hash;
    assert_eq!(config_hash("a", &[]), config_hash("a", &[]));
    assert_ne!(config_hash("a", &[]), config_hash("b", &[]));
    assert_eq!(config_hash("", &[]).len(), 16);
    // Instances of one fleet differ in their names only: not drift. Anything else is.
    let ns = |name: &str, workers: u32| {
        format!(
            "# instance {name}\n[server]\nworkers = {workers}\nnsid = \"{name}\"\n[cluster]\nname = \"{name}\"\nprefix = \"/m/\"\n"
        )
    };
    assert_eq!(
        config_hash(&ns("ns1", 2), &[]),
        config_hash(&ns("ns2", 2), &[])
    );
    assert_ne!(
        config_hash(&ns("ns1", 2), &[]),
        config_hash(&ns("ns1", 4), &[])
    );
    // A zone file's text counts, and where one file ends.
    let zone = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_ne!(config_hash("a", &zone(&["x"])), config_hash("a", &[]));
    assert_ne!(
        config_hash("a", &zone(&["x"])),
        config_hash("a", &zone(&["y"]))
    );
    assert_ne!(
        config_hash("a", &zone(&["ab", "c"])),
        config_hash("a", &zone(&["a", "bc"]))
    );
}

#[test]
fn a_cname_loop_is_refused_at_every_record_of_it() {
    let text = edit(
        "  { name = \"@\", type = \"MX\", data = \"10 mail\" },\n",
        "  { name = \"@\", type = \"MX\", data = \"10 mail\" },\n  \
         { name = \"a\", type = \"CNAME\", data = \"b\" },\n  \
         { name = \"b\", type = \"CNAME\", data = \"c.example.com.\" },\n  \
         { name = \"c\", type = \"CNAME\", data = \"a\" },\n  \
         { name = \"d\", type = \"CNAME\", data = \"a\" },\n",
    );
    let loop_text =
        "CNAME loop: a.example.com. -> b.example.com. -> c.example.com. -> a.example.com.";
    // d leads into the loop but is not part of it.
    assert_errors(
        &text,
        &[(19, 3, loop_text), (20, 3, loop_text), (21, 3, loop_text)],
    );
}

#[test]
fn nsid_is_text_or_hex() {
    let with = |nsid: &str| {
        edit(
            "dns_listen = [\"127.0.0.1:0\"]\n",
            &format!("dns_listen = [\"127.0.0.1:0\"]\nnsid = {nsid:?}\n"),
        )
    };
    let c = compiled(&with("ns1.fra"));
    assert_eq!(c.settings.nsid.as_deref(), Some(&b"ns1.fra"[..]));
    let c = compiled(&with("hex:6e7331"));
    assert_eq!(c.settings.nsid.as_deref(), Some(&b"ns1"[..]));
    assert_error(&with("hex:6e7"), 4, 8, "pairs of hex digits");
    assert_error(&with("hex:zz"), 4, 8, "pairs of hex digits");
    assert_eq!(
        compiled(&base()).settings.nsid,
        None,
        "none unless asked for"
    );
}

/// In fleet mode (a build with etcd), the instance's name (behind anycast: which one answered).
#[cfg(feature = "etcd")]
#[test]
fn nsid_defaults_to_the_fleet_name_unless_given() {
    let fleet = format!(
        "{}\n[cluster]\nbackend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nname = \"fra-1\"\n",
        base()
    );
    assert_eq!(
        compiled(&fleet).settings.nsid.as_deref(),
        Some(&b"fra-1"[..])
    );
    let both = fleet.replace(
        "dns_listen = [\"127.0.0.1:0\"]\n",
        "dns_listen = [\"127.0.0.1:0\"]\nnsid = \"x\"\n",
    );
    assert_eq!(
        compiled(&both).settings.nsid.as_deref(),
        Some(&b"x"[..]),
        "nsid wins"
    );
}

#[test]
fn subdivision_codes_are_checked() {
    let text = edit(
        r#"countries = ["US"]"#,
        r#"countries = ["US"]
subdivisions = ["US-VA", "USA-CA", "US-VA"]"#,
    );
    assert_errors(
        &text,
        &[
            (25, 26, "\"USA-CA\" is not an ISO 3166-2 subdivision code"),
            (25, 36, "subdivision US-VA is listed twice"),
        ],
    );
}

#[test]
fn dnstap_keys_are_checked_and_defaulted() {
    use crate::settings::FstrmMode;
    let with = |keys: &str| format!("{}\n[dnstap]\n{keys}", base());
    // The first key after `[dnstap]`.
    let line = base().lines().count() + 3;
    assert_eq!(
        compiled(&base()).settings.dnstap,
        None,
        "off unless configured"
    );
    let d = compiled(&with("socket = \"dnstap.sock\"\n"))
        .settings
        .dnstap
        .expect("[dnstap] configured");
    assert_eq!(
        d.socket,
        Path::new(CONFIG_PATH).parent().unwrap().join("dnstap.sock")
    );
    assert_eq!(
        (d.sample, d.queue_size, d.mode),
        (1, 16384, FstrmMode::Bidirectional)
    );
    assert_eq!(d.identity, None);
    assert_eq!(d.version.as_deref(), Some(&b"meridian 0.1.0"[..]));
    let d = compiled(&with(
        "socket = \"/run/meridian/dnstap.sock\"\nsample = 10\nqueue_size = 100\n\
         mode = \"unidirectional\"\nidentity = \"ns1.fra\"\nversion = \"x\"\n",
    ))
    .settings
    .dnstap
    .unwrap();
    assert_eq!(d.socket, Path::new("/run/meridian/dnstap.sock"));
    assert_eq!(
        (d.sample, d.queue_size, d.mode),
        (10, 100, FstrmMode::Unidirectional)
    );
    assert_eq!(d.identity.as_deref(), Some(&b"ns1.fra"[..]));
    assert_eq!(d.version.as_deref(), Some(&b"x"[..]));

    assert_error(&with("socket = \"\"\n"), line, 10, "dnstap socket is empty");
    let long = format!("socket = \"/{}\"\n", "s".repeat(120));
    assert_error(&with(&long), line, 10, "longer than a Unix socket path");
    let s = "socket = \"/run/d.sock\"\n";
    assert_error(
        &with(&format!("{s}sample = 0\n")),
        line + 1,
        10,
        "must be 1",
    );
    assert_error(
        &with(&format!("{s}queue_size = -1\n")),
        line + 1,
        14,
        "1 to 1000000",
    );
    assert_error(
        &with(&format!("{s}mode = \"both\"\n")),
        line + 1,
        8,
        "not \"bidirectional\"",
    );
    assert_error(
        &with(&format!("{s}sampel = 2\n")),
        line + 1,
        1,
        "unknown field",
    );
    assert_error(&with("sample = 2\n"), line - 1, 1, "missing field `socket`");
}

#[cfg(feature = "etcd")]
#[test]
fn dnstap_identity_defaults_to_the_fleet_name() {
    let with = |keys: &str| format!("{}\n[dnstap]\n{keys}", base());
    let s = "socket = \"/run/d.sock\"\n";
    // In fleet mode the identity defaults to the instance's name.
    let fleet = format!(
        "{}\n[cluster]\nbackend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nname = \"fra-1\"\n",
        with(s)
    );
    assert_eq!(
        compiled(&fleet)
            .settings
            .dnstap
            .unwrap()
            .identity
            .as_deref(),
        Some(&b"fra-1"[..])
    );
}

// ---- zone files ----

/// The base config with the zone's `ns` and `soa` replaced by `file = ZONE` (written to a
/// scratch directory with the other files given), and `extra` added to its records.
fn with_zone_file(test: &str, zone: &str, others: &[(&str, &str)]) -> (String, PathBuf) {
    let dir = scratch_dir(test);
    let path = dir.join("example.com.zone");
    std::fs::write(&path, zone).expect("write zone file");
    for (name, text) in others {
        std::fs::write(dir.join(name), text).expect("write included file");
    }
    let text = edit(
        "ns = [\"ns1.example.com.\"]\nsoa = { mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 60 }\n",
        &format!("file = {:?}\n\n", path.display().to_string()),
    );
    (text, path)
}

const ZONE_FILE: &str = r#"$ORIGIN example.com.
$TTL 600
@ IN SOA ns1 hostmaster (
    2026113001 ; serial
    1h 10m 1w
    60 )       ; minimum
  NS ns1
  NS ns2.example.net.
files 300 IN A 192.0.2.80
  AAAA 2001:db8::80
alias CNAME files
"#;

/// Every problem, rendered as `check` prints it.
fn rendered(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("config should fail"),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_zone_file_gives_soa_ns_and_records_beside_the_inline_ones() {
    let (text, _) = with_zone_file("zone-file-loads", ZONE_FILE, &[]);
    let c = compiled(&text);
    let zone = &c.zones[0];
    match &zone.soa.data {
        RData::SOA(soa) => {
            assert_eq!(soa.serial, 2026113001);
            assert_eq!(soa.refresh, 3600);
            assert_eq!(soa.minimum, 60);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(zone.soa.ttl, 600);
    assert_eq!(zone.negative_soa.ttl, 60);
    let apex = &zone.nodes[&LowerName::new(&name("example.com."))];
    let ns: Vec<String> = apex
        .rrset(RecordType::NS)
        .unwrap()
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(ns, ["ns1.example.com.", "ns2.example.net."]);
    // The inline MX stays.
    assert!(apex.rrset(RecordType::MX).is_some());
    let files = &zone.nodes[&LowerName::new(&name("files.example.com."))];
    assert_eq!(files.rrset(RecordType::A).unwrap()[0].ttl, 300);
    assert_eq!(files.rrset(RecordType::AAAA).unwrap()[0].ttl, 600);
    let alias = &zone.nodes[&LowerName::new(&name("alias.example.com."))];
    assert!(alias.rrset(RecordType::CNAME).is_some());
}

#[test]
fn a_zone_file_problem_names_the_file_and_line() {
    let (text, path) = with_zone_file(
        "zone-file-broken",
        "$TTL 1h\n\
         @ SOA ns1 hostmaster 1 3600 600 604800 60\n\
         @ NS ns1\n\
         ok A 192.0.2.1\n\
         bad A 192.0.2.300\n\
         what BOGUS x\n\
         $INCLUDE nowhere.inc\n\
         far.example.org. A 192.0.2.1\n\
         info HINFO \"x\" \"y\"\n\
         mx MX ( 10\n   mail.example.com.\n",
        &[],
    );
    let p = path.display();
    let dir = path.parent().unwrap().display();
    assert_eq!(
        rendered(&text),
        [
            format!(
                "{p}:5: bad A record: network address parse error: invalid IPv4 address syntax"
            ),
            format!("{p}:6: unknown record type \"BOGUS\""),
            format!(
                "{p}:7: cannot read $INCLUDE file {dir}/nowhere.inc: No such file or directory (os error 2)"
            ),
            format!("{p}:8: far.example.org. is outside the zone example.com."),
            format!(
                "{p}:9: record type HINFO is not served (use SOA NS A AAAA CNAME MX TXT SRV CAA PTR)"
            ),
            format!("{p}:10: '(' is never closed"),
        ]
    );
}

#[test]
fn an_include_loop_is_refused_at_the_including_line() {
    let (text, path) = with_zone_file(
        "zone-file-loop",
        "@ 60 SOA ns1 hostmaster 1 3600 600 604800 60\n@ NS ns1\n$INCLUDE a.inc\n",
        &[
            ("a.inc", "a A 192.0.2.1\n$INCLUDE b.inc\n"),
            ("b.inc", "\n$INCLUDE a.inc\n"),
        ],
    );
    let dir = path.parent().unwrap().display();
    assert_eq!(
        rendered(&text),
        [format!(
            "{dir}/b.inc:2: $INCLUDE loop: {dir}/a.inc -> {dir}/b.inc -> {dir}/a.inc"
        )]
    );
}

#[test]
fn a_missing_zone_file_is_reported_at_its_key() {
    let text = edit(
        "ttl = 3600\nrecords",
        "file = \"/nonexistent/example.com.zone\"\nttl = 3600\nrecords",
    );
    assert_error(
        &text,
        15,
        8,
        "cannot read zone file /nonexistent/example.com.zone",
    );
}

#[test]
fn soa_and_ns_come_from_one_place_only() {
    let (text, path) = with_zone_file("zone-file-twice", ZONE_FILE, &[]);
    // Both in the file and in the config.
    let text = text.replace(
        "\n\nttl = 3600",
        "\nns = [\"ns1\"]\nsoa = { mname = \"ns1\", rname = \"hostmaster\", serial = 1, minimum = 60 }\nttl = 3600",
    );
    let p = path.display();
    assert_eq!(
        rendered(&text),
        [
            format!(
                "{p}:3: zone example.com. has an SOA here and `soa` at {CONFIG_PATH}:15: keep one of them"
            ),
            format!(
                "{p}:7: zone example.com. has apex NS records here and `ns` at {CONFIG_PATH}:14: keep one of them"
            ),
        ]
    );
    // In neither.
    let (text, _) = with_zone_file("zone-file-none", "a A 192.0.2.1\n", &[]);
    assert_errors(
        &text,
        &[
            (12, 10, "zone example.com. has no SOA"),
            (12, 10, "zone example.com. has no NS"),
        ],
    );
}

#[test]
fn conflicts_between_the_file_and_the_config_name_both_places() {
    let zone = "@ 60 SOA ns1 hostmaster 1 3600 600 604800 60\n\
                @ NS ns1\n\
                www A 192.0.2.99\n\
                ns1 CNAME elsewhere.example.net.\n\
                mail 60 A 192.0.2.25\n\
                mail 60 A 192.0.2.25\n";
    let (text, path) = with_zone_file("zone-file-conflicts", zone, &[]);
    let p = path.display();
    assert_eq!(
        rendered(&text),
        [
            format!(
                "{p}:3: www.example.com. A: a static record at a traffic-managed name (the service at {CONFIG_PATH}:38 answers it)"
            ),
            format!(
                "{p}:4: ns1.example.com. has a CNAME beside other data (A at {CONFIG_PATH}:17)"
            ),
            format!("{p}:6: record mail.example.com. A 192.0.2.25 is given twice (also at {p}:5)"),
        ]
    );
}

#[test]
fn services_below_a_delegation_or_beside_records_are_found_whatever_the_case() {
    let zone = "@ 60 SOA ns1 hostmaster 1 3600 600 604800 60\n\
                @ NS ns1\n\
                Sub NS ns.elsewhere.example.net.\n\
                sub NS ns2.elsewhere.example.net.\n\
                deep.Other NS ns.elsewhere.example.net.\n\
                WWW A 192.0.2.99\n";
    let (text, path) = with_zone_file("zone-file-delegated", zone, &[]);
    let text = format!(
        "{text}\n[[services]]\nname = \"a.b.sub.example.com.\"\n\
         endpoints = [{{ region = \"us\", address = \"192.0.2.11\" }}]\n\
         \n[[services]]\nname = \"other.example.com.\"\n\
         endpoints = [{{ region = \"us\", address = \"192.0.2.12\" }}]\n"
    );
    let p = path.display();
    let errors = rendered(&text);
    assert!(
        errors.iter().any(|e| e.ends_with(&format!(
            "service a.b.sub.example.com. is below the delegation at sub.example.com. ({p}:3)"
        ))),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with(&format!(
            "{p}:6: www.example.com. A: a static record at a traffic-managed name"
        ))),
        "{errors:?}"
    );
    // A delegation below a service's name does not put the service below it.
    assert!(
        !errors.iter().any(|e| e.contains("other.example.com.")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn an_inline_record_beside_a_file_cname_names_the_file() {
    let (text, path) = with_zone_file(
        "zone-file-inline-cname",
        "@ 60 SOA ns1 hostmaster 1 3600 600 604800 60\n@ NS ns1\nmail CNAME ns1\n",
        &[],
    );
    let text = text.replace(
        "{ name = \"@\", type = \"MX\", data = \"10 mail\" },",
        "{ name = \"@\", type = \"MX\", data = \"10 mail\" },\n  { name = \"mail\", type = \"TXT\", data = \"hi\" },",
    );
    let p = path.display();
    assert_eq!(
        rendered(&text),
        [format!(
            "{p}:3: mail.example.com. has a CNAME beside other data (TXT at {CONFIG_PATH}:19)"
        )]
    );
}

#[test]
fn the_config_hash_follows_the_zone_file_and_its_includes() {
    let zone = format!("{ZONE_FILE}$INCLUDE more.inc\n");
    let (text, path) = with_zone_file("zone-file-hash", &zone, &[("more.inc", "m A 192.0.2.1\n")]);
    let hash = || compiled(&text).settings.config_hash;
    let first = hash();
    assert_eq!(hash(), first, "nothing changed");
    std::fs::write(&path, format!("{zone}extra A 192.0.2.2\n")).unwrap();
    let edited = hash();
    assert_ne!(edited, first, "the zone file changed");
    std::fs::write(path.with_file_name("more.inc"), "m A 192.0.2.9\n").unwrap();
    assert_ne!(hash(), edited, "the included file changed");
}
