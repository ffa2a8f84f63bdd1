//! A bounded sample of recent real queries, recorded on the DNS path for what-if previews and
//! history diffs: each thread answering queries counts down a thread-local gap and records one
//! query in [`SAMPLE_EVERY`] on average into a fixed ring of atomics, so most queries cost a
//! thread-local decrement and a sampled one a `fetch_add` and four plain stores. Nothing is
//! locked or allocated per query. The gaps are drawn from 8 to 24 (a thread-local xorshift), so
//! traffic that repeats with a period (a benchmark looping over a query file) is not sampled at
//! the same few positions every time round.
//!
//! A record is the client network (cut to /24 or /56, or the ECS prefix when shorter), the
//! service id, the family, whether the client came from ECS, and the tag of the compiled config
//! its service id belongs to. Readers (the control plane) read the ring racily but safely: a
//! slot's meta word is cleared before the address is written and set after it, and a reader
//! keeps a slot only when it reads the same non-zero meta word before and after the address.
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::routing::admin::{DRAIN_PREFIX_V4, DRAIN_PREFIX_V6};
use crate::routing::query::{Client, Query};
use crate::routing::table::{Family, ServiceId};

/// One query in this many (per answering thread, on average) is recorded.
pub const SAMPLE_EVERY: u32 = 16;
/// Records the ring holds: the most recent ones win.
pub const SAMPLE_SLOTS: usize = 16_384;

const VALID: u64 = 1 << 63;
/// Meta bit: the client network is IPv6 (the family of the question is bit 0).
const NET_V6: u64 = 1 << 2;

thread_local! {
    /// Queries this thread answers before it records the next one.
    static LEFT: Cell<u32> = const { Cell::new(SAMPLE_EVERY) };
    /// This thread's xorshift64 state, for the gaps.
    static RNG: Cell<u64> = const { Cell::new(0x9E37_79B9_7F4A_7C15) };
}

/// The next gap: uniform in `SAMPLE_EVERY / 2 ..= SAMPLE_EVERY * 3 / 2` (mean `SAMPLE_EVERY`).
fn gap() -> u32 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        SAMPLE_EVERY / 2 + ((x >> 32) % u64::from(SAMPLE_EVERY + 1)) as u32
    })
}

/// One sampled query, as the ring holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled {
    /// The client network's address (host bits zero) and prefix.
    pub network: IpAddr,
    pub prefix: u8,
    pub service: ServiceId,
    pub family: Family,
    /// The client was an ECS subnet, not the packet's source.
    pub ecs: bool,
    /// The compiled config the service id belongs to.
    pub tag: u16,
}

impl Sampled {
    /// The query to replay: the client network as an ECS subnet of its prefix, which is how
    /// `decide()` sees any client of that network (routing and drain buckets go by /24 and /56).
    pub fn query(&self) -> Query {
        Query {
            service: self.service,
            family: self.family,
            client: Client {
                addr: self.network,
                ecs_source: self.ecs.then_some(self.prefix),
            },
        }
    }

    /// `network/prefix`, as the tests read it.
    #[cfg(test)]
    fn network_text(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }
}

/// The ring. Shared by every snapshot (it outlives reloads); each compiled config's
/// snapshots write under their own tag.
#[derive(Debug)]
pub struct QuerySample {
    slots: Box<[[AtomicU64; 3]]>,
    next: AtomicU64,
    tags: AtomicU32,
    /// Queries per second the sample stands for, times 1000 (set by the control plane from
    /// how fast the ring fills).
    rate_milli: AtomicU64,
}

impl QuerySample {
    pub fn new(slots: usize) -> QuerySample {
        QuerySample {
            slots: (0..slots)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            next: AtomicU64::new(0),
            tags: AtomicU32::new(0),
            rate_milli: AtomicU64::new(0),
        }
    }

    /// A ring that records nothing (tests and tools that serve no DNS).
    pub fn disabled() -> QuerySample {
        QuerySample::new(0)
    }

