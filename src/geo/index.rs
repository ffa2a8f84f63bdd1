//! The range index: every network of a database as flat, sorted range tables (IPv4 by /16
//! block; IPv6 by the top 64 bits, with a direct index by /19 of global unicast and finer
//! parts for crowded /19s), built once from the tree when a database is loaded. On the DNS
//! path [`GeoDb`](super::GeoDb) reads these tables, warming them ahead in prefetch [`Stage`]s,
//! and walks the tree only for what they leave to it ([`TREE`] ranges).
#![allow(unsafe_code, reason = "prefetch hints on the range tables")]
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use maxminddb::{Reader, WithinOptions};

use super::db::{Schema, decode_place};
use super::huge::HugeSlice;
use super::model::Place;

/// Per range: place id + 1 (0: no data) << 8 | network prefix.
type Info = u32;
/// An IPv6 range the table does not answer for: look the address up in the tree.
const TREE: Info = u32::MAX;
/// IPv6 ranges per entry of the sampled index.
const SAMPLE: usize = 16;

/// Sorted, non-overlapping ranges covering a key space, each with its [`Info`].
struct Ranges<K: Copy> {
    starts: HugeSlice<K>,
    info: HugeSlice<Info>,
}

impl<K: Copy + Ord> Ranges<K> {
    fn new(mut ranges: Vec<(K, Info)>) -> Ranges<K> {
        ranges.sort_unstable_by_key(|r| r.0);
        Ranges {
            starts: HugeSlice::collect(ranges.len(), ranges.iter().map(|r| r.0)),
            info: HugeSlice::collect(ranges.len(), ranges.iter().map(|r| r.1)),
        }
    }

    /// The info of the range holding `key`, searching only `starts[lo..hi]`, whose first
    /// start is known to be at most `key`.
    fn find(&self, key: K, lo: usize, hi: usize) -> Info {
        let i = lo + self.starts[lo..hi].partition_point(|s| *s <= key);
        self.info[i.saturating_sub(1)]
    }
}

/// Every network of the database (with data or not) as flat range tables: a lookup reads an
/// index slot and binary-searches a few adjacent starts, instead of walking the tree, which
/// costs a cache miss per level on a database of real size.
pub(super) struct RangeTables {
    /// IPv4, by /16 block.
    v4: Option<V4Blocks>,
    /// IPv6 by the top 64 bits.
    v6: Option<V6Table>,
    places: Vec<Place>,
}

impl RangeTables {
    pub(super) fn build(
        reader: &Reader<Vec<u8>>,
        records: &HashMap<usize, Place, BuildHasherDefault<OffsetHasher>>,
    ) -> RangeTables {
        let mut ids: HashMap<usize, u32, BuildHasherDefault<OffsetHasher>> = HashMap::default();
        let mut places = Vec::new();
        let mut info = |item: &maxminddb::LookupResult<'_, Vec<u8>>, prefix: u8| -> Info {
            let id = match item.offset() {
                None => 0,
                Some(offset) => *ids.entry(offset).or_insert_with(|| {
                    places.push(
                        records
                            .get(&offset)
                            .copied()
                            .unwrap_or_else(|| decode_place(item, Schema::Flat)),
                    );
                    places.len() as u32
                }),
            };
            id << 8 | Info::from(prefix)
        };
        let opts = || WithinOptions::default().include_networks_without_data();

