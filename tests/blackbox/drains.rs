//! Partial drains through the real binary: a stable share of a region's clients moves, a
//! raised share only moves more, the drain survives a restart, shows in `/v1/regions`,
//! `/metrics`, `explain` and `meridian ctl`, and lifts itself when it expires.
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;

const TOKEN: &str = "test-admin-token";
const US: &str = "192.0.2.10";
const EU: &str = "198.51.100.10";

/// The example config with a state_dir and an admin token.
fn start() -> Meridian {
    let scratch = Scratch::new();
    let token_file = scratch.write("admin-token", &format!("{TOKEN}\n"));
    let text = example_config().replace(
        "[server]\n",
        &format!(
            "[server]\nstate_dir = \"{}\"\nadmin_token_file = \"{}\"\n",
            scratch.0.join("state").display(),
            token_file.display()
        ),
    );
    let config = scratch.write("meridian.toml", &text);
    Meridian::start_with(scratch, config, &[]).unwrap_or_else(|e| panic!("start: {e}"))
}

/// The /24s of 11.0.0.0/16 (US in the fixture), each as an ECS client.
fn subnets() -> Vec<String> {
    (0..=255).map(|n| format!("11.0.{n}.0")).collect()
}

/// The www A answer for each subnet, and the ECS scope of each response.
fn answers(dns: SocketAddr) -> Vec<(IpAddr, u8)> {
    subnets()
        .iter()
        .map(|net| {
            let r = udp(
                dns,
                &with_ecs(query("www.example.com.", RecordType::A), net, 24),
            );
            let scope = ecs_of(&r).expect("ECS echoed").scope_prefix();
            (*addrs(&r).first().expect("an answer"), scope)
        })
        .collect()
}

fn moved(dns: SocketAddr) -> BTreeSet<usize> {
    let eu: IpAddr = EU.parse().expect("ip");
    answers(dns)
        .iter()
        .enumerate()
        .filter(|(_, (a, _))| *a == eu)
        .map(|(i, _)| i)
        .collect()
}

fn drain(m: &Meridian, percent: f64, extra: &str) -> serde_json::Value {
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        &format!(r#"{{"percent": {percent}, "reason": "ramp"{extra}}}"#),
    );
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_drain_moves_a_stable_share_survives_a_restart_and_shows_everywhere() {
    let m = start();
    let us: IpAddr = US.parse().expect("ip");
    assert!(
        answers(m.v4()).iter().all(|(a, _)| *a == us),
        "all US at first"
    );

    drain(&m, 30.0, "");
    let at_30 = moved(m.v4());
    let share = at_30.len() as f64 * 100.0 / 256.0;
    assert!((20.0..=40.0).contains(&share), "{share:.1} % moved at 30 %");
    // Answers that depend on the bucket say so: the scope covers the /24.
    assert!(answers(m.v4()).iter().all(|(_, scope)| *scope >= 24));

    drain(&m, 60.0, r#", "expires_in": "1h""#);
    let at_60 = moved(m.v4());
    assert!(
        at_30.is_subset(&at_60),
        "a client moved at 30 % came back at 60 %"
    );
    let share = at_60.len() as f64 * 100.0 / 256.0;
    assert!((50.0..=70.0).contains(&share), "{share:.1} % moved at 60 %");

    let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
    let region = regions["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["name"] == "us-east")
        .expect("us-east")
        .clone();
    assert_eq!(region["drain"]["percent"], 60.0, "{region}");
    assert!(region["drain"]["expires"].as_u64().is_some(), "{region}");
    let (_, metrics) = http(m.admin(), "GET", "/metrics", None, "");
    assert!(
        metrics.contains("meridian_region_drain_percent{region=\"us-east\"} 60"),
        "{metrics}"
    );
    assert!(
        metrics.contains("reason=\"drained\""),
        "answers counted as drained"
    );

    // explain: the bucket, and whether the drain moved the client.
    let subnet = |i: usize| format!("11.0.{i}.0/24");
    let first_moved = *at_60.iter().next().expect("a moved client");
    let first_kept = (0..256)
        .find(|i| !at_60.contains(i))
        .expect("a kept client");
    let explain = |client: &str| {
        let out = run(
            &[
                "ctl",
                "--server",
                &format!("http://{}", m.admin()),
                "explain",
                "www.example.com",
                "A",
                "--client",
                client,
            ],
            &repo(),
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = explain(&subnet(first_moved));
    assert!(text.contains("drain      bucket"), "{text}");
    assert!(
        text.contains("skipped: drained 60 %, moves this client"),
        "{text}"
    );
    assert!(text.contains("chosen     eu-west (drained)"), "{text}");
    let text = explain(&subnet(first_kept));
    assert!(text.contains("(drained 60 %, client stays)"), "{text}");
    assert!(text.contains("chosen     us-east (geo)"), "{text}");

    // SIGKILL and start again: the same clients stay moved.
    let m = m.restart(&[]);
    assert_eq!(
        moved(m.v4()),
        at_60,
        "the drain was on disk before the API answered"
    );

    // 0 % lifts it.
    drain(&m, 0.0, "");
    assert!(moved(m.v4()).is_empty());
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        Some(TOKEN),
        r#"{"percent": 0}"#,
    );
    assert_eq!(status, 409, "nothing to lift: {body}");
    for bad in [
        r#"{"percent": 120}"#,
        r#"{"reason": "no percent"}"#,
        r#"{"percent": 5, "expires_in": "soon"}"#,
    ] {
        let (status, body) = http_json(
            m.admin(),
            "POST",
            "/v1/regions/us-east/drain",
            Some(TOKEN),
            bad,
        );
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/us-east/drain",
        None,
        r#"{"percent": 5}"#,
    );
    assert_eq!(status, 401, "a drain needs the token");
}

#[test]
fn drains_and_evacuations_lift_themselves_when_they_expire() {
    let m = start();
    drain(&m, 100.0, r#", "expires_in": "1s""#);
    assert_eq!(moved(m.v4()).len(), 256, "100 % moves everyone");
    let (status, body) = http_json(
        m.admin(),
        "POST",
        "/v1/regions/ap-southeast/evacuate",
        Some(TOKEN),
        r#"{"reason": "window", "expires_in": "2s"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Bounded wait: both lift within a few seconds, with an audit line each.
    let deadline = Instant::now() + Duration::from_secs(15);
    let us: IpAddr = US.parse().expect("ip");
    loop {
        let (_, regions) = http_json(m.admin(), "GET", "/v1/regions", None, "");
        let lifted = regions["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .all(|r| r["drain"].is_null() && r["evacuated"] == false);
        let logs = m.logs();
        if lifted && logs.contains("drain expired") && logs.contains("evacuation expired") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still in force or not audited: {regions}\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answers(m.v4()).iter().all(|(a, _)| *a == us));
}