    /// A tag for the next compiled config (never 0).
    pub fn new_tag(&self) -> u16 {
        (self.tags.fetch_add(1, Ordering::Relaxed) % u32::from(u16::MAX)) as u16 + 1
    }

    /// Counts one answered query and records it when its turn comes. No lock, no allocation.
    #[inline]
    pub fn record(&self, tag: u16, q: &Query) {
        if self.slots.is_empty() {
            return;
        }
        let due = LEFT.with(|left| match left.get() {
            0 | 1 => {
                left.set(gap());
                true
            }
            n => {
                left.set(n - 1);
                false
            }
        });
        if due {
            self.write(tag, q);
        }
    }

    /// Records `q` unconditionally.
    pub fn write(&self, tag: u16, q: &Query) {
        if self.slots.is_empty() {
            return;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(n % self.slots.len() as u64) as usize];
        let (hi, lo, prefix) = cut(&q.client);
        let meta = VALID
            | u64::from(tag) << 40
            | u64::from(q.service.0 & 0xff_ffff) << 16
            | u64::from(prefix) << 8
            | if q.client.addr.is_ipv6() { NET_V6 } else { 0 }
            | u64::from(q.client.ecs_source.is_some()) << 1
            | u64::from(q.family == Family::V6);
        slot[2].store(0, Ordering::Release);
        slot[0].store(hi, Ordering::Relaxed);
        slot[1].store(lo, Ordering::Relaxed);
        slot[2].store(meta, Ordering::Release);
    }

