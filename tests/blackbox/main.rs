//! Black-box tests: the real binary on ephemeral loopback ports.
mod admin;
mod architecture;
mod backend;
mod cli;
mod dig;
mod failover;
mod fixtures;
#[cfg(feature = "etcd")]
mod fleet;
mod hardening;
mod harness;
mod interop;
mod policies;
mod protocol;
mod smoke;
