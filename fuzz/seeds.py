#!/usr/bin/env python3
"""Writes the committed seed corpus under fuzz/corpus/<target>/ (standard library only).

Run from anywhere: `python3 fuzz/seeds.py`. It rewrites the seeds it knows and leaves other
files alone. The DNS messages are built byte by byte here (RFC 1035, 6891, 7871), so a seed
does not depend on the code it exercises.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

A, NS, SOA, MX, TXT, AAAA, SRV, OPT, ANY, CAA = 1, 2, 6, 15, 16, 28, 33, 41, 255, 257
IN, CH = 1, 3


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ecs_body(family, prefix, addr_bytes, scope=0):
    return struct.pack(">HBB", family, prefix, scope) + bytes(addr_bytes)


def option(code, body):
    return struct.pack(">HH", code, len(body)) + body


def opt_record(payload=1232, version=0, options=b"", do=False):
    flags = 0x8000 if do else 0
    return b"\0" + struct.pack(">HHBBHH", OPT, payload, 0, version, flags, len(options)) + options


def query(qid, qname, qtype, qclass=IN, opcode=0, rd=True, additional=(), qname_wire=None):
    flags = (opcode << 11) | (0x0100 if rd else 0)
    header = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, len(additional))
    q = (qname_wire if qname_wire is not None else name(qname)) + struct.pack(">HH", qtype, qclass)
    return header + q + b"".join(additional)


def ecs4(a, b, c, d, prefix):
    n = (prefix + 7) // 8
    return option(8, ecs_body(1, prefix, [a, b, c, d][:n]))


def ecs6(groups, prefix):
    raw = b"".join(struct.pack(">H", g) for g in groups)
    raw = raw + b"\0" * (16 - len(raw))
    return option(8, ecs_body(2, prefix, raw[: (prefix + 7) // 8]))


# dns_request: one selector byte (bits 0-2 source, bit 3 policies.toml, bit 4 TCP), then
# the message. Sources: 0 127.0.0.1, 1 US, 2 DE, 3 JP, 4 BR, 5 DE v6, 6 US v4-mapped, 7 corp.
UDP, TCP, POLICIES = 0x00, 0x10, 0x08
DNS = {
    "www-a-plain-us": (UDP | 1, query(0x1001, "www.example.com.", A)),
    "www-aaaa-edns-ecs4": (
        UDP | 0,
        query(0x1002, "www.example.com.", AAAA, additional=[opt_record(1232, options=ecs4(12, 0, 0, 0, 24))]),
    ),
    "www-mixedcase-ecs6": (
        UDP | 5,
        query(
            0x1003,
            "wWw.ExAmPlE.cOm.",
            A,
            additional=[opt_record(4096, options=ecs6([0x2001, 0xDB8, 3], 48))],
        ),
    ),
    "api-a-payload512": (UDP | 2, query(0x1004, "api.example.com.", A, additional=[opt_record(512)])),
    "apex-soa-edns-do": (UDP | 0, query(0x1005, "example.com.", SOA, additional=[opt_record(1232, do=True)])),
    "apex-any-tcp": (TCP | 3, query(0x1006, "example.com.", ANY)),
    "apex-txt-caa-mx": (UDP | 1, query(0x1007, "example.com.", MX)),
    "shop-cname": (UDP | 4, query(0x1008, "shop.example.com.", A)),
    "nxdomain": (UDP | 1, query(0x1009, "nope.example.com.", AAAA, additional=[opt_record(1400)])),
    "srv": (TCP | 2, query(0x100A, "_https._tcp.www.example.com.", SRV)),
    "not-our-zone": (UDP | 0, query(0x100B, "www.other.org.", A)),
    "badvers": (UDP | 1, query(0x100C, "www.example.com.", A, additional=[opt_record(1232, version=1)])),
    "notify-opcode": (UDP | 1, query(0x100D, "example.com.", SOA, opcode=4)),
    "chaos-class": (UDP | 0, query(0x100E, "version.bind.", TXT, qclass=CH)),
    "ecs-zero-prefix": (
        UDP | 6,
        query(0x100F, "www.example.com.", A, additional=[opt_record(1232, options=ecs4(0, 0, 0, 0, 0))]),
    ),
    "ecs-host-bits-formerr": (
        UDP | 1,
        query(
            0x1010,
            "www.example.com.",
            A,
            additional=[opt_record(1232, options=option(8, ecs_body(1, 20, [11, 0, 0x81])))],
        ),
    ),
    "two-opts-formerr": (
        UDP | 1,
        query(0x1011, "www.example.com.", A, additional=[opt_record(1232), opt_record(1232)]),
    ),
    "trailing-byte": (UDP | 1, query(0x1012, "www.example.com.", A) + b"\0"),
    "compressed-qname": (
        UDP | 1,
        # The question name points back into the header: legal-looking, never valid.
        query(0x1013, "", A, qname_wire=b"\xc0\x04"),
    ),
    "unknown-option-tcp": (
        TCP | 1,
        query(
            0x1014,
            "www.example.com.",
            AAAA,
            additional=[opt_record(1232, options=option(65001, b"\1\2\3") + ecs4(11, 0, 128, 0, 20))],
        ),
    ),
    "three-long-questions": (
        UDP | 1,
        struct.pack(">HHHHHH", 0x1015, 0x0100, 3, 0, 0, 0)
        + (name(".".join(c * 60 for c in "abcd")) + struct.pack(">HH", A, IN)) * 3,
    ),
    "policies-latency-jp": (POLICIES | 3, query(0x2001, "fast.example.net.", A)),
    "policies-proximity-br-ecs": (
        POLICIES | 4,
        query(0x2002, "near.example.net.", A, additional=[opt_record(1232, options=ecs4(15, 0, 0, 0, 24))]),
    ),
    "policies-weighted": (POLICIES | 1, query(0x2003, "canary.example.net.", A)),
    "policies-geo-corp-cidr": (POLICIES | 7, query(0x2004, "eu.example.net.", A, additional=[opt_record(512)])),
    "policies-geo-eu-tcp": (POLICIES | TCP | 2, query(0x2005, "eu.example.net.", AAAA)),
}

# ecs_edns: whole queries for `scan` and bare ECS option bodies for `parse_ecs`.
ECS = {
    "query-plain": DNS["www-a-plain-us"][1],
    "query-ecs4": DNS["www-aaaa-edns-ecs4"][1],
    "query-ecs6": DNS["www-mixedcase-ecs6"][1],
    "query-two-options": DNS["unknown-option-tcp"][1],
    "query-badvers": DNS["badvers"][1],
    "query-two-opts": DNS["two-opts-formerr"][1],
    "body-v4-24": ecs_body(1, 24, [11, 0, 130]),
    "body-v4-20": ecs_body(1, 20, [11, 0, 128]),
    "body-v4-0": ecs_body(1, 0, []),
    "body-v4-32-scope": ecs_body(1, 32, [12, 0, 5, 9], scope=24),
    "body-v6-48": ecs_body(2, 48, [0x20, 0x01, 0x0D, 0xB8, 0, 3]),
    "body-v6-128": ecs_body(2, 128, [0x20, 0x01, 0x0D, 0xB8, 0, 2] + [0] * 9 + [1]),
    "body-v6-56-host-bits": ecs_body(2, 52, [0x20, 0x01, 0x0D, 0xB8, 0, 3, 0x0F]),
    "body-family-3": ecs_body(3, 8, [1]),
    "body-v4-prefix-33": ecs_body(1, 33, [1, 2, 3, 4, 5]),
}

CONFIG_MINIMAL = """\
[[zones]]
origin = "example.org."
ns = ["ns1.example.org."]
soa = { mname = "ns1.example.org.", rname = "hostmaster.example.org.", serial = 1, minimum = 60 }
records = [ { name = "ns1", type = "A", data = "192.0.2.53" } ]