        let mut v4: Vec<(u32, Info)> = Vec::new();
        if let Ok(within) = reader.within("0.0.0.0/0".parse().expect("a network"), opts()) {
            for item in within.flatten() {
                if let Ok(net) = item.network()
                    && let IpAddr::V4(start) = net.network()
                {
                    v4.push((u32::from(start), info(&item, net.prefix())));
                }
            }
        }
        let mut v6: Vec<(u64, Info)> = Vec::new();
        if reader.metadata().ip_version == 6
            && let Ok(within) = reader.within("::/0".parse().expect("a network"), opts())
        {
            for item in within.flatten() {
                let Ok(net) = item.network() else { continue };
                let IpAddr::V6(start) = net.network() else {
                    continue;
                };
                let start = u128::from(start);
                if start >> 32 == 0 {
                    continue; // the IPv4 space (::/96): left to the tree
                }
                let key = (start >> 64) as u64;
                let entry = if net.prefix() > 64 {
                    (key, TREE)
                } else {
                    (key, info(&item, net.prefix()))
                };
                if v6.last() != Some(&entry) {
                    v6.push(entry);
                }
            }
        }
        if places.len() >= 1 << 24 {
            return RangeTables {
                v4: None,
                v6: None,
                places: Vec::new(),
            };
        }
        let v4 = (!v4.is_empty()).then(|| V4Blocks::new(v4));
        let v6 = (!v6.is_empty()).then(|| V6Table::new(v6)).flatten();
        RangeTables { v4, v6, places }
    }

    /// Starts loading what [`RangeTables::lookup`] of `ip` reads at `stage`: the dispatch of
    /// [`GeoDb::prefetch`](super::GeoDb::prefetch) to the family's table.
    pub(super) fn prefetch(&self, ip: IpAddr, stage: Stage) {
        match (ip, &self.v4, &self.v6) {
            (IpAddr::V4(a), Some(v4), _) => v4.prefetch(u32::from(a), stage),
            (IpAddr::V6(a), _, Some(v6)) => v6.prefetch(v6_key(a), stage),
            _ => {}
        }
    }

    /// The place and network prefix of an address; `None` when the tree must answer.
    pub(super) fn lookup(&self, ip: IpAddr) -> Option<(Option<Place>, u8)> {
        let info = match ip {
            IpAddr::V4(a) => match self.v4.as_ref()?.find(u32::from(a)) {
                TREE => return None,
                info => info,
            },
            IpAddr::V6(a) => match self.v6.as_ref()?.find(v6_key(a)) {
                TREE => return None,
                info => info,
            },
        };
        let id = info >> 8;
        let place = (id > 0).then(|| self.places[(id - 1) as usize]);
        Some((place, (info & 0xFF) as u8))
    }
}

/// The IPv4 ranges grouped by /16 block. A block's ranges are the one holding its first
/// address, then those starting inside it; the block is stored as the low 16 bits of each
/// start, then each range's info as two `u16` halves, all adjacent. A lookup reads one index
/// slot, then one block: typically two neighbouring cache lines.
struct V4Blocks {
    /// `index[b]..index[b + 1]`: block `b` in `data` (3 `u16` per range).
    index: HugeSlice<u32>,
    data: HugeSlice<u16>,
}

impl V4Blocks {
    fn new(mut ranges: Vec<(u32, Info)>) -> V4Blocks {
        ranges.sort_unstable_by_key(|r| r.0);
        if ranges.first().is_none_or(|r| r.0 != 0) {
            ranges.insert(0, (0, TREE));
        }
        let mut index = Vec::with_capacity(65537);
        let mut data: Vec<u16> = Vec::with_capacity(3 * (ranges.len() + 65536));
        let mut block: Vec<(u16, Info)> = Vec::new();
        let mut holding = 0;
        for b in 0..65536u32 {
            holding = holding_from(&ranges, holding, |r| r.0, b << 16);
            block.clear();
            block.push((0, ranges[holding].1));
            let inside = ranges[holding + 1..]
                .iter()
                .take_while(|r| r.0 >> 16 == b)
                .map(|r| (r.0 as u16, r.1));
            block.extend(inside);
            index.push(data.len() as u32);
            data.extend(block.iter().map(|e| e.0));
            data.extend(block.iter().flat_map(|e| [e.1 as u16, (e.1 >> 16) as u16]));
        }
        index.push(data.len() as u32);
        V4Blocks {
            index: HugeSlice::collect(index.len(), index.into_iter()),
            data: HugeSlice::collect(data.len(), data.into_iter()),
        }
    }

    /// Asks the CPU to start loading the index slot of `ip`'s block, then (`Stage::Next`)
    /// the block itself: up to its first four cache lines, which hold all of a typical block.
    fn prefetch(&self, ip: u32, stage: Stage) {
        let b = (ip >> 16) as usize;
        match stage {
            Stage::Index => prefetch(&self.index[b]),
            Stage::Next => {
                let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
                for at in (lo..hi.min(self.data.len())).step_by(32).take(4) {
                    prefetch(&self.data[at]);
                }
            }
            Stage::Last => {}
        }
    }

