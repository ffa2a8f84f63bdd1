//! The DNS side: the snapshot the listeners read, wire checks, the fast path and the full
//! handler, prepared responses, counters, rate limiting and the listeners.
pub mod counters;
pub mod dnssec;
pub mod dnstap;
pub mod fast;
pub mod handler;
pub mod listen;
#[cfg(test)]
mod prop_tests;
pub mod rrl;
pub mod sample;
pub mod snapshot;
pub mod tcp;
pub mod templates;
pub mod udp;
pub mod wire;