    /// Records written since start (the ring's write position).
    pub fn written(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Every whole record of config `tag`, oldest first (roughly: concurrent writers may
    /// overwrite some while this reads).
    pub fn read(&self, tag: u16) -> Vec<Sampled> {
        self.read_newest(tag, usize::MAX)
    }

    /// The newest `limit` whole records of config `tag`, oldest first: a reader that wants
    /// a few does not decode the whole ring.
    pub fn read_newest(&self, tag: u16, limit: usize) -> Vec<Sampled> {
        let n = self.slots.len() as u64;
        if n == 0 || limit == 0 {
            return Vec::new();
        }
        let end = self.written();
        let start = end.saturating_sub(n);
        let mut out = Vec::with_capacity(((end - start) as usize).min(limit));
        for i in (start..end).rev() {
            let slot = &self.slots[(i % n) as usize];
            let m1 = slot[2].load(Ordering::Acquire);
            let hi = slot[0].load(Ordering::Relaxed);
            let lo = slot[1].load(Ordering::Relaxed);
            let m2 = slot[2].load(Ordering::Acquire);
            if m1 != m2 || m1 & VALID == 0 {
                continue;
            }
            let s = decode(hi, lo, m1);
            if s.tag == tag {
                out.push(s);
                if out.len() == limit {
                    break;
                }
            }
        }
        out.reverse();
        out
    }

    /// Sets the query rate the sample stands for.
    pub fn set_rate(&self, qps: f64) {
        self.rate_milli
            .store((qps.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    /// Queries per second the sample stands for, as last measured.
    pub fn rate(&self) -> f64 {
        self.rate_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// The client's network: address words and prefix (/24 or /56, or the ECS prefix if shorter).
fn cut(c: &Client) -> (u64, u64, u8) {
    match c.addr {
        IpAddr::V4(a) => {
            let p = c.prefix().min(DRAIN_PREFIX_V4);
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            (0, u64::from(u32::from(a) & mask), p)
        }
        IpAddr::V6(a) => {
            let p = c.prefix().min(DRAIN_PREFIX_V6);
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            let bits = u128::from(a) & mask;
            ((bits >> 64) as u64, bits as u64, p)
        }
    }
}

fn decode(hi: u64, lo: u64, meta: u64) -> Sampled {
    let network = if meta & NET_V6 != 0 {
        IpAddr::V6(Ipv6Addr::from(u128::from(hi) << 64 | u128::from(lo)))
    } else {
        IpAddr::V4(Ipv4Addr::from(lo as u32))
    };
    Sampled {
        network,
        prefix: (meta >> 8) as u8,
        service: ServiceId(((meta >> 16) & 0xff_ffff) as u32),
        family: if meta & 1 == 1 {
            Family::V6
        } else {
            Family::V4
        },
        ecs: meta & 2 != 0,
        tag: ((meta >> 40) & 0xffff) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(addr: &str, ecs: Option<u8>, service: u32) -> Query {
        Query {
            service: ServiceId(service),
            family: Family::V4,
            client: Client {
                addr: addr.parse().expect("ip"),
                ecs_source: ecs,
            },
        }
    }

    #[test]
    fn about_one_query_in_n_is_recorded_cut_to_its_network() {
        let s = QuerySample::new(1024);
        let tag = s.new_tag();
        // A fresh thread, so its gap starts at SAMPLE_EVERY.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..SAMPLE_EVERY {
                    s.record(tag, &q("192.0.2.77", None, 3));
                }
                assert_eq!(s.written(), 1, "the first after SAMPLE_EVERY");
                for _ in 0..(SAMPLE_EVERY * 99) {
                    s.record(tag, &q("192.0.2.77", None, 3));
                }
            });
        });
        let got = s.read(tag);
        assert!((80..=120).contains(&got.len()), "{}", got.len());
        assert_eq!(got[0].network, "192.0.2.0".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            (got[0].prefix, got[0].service, got[0].ecs),
            (24, ServiceId(3), false)
        );
        assert_eq!(got[0].query().client.ecs_source, None);
        // Another config's records are not this one's.
        assert!(s.read(tag + 1).is_empty());
    }

    #[test]
    fn ecs_and_v6_keep_their_prefix_and_the_ring_keeps_the_newest() {
        let s = QuerySample::new(4);
        let tag = s.new_tag();
        s.write(tag, &q("198.51.100.0", Some(20), 1));
        let v6 = Query {
            service: ServiceId(2),
            family: Family::V6,
            client: Client {
                addr: "2001:db8:1:2:3::1".parse().expect("ip"),
                ecs_source: None,
            },
        };
        s.write(tag, &v6);
        // An A question from an IPv6 network: the network stays IPv6.
        let a_from_v6 = Query {
            family: Family::V4,
            ..v6
        };
        s.write(tag, &a_from_v6);
        let got = s.read(tag);
        assert_eq!(got[2].network_text(), "2001:db8:1::/56");
        assert_eq!(got[2].family, Family::V4);
        assert_eq!(got[0].network_text(), "198.51.96.0/20");
        assert!(got[0].ecs);
        assert_eq!(got[1].network_text(), "2001:db8:1::/56");
        assert_eq!(got[1].family, Family::V6);
        for i in 0..10 {
            s.write(tag, &q(&format!("10.0.{i}.1"), None, 0));
        }
        let got = s.read(tag);
        assert_eq!(got.len(), 4, "bounded");
        assert_eq!(got[3].network_text(), "10.0.9.0/24", "the newest kept");
        assert_eq!(s.written(), 13);
    }

    #[test]
    fn the_newest_few_of_a_tag_are_the_tail_of_the_whole_read() {
        let s = QuerySample::new(64);
        let (a, b) = (s.new_tag(), s.new_tag());
        for i in 0..100u32 {
            let tag = if i % 3 == 0 { b } else { a };
            s.write(tag, &q(&format!("10.0.{i}.1"), None, i % 5));
        }
        let all = s.read(a);
        let newest = s.read_newest(a, 7);
        assert_eq!(newest.len(), 7);
        assert_eq!(newest[..], all[all.len() - 7..]);
        assert_eq!(s.read_newest(a, 1000), all);
        assert!(s.read_newest(a, 0).is_empty());
    }

    #[test]
    fn a_disabled_ring_records_nothing() {
        let s = QuerySample::disabled();
        s.record(1, &q("192.0.2.1", None, 0));
        s.write(1, &q("192.0.2.1", None, 0));
        assert!(s.read(1).is_empty());
    }
}
