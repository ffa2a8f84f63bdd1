//! `meridian ctl` against a running server: status, regions, evacuate, restore, reload and
//! explain through the admin API, with exit codes 0 (done), 1 (refused) and 2 (usage).
use std::process::Output;

use crate::harness::*;

const TOKEN: &str = "ctl-test-token";

/// The example server with an admin token; returns it and its admin URL.
fn start() -> (Meridian, String, Scratch) {
    let scratch = Scratch::new();
    let token = scratch.write("token", &format!("{TOKEN}\n"));
    let text = example_config().replace(
        "[server]\n",
        &format!("[server]\nadmin_token_file = \"{}\"\n", token.display()),
    );
    let m = Meridian::start(&text);
    let url = format!("http://{}", m.admin());
    (m, url, scratch)
}

fn ctl(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["ctl", "--server", url]).args(args);
    cmd.env_remove("MERIDIAN_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("MERIDIAN_ADMIN_TOKEN", t);
    }
    cmd.output().expect("run meridian ctl")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn www_from_the_us(m: &Meridian) -> String {
    dig(
        m.v4(),
        &["+subnet=11.0.0.0/16", "www.example.com", "A", "+short"],
    )
    .trim()
    .to_string()
}

#[test]
fn ctl_drives_a_running_server() {
    let (m, url, _scratch) = start();
    let out = ctl(&url, None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out).contains("ready       yes"), "{}", text(&out));

    let out = ctl(&url, None, &["regions"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out);
    assert!(table.starts_with("REGION"), "{table}");
    assert!(table.contains("us-east          serving"), "{table}");

    // A change without the token is refused by the server: exit 1 with its message.
    let out = ctl(&url, None, &["evacuate", "us-east", "--reason", "drill"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    assert_eq!(www_from_the_us(&m), "192.0.2.10");

    let out = ctl(
        &url,
        Some(TOKEN),
        &["evacuate", "us-east", "--reason", "drill"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out).starts_with("evacuated us-east: generation"),
        "{}",
        text(&out)
    );
    assert_eq!(www_from_the_us(&m), "198.51.100.10", "answers moved");
    let table = text(&ctl(&url, None, &["regions"]));
    assert!(
        table.contains("us-east          evacuated") && table.contains("drill"),
        "{table}"
    );
    // JSON for scripts.
    let json: serde_json::Value =
        serde_json::from_str(&text(&ctl(&url, None, &["--json", "regions"]))).expect("JSON");
    assert_eq!(json["regions"][0]["evacuated"], true);

    // Evacuating twice is the server's conflict: exit 1.
    assert_eq!(
        ctl(&url, Some(TOKEN), &["evacuate", "us-east"])
            .status
            .code(),
        Some(1)
    );
    let out = ctl(&url, Some(TOKEN), &["restore", "us-east"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(www_from_the_us(&m), "192.0.2.10");

    let out = ctl(
        &url,
        None,
        &["explain", "www.example.com", "A", "--client", "12.0.0.1/24"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out).contains("chosen     eu-west (geo)"),
        "{}",
        text(&out)
    );

    let out = ctl(&url, Some(TOKEN), &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out).starts_with("reloaded: generation"));
}

#[test]
fn ctl_exit_codes_for_usage_and_unreachable_servers() {
    assert_eq!(
        ctl("http://127.0.0.1:9", None, &["frobnicate"])
            .status
            .code(),
        Some(2)
    );
    // Nothing listens on the discard port: exit 1, with the reason.
    let out = ctl("http://127.0.0.1:9", None, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
}
