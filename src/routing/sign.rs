//! DNSSEC online signing: a signed zone's keys and the signatures of its RRsets.
//!
//! Signatures are kept in a [`Signatures`] cache that belongs to the compiled config, so every
//! routing table built from it (one per health event) finds the RRSIGs made for the tables
//! before it. The cache is keyed by the RRset: the owner name, the type and the addresses of
//! the records in the compiled config (which lives as long as the cache), so an answer that
//! did not change across a swap finds its signature. Reads are lock-free (one `ArcSwap` load
//! per shard); a miss signs and publishes a new copy of the shard (bounded in size).
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey};
use hickory_proto::dnssec::rdata::{CDNSKEY, CDS, DNSKEY, DNSSECRData, DS, NSEC, RRSIG, SigInput};
use hickory_proto::dnssec::{Algorithm, DigestType, PublicKey, PublicKeyBuf, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::BinEncodable;

use crate::hash::FnvHasher;

/// RFC 9824's NXNAME meta-type, in the NSEC of a name that does not exist.
pub const NXNAME: u16 = 128;

/// Shards of the signature cache: a miss copies one shard, not the whole cache.
const SHARDS: usize = 64;

/// One DNSSEC key of a zone, read from the key files BIND's `dnssec-keygen` writes.
pub struct ZoneKey {
    /// The `.private` file it came from (for `check` and the logs).
    pub file: PathBuf,
    pub dnskey: DNSKEY,
    pub tag: u16,
    pub algorithm: Algorithm,
    /// The SEP flag (257): it signs the DNSKEY, CDS and CDNSKEY RRsets.
    pub ksk: bool,
    key: Box<dyn SigningKey + std::panic::RefUnwindSafe>,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("file", &self.file)
            .field("tag", &self.tag)
            .field("ksk", &self.ksk)
            .finish()
    }
}

impl ZoneKey {
    /// A key from its algorithm number, DNSKEY flags, public key (the DNSKEY's key field) and
    /// raw private key (the `PrivateKey:` field: the P-256 scalar or the Ed25519 seed). Fails
    /// when the algorithm is not 13 or 15 or the two halves do not belong together.
    pub fn new(
        file: PathBuf,
        algorithm: u8,
        flags: u16,
        public: &[u8],
        private: &[u8],
    ) -> Result<ZoneKey, String> {
        let (alg, key): (Algorithm, Box<dyn SigningKey + std::panic::RefUnwindSafe>) =
            match algorithm {
                13 => {
                    // ring wants the public key as an uncompressed point: 0x04 | X | Y.
                    let mut point = Vec::with_capacity(65);
                    point.push(4);
                    point.extend_from_slice(public);
                    let pair = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
                        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        private,
                        &point,
                        &ring::rand::SystemRandom::new(),
                    )
                    .map_err(|e| format!("the private key does not match the public key ({e})"))?;
                    let alg = Algorithm::ECDSAP256SHA256;
                    (alg, Box::new(EcdsaSigningKey::from_ecdsa(pair, alg)))
                }
                15 => {
                    let pair =
                        ring::signature::Ed25519KeyPair::from_seed_and_public_key(private, public)
                            .map_err(|e| {
                                format!("the private key does not match the public key ({e})")
                            })?;
                    (
                        Algorithm::ED25519,
                        Box::new(Ed25519SigningKey::from_ed25519(pair)),
                    )
                }
                n => {
                    return Err(format!(
                        "algorithm {n} is not supported (13 ECDSAP256SHA256 or 15 ED25519)"
                    ));
                }
            };
        let dnskey = DNSKEY::with_flags(flags, PublicKeyBuf::new(public.to_vec(), alg));
        let tag = dnskey
            .calculate_key_tag()
            .map_err(|e| format!("cannot compute the key tag: {e}"))?;
        Ok(ZoneKey {
            file,
            dnskey,
            tag,
            algorithm: alg,
            ksk: flags & 1 == 1,
            key,
        })
    }

    /// The DS record for the parent zone (SHA-256 digest).
    pub fn ds(&self, origin: &Name, ttl: u32) -> Result<Record, String> {
        let digest = self
            .dnskey
            .to_digest(origin, DigestType::SHA256)
            .map_err(|e| e.to_string())?;
        let ds = DS::new(
            self.tag,
            self.algorithm,
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        );
        Ok(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::DNSSEC(DNSSECRData::DS(ds)),
        ))
    }
}

