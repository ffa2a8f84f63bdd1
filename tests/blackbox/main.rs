//! Black-box tests: the real binary on ephemeral loopback ports.
mod fixtures;
mod harness;
mod smoke;
