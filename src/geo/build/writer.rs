//! A small, dependency-free MaxMind DB (MMDB 2.0) writer.
//!
//! It exists so the GeoIP test fixtures can be rebuilt from a readable source file in this
//! repository, reproducibly and without MaxMind's Go/Perl tooling or a licensed database.
//! It implements only what the fixtures need, following
//! <https://maxmind.github.io/MaxMind-DB/>:
//!
//! - always an IPv6 search tree; IPv4 networks live in the IPv4 subtree at `::/96`, as in
//!   MaxMind's own databases (no `::ffff:0:0/96` or 6to4 aliases);
//! - 28- or 32-bit records;
//! - a data section where identical values (same encoded bytes) are stored once;
//! - no pointers or data cache inside values (every value is written inline).
//!
//! Output is a pure function of the input: no hash-map iteration order and no clock, so a
//! committed `.mmdb` can be checked byte for byte against a fresh build.
use std::collections::BTreeMap;

use ipnet::IpNet;

/// A value in the data section. Maps keep insertion order so the output is deterministic.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Double(f64),
    /// A 32-bit float, as ip-location-db's City files store coordinates.
    Float(f32),
    U16(u16),
    U32(u32),
    U64(u64),
    Bool(bool),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

/// Bits per search-tree record. Both are read by every MaxMind DB reader; 28 is what
/// MaxMind uses for its City databases and is plenty for fixtures, 32 is there for trees
/// whose pointers do not fit in 28 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordSize {
    #[default]
    Bits28,
    Bits32,
}