/// How long signatures live and when they are made again.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Seconds from inception to expiration.
    pub validity: u32,
    /// A signature is made again when less than this many seconds of it are left.
    pub refresh: u32,
    /// Up to this many seconds are taken off each signature's validity (by a hash of the
    /// RRset), so signatures made together do not all expire together.
    pub jitter: u32,
}

/// The keys of a signed zone and the cache of its signatures.
#[derive(Debug)]
pub struct ZoneSigner {
    pub origin: Name,
    pub keys: Vec<Arc<ZoneKey>>,
    pub validity: Validity,
    pub cache: Signatures,
}

/// Signatures of one RRset, with when they are due to be made again (Unix seconds).
#[derive(Debug)]
pub struct Signed {
    pub refresh_at: u64,
    pub rrsigs: Box<[Record]>,
    /// The RRSIG records on the wire, each owned by a pointer to the question name (offset
    /// 12): what the UDP fast path appends after an answer whose owner is the name asked.
    pub wire: Box<[u8]>,
    /// What was signed (for the sweep that signs again ahead of expiry).
    owner: Name,
    records: Box<[Record]>,
}

type Shard = HashMap<u64, Arc<Signed>, BuildHasherDefault<FnvHasher>>;

/// The signature cache of a compiled config (see the module docs).
pub struct Signatures {
    shards: Box<[ArcSwap<Shard>]>,
    /// Most entries a shard holds; a full shard starts over.
    per_shard: usize,
}

impl std::fmt::Debug for Signatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signatures")
            .field("entries", &self.len())
            .finish()
    }
}

