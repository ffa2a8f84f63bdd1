//! Longest-prefix match over a fixed set of networks, with the ECS scope a match allows.
//! Built once per table; lookups allocate nothing.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Networks of one family as (start, prefix, value) sorted by start, then prefix.
#[derive(Debug, Clone)]
struct Family<T> {
    nets: Vec<(u128, u8, T)>,
    /// Distinct prefix lengths, longest first (lookups try each once).
    lengths: Vec<u8>,
}

impl<T> Family<T> {
    fn new() -> Self {
        Family {
            nets: Vec::new(),
            lengths: Vec::new(),
        }
    }
}

/// The result of a lookup: the value of the longest matching network, if any, and how many
/// leading bits of the address the outcome depends on (so that every address sharing those
/// bits gets the same outcome, matched or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match<'a, T> {
    pub value: Option<&'a T>,
    /// Prefix of the matched network (0 when nothing matched).
    pub prefix: u8,
    /// The shortest prefix around the address that contains no network with another outcome.
    pub scope: u8,
}

#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    v4: Family<T>,
    v6: Family<T>,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable {
            v4: Family::new(),
            v6: Family::new(),
        }
    }
}

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// `addr` with the bits past `prefix` cleared.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
            mask_bits(u128::from(u32::from(a)), prefix, 32) as u32,
        )),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_bits(u128::from(a), prefix, 128))),
    }
}

fn mask_bits(v: u128, prefix: u8, width: u8) -> u128 {
    let host_bits = u32::from(width.saturating_sub(prefix));
    if host_bits >= 128 {
        0
    } else {
        v & (u128::MAX << host_bits)
    }
}

impl<T> PrefixTable<T> {
    pub fn is_empty(&self) -> bool {
        self.v4.nets.is_empty() && self.v6.nets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v4.nets.len() + self.v6.nets.len()
    }

    /// Builds the table; a network given twice keeps its first value.
    pub fn new(entries: impl IntoIterator<Item = (IpNet, T)>) -> Self {
        let mut t = PrefixTable::default();
        for (net, value) in entries {
            let (start, _) = bits(net.network());
            let fam = match net {
                IpNet::V4(_) => &mut t.v4,
                IpNet::V6(_) => &mut t.v6,
            };
            let prefix = net.prefix_len();
            if fam.nets.iter().any(|(s, p, _)| *s == start && *p == prefix) {
                continue;
            }
            fam.nets.push((start, prefix, value));
        }
        for fam in [&mut t.v4, &mut t.v6] {
            fam.nets.sort_by_key(|(s, p, _)| (*s, *p));
            fam.lengths = fam.nets.iter().map(|(_, p, _)| *p).collect();
            fam.lengths.sort_unstable_by(|a, b| b.cmp(a));
            fam.lengths.dedup();
        }
        t
    }

    /// Longest match for `addr`, and the scope the outcome is valid for.
    pub fn lookup(&self, addr: IpAddr) -> Match<'_, T> {
        let (a, width) = bits(addr);
        let fam = if width == 32 { &self.v4 } else { &self.v6 };
        let mut found: Option<(u8, &T)> = None;
        for &len in &fam.lengths {
            let start = mask_bits(a, len, width);
            if let Ok(i) = fam
                .nets
                .binary_search_by(|(s, p, _)| (*s, *p).cmp(&(start, len)))
            {
                found = Some((len, &fam.nets[i].2));
                break;
            }
        }
        let prefix = found.map_or(0, |(p, _)| p);
        // Networks more specific than the match that do not contain `addr` must stay outside
        // the scope: the nearest ones by start address decide how narrow it must be.
        let mut scope = prefix;
        let pos = fam.nets.partition_point(|(s, _, _)| *s <= a);
        let neighbours = fam.nets[..pos]
            .iter()
            .rev()
            .take(4)
            .chain(fam.nets[pos..].iter().take(4));
        for (start, len, _) in neighbours {
            if *len <= prefix || mask_bits(a, *len, width) == *start {
                continue; // a wider network, or one containing addr
            }
            let common = ((a ^ start) << (128 - u32::from(width)))
                .leading_zeros()
                .min(u32::from(width)) as u8;
            if common < *len {
                scope = scope.max(common + 1);
            }
        }
        Match {
            value: found.map(|(_, v)| v),
            prefix,
            scope: scope.min(width),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(nets: &[(&str, u32)]) -> PrefixTable<u32> {
        PrefixTable::new(nets.iter().map(|(n, v)| (n.parse::<IpNet>().unwrap(), *v)))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.0/24", 3),
            ("2001:db8::/32", 4),
        ]);
        assert_eq!(t.lookup(ip("10.9.9.9")).value, Some(&1));
        assert_eq!(t.lookup(ip("10.1.9.9")).value, Some(&2));
        assert_eq!(t.lookup(ip("10.1.2.9")).value, Some(&3));
        assert_eq!(t.lookup(ip("11.0.0.1")).value, None);
        assert_eq!(t.lookup(ip("2001:db8:5::1")).value, Some(&4));
        assert_eq!(
            t.lookup(ip("::ffff:10.1.2.3")).value,
            Some(&3),
            "mapped IPv4 is IPv4"
        );
        assert_eq!(t.lookup(ip("10.1.2.9")).prefix, 24);
    }

    #[test]
    fn scope_excludes_more_specific_networks() {
        let t = table(&[("10.0.0.0/8", 1), ("10.1.2.0/24", 3)]);
        // 10.9.9.9 matches the /8, but 10.1.2.0/24 lies inside it: the scope must be narrow
        // enough to leave it out. 10.9 and 10.1 first differ at bit 12 (0000 1001 vs 0000 0001).
        let m = t.lookup(ip("10.9.9.9"));
        assert_eq!((m.prefix, m.scope), (8, 13));
        // Inside the /24, nothing more specific: the /24 itself.
        let m = t.lookup(ip("10.1.2.200"));
        assert_eq!((m.prefix, m.scope), (24, 24));
        // 10.1.3.1 is one bit away from the /24: scope 24.
        let m = t.lookup(ip("10.1.3.1"));
        assert_eq!((m.value, m.scope), (Some(&1), 24));
        // No match and nothing near: scope 0 would wrongly cover 10/8; the neighbour rule
        // keeps the scope to where the address differs from 10.0.0.0/8.
        let m = t.lookup(ip("192.0.2.1"));
        assert_eq!(m.value, None);
        assert_eq!(m.scope, 1);
        let empty: PrefixTable<u32> = PrefixTable::default();
        assert_eq!(empty.lookup(ip("192.0.2.1")).scope, 0);
    }
}
