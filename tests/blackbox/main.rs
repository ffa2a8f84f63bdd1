//! Black-box tests: the real binary on ephemeral loopback ports.
mod admin;
mod backend;
mod cli;
mod dig;
mod failover;
mod fixtures;
mod harness;
mod protocol;
mod smoke;