    fn find(&self, ip: u32) -> Info {
        let b = (ip >> 16) as usize;
        let (lo, hi) = (self.index[b] as usize, self.index[b + 1] as usize);
        let block = &self.data[lo..hi];
        let (lows, info) = block.split_at(block.len() / 3);
        // The block's first range starts at 0: the search finds at least that one.
        let i = lows.partition_point(|s| *s <= ip as u16) - 1;
        Info::from(info[2 * i]) | Info::from(info[2 * i + 1]) << 16
    }
}

/// A hint to load the cache line at `item`, so that the load overlaps other work.
fn prefetch<T>(item: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect a program can observe.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(item.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

/// IPv6 ranges keyed by the top 64 bits of their start. Networks longer than /64, the
/// aliases of the IPv4 space and the IPv4 space itself are [`TREE`] ranges. Global unicast
/// (2000::/3), where nearly every assigned network lies, has a direct index by /19; a /19
/// with many ranges (real databases crowd into a few allocations) has a second, finer index of
/// its own, so that a lookup never searches more than a few ranges. The rest of the space is
/// found through every [`SAMPLE`]-th start.
struct V6Table {
    global: HugeSlice<Slot>,
    /// The finer indexes of crowded slots, one after another: entry `j` of a slot's is the
    /// range holding the first address of its `j`-th part.
    parts: HugeSlice<u32>,
    samples: Box<[u64]>,
    ranges: Ranges<u64>,
}

/// One /19 of 2000::/3.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// The range holding the slot's first address.
    first: u32,
    /// 0: search from `first` to the next slot's. Else the slot is split into `2^(fine >>
    /// 27)` equal parts indexed at `parts[(fine & OFFSET) - 1..]`.
    fine: u32,
}

/// Bits of the direct index below the /3.
const GLOBAL_BITS: u32 = 16;
/// Low key bits within one slot.
const GLOBAL_SHIFT: u32 = 61 - GLOBAL_BITS;
/// A slot holding more ranges than this gets a finer index...
const CROWDED: usize = 16;
/// ... with parts of about this many ranges each (on average).
const PER_PART: usize = 4;
/// Bits of [`Slot::fine`] that hold the offset.
const OFFSET: u32 = (1 << 27) - 1;

fn v6_key(a: std::net::Ipv6Addr) -> u64 {
    (u128::from(a) >> 64) as u64
}

impl V6Table {
    fn new(ranges: Vec<(u64, Info)>) -> Option<V6Table> {
        let ranges = Ranges::new(fill_gaps(ranges));
        let samples = ranges.starts.iter().step_by(SAMPLE).copied().collect();
        let starts = &ranges.starts;
        let mut firsts = Vec::with_capacity(1 << GLOBAL_BITS);
        let mut holding = 0;
        for slot in 0..1u64 << GLOBAL_BITS {
            holding = holding_from(starts, holding, |s| *s, (1 << 61) + (slot << GLOBAL_SHIFT));
            firsts.push(holding);
        }
        let mut slots = Vec::with_capacity(firsts.len());
        let mut parts: Vec<u32> = Vec::new();
        for (slot, &first) in firsts.iter().enumerate() {
            let end = firsts.get(slot + 1).map_or(starts.len(), |&next| next + 1);
            let crowd = end - first;
            let mut fine = 0;
            if crowd > CROWDED {
                let bits = (crowd / PER_PART)
                    .next_power_of_two()
                    .trailing_zeros()
                    .clamp(1, 24);
                fine = bits << 27
                    | u32::try_from(parts.len() + 1)
                        .ok()
                        .filter(|o| *o <= OFFSET)?;
                let base = (1u64 << 61) + ((slot as u64) << GLOBAL_SHIFT);
                let mut holding = first;
                for part in 0..1u64 << bits {
                    let key = base + (part << (GLOBAL_SHIFT - bits));
                    holding = holding_from(starts, holding, |s| *s, key);
                    parts.push(u32::try_from(holding).ok()?);
                }
            }
            slots.push(Slot {
                first: u32::try_from(first).ok()?,
                fine,
            });
        }
        Some(V6Table {
            global: HugeSlice::collect(slots.len(), slots.into_iter()),
            parts: HugeSlice::collect(parts.len(), parts.into_iter()),
            samples,
            ranges,
        })
    }

    /// The slot of 2000::/3 that `key` is in.
    fn slot(key: u64) -> Option<usize> {
        (key >> 61 == 1).then_some(((key >> GLOBAL_SHIFT) & ((1 << GLOBAL_BITS) - 1)) as usize)
    }

    /// Where `key`'s range lies, in a global unicast slot: the range holding the first
    /// address of `key`'s slot or part, and (unless it is the last) the index of the entry
    /// that bounds the search from above: in `global` (`false`) or in `parts` (`true`).
    fn bounds(&self, s: usize, key: u64) -> (usize, Option<(usize, bool)>) {
        let slot = self.global[s];
        let next_slot = (s + 1 < self.global.len()).then_some((s + 1, false));
        match slot.part(key) {
            None => (slot.first as usize, next_slot),
            Some((p, last)) => {
                let next = if last { next_slot } else { Some((p + 1, true)) };
                (self.parts[p] as usize, next)
            }
        }
    }

    fn find(&self, key: u64) -> Info {
        let (lo, hi) = match V6Table::slot(key) {
            // The ranges from the one holding the slot's (or part's) first address to the one
            // holding the next one's (the last slot: to the end).
            Some(s) => {
                let (lo, next) = self.bounds(s, key);
                let hi = match next {
                    Some((i, true)) => self.parts[i] as usize + 1,
                    Some((i, false)) => self.global[i].first as usize + 1,
                    None => usize::MAX,
                };
                (lo, hi)
            }
            None => {
                let lo = self
                    .samples
                    .partition_point(|s| *s <= key)
                    .saturating_sub(1)
                    * SAMPLE;
                (lo, lo + SAMPLE)
            }
        };
        self.ranges.find(key, lo, hi.min(self.ranges.starts.len()))
    }

    /// As [`V4Blocks::prefetch`], for global unicast addresses: the slot, then the part of a
    /// crowded slot's index, then the ranges.
    fn prefetch(&self, key: u64, stage: Stage) {
        let Some(s) = V6Table::slot(key) else {
            return;
        };
        if stage == Stage::Index {
            return prefetch(&self.global[s]);
        }
        let slot = self.global[s];
        let lo = match (stage, slot.part(key)) {
            (Stage::Next, Some((p, _))) => return prefetch(&self.parts[p]),
            (Stage::Next, None) => slot.first as usize,
            (Stage::Last, Some((p, _))) => self.parts[p] as usize,
            // The index slot was asked for above; an uncrowded slot has no third stage.
            (Stage::Index | Stage::Last, _) => return,
        };
        if let (Some(start), Some(info)) = (self.ranges.starts.get(lo), self.ranges.info.get(lo)) {
            prefetch(start);
            prefetch(info);
        }
    }
}

impl Slot {
    /// For a crowded slot: where `key`'s part is in [`V6Table::parts`], and whether it is the
    /// slot's last part.
    fn part(self, key: u64) -> Option<(usize, bool)> {
        (self.fine != 0).then(|| {
            let bits = self.fine >> 27;
            let part = ((key >> (GLOBAL_SHIFT - bits)) & ((1 << bits) - 1)) as usize;
            (
                (self.fine & OFFSET) as usize - 1 + part,
                part + 1 == 1 << bits,
            )
        })
    }
}

/// The steps of [`GeoDb::prefetch`](super::GeoDb::prefetch): each loads what the next one reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The index slot.
    Index,
    /// What the slot points to: an IPv4 block, IPv6 ranges, or a crowded IPv6 slot's part.
    Next,
    /// The IPv6 ranges a part points to.
    Last,
}

