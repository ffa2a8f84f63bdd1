//! History, rollback, what-if and capacity through the real binary: every publish is in
//! `/v1/history` with its cause and diff and survives a restart; a rollback restores the
//! config and operator state of an earlier generation even after the file changed; a what-if
//! replays real queries sent to the server and changes nothing; a change predicted to exceed
//! a region's capacity is refused with 409.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::*;

const TOKEN: &str = "test-admin-token";
const US_ANSWER: &str = "192.0.2.10";
const EU_ANSWER: &str = "198.51.100.10";

/// The example config with a state_dir and an admin token, edited by `edit`.
fn start(edit: impl FnOnce(String) -> String) -> Meridian {
    Meridian::start_with_token_edited(TOKEN, edit)
}

/// Real traffic: www A for 256 US, 256 Canadian and 256 German /24s and 64 German IPv6 /56s
/// (ECS), `rounds` times.
fn traffic(dns: SocketAddr, rounds: usize) {
    for _ in 0..rounds {
        for n in 0..64 {
            let net = format!("2001:db8:2:{n:x}00::");
            let r = udp(
                dns,
                &with_ecs(query("www.example.com.", RecordType::A), &net, 56),
            );
            assert!(!addrs(&r).is_empty(), "{net} answered");
        }
        for prefix in ["11.0", "11.2", "12.0"] {
            for n in 0..=255 {
                let net = format!("{prefix}.{n}.0");
                let r = udp(
                    dns,
                    &with_ecs(query("www.example.com.", RecordType::A), &net, 24),
                );
                assert!(!addrs(&r).is_empty(), "{net} answered");
            }
        }
    }
}

fn www(dns: SocketAddr, client: &str) -> (IpAddr, u32) {
    let r = udp(
        dns,
        &with_ecs(query("www.example.com.", RecordType::A), client, 24),
    );
    let ttl = r.answers.first().map_or(0, |a| a.ttl);
    (*addrs(&r).first().expect("an answer"), ttl)
}

fn post(m: &Meridian, path: &str, body: &str) -> (u16, Value) {
    http_json(m.admin(), "POST", path, Some(TOKEN), body)
}

fn history(m: &Meridian, limit: usize) -> Vec<Value> {
    let (status, body) = http_json(
        m.admin(),
        "GET",
        &format!("/v1/history?limit={limit}"),
        None,
        "",
    );
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().expect("entries").clone()
}

fn generation(m: &Meridian) -> u64 {
    history(m, 1)[0]["generation"].as_u64().expect("generation")
}

