//! Making GeoIP databases, never reading them for routing: the MMDB writer, the build of the
//! committed test fixtures from their readable source, ASN databases from ip-location-db's
//! ASN CSV, and the synthetic world-sized database for benchmarks. The server's lookup does
//! not use any of it; the CLI's `geoip-build` and `geoip-synth` commands, the tests, the
//! benches and the fuzz targets do.
pub mod asn_csv;
pub mod source;
pub mod synthetic;
pub mod writer;