/// The range holding `key` among ranges sorted by start, searching from index `from`, whose
/// start is known to be at most `key`.
fn holding_from<T, K: Ord>(ranges: &[T], from: usize, start: impl Fn(&T) -> K, key: K) -> usize {
    from + ranges[from..].partition_point(|r| start(r) <= key) - 1
}

/// Sorted IPv6 ranges (by /64) with every gap between them, and before and after them, filled
/// by a [`TREE`] range, so that the table covers the whole space.
fn fill_gaps(mut ranges: Vec<(u64, Info)>) -> Vec<(u64, Info)> {
    ranges.sort_unstable_by_key(|r| r.0);
    let mut out = Vec::with_capacity(ranges.len() + 16);
    let mut next: u128 = 0;
    for (start, info) in ranges {
        if u128::from(start) > next {
            out.push((next as u64, TREE));
        }
        let size = match info {
            TREE => 1,
            _ => 1u128 << (64 - (info & 0xFF)),
        };
        next = next.max(u128::from(start) + size);
        out.push((start, info));
    }
    if next <= u128::from(u64::MAX) {
        out.push((next as u64, TREE));
    }
    out
}

/// Hashes a data offset with one multiply (offsets are already well spread): the hasher of
/// the place ids while the tables are built, and of the decoded records a database keeps.
#[derive(Default)]
pub(super) struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::geo::GeoDb;

    /// `lookup` (range tables) against maxminddb's own tree walk.
    fn assert_as_the_tree(db: &GeoDb, ip: IpAddr) {
        let fast = db.lookup(ip);
        let slow = match db.reader.lookup(ip) {
            Ok(r) => {
                let prefix = r.network().unwrap().prefix();
                match r.offset() {
                    Some(o) => {
                        let p = db.records[&o];
                        (p.country, p.continent, prefix, true)
                    }
                    None => (None, None, prefix, false),
                }
            }
            Err(_) => (None, None, 0, false),
        };
        let got = (
            fast.country,
            fast.continent,
            fast.network_prefix,
            fast.found,
        );
        assert_eq!(got, slow, "{ip}");
    }

    #[test]
    fn the_range_tables_answer_as_the_tree_does() {
        let bytes = crate::geo::build::synthetic::synthetic(20_000, 3).unwrap();
        let db = GeoDb::from_bytes(bytes, Path::new("synthetic")).unwrap();
        assert!(db.ranges.v4.is_some() && db.ranges.v6.is_some());
        let mut x: u64 = 12345;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x
        };
        for _ in 0..20_000 {
            let r = next();
            assert_as_the_tree(&db, IpAddr::V4(((r >> 32) as u32).into()));
            // Mostly inside 2000::/3, where the synthetic networks are; some anywhere.
            let hi = match r % 4 {
                0 => next(),
                _ => 0x2000_0000_0000_0000 | (next() >> 3),
            };
            let v6 = (u128::from(hi) << 64) | u128::from(next());
            assert_as_the_tree(&db, IpAddr::V6(v6.into()));
            // Where the synthetic networks crowd (one per /32 from 2000::/32): the slot's
            // finer index.
            let crowded = (0x2000_0000 + next() % 0x1000) << 32 | next() >> 32;
            assert_as_the_tree(&db, IpAddr::V6((u128::from(crowded) << 64).into()));
        }
        let v6 = db.ranges.v6.as_ref().unwrap();
        assert!(!v6.parts.is_empty(), "the crowded slot has a finer index");
        // Every part's first address, and the last address before it.
        for (s, slot) in v6.global.iter().enumerate().filter(|(_, s)| s.fine != 0) {
            let bits = slot.fine >> 27;
            for part in 0..1u64 << bits {
                let first =
                    (1 << 61) + ((s as u64) << GLOBAL_SHIFT) + (part << (GLOBAL_SHIFT - bits));
                let first = u128::from(first) << 64;
                assert_as_the_tree(&db, IpAddr::V6(first.into()));
                assert_as_the_tree(&db, IpAddr::V6((first - 1).into()));
            }
        }
        // The IPv4 space inside IPv6, range edges and the ends of the space.
        for ip in [
            "::1.2.3.4",
            "::ffff:1.2.3.4",
            "::",
            "::1",
            "2000::",
            "2000:0:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "0.0.0.0",
            "255.255.255.255",
        ] {
            assert_as_the_tree(&db, ip.parse().unwrap());
        }
    }

    #[test]
    fn ipv6_gaps_and_long_networks_go_to_the_tree() {
        let net = |key: u64, prefix: u8| (key, 1 << 8 | Info::from(prefix));
        let filled = fill_gaps(vec![net(0x2000 << 48, 16), (0x3000 << 48, TREE)]);
        assert_eq!(
            filled,
            vec![
                (0, TREE),
                net(0x2000 << 48, 16),
                ((0x2001 << 48), TREE),
                (0x3000 << 48, TREE),
                ((0x3000 << 48) + 1, TREE),
            ]
        );
        // A network reaching the end of the space leaves nothing after it.
        assert_eq!(fill_gaps(vec![net(0, 0)]), vec![net(0, 0)]);
    }
}
