//! Meridian: an authoritative GeoDNS traffic manager.
pub mod cli;
pub mod config;
pub mod dns;
pub mod explain;
pub mod geo;
pub mod health;
pub mod routing;
pub mod state;