[[regions]]
name = "a"

[[regions]]
name = "b"

[[services]]
name = "www.example.org."
policy = "failover"
regions = ["a", "b"]
endpoints = [
  { region = "a", address = "192.0.2.1" },
  { region = "b", address = "2001:db8::1" },
]
"""

CONFIG_WEIGHTED = """\
[server]
dns_listen = ["127.0.0.1:0"]
max_udp_payload = 1400
tcp_idle_timeout = "500ms"

[routing]
default_order = ["west", "east"]

[[zones]]
origin = "example.org"
ns = ["ns1.example.org", "ns2.example.org"]
soa = { mname = "ns1", rname = "hostmaster", serial = 7, minimum = 30, refresh = 600 }
ttl = 300
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "ns2", type = "AAAA", data = "2001:db8::53" },
  { name = "@", type = "TXT", data = "hello" },
  { name = "sub", type = "NS", data = "ns.elsewhere.net." },
]

[[regions]]
name = "west"
location = { lat = 37.0, lon = -122.0 }
bias = -10

[[regions]]
name = "east"
location = { lat = 40.7, lon = -74.0 }

[cidr_maps.office]
networks = [ { network = "10.1.0.0/16", region = "east" } ]

[checks.web]
kind = "tcp"
port = 443
interval = "2s"
timeout = "1s"
rise = 1
fall = 2