impl Signatures {
    pub fn new(capacity: usize) -> Signatures {
        Signatures {
            shards: (0..SHARDS).map(|_| ArcSwap::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.load().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the signatures take, roughly (records and their signature bytes).
    pub fn approx_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.load()
                    .values()
                    .map(|v| {
                        64 + v
                            .rrsigs
                            .iter()
                            .map(|r| {
                                std::mem::size_of::<Record>() + r.to_bytes().map_or(0, |b| b.len())
                            })
                            .sum::<usize>()
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    fn get(&self, key: u64, now: u64) -> Option<Arc<Signed>> {
        let shard = self.shards[key as usize % SHARDS].load();
        shard.get(&key).filter(|s| now < s.refresh_at).cloned()
    }

    fn insert(&self, key: u64, signed: Arc<Signed>) {
        let per_shard = self.per_shard;
        self.shards[key as usize % SHARDS].rcu(|shard| {
            let mut next = if shard.len() >= per_shard {
                Shard::default()
            } else {
                (**shard).clone()
            };
            next.insert(key, signed.clone());
            next
        });
    }
}

/// The identity of an RRset in the cache: the name it goes out under, its type and the
/// records it holds, by their address in the compiled config (which the cache lives no longer
/// than), sorted so the order an answer lists them in does not matter.
pub fn rrset_key(owner: &Name, rtype: RecordType, records: &[&Record]) -> u64 {
    let mut h = FnvHasher::default();
    // The owner in lower case, label by label, without a copy of the name.
    for label in owner.iter() {
        h.write_u8(label.len() as u8);
        for b in label {
            h.write_u8(b.to_ascii_lowercase());
        }
    }
    u16::from(rtype).hash(&mut h);
    let mut ids = [0usize; 32];
    let n = records.len().min(ids.len());
    for (id, r) in ids.iter_mut().zip(records) {
        *id = std::ptr::from_ref::<Record>(r) as usize;
    }
    ids[..n].sort_unstable();
    ids[..n].hash(&mut h);
    records.len().hash(&mut h);
    h.finish()
}

impl ZoneSigner {
    /// Whether this zone signs with separate key-signing keys (then zone-signing keys sign
    /// everything but the key RRsets).
    fn split(&self) -> bool {
        self.keys.iter().any(|k| k.ksk) && self.keys.iter().any(|k| !k.ksk)
    }

    /// The keys that sign an RRset of `rtype`.
    fn signing_keys(&self, rtype: RecordType) -> impl Iterator<Item = &Arc<ZoneKey>> {
        let keyset = matches!(
            rtype,
            RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
        );
        let split = self.split();
        // With separate keys, key-signing keys sign the key RRsets and zone-signing keys the
        // rest; a combined key signs everything.
        self.keys.iter().filter(move |k| !split || k.ksk == keyset)
    }

    /// The RRSIGs of an RRset (records with the same owner, class and type; `owner` is the
    /// name they go out under), from the cache or made now, identified by `key`.
    pub fn rrsigs(&self, key: u64, owner: &Name, records: &[&Record], now: u64) -> Arc<Signed> {
        if let Some(signed) = self.cache.get(key, now) {
            return signed;
        }
        let signed = Arc::new(self.sign(key, owner, records, now));
        self.cache.insert(key, signed.clone());
        signed
    }

    /// Signs an RRset with every key that signs its type, valid from an hour ago (clock skew)
    /// to `validity` from now, less the RRset's jitter.
    pub fn sign(&self, key: u64, owner: &Name, records: &[&Record], now: u64) -> Signed {
        let Some(first) = records.first() else {
            return Signed {
                refresh_at: u64::MAX,
                rrsigs: Box::new([]),
                wire: Box::new([]),
                owner: owner.clone(),
                records: Box::new([]),
            };
        };
        let v = self.validity;
        let jitter = if v.jitter == 0 {
            0
        } else {
            (key % u64::from(v.jitter)) as u32
        };
        let inception = now.saturating_sub(3600) as u32;
        let expiration = (now as u32).wrapping_add(v.validity.saturating_sub(jitter));
        let rtype = first.record_type();
        let ttl = first.ttl;
        let renamed: Vec<Record>;
        let owned: Vec<&Record> = if records.iter().all(|r| r.name == *owner) {
            records.to_vec()
        } else {
            renamed = records
                .iter()
                .map(|r| {
                    let mut r = (*r).clone();
                    r.name = owner.clone();
                    r
                })
                .collect();
            renamed.iter().collect()
        };
        let labels = owner.num_labels();
        let mut rrsigs = Vec::new();
        for k in self.signing_keys(rtype) {
            let input = SigInput {
                type_covered: rtype,
                algorithm: k.algorithm,
                num_labels: labels,
                original_ttl: ttl,
                sig_expiration: SerialNumber::new(expiration),
                sig_inception: SerialNumber::new(inception),
                key_tag: k.tag,
                signer_name: self.origin.clone(),
            };
            let Ok(tbs) = TBS::from_input(owner, DNSClass::IN, &input, owned.iter().copied())
            else {
                continue;
            };
            let Ok(sig) = k.key.sign(&tbs) else {
                continue;
            };
            rrsigs.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
            ));
        }
        let refresh_at = u64::from(expiration).saturating_sub(u64::from(v.refresh));
        Signed {
            refresh_at,
            wire: rrsig_wire(&rrsigs),
            rrsigs: rrsigs.into(),
            owner: owner.clone(),
            records: records.iter().map(|r| (*r).clone()).collect(),
        }
    }

    /// Signs again every cached RRset whose signatures are due before `now + ahead`, off the
    /// query path (the publisher runs it on a timer); returns how many were signed.
    pub fn refresh(&self, now: u64, ahead: u64) -> usize {
        let mut signed = 0;
        for shard in self.cache.shards.iter() {
            let current = shard.load();
            let due: Vec<(u64, Arc<Signed>)> = current
                .iter()
                .filter(|(_, s)| s.refresh_at <= now.saturating_add(ahead))
                .map(|(k, s)| (*k, s.clone()))
                .collect();
            if due.is_empty() {
                continue;
            }
            let fresh: Vec<(u64, Arc<Signed>)> = due
                .iter()
                .map(|(k, s)| {
                    let records: Vec<&Record> = s.records.iter().collect();
                    (*k, Arc::new(self.sign(*k, &s.owner, &records, now)))
                })
                .collect();
            signed += fresh.len();
            shard.rcu(|map| {
                let mut next = (**map).clone();
                for (k, s) in &fresh {
                    next.insert(*k, s.clone());
                }
                next
            });
        }
        signed
    }

    /// The key RRsets published at the apex: DNSKEY (every key), and for the keys that sign
    /// them, CDS (SHA-256) and CDNSKEY for the parent to pick up (RFC 7344).
    pub fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let origin = &self.origin;
        let mut out = Vec::new();
        for k in &self.keys {
            out.push(Record::from_rdata(
                origin.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::DNSKEY(k.dnskey.clone())),
            ));
        }
        let seps: Vec<&Arc<ZoneKey>> = self.signing_keys(RecordType::DNSKEY).collect();
        for k in &seps {
            if let Ok(ds) = k.ds(origin, ttl)
                && let RData::DNSSEC(DNSSECRData::DS(ds)) = ds.data
            {
                let cds = CDS::new(
                    ds.key_tag(),
                    Some(ds.algorithm()),
                    ds.digest_type(),
                    ds.digest().to_vec(),
                );
                out.push(Record::from_rdata(
                    origin.clone(),
                    ttl,
                    RData::DNSSEC(DNSSECRData::CDS(cds)),
                ));
            }
        }
        for k in &seps {
            let cdnskey = CDNSKEY::with_flags(
                k.dnskey.flags(),
                Some(k.algorithm),
                k.dnskey.public_key().public_bytes().to_vec(),
            );
            out.push(Record::from_rdata(
                origin.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::CDNSKEY(cdnskey)),
            ));
        }
        out
    }
}

