//! The DNS side: wire checks, the request handler, and the listeners.
pub mod fast;
pub mod handler;
pub mod listen;
#[cfg(test)]
mod prop_tests;
pub mod rrl;
pub mod tcp;
pub mod templates;
pub mod udp;
pub mod wire;
