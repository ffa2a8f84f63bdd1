//! Health: the probes that run a check ([`check`]), the rise/fall state machine ([`state`]),
//! and the scheduler that drives them ([`prober`]).
pub mod check;
pub mod figure;
pub mod prober;
pub mod state;