/// The NSEC of compact denial (RFC 9824) at `name`: next name `\000.name`, the types present
/// (with RRSIG and NSEC), NXNAME for a name that does not exist.
pub fn compact_nsec(name: &Name, types: &[RecordType], ttl: u32) -> Record {
    let next = name
        .prepend_label(&[0u8][..])
        .unwrap_or_else(|_| name.clone());
    let nsec = NSEC::new(
        next,
        types
            .iter()
            .copied()
            .chain([RecordType::RRSIG, RecordType::NSEC]),
    );
    Record::from_rdata(name.clone(), ttl, RData::DNSSEC(DNSSECRData::NSEC(nsec)))
}

/// RRSIG records as the fast path sends them: owner a pointer to the question name, then
/// type, class, TTL and the RDATA with the signer's name uncompressed (RFC 4034 3.1.7).
fn rrsig_wire(rrsigs: &[Record]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(rrsigs.len() * 120);
    for r in rrsigs {
        let mut rdata = Vec::with_capacity(100);
        let mut enc = hickory_proto::serialize::binary::BinEncoder::new(&mut rdata);
        enc.set_name_encoding(hickory_proto::serialize::binary::NameEncoding::Uncompressed);
        if r.data.emit(&mut enc).is_err() {
            return Box::new([]);
        }
        out.extend_from_slice(&[0xC0, 0x0C]);
        out.extend_from_slice(&u16::from(RecordType::RRSIG).to_be_bytes());
        out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    out.into()
}

/// The cache key of a record made per answer (a denial NSEC): its owner, type and content.
pub fn content_key(record: &Record) -> u64 {
    let mut h = FnvHasher::default();
    LowerName::new(&record.name).hash(&mut h);
    record.to_bytes().unwrap_or_default().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// A fresh key of `algorithm` with `flags`, made with ring (BIND's files are read in
    /// `config`; here only the halves matter).
    fn key(algorithm: u8, flags: u16) -> Arc<ZoneKey> {
        let rng = ring::rand::SystemRandom::new();
        let (public, private) = match algorithm {
            13 => {
                use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING as ALG, KeyPair};
                let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(&ALG, &rng).unwrap();
                let pair =
                    ring::signature::EcdsaKeyPair::from_pkcs8(&ALG, pkcs8.as_ref(), &rng).unwrap();
                // PKCS#8 v1 for P-256 from ring: the scalar follows the 0x04 0x20 of the
                // ECPrivateKey's OCTET STRING.
                let der = pkcs8.as_ref();
                let at = der
                    .windows(2)
                    .position(|w| w == [0x04, 0x20])
                    .expect("scalar in PKCS#8")
                    + 2;
                (
                    pair.public_key().as_ref()[1..].to_vec(),
                    der[at..at + 32].to_vec(),
                )
            }
            _ => {
                use ring::signature::KeyPair;
                let seed = [7u8; 32];
                let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
                (pair.public_key().as_ref().to_vec(), seed.to_vec())
            }
        };
        Arc::new(ZoneKey::new("k".into(), algorithm, flags, &public, &private).unwrap())
    }

    fn signer(keys: Vec<Arc<ZoneKey>>) -> ZoneSigner {
        ZoneSigner {
            origin: Name::from_str("example.com.").unwrap(),
            keys,
            validity: Validity {
                validity: 1000,
                refresh: 100,
                jitter: 10,
            },
            cache: Signatures::new(1000),
        }
    }

    fn a(name: &str, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            30,
            RData::A(std::net::Ipv4Addr::from(ip).into()),
        )
    }

    fn rrsig(r: &Record) -> &RRSIG {
        match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s)) => s,
            other => panic!("not an RRSIG: {other:?}"),
        }
    }

    #[test]
    fn a_mismatched_private_key_is_refused() {
        let good = key(13, 257);
        let public = good.dnskey.public_key().public_bytes().to_vec();
        let private = [1u8; 32];
        let err = ZoneKey::new("k".into(), 13, 257, &public, &private).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(ZoneKey::new("k".into(), 8, 257, &public, &private).is_err());
    }

    #[test]
    fn validity_jitter_and_cache_follow_the_injected_clock() {
        let s = signer(vec![key(13, 257)]);
        let r = a("www.example.com.", [192, 0, 2, 1]);
        let key = rrset_key(&r.name, RecordType::A, &[&r]);
        let now = 1_800_000_000;
        let first = s.rrsigs(key, &r.name, &[&r], now);
        let sig = rrsig(&first.rrsigs[0]);
        let input = sig.input();
        assert_eq!(input.sig_inception.get(), (now - 3600) as u32);
        let expires = u64::from(input.sig_expiration.get());
        // Validity 1000 s less a jitter of under 10 s.
        assert!((now + 990..=now + 1000).contains(&expires), "{expires}");
        assert_eq!(first.refresh_at, expires - 100);
        assert_eq!(input.original_ttl, 30);
        assert_eq!(input.num_labels, 3);
        // A hit before the refresh time is the same signature, made once.
        let again = s.rrsigs(key, &r.name, &[&r], now + 500);
        assert!(Arc::ptr_eq(&first, &again));
        // The sweep makes it again ahead of time; queries then find the new one.
        assert_eq!(s.refresh(now + 500, 10), 0);
        assert_eq!(s.refresh(first.refresh_at - 5, 10), 1);
        let swept = s.rrsigs(key, &r.name, &[&r], first.refresh_at);
        assert!(!Arc::ptr_eq(&first, &swept));
        assert!(swept.refresh_at > first.refresh_at);
    }

    #[test]
    fn key_signing_keys_sign_the_key_set_and_zone_signing_keys_the_rest() {
        let (ksk, zsk, zsk2) = (key(13, 257), key(13, 256), key(15, 256));
        let s = signer(vec![ksk.clone(), zsk.clone(), zsk2.clone()]);
        let apex = s.apex_records(3600);
        let types: Vec<RecordType> = apex.iter().map(|r| r.record_type()).collect();
        // Three DNSKEYs; CDS and CDNSKEY for the KSK only.
        assert_eq!(
            types,
            [
                RecordType::DNSKEY,
                RecordType::DNSKEY,
                RecordType::DNSKEY,
                RecordType::CDS,
                RecordType::CDNSKEY
            ]
        );
        let dnskeys: Vec<&Record> = apex.iter().take(3).collect();
        let signed = s.sign(1, &s.origin.clone(), &dnskeys, 1_800_000_000);
        let tags: Vec<u16> = signed
            .rrsigs
            .iter()
            .map(|r| rrsig(r).input().key_tag)
            .collect();
        assert_eq!(tags, [ksk.tag]);
        let r = a("www.example.com.", [192, 0, 2, 1]);
        let signed = s.sign(2, &r.name, &[&r], 1_800_000_000);
        let tags: Vec<u16> = signed
            .rrsigs
            .iter()
            .map(|r| rrsig(r).input().key_tag)
            .collect();
        // Both ZSKs sign side by side (a rollover's double signature).
        assert_eq!(tags, [zsk.tag, zsk2.tag]);
        // The DS digests the KSK's DNSKEY.
        let ds = ksk.ds(&s.origin, 3600).unwrap();
        assert!(
            ds.to_string().contains(&format!("DS {} 13 2 ", ksk.tag)),
            "{ds}"
        );
    }

    #[test]
    fn compact_denial_names_the_next_name_and_nxname() {
        let name = Name::from_str("nope.example.com.").unwrap();
        let nsec = compact_nsec(&name, &[RecordType::Unknown(NXNAME)], 60);
        let RData::DNSSEC(DNSSECRData::NSEC(data)) = &nsec.data else {
            panic!("not an NSEC: {nsec:?}");
        };
        assert_eq!(
            data.next_domain_name().to_ascii(),
            "\\000.nope.example.com."
        );
        let mut types: Vec<u16> = data.type_bit_maps().map(u16::from).collect();
        types.sort_unstable();
        assert_eq!(types, [46, 47, u16::from(RecordType::Unknown(NXNAME))]);
        assert_eq!(nsec.ttl, 60);
    }
}
