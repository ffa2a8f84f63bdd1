//! GeoIP: the lookup the router uses, and the MMDB writer behind the test fixtures.
//!
//! The rest of Meridian sees only [`GeoInfo`], a small `Copy` value; the maxminddb API stays
//! inside this module.
pub mod build;
mod codes;
mod huge;
mod lookup;
mod model;

pub use codes::{Continent, CountryCode, all_countries, continent_of};
pub use lookup::{GeoDb, GeoError, Schema, Stage};
pub use model::{GeoInfo, LatLon, Point};
