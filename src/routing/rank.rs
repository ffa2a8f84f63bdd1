//! How each policy places a region for a client: a [`Key`] that sorts best first, and the
//! [`Rank`] that says why, for the trace. Geo ranks by country, continent, then distance;
//! proximity by biased distance; latency by expected RTT with the measured penalty and the
//! incumbent's margin; failover by its configured order. A CIDR map's override (by network
//! or by ASN) beats them all.
use super::context::Context;
use super::latency::{Row, RowKind};
use super::table::{Policy, ServiceRegion};
use super::trace::{Rank, RttSource};
use crate::geo::Point;

/// A region's place in the client's order: (tier, metric, challenger, default position,
/// index), packed so that one integer comparison sorts best first (an incumbent wins exact
/// ties).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Key(u64);

/// Tiers of [`Key`], best first.
pub(super) const TIER_OVERRIDE: u8 = 0;
pub(super) const TIER_SUBDIVISION: u8 = 1;
pub(super) const TIER_COUNTRY: u8 = 2;
pub(super) const TIER_CONTINENT: u8 = 3;
/// Ranked by a metric: distance, biased distance or expected RTT.
pub(super) const TIER_METRIC: u8 = 4;
pub(super) const TIER_DEFAULT: u8 = 5;
pub(super) const TIER_FAILOVER: u8 = 6;

impl Key {
    fn new(tier: u8, metric: u32, challenger: bool, position: u16, index: usize) -> Key {
        Key(u64::from(tier) << 61
            | u64::from(metric) << 29
            | u64::from(challenger) << 28
            | u64::from(position) << 12
            | index as u64 & 0xFFF)
    }

    pub(super) fn tier(self) -> u8 {
        (self.0 >> 61) as u8
    }

    /// The region's index in the service's list.
    pub(super) fn index(self) -> usize {
        (self.0 & 0xFFF) as usize
    }
}

/// Where a region stands for this client; the rank says why, for the trace (when only the
/// key is used, inlining leaves the rank unbuilt).
#[inline(always)]
pub(super) fn rank_region(
    cx: &Context<'_>,
    sr: &ServiceRegion,
    row: Option<&Row<'_>>,
    incumbent: Option<usize>,
    i: usize,
) -> (Key, Rank) {
    let compiled = &*cx.table.compiled;
    let region = compiled.region(sr.region);
    let chord = cx.chord(sr);
    // Rank by chord length (same order as distance, no trigonometry); km only when shown.
    let chord_key = |c: f64| (c * 1.0e9) as u32;
    let shown_km = |c: f64| {
        if cx.detailed {
            Point::km(c).round() as u32
        } else {
            0
        }
    };
    let key = |tier: u8, metric: u32| Key::new(tier, metric, true, sr.rank, i);
    let default = (
        key(TIER_DEFAULT, 0),
        Rank::DefaultOrder { position: sr.rank },
    );
    if cx.overridden == Some(sr.region) {
        return (key(TIER_OVERRIDE, 0), cx.override_rank());
    }
    match cx.svc.policy {
        Policy::Failover => (
            key(TIER_FAILOVER, 0),
            Rank::FailoverOrder { position: sr.rank },
        ),
        Policy::Geo => {
            let km_key = chord.map_or(u32::MAX, chord_key);
            if cx
                .geo
                .subdivision
                .is_some_and(|s| region.subdivisions.contains(&s))
            {
                (key(TIER_SUBDIVISION, km_key), Rank::Subdivision)
            } else if cx
                .geo
                .country
                .is_some_and(|c| region.countries.contains(&c))
            {
                (key(TIER_COUNTRY, km_key), Rank::Country)
            } else if cx
                .geo
                .continent
                .is_some_and(|c| region.continents.contains(&c))
            {
                (key(TIER_CONTINENT, km_key), Rank::Continent)
            } else if let Some(c) = chord {
                (
                    key(TIER_METRIC, chord_key(c)),
                    Rank::Distance { km: shown_km(c) },
                )
            } else {
                default
            }
        }
        Policy::Proximity => match chord.map(Point::km) {
            Some(k) => {
                let biased = k * (1.0 - region.bias);
                (
                    key(TIER_METRIC, biased.round() as u32),
                    Rank::Proximity {
                        km: k.round() as u32,
                        biased_km: biased.round() as u32,
                    },
                )
            }
            None => default,
        },
        Policy::Latency => match expected_rtt(cx, sr, row, chord) {
            Some((rtt, source)) => {
                let penalty = cx
                    .table
                    .penalty_ms
                    .get(sr.slot as usize)
                    .copied()
                    .flatten()
                    .unwrap_or(0.0);
                let is_incumbent = incumbent == Some(i);
                // The incumbent keeps its clients until another region beats it by the margin.
                let margin = if is_incumbent {
                    cx.svc.latency_margin_ms
                } else {
                    0.0
                };
                let adjusted = f64::from(rtt) + f64::from(penalty) - f64::from(margin);
                let metric = ((adjusted.max(-1.0e5) + 1.0e5) * 1000.0) as u32;
                (
                    Key::new(TIER_METRIC, metric, !is_incumbent, sr.rank, i),
                    Rank::Latency {
                        rtt_ms: rtt,
                        penalty_ms: penalty,
                        source,
                        incumbent: is_incumbent,
                    },
                )
            }
            None => default,
        },
        Policy::Weighted => default,
    }
}

/// Expected RTT to a region in ms: from the latency map, else estimated from distance
/// (fibre: about 200 km per ms one way, so RTT = 2 x km / 200, plus the configured overhead).
pub(super) fn expected_rtt(
    cx: &Context<'_>,
    sr: &ServiceRegion,
    row: Option<&Row<'_>>,
    chord: Option<f64>,
) -> Option<(f32, RttSource)> {
    if let Some(rtt) = row.and_then(|r| r.rtt(sr.region.index())) {
        return Some((rtt, RttSource::Map(row.map_or(RowKind::Cidr, |r| r.kind))));
    }
    chord.map(Point::km).map(|k| {
        (
            (2.0 * k / 200.0) as f32 + cx.table.compiled.latency_overhead_ms,
            RttSource::Estimate,
        )
    })
}
