//! Picking a region's endpoints for one answer: up to `answers` of them, rotated by a stable
//! hash of the client's network so clients spread over a region while each network keeps
//! its answer.
use std::net::IpAddr;

use super::query::{Client, Picks};
use super::table::{EndpointId, RoutingTable, Service};
use crate::hash::{Fnv1a, mix64};

/// Whether [`pick`] skips endpoints that are down.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Healthy {
    Only,
    Any,
}

/// Up to `answers` endpoints of the region, rotated by a hash of the client's network so that
/// clients spread over a region's endpoints while each network keeps its answer.
pub(super) fn pick(
    table: &RoutingTable,
    svc: &Service,
    endpoints: &[EndpointId],
    client: &Client,
    scope: u8,
    healthy: Healthy,
) -> Picks {
    let mut picks = Picks::EMPTY;
    let len = endpoints.len();
    let start = if len > svc.answers {
        (network_hash(client.addr, scope, 0) % len as u64) as usize
    } else {
        0
    };
    for k in 0..len {
        if picks.as_slice().len() >= svc.answers {
            break;
        }
        let id = endpoints[(start + k) % len];
        if healthy == Healthy::Any || table.serving(id) {
            picks.push(id);
        }
    }
    picks
}

/// FNV-1a over the first `prefix` bits of the address and a salt, finished with a 64-bit
/// mix so nearby networks spread evenly.
pub(super) fn network_hash(addr: IpAddr, prefix: u8, salt: u64) -> u64 {
    let bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let keep = u32::from(prefix).min(width);
    let masked = if keep == 0 { 0 } else { bits >> (width - keep) };
    let mut h = Fnv1a::default();
    h.bytes(&masked.to_le_bytes());
    h.byte(prefix);
    h.bytes(&salt.to_le_bytes());
    mix64(h.value())
}
