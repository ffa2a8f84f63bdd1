//! Routing: the immutable table, the one decision function, and answer assembly.
pub mod answer;
pub mod decide;
pub mod latency;
pub mod prefix;
pub mod publish;
pub mod table;
pub mod trace;

pub use table::{Compiled, RoutingTable};
