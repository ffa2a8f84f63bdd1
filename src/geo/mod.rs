//! GeoIP: the lookup the router uses, and the MMDB writer behind the test fixtures.
//!
//! The rest of Meridian sees only [`GeoInfo`], a small `Copy` value; the maxminddb API stays
//! inside this module. By job:
//!
//! - `model.rs`: [`GeoInfo`], [`LatLon`], [`Point`] and the distances between places;
//! - `asn.rs`: [`AsnDb`] and [`AsnSet`], the ASN databases behind `cidr_maps` ASN overrides;
//! - `db.rs`: [`GeoDb`], opening a database, detecting its [`Schema`], decoding records;
//! - `index.rs`: the range tables a lookup reads instead of the tree, and their prefetch
//!   [`Stage`]s;
//! - `codes.rs`: country and continent codes; `huge.rs`: huge-page backed arrays for the tables;
//! - [`build`]: making databases (the MMDB writer, the fixtures, the synthetic benchmark
//!   database), never used by a lookup.
mod asn;
pub mod build;
mod codes;
mod db;
mod huge;
mod index;
mod model;
mod set;

pub use asn::{AsnCoverage, AsnDb, AsnInfo, AsnSet};
pub use codes::{Continent, CountryCode, Subdivision, all_countries, continent_of};
pub use db::{Coverage, GeoDb, GeoError, Schema};
pub use index::Stage;
pub use model::{GeoInfo, LatLon, Point};
pub use set::GeoSet;
