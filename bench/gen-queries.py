#!/usr/bin/env python3
"""Write the benchmark's dnsperf query files (python3 standard library only).

Output is dnsperf's binary input (`dnsperf -B`): every message is a 2-byte big-endian
length followed by one DNS query in wire format, so each query can carry its own EDNS
Client Subnet option. dnsperf rewrites the message ID. Every query has RD clear and an
OPT record (UDP payload 1232, EDNS version 0, DO clear).

Files written to --out:
  a.bin   geo.<zone> A, no ECS: the geo decision is made on the source address 127.0.0.1
  b.bin   geo.<zone> A, each query with a different ECS subnet (--queries distinct
          subnets, ~85% IPv4 /24, ~15% IPv6 /56)
  c.bin   a mix: 40% geo (half of them with ECS), 40% static (www-static, ns1, s0..s99,
          SOA and NS at the apex), 20% NXDOMAIN (random labels)
  X.txt   one readable line per query of X.bin: "qname qtype [ecs=SUBNET]"
  subnets.txt  every ECS subnet used, with the database network it falls in
  layout.txt   counts of the networks the generator believes are in the database

The client subnets must be networks the GeoIP database actually contains, or workload b
would measure the "not found" path. The database comes from `meridian geoip-synth
--networks N --seed S`, which is deterministic: this script re-creates its network
layout (same splitmix64 sequence, same prefix draws, same alignment) instead of reading
the MMDB, and draws each subnet inside one of those networks. run.sh checks a sample of
the subnets against `meridian explain`, which reports the network it found, so a change
to the layout in src/geo/build/synthetic.rs is caught rather than silently benchmarked.
"""
import argparse
import ipaddress
import os
import random
import struct
import sys

MASK64 = (1 << 64) - 1
TYPES = {"A": 1, "NS": 2, "SOA": 6}


