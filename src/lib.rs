//! Meridian: an authoritative GeoDNS traffic manager.
pub mod admin;
pub mod alloc;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod ctl;
pub mod dns;
pub mod explain;
pub mod geo;
pub mod hash;
pub mod health;
pub mod metrics;
pub mod routing;
pub mod settings;
pub mod state;