[[services]]
name = "split.example.org."
policy = "weighted"
weight_mode = "random"
answers = 2
check = "web"
on_all_down = "fallback"
fallback = ["192.0.2.99"]
endpoints = [
  { region = "west", address = "192.0.2.1", weight = 3 },
  { region = "east", address = "192.0.2.2", weight = 1, check_address = "192.0.2.20" },
]

[[services]]
name = "near.example.org."
policy = "proximity"
cidr_map = "office"
min_healthy = 2
on_all_down = "servfail"
endpoints = [
  { region = "west", address = "192.0.2.3" },
  { region = "east", address = "192.0.2.4" },
]
"""

CONFIG = {
    "example-meridian.toml": open(os.path.join(ROOT, "config", "meridian.toml")).read(),
    "example-policies.toml": open(os.path.join(ROOT, "config", "policies.toml")).read(),
    "minimal-failover.toml": CONFIG_MINIMAL,
    "weighted-proximity-checks.toml": CONFIG_WEIGHTED,
    "syntax-error.toml": CONFIG_MINIMAL.replace('name = "a"', 'name = "a'),
    "unknown-key.toml": CONFIG_MINIMAL.replace('name = "a"', 'name = "a"\ncolour = "red"'),
    "duplicate-region.toml": CONFIG_MINIMAL.replace('name = "b"', 'name = "a"'),
    "bad-values.toml": CONFIG_MINIMAL.replace('"192.0.2.1"', '"192.0.2.300"').replace(
        "minimum = 60", "minimum = -1"
    )
    + '\n[server]\nmax_udp_payload = 100\ntcp_idle_timeout = "10 parsecs"\n',
    "service-outside-zone.toml": CONFIG_MINIMAL.replace("www.example.org.", "www.example.net."),
    "latency-map-inline-path.toml": CONFIG_MINIMAL.replace(
        "[[zones]]", '[routing]\nlatency_map = "rtt.csv"\nlatency_overhead_ms = 3\n\n[[zones]]'
    ).replace('policy = "failover"\nregions = ["a", "b"]', 'policy = "latency"\nlatency_margin_ms = 0'),
    "residency-geo-no-db.toml": CONFIG_MINIMAL.replace(
        'policy = "failover"\nregions = ["a", "b"]',
        'policy = "geo"\nresidency = [ { continents = ["EU"], regions = ["b"] } ]',
    ),
    "empty.toml": "",
}

LATENCY = {
    "example.csv": open(os.path.join(ROOT, "config", "latency-map.csv")).read(),
    "two-regions.csv": "client,region,rtt_ms\n"
    "10.0.0.0/8,us-east,12.5\n"
    "10.0.0.0/8,eu-west,90\n"
    "12.0.5.0/24, eu-west , 7\n"
    "2001:db8:2::/48,eu-west,11\n"
    "country:DE,eu-west,20\n"
    "continent:EU,us-east,95 # comment\n",
    "no-header.csv": "country:US,us-east,18\ncountry:US,eu-west,85\n\n# done\n",
    "errors.csv": "client,region,rtt_ms\n"
    "10.0.0.1/8,us-east,1\n"
    "country:ZZZ,us-east,1\n"
    "continent:XX,eu-west,1\n"
    "10.0.0.0/8,mars,1\n"
    "10.0.0.0/8,us-east,NaN\n"
    "10.0.0.0/8,us-east,-4\n"
    "10.0.0.0/8,us-east,1e9\n"
    "country:DE,eu-west,1\ncountry:DE,eu-west,2\n"
    "just,two\n",
    "crlf.csv": "client,region,rtt_ms\r\n0.0.0.0/0,us-east,50\r\n::/0,eu-west,60\r\n",
    "example.toml": '[[rtt]]\nclient = "country:US"\nregion = "us-east"\nrtt_ms = 18\n\n'
    '[[rtt]]\nclient = "10.0.0.0/8"\nregion = "eu-west"\nrtt_ms = 80.5\n',
    "inline.toml": 'rtt = [\n  { client = "continent:EU", region = "eu-west", rtt_ms = 22 },\n'
    '  { client = "2001:db8::/32", region = "us-east", rtt_ms = 140 },\n]\n',
    "errors.toml": '[[rtt]]\nclient = "country:US"\nregion = "us-east"\n\n'
    '[[rtt]]\nclient = "10.0.0.0/8"\nregion = "eu-west"\nrtt_ms = 80\nextra = 1\n',
    "bad-syntax.toml": '[[rtt]\nclient = "x"\n',
    "wrong-type.toml": 'rtt = 5\n',
    "empty.csv": "",
}

ZONE_EXAMPLE = open(os.path.join(ROOT, "config", "zones", "example.com.zone")).read()
ZONE = {
    "example.zone": ZONE_EXAMPLE,
    "include.zone": "$ORIGIN example.com.\n$TTL 1h\n$INCLUDE inc.zone sub\n"
    "@ 300 IN TXT ( \"a b\" ; comment\n  \"c\\\"d\" )\n\tMX 10 @\n"
    "*.w CNAME @\n_s._tcp SRV 0 5 443 www\n",
    "crlf.zone": ZONE_EXAMPLE.replace("\n", "\r\n"),
    "broken.zone": "$TTL x\n@ SOA ns1 host ( 1 2 3 4\nbad A 192.0.2.300\n"
    "x BOGUS 1\ny CH A 192.0.2.1\nfar.example.org. A 192.0.2.1\n"
    "$INCLUDE missing.zone\n$GENERATE 1-2 h$ A 192.0.2.$\n  ) \"open\n",
    "empty.zone": "",
}

AUTH = "Authorization: Bearer t\n"
ADMIN = {
    "healthz.http": "GET /healthz HTTP/1.1\n\n",
    "readyz.http": "GET /readyz\n\n",
    "metrics.http": "GET /metrics\n\n",
    "regions.http": "GET /v1/regions HTTP/1.1\nAccept: application/json\n\n",
    "routing-table.http": "GET /v1/routing-table\n\n",
    "explain.http": "GET /v1/explain?name=www.example.com&type=A&client=11.0.0.1%2F24\n\n",
    "explain-bad.http": "GET /v1/explain?name=www.example.com&type=BOGUS&client=300.1.1.1\n\n",
    "cluster.http": "GET /v1/cluster\n\n",
    "remote-no-token.http": "GET /v1/regions 198.51.100.7\n\n",
    "remote-token.http": "GET /v1/routing-table 2001:db8::7\n" + AUTH + "\n",
    "evacuate.http": "POST /v1/regions/eu-west/evacuate\n"
    + AUTH
    + "Content-Type: application/json\n\n"
    + '{"reason": "maintenance"}',
    "evacuate-force.http": "POST /v1/regions/us-east/evacuate\n" + AUTH + '\n{"reason": "drill", "force": true}',
    "evacuate-bad-body.http": "POST /v1/regions/us-east/evacuate\n" + AUTH + '\n{"reason": 5, "colour": "red"}',
    "evacuate-unknown.http": "POST /v1/regions/mars%2Dnorth/evacuate\n" + AUTH + "\n",
    "restore.http": "POST /v1/regions/eu-west/restore\n" + AUTH + "\n",
    "reload.http": "POST /v1/reload\r\n" + AUTH.replace("\n", "\r\n") + "\r\n",
    "latency-csv.http": "PUT /v1/latency-map\n" + AUTH + "\nclient,region,rtt_ms\ncountry:US,us-east,18\n",
    "latency-toml.http": "PUT /v1/latency-map\n"
    + AUTH
    + "Content-Type: application/toml\n\n"
    + '[[rtt]]\nclient = "12.0.0.0/16"\nregion = "eu-west"\nrtt_ms = 9\n',
    "latency-bad.http": "PUT /v1/latency-map\n" + AUTH + "\n10.0.0.1/8,nowhere,x\n",
    "wrong-token.http": "POST /v1/reload\nAuthorization: Bearer nope\n\n",
    "no-token.http": "POST /v1/regions/eu-west/restore\n\n",
    "method-not-allowed.http": "DELETE /v1/regions\n" + AUTH + "\n",
    "not-found.http": "GET /v2/everything?x=1\n\n",
}


def write(target, files):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for fname, content in files.items():
        if isinstance(content, str):
            content = content.encode()
        with open(os.path.join(d, fname), "wb") as f:
            f.write(content)


def main():
    write("dns_request", {k: bytes([sel]) + msg for k, (sel, msg) in DNS.items()})
    write("ecs_edns", ECS)
    write("config", CONFIG)
    write("latency_map", LATENCY)
    write("zone_file", ZONE)
    write("admin_json", ADMIN)


if __name__ == "__main__":
    main()