class SplitMix64:
    """The generator geoip-synth uses; only the sequence of draws matters here."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def synth_layout(networks, seed):
    """(v4, v6): lists of (network int, prefix) in the order geoip-synth inserts them.

    Each network draws its prefix, then its record (one draw whatever the record count),
    so the layout does not depend on how many countries the database knows.
    """
    rng = SplitMix64(seed)
    v4, v6 = [], []
    end, cursor = 224 << 24, 1 << 24
    while len(v4) < networks and cursor < end:
        prefix = 19 + rng.below(5)
        size = 1 << (32 - prefix)
        cursor = (cursor + size - 1) & ~(size - 1)
        if cursor >> 24 == 127:
            cursor = 128 << 24
            continue
        if cursor + size > end:
            break
        rng.next()  # the record
        v4.append((cursor, prefix))
        cursor += size
    for i in range(networks // 10):
        prefix = 32 + rng.below(9)
        base = (0x2000 << 112) + (i << 96)
        rng.next()  # the record
        v6.append((base >> (128 - prefix) << (128 - prefix), prefix, base))
    return v4, v6


def v4_text(n):
    return str(ipaddress.IPv4Address(n))


def v6_text(n):
    return ipaddress.IPv6Address(n).compressed


def sample_subnets(v4, v6, count, v6_share, rnd):
    """Distinct client subnets: /24s inside IPv4 networks, /56s inside IPv6 networks.

    Returns (family, address int, prefix, containing network text) tuples.
    """
    v4 = [(n, p) for n, p in v4 if n >> 24 != 127]  # never a loopback client
    if not v4:
        sys.exit("gen-queries: the layout has no IPv4 networks")
    out, seen = [], set()
    for _ in range(count * 20):  # bounded: duplicates are rare, never loop forever
        if len(out) >= count:
            break
        if v6 and rnd.random() < v6_share:
            net, prefix, base = rnd.choice(v6)
            # Every IPv6 network is /32../40 truncated from `base`, so the /40 at `base`
            # lies inside it whatever its prefix: pick a /56 there.
            addr = base + (rnd.randrange(1 << 16) << 72)
            key = (6, addr)
            item = (6, addr, 56, f"{v6_text(net)}/{prefix}")
        else:
            net, prefix = rnd.choice(v4)
            addr = net + (rnd.randrange(1 << (24 - prefix)) << 8)
            key = (4, addr)
            item = (4, addr, 24, f"{v4_text(net)}/{prefix}")
        if key not in seen:
            seen.add(key)
            out.append(item)
    if len(out) < count:
        sys.exit(f"gen-queries: only {len(out)} distinct subnets found for {count}")
    return out


def wire_name(name):
    out = bytearray()
    for label in name.rstrip(".").split("."):
        out.append(len(label))
        out += label.encode("ascii")
    return bytes(out) + b"\x00"


def ecs_option(subnet):
    family, addr, prefix, _ = subnet
    width = 32 if family == 4 else 128
    packed = addr.to_bytes(width // 8, "big")[: (prefix + 7) // 8]
    data = struct.pack("!HBB", 1 if family == 4 else 2, prefix, 0) + packed
    return struct.pack("!HH", 8, len(data)) + data


def message(name, qtype, subnet, dnssec_ok=False):
    # ID 0 (dnsperf sets it), flags 0: QUERY, RD clear; 1 question, 1 additional (OPT).
    header = struct.pack("!6H", 0, 0, 1, 0, 0, 1)
    question = wire_name(name) + struct.pack("!HH", TYPES[qtype], 1)
    rdata = ecs_option(subnet) if subnet else b""
    # OPT: root owner, TYPE 41, CLASS = UDP payload 1232, TTL = ext-rcode 0, version 0, DO
    # clear (set for workload bdo).
    flags = 0x8000 if dnssec_ok else 0
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, flags, len(rdata)) + rdata
    body = header + question + opt
    return struct.pack("!H", len(body)) + body


def subnet_text(subnet):
    family, addr, prefix, _ = subnet
    return f"{v4_text(addr) if family == 4 else v6_text(addr)}/{prefix}"


def write(outdir, stem, queries, dnssec_ok=False):
    with open(os.path.join(outdir, stem + ".bin"), "wb") as binf, open(
        os.path.join(outdir, stem + ".txt"), "w"
    ) as txt:
        for name, qtype, subnet in queries:
            binf.write(message(name, qtype, subnet, dnssec_ok))
            txt.write(f"{name} {qtype}" + (f" ecs={subnet_text(subnet)}" if subnet else "")
                      + (" do" if dnssec_ok else "") + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the query files")
    ap.add_argument("--networks", type=int, default=1_000_000, help="as given to geoip-synth")
    ap.add_argument("--seed", type=int, default=1, help="as given to geoip-synth")
    ap.add_argument("--queries", type=int, default=50_000, help="queries per file (= distinct subnets in b)")
    ap.add_argument("--zone", default="example.com")
    ap.add_argument("--v6-share", type=float, default=0.15)
    ap.add_argument("--draw-seed", type=int, default=20261122, help="seed of the query draws")
    a = ap.parse_args()
    if a.queries < 1:
        sys.exit("gen-queries: --queries must be at least 1")
    os.makedirs(a.out, exist_ok=True)
    rnd = random.Random(a.draw_seed)
    v4, v6 = synth_layout(a.networks, a.seed)
    subnets = sample_subnets(v4, v6, a.queries, a.v6_share, rnd)
    zone = a.zone.rstrip(".")
    geo = f"geo.{zone}."

    write(a.out, "a", [(geo, "A", None)] * a.queries)
    write(a.out, "b", [(geo, "A", s) for s in subnets])
    # bdo: workload b with DO=1 (signed answers from a signed zone).
    write(a.out, "bdo", [(geo, "A", s) for s in subnets], dnssec_ok=True)

    statics = [f"www-static.{zone}.", f"ns1.{zone}."] + [f"s{i}.{zone}." for i in range(100)]
    mix = []
    for i in range(a.queries):
        r = rnd.random()
        if r < 0.40:
            mix.append((geo, "A", subnets[i] if r < 0.20 else None))
        elif r < 0.75:
            mix.append((rnd.choice(statics), "A", None))
        elif r < 0.80:
            mix.append((f"{zone}.", rnd.choice(("SOA", "NS")), None))
        else:
            mix.append((f"nx-{rnd.getrandbits(40):010x}.{zone}.", "A", None))
    write(a.out, "c", mix)

    with open(os.path.join(a.out, "subnets.txt"), "w") as f:
        for s in subnets:
            f.write(f"{subnet_text(s)} {s[3]}\n")
    in127 = sum(1 for n, _ in v4 if n >> 24 == 127)
    with open(os.path.join(a.out, "layout.txt"), "w") as f:
        f.write(f"networks={a.networks} seed={a.seed} v4={len(v4)} v6={len(v6)} v4_in_127/8={in127}\n")
        if v4:
            last, p = v4[-1]
            f.write(f"v4 last network {v4_text(last)}/{p}\n")
    v6n = sum(1 for s in subnets if s[0] == 6)
    print(f"gen-queries: {a.out}: {a.queries} queries per workload, {len(subnets)} distinct ECS subnets "
          f"({v6n} IPv6 /56), layout v4={len(v4)} v6={len(v6)} networks"
          + (f", WARNING: {in127} layout network(s) in 127/8" if in127 else ""))


if __name__ == "__main__":
    main()
