//! Routing: the immutable table, the one decision function, and answer assembly.
pub mod admin;
pub mod answer;
pub mod context;
pub mod decide;
pub mod latency;
pub mod pick;
#[cfg(test)]
mod policy_tests;
pub mod prefix;
pub mod query;
pub mod rank;
pub mod scenario;
pub mod sign;
pub mod table;
#[cfg(test)]
pub(crate) mod test_support;
pub mod trace;
pub mod weighted;

pub use table::{Compiled, RoutingTable};
