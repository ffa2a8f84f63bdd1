//! Black-box tests: the real binary on ephemeral loopback ports.
#![allow(
    clippy::disallowed_methods,
    reason = "black-box tests bound their waits on the real clock of a real server process"
)]
mod admin;
mod architecture;
mod asn_files;
mod backend;
mod cli;
mod ctl;
mod dig;
mod dnssec;
mod dnstap;
mod drains;
mod failover;
mod fixtures;
#[cfg(feature = "etcd")]
mod fleet;
mod geoip_files;
mod guard;
mod hardening;
mod harness;
mod history;
mod hostnames;
mod interop;
mod knot;
mod policies;
mod protocol;
mod scrape;
mod smoke;
mod zonefile;
