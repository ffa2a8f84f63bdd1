//! The values a lookup produces: what routing learns about an address ([`GeoInfo`], and
//! `Place`, the part of it a database record holds), and the geometry of locations: degrees
//! ([`LatLon`]), unit vectors ([`Point`]) and the distances between them.
use super::codes::{Continent, CountryCode, Subdivision};

/// A latitude/longitude pair in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

const EARTH_RADIUS_KM: f64 = 6371.0;

/// A location as a unit vector. Comparing chord lengths between such points ranks places
/// exactly as great-circle distance does, for a handful of multiplications.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point([f64; 3]);

impl Point {
    /// Straight-line distance through the unit sphere (0 to 2).
    pub fn chord(self, other: Point) -> f64 {
        let d = [
            self.0[0] - other.0[0],
            self.0[1] - other.0[1],
            self.0[2] - other.0[2],
        ];
        (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
    }

    /// Great-circle distance in km for a chord length.
    pub fn km(chord: f64) -> f64 {
        2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
    }
}

impl LatLon {
    pub fn point(self) -> Point {
        let (lat, lon) = (self.lat.to_radians(), self.lon.to_radians());
        Point([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()])
    }

    /// Great-circle distance in kilometres (haversine, mean Earth radius).
    pub fn distance_km(self, other: LatLon) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }
}

/// What routing needs to know about one client address.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct GeoInfo {
    pub country: Option<CountryCode>,
    /// The first-level subdivision (state, province), where the database gives its code.
    pub subdivision: Option<Subdivision>,
    pub continent: Option<Continent>,
    pub location: Option<LatLon>,
    /// `location` as a unit vector, for cheap distance ranking.
    pub point: Option<Point>,
    /// Prefix length of the database network the address fell in (in the address's own family).
    /// Every address in that network gets the same `GeoInfo`, so this bounds the ECS scope.
    pub network_prefix: u8,
    /// Whether the database had a record for the address at all.
    pub found: bool,
}

/// The decoded part of a record (everything in [`GeoInfo`] but the network).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Place {
    pub(super) country: Option<CountryCode>,
    pub(super) subdivision: Option<Subdivision>,
    pub(super) continent: Option<Continent>,
    pub(super) location: Option<LatLon>,
    pub(super) point: Option<Point>,
}

impl Place {
    /// What routing sees of an address in a network with this place (`None`: no record).
    pub(super) fn info(place: Option<Place>, network_prefix: u8) -> GeoInfo {
        match place {
            Some(p) => GeoInfo {
                country: p.country,
                subdivision: p.subdivision,
                continent: p.continent,
                location: p.location,
                point: p.point,
                network_prefix,
                found: true,
            },
            None => GeoInfo {
                network_prefix,
                ..GeoInfo::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circle() {
        let ashburn = LatLon {
            lat: 39.04,
            lon: -77.49,
        };
        let frankfurt = LatLon {
            lat: 50.11,
            lon: 8.68,
        };
        let d = ashburn.distance_km(frankfurt);
        assert!((6400.0..6600.0).contains(&d), "got {d}");
        assert_eq!(ashburn.distance_km(ashburn), 0.0);
    }
}