#[test]
fn history_records_causes_and_diffs_and_survives_a_restart() {
    let m = start(|t| t);
    traffic(m.v4(), 2);
    let (status, body) = post(
        &m,
        "/v1/regions/us-east/evacuate",
        r#"{"reason": "maintenance"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let evacuated = body["generation"].as_u64().expect("generation");
    let (status, _) = post(&m, "/v1/regions/eu-west/drain", r#"{"percent": 50}"#);
    assert_eq!(status, 200);
    let (status, _) = post(&m, "/v1/reload", "");
    assert_eq!(status, 200);

    let entries = history(&m, 3);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["cause"]["kind"], "reload");
    assert!(entries[0]["cause"]["config_hash"].is_string());
    assert_eq!(entries[1]["cause"]["kind"], "drain");
    assert_eq!(entries[1]["cause"]["percent"], 50.0);
    let evac = &entries[2];
    assert_eq!(evac["generation"], evacuated);
    assert_eq!(evac["cause"]["kind"], "evacuate");
    assert_eq!(evac["cause"]["region"], "us-east");
    assert_eq!(evac["cause"]["reason"], "maintenance");
    assert!(
        evac["cause"]["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("admin@127.0.0.1")),
        "{evac}"
    );
    let regions = evac["diff"]["regions"].as_array().expect("regions");
    assert!(
        regions
            .iter()
            .any(|r| r["region"] == "us-east" && r["from"] == "serving" && r["to"] == "evacuated"),
        "{evac}"
    );
    // Replayed on the sample of the queries sent: US and Canadian clients moved.
    let countries = &evac["diff"]["answers"]["www.example.com."];
    assert!(
        countries
            .as_array()
            .is_some_and(|c| c.contains(&"US".into()) && c.contains(&"CA".into())),
        "{evac}"
    );
    assert!(
        !countries
            .as_array()
            .is_some_and(|c| c.contains(&"DE".into())),
        "German clients did not move: {evac}"
    );
    let (status, one) = http_json(
        m.admin(),
        "GET",
        &format!("/v1/history/{evacuated}"),
        None,
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(
        one["admin"]["evacuations"]["us-east"]["reason"],
        "maintenance"
    );
    let (status, _) = http_json(m.admin(), "GET", "/v1/history/99999999", None, "");
    assert_eq!(status, 404);

    // The journal is written off the publisher's loop: wait for the reload's line, then kill.
    let journal = m.scratch.0.join("state").join("history.jsonl");
    let written = (0..200).any(|_| {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        if text.contains("\"kind\":\"reload\"") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
        false
    });
    assert!(written, "the journal has the reload");
    let last = entries[0]["generation"].as_u64().expect("generation");
    let m = m.restart(&[]);
    let after = history(&m, 100);
    assert_eq!(after[0]["cause"]["kind"], "start");
    assert!(after[0]["generation"].as_u64().expect("generation") > last);
    assert!(
        after
            .iter()
            .any(|e| e["generation"] == evacuated && e["cause"]["kind"] == "evacuate"),
        "the evacuation's entry survived the restart"
    );
}

#[test]
fn a_rollback_restores_the_config_and_operator_state_even_after_the_file_changed() {
    let m = start(|t| t);
    let good = generation(&m);
    let us: IpAddr = US_ANSWER.parse().expect("ip");
    assert_eq!(www(m.v4(), "11.0.1.0"), (us, 30));
    let (status, _) = post(&m, "/v1/regions/us-east/evacuate", "{}");
    assert_eq!(status, 200);
    // A bad config goes out (TTL 5)...
    let text = std::fs::read_to_string(&m.config).expect("config");
    std::fs::write(&m.config, text.replace("ttl = 30", "ttl = 5")).expect("write");
    let (status, _) = post(&m, "/v1/reload", "");
    assert_eq!(status, 200);
    assert_eq!(www(m.v4(), "11.0.1.0").1, 5);
    // ... and the file changes again before anyone rolls back.
    std::fs::write(&m.config, text.replace("ttl = 30", "ttl = 7")).expect("write");
    let before = generation(&m);
    let (status, body) = post(
        &m,
        "/v1/rollback",
        &format!(r#"{{"to": {good}, "reason": "bad ttl"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let rolled = body["generation"].as_u64().expect("generation");
    assert!(rolled > before, "a new, higher generation");
    assert!(body["config_hash"].is_string(), "{body}");
    assert_eq!(body["evacuations"], serde_json::json!([]));
    assert_eq!(
        www(m.v4(), "11.0.1.0"),
        (us, 30),
        "the old config, not the file's, and us-east serves again"
    );
    let newest = &history(&m, 1)[0];
    assert_eq!(newest["cause"]["kind"], "rollback");
    assert_eq!(newest["cause"]["to"], good);
    assert_eq!(newest["cause"]["config"], true);
    assert!(m.logs().contains("rollback to generation"), "an audit line");
    let (status, _) = post(&m, "/v1/rollback", r#"{"to": 99999999}"#);
    assert_eq!(status, 404);
}

#[test]
fn a_what_if_replays_real_queries_and_changes_nothing() {
    let m = start(|t| t);
    traffic(m.v4(), 2);
    let at = generation(&m);
    let (status, v) = post(&m, "/v1/what-if", r#"{"evacuate": ["us-east"]}"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["applied"], false);
    assert!(v["sampled"].as_u64().expect("sampled") >= 30, "{v}");
    let svc = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["service"] == "www.example.com.")
        .expect("www")
        .clone();
    let share = |region: &str, when: &str| {
        svc["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .find(|r| r["region"] == region)
            .map_or(0.0, |r| r[when].as_f64().expect("share"))
    };
    // Two thirds of the clients sent are American or Canadian; every one of them moves.
    assert!((40.0..=90.0).contains(&share("us-east", "now")), "{svc}");
    assert_eq!(share("us-east", "after"), 0.0);
    assert_eq!(share("eu-west", "after"), 100.0);
    let moves = svc["moves"].as_array().expect("moves");
    assert!(
        moves
            .iter()
            .any(|m| m["country"] == "US" && m["from"] == "us-east" && m["to"] == "eu-west"),
        "{svc}"
    );
    assert!(!svc["networks"].as_array().expect("networks").is_empty());
    // Every sampled network is placed as it was when it was asked (IPv6 ones as IPv6).
    assert!(
        moves
            .iter()
            .all(|m| m["country"] == "US" || m["country"] == "CA"),
        "{svc}"
    );
    let eu_now = share("eu-west", "now");
    assert!(
        (15.0..=50.0).contains(&eu_now),
        "German clients, v4 and v6: {svc}"
    );
    // Nothing applied.
    assert_eq!(generation(&m), at);
    let us: IpAddr = US_ANSWER.parse().expect("ip");
    assert_eq!(www(m.v4(), "11.0.1.0").0, us);
    let (status, _) = post(&m, "/v1/what-if", r#"{"evacuate": ["nowhere"]}"#);
    assert_eq!(status, 400);
    // explain gives the same preview for one client.
    let (status, ex) = http_json(
        m.admin(),
        "GET",
        "/v1/explain?name=www.example.com&type=A&client=11.0.1.0/24&evacuate=us-east&drain=eu-west:0",
        None,
        "",
    );
    assert_eq!(status, 200, "{ex}");
    assert_eq!(ex["now"]["chosen_region"], "us-east");
    assert_eq!(ex["what_if"]["chosen_region"], "eu-west");
    assert_eq!(ex["applied"], false);
    assert_eq!(generation(&m), at);
}

#[test]
fn a_change_predicted_above_a_regions_capacity_is_refused_with_409() {
    let m = start(|t| {
        t.replace(
            "name = \"eu-west\"\n",
            "name = \"eu-west\"\ncapacity_qps = 1\n",
        )
    });
    // The query rate is measured every few seconds: send traffic until a preview sees it.
    let mut seen = Value::Null;
    for _ in 0..40 {
        traffic(m.v4(), 1);
        let (status, v) = post(&m, "/v1/what-if", r#"{"evacuate": ["us-east"]}"#);
        assert_eq!(status, 200);
        if v["qps"].as_f64().is_some_and(|q| q > 0.0) {
            seen = v;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(seen["over_capacity"][0]["region"], "eu-west", "{seen}");
    let (status, body) = post(&m, "/v1/regions/us-east/evacuate", "{}");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["regions"][0]["region"], "eu-west");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("capacity_qps 1")),
        "{body}"
    );
    let us: IpAddr = US_ANSWER.parse().expect("ip");
    assert_eq!(www(m.v4(), "11.0.1.0").0, us, "nothing changed");
    let (status, body) = post(&m, "/v1/regions/us-east/evacuate", r#"{"force": true}"#);
    assert_eq!(status, 200, "{body}");
    let eu: IpAddr = EU_ANSWER.parse().expect("ip");
    assert_eq!(www(m.v4(), "11.0.1.0").0, eu);
}

fn ctl(m: &Meridian, args: &[&str]) -> (Option<i32>, String) {
    let url = format!("http://{}", m.admin());
    let out = std::process::Command::new(bin())
        .args(["ctl", "--server", &url])
        .args(args)
        .env("MERIDIAN_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("run meridian ctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn ctl_and_explain_give_the_same_preview_history_and_rollback() {
    let m = start(|t| t);
    traffic(m.v4(), 2);
    let good = generation(&m);
    let (code, text) = ctl(
        &m,
        &["what-if", "--evacuate", "us-east", "--drain", "eu-west=10"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("(nothing applied)"), "{text}");
    assert!(text.contains("www.example.com."), "{text}");
    assert!(text.contains("moves: US us-east -> eu-west"), "{text}");
    let (code, text) = ctl(&m, &["what-if", "--drain", "eu-west"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("REGION=PERCENT"), "{text}");

    let (code, text) = ctl(&m, &["evacuate", "us-east", "--reason", "drill"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = ctl(&m, &["history", "--limit", "2"]);
    assert_eq!(code, Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("GEN"), "{text}");
    assert!(lines[1].contains("evacuate us-east"), "{text}");
    assert!(lines[1].contains("us-east: serving -> evacuated"), "{text}");

    let (code, text) = ctl(
        &m,
        &["rollback", &good.to_string(), "--reason", "drill over"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with(&format!("rolled back to generation {good}")),
        "{text}"
    );
    let us: IpAddr = US_ANSWER.parse().expect("ip");
    assert_eq!(www(m.v4(), "11.0.1.0").0, us);

    // `explain` offline: the client on the table in force and on the hypothetical one.
    let out = std::process::Command::new(bin())
        .args(["explain", "--config"])
        .arg(&m.config)
        .args([
            "www.example.com",
            "A",
            "--client",
            "11.0.1.0",
            "--evacuate",
            "us-east",
        ])
        .output()
        .expect("run meridian explain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let (now, after) = text
        .split_once("after the change (not applied):")
        .expect("two parts");
    assert!(now.contains(US_ANSWER), "{now}");
    assert!(after.contains(EU_ANSWER), "{after}");
}

#[test]
fn a_rollback_after_a_restart_compiles_the_saved_config_again() {
    let m = start(|t| t);
    let good = generation(&m);
    let text = std::fs::read_to_string(&m.config).expect("config");
    std::fs::write(&m.config, text.replace("ttl = 30", "ttl = 5")).expect("write");
    let (status, _) = post(&m, "/v1/reload", "");
    assert_eq!(status, 200);
    // Both configs' sources are saved off the publisher's loop: wait for them, then kill.
    let configs = m.scratch.0.join("state").join("configs");
    let saved = (0..200).any(|_| {
        let n = std::fs::read_dir(&configs).map_or(0, |d| d.count());
        let journal = std::fs::read_to_string(m.scratch.0.join("state").join("history.jsonl"))
            .unwrap_or_default();
        if n == 2 && journal.contains("\"kind\":\"reload\"") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
        false
    });
    assert!(saved, "two config sources saved");
    let m = m.restart(&[]);
    assert_eq!(
        www(m.v4(), "11.0.1.0").1,
        5,
        "the file's config after the restart"
    );
    let (status, body) = post(&m, "/v1/rollback", &format!(r#"{{"to": {good}}}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        www(m.v4(), "11.0.1.0").1,
        30,
        "the saved config, compiled again"
    );
    // Without the saved source, a config not in memory cannot come back: refused.
    std::fs::remove_dir_all(&configs).expect("remove");
    let m = m.restart(&[]);
    assert_eq!(www(m.v4(), "11.0.1.0").1, 5, "the file's config again");
    let before = generation(&m);
    let (status, body) = post(&m, "/v1/rollback", &format!(r#"{{"to": {good}}}"#));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer kept")),
        "{body}"
    );
    assert_eq!(generation(&m), before, "nothing changed");
    assert_eq!(www(m.v4(), "11.0.1.0").1, 5);
}