impl RecordSize {
    fn bits(self) -> u8 {
        match self {
            RecordSize::Bits28 => 28,
            RecordSize::Bits32 => 32,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Readers' `verify()` rejects an empty description map, so we refuse to write one.
    #[error("the database has no description (call Writer::description at least once)")]
    NoDescription,
    #[error("{what} of size {size} is too large for the MMDB format (at most {max})")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("the largest record value is {needed}, which does not fit in {bits}-bit records")]
    RecordOverflow { bits: u8, needed: u64 },
}

/// One child of a node while the tree is being built.
#[derive(Debug, Clone, Copy)]
enum Record {
    /// No network covers this part of the address space.
    Empty,
    /// Index into `Writer::values`.
    Data(usize),
    /// Index into `Writer::nodes`.
    Node(usize),
}

/// One child of a node in the final, renumbered tree.
#[derive(Debug, Clone, Copy)]
enum Flat {
    Empty,
    Data(usize),
    Node(usize),
}

/// Builds one MMDB file in memory.
///
/// Inserts are applied in order and the last one wins for the addresses it covers: a more
/// specific network inserted after a wider one takes over its part of the wider network
/// (the tree splits, the wider network's data stays on the rest); a wider network inserted
/// after a more specific one replaces it.
#[derive(Debug, Clone)]
pub struct Writer {
    database_type: String,
    description: BTreeMap<String, String>,
    languages: Vec<String>,
    build_epoch: u64,
    record_size: RecordSize,
    /// Arena of nodes; `nodes[0]` is the root. Nodes cut off by a later insert stay here
    /// and are dropped when the tree is renumbered in `to_bytes`.
    nodes: Vec<[Record; 2]>,
    /// One entry per insert; only the ones still reachable are written.
    values: Vec<Value>,
}

const DATA_SECTION_SEPARATOR: [u8; 16] = [0; 16];
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";
/// Largest size a control byte can express: 65,821 plus a 3-byte extension.
const MAX_PAYLOAD_SIZE: usize = 65_821 + 0x00FF_FFFF;

const TYPE_STRING: u8 = 2;
const TYPE_DOUBLE: u8 = 3;
const TYPE_UINT16: u8 = 5;
const TYPE_UINT32: u8 = 6;
const TYPE_MAP: u8 = 7;
const TYPE_UINT64: u8 = 9;
const TYPE_ARRAY: u8 = 11;
const TYPE_BOOL: u8 = 14;
const TYPE_FLOAT: u8 = 15;

impl Writer {
    /// A writer with no networks, no description, `build_epoch` 0 and 28-bit records.
    pub fn new(database_type: &str) -> Self {
        Writer {
            database_type: database_type.to_owned(),
            description: BTreeMap::new(),
            languages: Vec::new(),
            build_epoch: 0,
            record_size: RecordSize::default(),
            nodes: vec![[Record::Empty; 2]],
            values: Vec::new(),
        }
    }

    /// Sets the description for one language (e.g. `"en"`), replacing an earlier one.
    pub fn description(&mut self, lang: &str, text: &str) {
        self.description.insert(lang.to_owned(), text.to_owned());
    }

    /// Sets the locales the database has names for, in the order given.
    pub fn languages(&mut self, languages: &[&str]) {
        self.languages = languages.iter().map(|l| (*l).to_owned()).collect();
    }

    /// Sets the build time written to the metadata. It is an argument, never the clock,
    /// so that rebuilding the same source gives the same bytes.
    pub fn build_epoch(&mut self, epoch: u64) {
        self.build_epoch = epoch;
    }

    /// Chooses 28-bit (the default) or 32-bit records; `to_bytes` fails if the tree and
    /// data section need more than the chosen size can address.
    pub fn record_size(&mut self, size: RecordSize) {
        self.record_size = size;
    }

    /// Maps `net` to `value`. IPv4 networks go to the IPv4 subtree:
    /// `a.b.c.d/n` becomes `::a.b.c.d/(96+n)`. Host bits of `net` are ignored.
    pub fn insert(&mut self, net: IpNet, value: Value) {
        let data = self.add_value(value);
        self.insert_value(net, data);
    }

    /// Adds a value for [`Writer::insert_value`] to share between networks (a large
    /// database with few distinct records then holds each record once while it is built).
    pub fn add_value(&mut self, value: Value) -> usize {
        self.values.push(value);
        self.values.len() - 1
    }

    /// [`Writer::insert`] of a value added with [`Writer::add_value`].
    pub fn insert_value(&mut self, net: IpNet, data: usize) {
        let (bits, prefix) = match net {
            IpNet::V4(v4) => (
                u128::from(u32::from(v4.network())),
                96 + usize::from(v4.prefix_len()),
            ),
            IpNet::V6(v6) => (u128::from(v6.network()), usize::from(v6.prefix_len())),
        };
        if prefix == 0 {
            // The root must stay a node (readers start at node 0), so ::/0 is its two halves.
            self.nodes[0] = [Record::Data(data); 2];
            return;
        }
        let mut node = 0;
        for depth in 0..prefix - 1 {
            let bit = bit_at(bits, depth);
            node = match self.nodes[node][bit] {
                Record::Node(child) => child,
                leaf => {
                    // Split: both halves keep what the wider record had (data or nothing).
                    let child = self.nodes.len();
                    self.nodes.push([leaf; 2]);
                    self.nodes[node][bit] = Record::Node(child);
                    child
                }
            };
        }
        self.nodes[node][bit_at(bits, prefix - 1)] = Record::Data(data);
    }

    /// Serializes the tree, the data section and the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriterError> {
        if self.description.is_empty() {
            return Err(WriterError::NoDescription);
        }
        let tree = self.flatten();
        let node_count = tree.len() as u64;
        let pointer_base = node_count + DATA_SECTION_SEPARATOR.len() as u64;

        // Record values, filling the data section in tree order as data is first met.
        let mut data = DataSection::new(self.values.len());
        let mut records = Vec::with_capacity(tree.len());
        for pair in &tree {
            let mut values = [0u64; 2];
            for (slot, record) in values.iter_mut().zip(pair) {
                *slot = match *record {
                    Flat::Empty => node_count,
                    Flat::Node(id) => id as u64,
                    Flat::Data(value) => {
                        pointer_base + data.offset(value, &self.values[value])? as u64
                    }
                };
            }
            records.push(values);
        }

        let bits = self.record_size.bits();
        let needed = pointer_base + data.bytes.len() as u64;
        if needed > (1u64 << bits) - 1 {
            return Err(WriterError::RecordOverflow { bits, needed });
        }
        // Every record value is below `needed`, so it fits in `bits` bits and in u32.
        let node_count = tree.len() as u32;

        let node_bytes = usize::from(bits) / 4;
        let mut out = Vec::with_capacity(records.len() * node_bytes + 16 + data.bytes.len() + 512);
        for [left, right] in records {
            write_node(self.record_size, left as u32, right as u32, &mut out);
        }
        out.extend_from_slice(&DATA_SECTION_SEPARATOR);
        out.extend_from_slice(&data.bytes);
        out.extend_from_slice(METADATA_MARKER);
        encode(&self.metadata(node_count), &mut out)?;
        Ok(out)
    }

    /// Renumbers the nodes still reachable from the root, breadth first, so node ids are
    /// dense and deterministic and subtrees replaced by later inserts are left out.
    fn flatten(&self) -> Vec<[Flat; 2]> {
        let mut order = vec![0usize];
        let mut tree = Vec::new();
        let mut next = 0;
        while let Some(&arena) = order.get(next) {
            let mut pair = [Flat::Empty; 2];
            for (slot, record) in pair.iter_mut().zip(self.nodes[arena]) {
                *slot = match record {
                    Record::Empty => Flat::Empty,
                    Record::Data(value) => Flat::Data(value),
                    Record::Node(child) => {
                        order.push(child);
                        Flat::Node(order.len() - 1)
                    }
                };
            }
            tree.push(pair);
            next += 1;
        }
        tree
    }

    fn metadata(&self, node_count: u32) -> Value {
        let text = |s: &str| Value::String(s.to_owned());
        Value::Map(vec![
            ("node_count".into(), Value::U32(node_count)),
            (
                "record_size".into(),
                Value::U16(u16::from(self.record_size.bits())),
            ),
            ("ip_version".into(), Value::U16(6)),
            ("database_type".into(), text(&self.database_type)),
            (
                "languages".into(),
                Value::Array(self.languages.iter().map(|l| text(l)).collect()),
            ),
            ("binary_format_major_version".into(), Value::U16(2)),
            ("binary_format_minor_version".into(), Value::U16(0)),
            ("build_epoch".into(), Value::U64(self.build_epoch)),
            (
                "description".into(),
                Value::Map(
                    self.description
                        .iter()
                        .map(|(lang, d)| (lang.clone(), text(d)))
                        .collect(),
                ),
            ),
        ])
    }
}

/// The data section being built: each distinct encoding once, at the offset where it
/// was first needed.
struct DataSection {
    bytes: Vec<u8>,
    by_encoding: BTreeMap<Vec<u8>, usize>,
    /// Offset of each `Writer::values` entry once encoded, so each is encoded only once.
    by_value: Vec<Option<usize>>,
}

impl DataSection {
    fn new(values: usize) -> Self {
        DataSection {
            bytes: Vec::new(),
            by_encoding: BTreeMap::new(),
            by_value: vec![None; values],
        }
    }

