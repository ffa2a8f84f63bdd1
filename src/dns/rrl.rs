//! Response rate limiting for UDP, in the spirit of BIND's and Knot's RRL: identical
//! responses (same question name, type and rcode) to one client network are limited to a
//! rate per second; past it, every `slip`-th response goes out truncated (TC set, so a real
//! client retries over TCP, which spoofers cannot) and the rest are dropped. This blunts
//! reflection attacks that aim Meridian's answers at a victim. TCP is never limited.
//!
//! Each UDP worker keeps its own table (no locks). The kernel sends all of one client socket's
//! queries to one worker, so each worker enforces the full rate: a client spreading queries
//! over many source ports can get up to `workers` times the rate, never less than it.
use std::net::IpAddr;

use crate::hash::Fnv1a;
use crate::routing::prefix::mask;
use crate::settings::RrlSettings;

/// Table slots per worker (direct-mapped: a colliding key takes the slot over).
const SLOTS: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send a truncated response instead.
    Slip,
    Drop,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    second: u64,
    sent: u32,
    limited: u32,
}

pub struct Limiter {
    settings: RrlSettings,
    rate: u32,
    slots: Box<[Slot]>,
}

impl Limiter {
    /// A worker's limiter; `None` when RRL is off.
    pub fn new(settings: &RrlSettings) -> Option<Limiter> {
        if settings.responses_per_second == 0 {
            return None;
        }
        Some(Limiter {
            rate: settings.responses_per_second,
            settings: settings.clone(),
            slots: vec![Slot::default(); SLOTS].into(),
        })
    }

    /// Decides whether `response` (the encoded answer to `client`) goes out, at `second`
    /// (any monotonic count of seconds).
    pub fn check(&mut self, client: IpAddr, response: &[u8], second: u64) -> Verdict {
        let client = client.to_canonical();
        if self.settings.exempt.iter().any(|n| n.contains(&client)) {
            return Verdict::Send;
        }
        let key = self.key(client, response);
        let slot = &mut self.slots[(key as usize) & (SLOTS - 1)];
        if slot.key != key || slot.second != second {
            if slot.key != key {
                slot.limited = 0;
            }
            *slot = Slot {
                key,
                second,
                sent: 0,
                limited: slot.limited,
            };
        }
        if slot.sent < self.rate {
            slot.sent += 1;
            return Verdict::Send;
        }
        slot.limited = slot.limited.wrapping_add(1);
        if self.settings.slip > 0 && slot.limited.is_multiple_of(self.settings.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// FNV-1a over the client network, the question name (case-folded), type and rcode.
    fn key(&self, client: IpAddr, response: &[u8]) -> u64 {
        let prefix = match client {
            IpAddr::V4(_) => self.settings.ipv4_prefix,
            IpAddr::V6(_) => self.settings.ipv6_prefix,
        };
        let mut h = Fnv1a::default();
        match mask(client, prefix) {
            IpAddr::V4(n) => h.bytes(&n.octets()),
            IpAddr::V6(n) => h.bytes(&n.octets()),
        }
        if response.len() >= 12 {
            h.byte(response[3] & 0x0F);
            // The question (name case-folded, then type), when there is one.
            if let Some(end) = question_end(response) {
                response[12..end - 2]
                    .iter()
                    .for_each(|b| h.byte(b.to_ascii_lowercase()));
            }
        }
        h.value()
    }
}

/// Offset just past the first question of a message we encoded (uncompressed name, type,
/// class), or `None` when it has no question.
fn question_end(msg: &[u8]) -> Option<usize> {
    if msg.len() < 12 || msg[4..6] == [0, 0] {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*msg.get(i)?);
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        i += len + 1;
    }
    let end = i + 1 + 4;
    (end <= msg.len()).then_some(end)
}

/// The truncated form of a response: header and question only (none if it had none), TC set.
pub fn slip(response: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if response.len() < 12 {
        return;
    }
    out.extend_from_slice(&response[..12]);
    out[2] |= 0x02; // TC
    out[4..12].fill(0);
    if let Some(end) = question_end(response) {
        out[5] = 1;
        out.extend_from_slice(&response[12..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(name: &[u8], rcode: u8) -> Vec<u8> {
        let mut r = vec![0x12, 0x34, 0x84, rcode, 0, 1, 0, 1, 0, 0, 0, 0];
        r.extend_from_slice(name);
        r.extend_from_slice(&[0, 1, 0, 1]);
        r.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        r
    }

    fn limiter(rate: u32, slip: u32) -> Limiter {
        let settings = RrlSettings {
            responses_per_second: rate,
            slip,
            exempt: vec![],
            ..RrlSettings::default()
        };
        Limiter::new(&settings).unwrap()
    }

    #[test]
    fn limits_identical_responses_per_network_and_second() {
        let mut l = limiter(3, 2);
        let r = response(b"\x03www\x07example\x03com\x00", 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..7).map(|_| l.check(a, &r, 100)).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Send, Send, Send, Drop, Slip, Drop, Slip]);
        // The same /24 shares the budget; another /24 and another name do not.
        assert_eq!(l.check("192.0.2.200".parse().unwrap(), &r, 100), Drop);
        assert_eq!(l.check("198.51.100.1".parse().unwrap(), &r, 100), Send);
        let other = response(b"\x03api\x07example\x03com\x00", 0);
        assert_eq!(l.check(a, &other, 100), Send);
        // Letter case does not make a response different.
        assert_eq!(
            l.check(a, &response(b"\x03WWW\x07example\x03com\x00", 0), 100),
            Slip
        );
        // A new second refills.
        assert_eq!(l.check(a, &r, 101), Send);
    }

    #[test]
    fn exempt_networks_and_off() {
        let mut l = Limiter::new(&RrlSettings::default()).unwrap();
        let r = response(b"\x01a\x00", 0);
        for _ in 0..100 {
            assert_eq!(l.check("127.0.0.1".parse().unwrap(), &r, 1), Verdict::Send);
        }
        let off = RrlSettings {
            responses_per_second: 0,
            ..RrlSettings::default()
        };
        assert!(Limiter::new(&off).is_none());
    }

    #[test]
    fn slips_survive_odd_responses() {
        // A header-only FORMERR has no question to keep.
        let formerr = [0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut out = Vec::new();
        slip(&formerr, &mut out);
        assert_eq!(&out[4..12], &[0; 8]);
        assert_eq!(out.len(), 12);
        // A zero byte inside a label is not the end of the name.
        let r = response(b"\x03a\x00b\x03com\x00", 0);
        slip(&r, &mut out);
        assert_eq!(&out[12..], &r[12..12 + 13]);
    }

    #[test]
    fn slipped_responses_keep_header_and_question() {
        let r = response(b"\x03www\x07example\x03com\x00", 0);
        let mut out = Vec::new();
        slip(&r, &mut out);
        assert_eq!(out.len(), 12 + 17 + 4);
        assert_eq!(out[2] & 0x02, 0x02);
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[12..], &r[12..12 + 21]);
    }
}
