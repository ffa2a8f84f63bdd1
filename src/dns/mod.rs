//! The DNS side: wire checks, the request handler, and the listeners.
pub mod handler;
pub mod listen;
pub mod wire;
