//! The GeoIP databases a config names, in order (ip-location-db ships IPv4 and IPv6 as
//! separate files). A lookup asks the databases that hold networks of the address's family,
//! first to last, until one has a record for it.
use std::net::IpAddr;
use std::sync::Arc;

use super::db::{GeoDb, by_family};
use super::index::Stage;
use super::model::GeoInfo;

pub struct GeoSet {
    dbs: Vec<Arc<GeoDb>>,
    /// Indices into `dbs` of the databases with IPv4 (and IPv6) networks, in order.
    v4: Box<[usize]>,
    v6: Box<[usize]>,
}

impl GeoSet {
    pub fn new(dbs: Vec<Arc<GeoDb>>) -> GeoSet {
        let counts: Vec<(u64, u64)> = dbs
            .iter()
            .map(|db| {
                let c = db.coverage();
                (c.v4_networks, c.v6_networks)
            })
            .collect();
        let (v4, v6) = by_family(&counts);
        GeoSet { v4, v6, dbs }
    }

    /// Every database, in config order.
    pub fn databases(&self) -> &[Arc<GeoDb>] {
        &self.dbs
    }

    fn family(&self, ip: IpAddr) -> &[usize] {
        match ip.to_canonical() {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        }
    }

    /// Starts loading what a lookup of `ip` will read first (see [`Stage`]).
    #[inline]
    pub fn prefetch(&self, ip: IpAddr, stage: Stage) {
        if let Some(&i) = self.family(ip).first() {
            self.dbs[i].prefetch(ip, stage);
        }
    }

    /// What the first database with a record for `ip` says; "not found" from the first of
    /// its family when none has one.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        self.lookup_in(ip).0
    }

    /// [`GeoSet::lookup`], and the database that answered (for `explain`).
    pub fn lookup_in(&self, ip: IpAddr) -> (GeoInfo, Option<&GeoDb>) {
        let mut first = None;
        for &i in self.family(ip) {
            let info = self.dbs[i].lookup(ip);
            if info.found {
                return (info, Some(&self.dbs[i]));
            }
            first.get_or_insert((info, &*self.dbs[i]));
        }
        match first {
            Some((info, db)) => (info, Some(db)),
            None => (GeoInfo::default(), None),
        }
    }
}

impl std::fmt::Debug for GeoSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.dbs.iter()).finish()
    }
}