    fn offset(&mut self, index: usize, value: &Value) -> Result<usize, WriterError> {
        if let Some(offset) = self.by_value[index] {
            return Ok(offset);
        }
        let mut encoded = Vec::new();
        encode(value, &mut encoded)?;
        let offset = match self.by_encoding.get(&encoded) {
            Some(&offset) => offset,
            None => {
                let offset = self.bytes.len();
                self.bytes.extend_from_slice(&encoded);
                self.by_encoding.insert(encoded, offset);
                offset
            }
        };
        self.by_value[index] = Some(offset);
        Ok(offset)
    }
}

/// Appends one node: two records of `size` bits each, big endian.
fn write_node(size: RecordSize, left: u32, right: u32, out: &mut Vec<u8>) {
    match size {
        RecordSize::Bits28 => {
            // [left bits 23..0][left bits 27..24 | right bits 27..24][right bits 23..0]
            out.extend_from_slice(&left.to_be_bytes()[1..]);
            out.push((((left >> 24) & 0x0F) << 4) as u8 | ((right >> 24) & 0x0F) as u8);
            out.extend_from_slice(&right.to_be_bytes()[1..]);
        }
        RecordSize::Bits32 => {
            out.extend_from_slice(&left.to_be_bytes());
            out.extend_from_slice(&right.to_be_bytes());
        }
    }
}

/// Bit `depth` of a 128-bit address, counting from the most significant.
fn bit_at(bits: u128, depth: usize) -> usize {
    ((bits >> (127 - depth)) & 1) as usize
}

fn encode(value: &Value, out: &mut Vec<u8>) -> Result<(), WriterError> {
    match value {
        Value::String(s) => encode_str(s, out)?,
        Value::Double(d) => {
            control(TYPE_DOUBLE, 8, "double", out)?;
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::Float(v) => {
            control(TYPE_FLOAT, 4, "float", out)?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        Value::U16(v) => encode_uint(TYPE_UINT16, u64::from(*v), out)?,
        Value::U32(v) => encode_uint(TYPE_UINT32, u64::from(*v), out)?,
        Value::U64(v) => encode_uint(TYPE_UINT64, *v, out)?,
        // A boolean's value is its size; there is no payload.
        Value::Bool(b) => control(TYPE_BOOL, usize::from(*b), "bool", out)?,
        Value::Map(entries) => {
            control(TYPE_MAP, entries.len(), "map", out)?;
            for (key, value) in entries {
                encode_str(key, out)?;
                encode(value, out)?;
            }
        }
        Value::Array(items) => {
            control(TYPE_ARRAY, items.len(), "array", out)?;
            for item in items {
                encode(item, out)?;
            }
        }
    }
    Ok(())
}

fn encode_str(s: &str, out: &mut Vec<u8>) -> Result<(), WriterError> {
    control(TYPE_STRING, s.len(), "string", out)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Unsigned integers are big endian without leading zero bytes (0 has no payload).
fn encode_uint(type_num: u8, v: u64, out: &mut Vec<u8>) -> Result<(), WriterError> {
    let bytes = v.to_be_bytes();
    let skip = (v.leading_zeros() / 8) as usize;
    control(type_num, bytes.len() - skip, "integer", out)?;
    out.extend_from_slice(&bytes[skip..]);
    Ok(())
}

/// Writes the control byte(s): type in the top 3 bits (types above 7 as 0 plus an extension
/// byte holding `type - 7`), size in the low 5 bits with 1 to 3 extension bytes past 28.
fn control(
    type_num: u8,
    size: usize,
    what: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), WriterError> {
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, Vec::new())
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else if size <= MAX_PAYLOAD_SIZE {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    } else {
        return Err(WriterError::TooLarge {
            what,
            size,
            max: MAX_PAYLOAD_SIZE,
        });
    };
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::Reader;
    use serde::Deserialize;
    use std::net::IpAddr;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn tagged(tag: &str) -> Value {
        Value::Map(vec![("tag".into(), Value::String(tag.into()))])
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Tagged {
        tag: String,
    }

    fn sample(record_size: RecordSize) -> Writer {
        let mut w = Writer::new("Test-DB");
        w.description("en", "writer unit test");
        w.languages(&["en"]);
        w.build_epoch(1_767_225_600);
        w.record_size(record_size);
        w.insert(net("11.0.0.0/16"), tagged("wide"));
        w.insert(net("11.0.128.0/20"), tagged("narrow"));
        w.insert(net("12.0.0.0/8"), tagged("twelve"));
        w.insert(net("2001:db8:1::/48"), tagged("v6"));
        w
    }

    fn tag_of(reader: &Reader<Vec<u8>>, addr: &str) -> Option<String> {
        reader
            .lookup(ip(addr))
            .expect("lookup")
            .decode::<Tagged>()
            .expect("decode")
            .map(|t| t.tag)
    }

    fn prefix_of(reader: &Reader<Vec<u8>>, addr: &str) -> u8 {
        reader
            .lookup(ip(addr))
            .expect("lookup")
            .network()
            .expect("network")
            .prefix()
    }

    #[test]
    fn round_trips_ipv4_and_ipv6_for_both_record_sizes() {
        for size in [RecordSize::Bits28, RecordSize::Bits32] {
            let bytes = sample(size).to_bytes().expect("write");
            let reader = Reader::from_source(bytes).expect("open");
            reader.verify().expect("verify");
            let meta = reader.metadata();
            assert_eq!(meta.record_size, u16::from(size.bits()));
            assert_eq!(meta.ip_version, 6);
            assert_eq!(meta.database_type, "Test-DB");
            assert_eq!(meta.languages, vec!["en".to_owned()]);
            assert_eq!(meta.build_epoch, 1_767_225_600);
            assert_eq!(meta.binary_format_major_version, 2);
            assert_eq!(meta.binary_format_minor_version, 0);
            assert_eq!(meta.description["en"], "writer unit test");

            assert_eq!(tag_of(&reader, "11.0.0.1").as_deref(), Some("wide"));
            assert_eq!(tag_of(&reader, "11.0.130.1").as_deref(), Some("narrow"));
            assert_eq!(tag_of(&reader, "12.200.0.1").as_deref(), Some("twelve"));
            assert_eq!(tag_of(&reader, "2001:db8:1:ffff::1").as_deref(), Some("v6"));
            // The same IPv4 network seen through the IPv4 subtree's IPv6 spelling.
            assert_eq!(tag_of(&reader, "::11.0.0.1").as_deref(), Some("wide"));
        }
    }

    #[test]
    fn network_prefix_follows_the_tree() {
        let reader = Reader::from_source(sample(RecordSize::Bits28).to_bytes().expect("write"))
            .expect("open");
        let narrow = reader.lookup(ip("11.0.130.1")).expect("lookup");
        assert_eq!(
            narrow.network().expect("network").to_string(),
            "11.0.128.0/20"
        );
        // 11.0.0.1 leaves the path to 11.0.128.0/20 at bit 17 (the /16 was split there).
        let wide = prefix_of(&reader, "11.0.0.1");
        assert!(wide >= 16, "prefix {wide}");
        assert_eq!(wide, 17);
        assert_eq!(prefix_of(&reader, "12.1.2.3"), 8);
        assert_eq!(prefix_of(&reader, "2001:db8:1::1"), 48);
    }

    #[test]
    fn uncovered_addresses_have_no_data() {
        let reader = Reader::from_source(sample(RecordSize::Bits28).to_bytes().expect("write"))
            .expect("open");
        for addr in ["127.0.0.1", "11.1.0.1", "2001:db8:2::1", "::1", "ffff::1"] {
            assert!(
                !reader.lookup(ip(addr)).expect("lookup").has_data(),
                "{addr}"
            );
        }
    }

    #[test]
    fn node_layout_matches_the_spec() {
        // The spec's 28-bit example: the middle byte holds both records' top nibbles.
        let mut out = Vec::new();
        write_node(RecordSize::Bits28, 0x0123_4567, 0x089A_BCDE, &mut out);
        assert_eq!(out, [0x23, 0x45, 0x67, 0x18, 0x9A, 0xBC, 0xDE]);
        out.clear();
        write_node(RecordSize::Bits32, 0x0123_4567, 0x89AB_CDEF, &mut out);
        assert_eq!(out, [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]);
    }

    #[test]
    fn output_is_deterministic() {
        let a = sample(RecordSize::Bits28).to_bytes().expect("write");
        let b = sample(RecordSize::Bits28).to_bytes().expect("write");
        assert_eq!(a, b);
    }

    #[test]
    fn identical_values_are_stored_once() {
        let mut w = Writer::new("Test-DB");
        w.description("en", "dedup");
        w.insert(net("10.0.0.0/8"), tagged("same"));
        w.insert(net("20.0.0.0/8"), tagged("same"));
        w.insert(net("2001:db8::/32"), tagged("same"));
        let bytes = w.to_bytes().expect("write");
        let reader = Reader::from_source(bytes.as_slice()).expect("open");
        reader.verify().expect("verify");
        let a = reader.lookup(ip("10.1.1.1")).expect("lookup").offset();
        let b = reader.lookup(ip("20.1.1.1")).expect("lookup").offset();
        let c = reader.lookup(ip("2001:db8::1")).expect("lookup").offset();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(a, c);
        let encoded = {
            let mut out = Vec::new();
            encode(&tagged("same"), &mut out).expect("encode");
            out
        };
        assert_eq!(
            bytes
                .windows(encoded.len())
                .filter(|w| *w == encoded)
                .count(),
            1
        );
    }

    #[test]
    fn wider_insert_after_narrow_replaces_it() {
        let mut w = Writer::new("Test-DB");
        w.description("en", "override");
        w.insert(net("11.0.128.0/20"), tagged("narrow"));
        w.insert(net("11.0.0.0/16"), tagged("wide"));
        let reader = Reader::from_source(w.to_bytes().expect("write")).expect("open");
        reader.verify().expect("verify");
        assert_eq!(tag_of(&reader, "11.0.130.1").as_deref(), Some("wide"));
        assert_eq!(prefix_of(&reader, "11.0.130.1"), 16);
        // The replaced subtree is not written: only the path to the /16 remains.
        assert_eq!(reader.metadata().node_count, 96 + 16);
    }

    #[test]
    fn default_route_fills_both_halves() {
        let mut w = Writer::new("Test-DB");
        w.description("en", "default");
        w.insert(net("::/0"), tagged("all"));
        w.insert(net("2001:db8::/32"), tagged("doc"));
        let reader = Reader::from_source(w.to_bytes().expect("write")).expect("open");
        reader.verify().expect("verify");
        assert_eq!(tag_of(&reader, "ffff::1").as_deref(), Some("all"));
        assert_eq!(tag_of(&reader, "1.2.3.4").as_deref(), Some("all"));
        assert_eq!(tag_of(&reader, "2001:db8::1").as_deref(), Some("doc"));
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Everything {
        s: String,
        long: String,
        longer: String,
        longest: String,
        d: f64,
        u16: u16,
        zero: u32,
        u32: u32,
        u64: u64,
        yes: bool,
        no: bool,
        list: Vec<u16>,
        nested: Tagged,
    }

    #[test]
    fn every_value_type_and_size_class_decodes() {
        let value = Value::Map(vec![
            ("s".into(), Value::String("short".into())),
            ("long".into(), Value::String("a".repeat(200))),
            ("longer".into(), Value::String("b".repeat(5_000))),
            ("longest".into(), Value::String("c".repeat(70_000))),
            ("d".into(), Value::Double(-77.49)),
            ("u16".into(), Value::U16(443)),
            ("zero".into(), Value::U32(0)),
            ("u32".into(), Value::U32(0x0102_0304)),
            ("u64".into(), Value::U64(u64::MAX)),
            ("yes".into(), Value::Bool(true)),
            ("no".into(), Value::Bool(false)),
            (
                "list".into(),
                Value::Array((0..40).map(Value::U16).collect()),
            ),
            ("nested".into(), tagged("inner")),
        ]);
        let mut w = Writer::new("Test-DB");
        w.description("en", "types");
        w.insert(net("10.0.0.0/8"), value);
        let reader = Reader::from_source(w.to_bytes().expect("write")).expect("open");
        reader.verify().expect("verify");
        let got: Everything = reader
            .lookup(ip("10.0.0.1"))
            .expect("lookup")
            .decode()
            .expect("decode")
            .expect("data");
        assert_eq!(
            got,
            Everything {
                s: "short".into(),
                long: "a".repeat(200),
                longer: "b".repeat(5_000),
                longest: "c".repeat(70_000),
                d: -77.49,
                u16: 443,
                zero: 0,
                u32: 0x0102_0304,
                u64: u64::MAX,
                yes: true,
                no: false,
                list: (0..40).collect(),
                nested: Tagged {
                    tag: "inner".into()
                },
            }
        );
    }

    #[test]
    fn empty_database_is_valid() {
        let mut w = Writer::new("Test-DB");
        w.description("en", "empty");
        let reader = Reader::from_source(w.to_bytes().expect("write")).expect("open");
        reader.verify().expect("verify");
        assert!(!reader.lookup(ip("1.1.1.1")).expect("lookup").has_data());
    }

    #[test]
    fn missing_description_is_an_error() {
        let w = Writer::new("Test-DB");
        assert!(matches!(w.to_bytes(), Err(WriterError::NoDescription)));
    }
}
