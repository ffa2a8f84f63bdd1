#!/usr/bin/env python3
"""The answer sampler of bench/ramp.sh (python3 standard library only).

dnsperf counts responses but not what they say, so this script asks Meridian itself: raw
UDP DNS queries for one geo name, each with an EDNS Client Subnet option for one client /24,
and it reads the A record of each answer. Everything goes to 127.0.0.1.

  select   query candidate /24s (from bench/gen-queries.py's subnets.txt) and keep the first
           --count whose answer is --answer (the ramped region's address), i.e. the clients
           that region serves before the ramp. Writes them to --out, one a line.
  sample   cycle through the clients of --clients until --until (unix time), a window of
           --window queries in flight, and count each answer under the ramp step that was in
           force when the query was sent and when its answer came back. The step is worked
           out from the ramp's start and step_every (read from GET /v1/ramps), as Meridian
           does; a sample sent or answered within --guard seconds of a step boundary is
           skipped. Writes one TSV row per step to --out, and the clients seen moved and
           unmoved per step to --examples.

A moved answer is any A record that is not --answer. Answers without an A record, and
error rcodes, are counted apart ("bad"), as are queries unanswered after 1 s ("timeouts").
"""
import argparse
import ipaddress
import json
import random
import select
import socket
import struct
import sys
import time
import urllib.request

TIMEOUT = 1.0  # seconds before a sampler query counts as unanswered


def wire_name(name):
    out = bytearray()
    for label in name.rstrip(".").split("."):
        out.append(len(label))
        out += label.encode("ascii")
    return bytes(out) + b"\x00"


def query(qid, qname_wire, subnet):
    """An A query, RD clear, with an OPT record (payload 1232) carrying ECS for `subnet`."""
    net = ipaddress.ip_network(subnet, strict=False)
    family = 1 if net.version == 4 else 2
    packed = net.network_address.packed[: (net.prefixlen + 7) // 8]
    ecs = struct.pack("!HBB", family, net.prefixlen, 0) + packed
    rdata = struct.pack("!HH", 8, len(ecs)) + ecs
    header = struct.pack("!6H", qid, 0, 1, 0, 0, 1)
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(rdata)) + rdata
    return header + qname_wire + struct.pack("!HH", 1, 1) + opt


def skip_name(msg, i):
    """The offset just past the (possibly compressed) name at `i`."""
    for _ in range(128):  # bounded: a name has at most 127 labels
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n
    raise ValueError("name too long")


def parse(msg):
    """(id, rcode, [A addresses]) of a response; ValueError when it is not one."""
    if len(msg) < 12:
        raise ValueError("short message")
    qid, flags, qd, an, _, _ = struct.unpack("!6H", msg[:12])
    if not flags & 0x8000:
        raise ValueError("not a response")
    i = 12
    for _ in range(qd):
        i = skip_name(msg, i) + 4
    addrs = []
    for _ in range(an):
        i = skip_name(msg, i)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[i : i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[i : i + 4]))
        i += rdlen
    return qid, flags & 0x000F, addrs


class Client:
    """One UDP socket to the server with up to `window` queries in flight."""

    def __init__(self, port, qname, window):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.qname = wire_name(qname)
        self.window = window
        self.inflight = {}  # id -> (subnet, sent at)
        self.next_id = random.randrange(1 << 16)
        self.timeouts = 0

    def can_send(self):
        return len(self.inflight) < self.window

    def send(self, subnet):
        for _ in range(1 << 16):  # bounded: an id not in flight
            self.next_id = (self.next_id + 1) & 0xFFFF
            if self.next_id not in self.inflight:
                break
        qid = self.next_id
        try:
            self.sock.send(query(qid, self.qname, subnet))
        except BlockingIOError:
            return False
        self.inflight[qid] = (subnet, time.time())
        return True

    def receive(self, wait):
        """[(subnet, sent, received, rcode, addrs)] of what arrived within `wait` seconds."""
        out = []
        ready, _, _ = select.select([self.sock], [], [], wait)
        if ready:
            for _ in range(256):  # bounded: what is queued now
                try:
                    msg = self.sock.recv(4096)
                except BlockingIOError:
                    break
                now = time.time()
                try:
                    qid, rcode, addrs = parse(msg)
                except (ValueError, struct.error, IndexError):
                    continue
                sent = self.inflight.pop(qid, None)
                if sent is not None:
                    out.append((sent[0], sent[1], now, rcode, addrs))
        now = time.time()
        stale = [q for q, (_, t) in self.inflight.items() if now - t > TIMEOUT]
        for q in stale:
            del self.inflight[q]
            self.timeouts += 1
        return out


def select_clients(a):
    cands = []
    with open(a.candidates) as f:
        for line in f:
            words = line.split()
            if words and ":" not in words[0] and words[0].endswith("/24"):
                cands.append(words[0])
    random.Random(a.seed).shuffle(cands)
    c = Client(a.port, a.name, a.window)
    chosen, answers, asked = [], {}, 0
    deadline = time.time() + a.max_seconds
    it = iter(cands)
    exhausted = False
    while len(chosen) < a.count and time.time() < deadline:
        while not exhausted and c.can_send():
            s = next(it, None)
            if s is None:
                exhausted = True
                break
            c.send(s)
            asked += 1
        if exhausted and not c.inflight:
            break
        for subnet, _, _, rcode, addrs in c.receive(0.05):
            key = addrs[0] if rcode == 0 and addrs else f"rcode{rcode}/none"
            answers[key] = answers.get(key, 0) + 1
            if key == a.answer and len(chosen) < a.count:
                chosen.append(subnet)
    with open(a.out, "w") as f:
        for s in chosen:
            f.write(s + "\n")
    spread = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
    print(f"ramp-sampler: asked {asked} candidate /24s ({spread}, {c.timeouts} unanswered); "
          f"kept {len(chosen)} answered {a.answer}")
    if len(chosen) < a.count:
        sys.exit(f"ramp-sampler: only {len(chosen)} of {a.count} clients answered {a.answer}")


def ramp_info(admin, ramp_id):
    # No proxy: the admin API is on loopback whatever http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{admin}/v1/ramps", timeout=5) as r:
        doc = json.load(r)
    for ramp in doc.get("ramps", []):
        if ramp.get("id") == ramp_id:
            return ramp
    sys.exit(f"ramp-sampler: no ramp {ramp_id!r} in {admin}/v1/ramps")


def sample(a):
    with open(a.clients) as f:
        clients = [line.strip() for line in f if line.strip()]
    if not clients:
        sys.exit("ramp-sampler: no clients")
    ramp = ramp_info(a.admin, a.ramp_id)
    start, every, steps = float(ramp["start"]), float(ramp["step_every"]), ramp["steps"]
    if ramp.get("paused_secs") or ramp.get("paused_at") or ramp.get("aborted"):
        sys.exit("ramp-sampler: the ramp is paused or aborted; its steps are not on the plain clock")
    last = len(steps) - 1

    def step_of(t):
        """(step index, seconds to the nearest boundary of that step) at unix time t."""
        if t < start:
            return None, 0.0
        k = min(int((t - start) // every), last)
        lo = start + k * every
        hi = start + (k + 1) * every if k < last else float("inf")
        return k, min(t - lo, hi - t)

    counts = [dict(samples=0, moved=0, bad=0, skipped=0, seen=set(), to={}) for _ in steps]
    # Per client, per step: 1 seen answered from the region, 2 seen moved.
    marks = {s: bytearray(len(steps)) for s in clients}
    examples = [dict(moved=None, unmoved=None) for _ in steps]
    c = Client(a.port, a.name, a.window)
    i, sent = 0, 0
    until = a.until
    while True:
        now = time.time()
        if now >= until and not c.inflight:
            break
        while now < until and c.can_send():
            if not c.send(clients[i]):
                break
            i = (i + 1) % len(clients)
            sent += 1
        for subnet, t0, t1, rcode, addrs in c.receive(0.02):
            k0, d0 = step_of(t0)
            k1, d1 = step_of(t1)
            if k0 is None or k0 != k1:
                if k1 is not None:
                    counts[k1]["skipped"] += 1
                continue
            n = counts[k0]
            if min(d0, d1) < a.guard:
                n["skipped"] += 1
                continue
            if rcode != 0 or not addrs:
                n["bad"] += 1
                continue
            n["samples"] += 1
            n["seen"].add(subnet)
            marks[subnet][k0] |= 2 if addrs[0] != a.answer else 1
            if addrs[0] != a.answer:
                n["moved"] += 1
                n["to"][addrs[0]] = n["to"].get(addrs[0], 0) + 1
                examples[k0]["moved"] = examples[k0]["moved"] or subnet
            else:
                examples[k0]["unmoved"] = examples[k0]["unmoved"] or subnet
    with open(a.out, "w") as f:
        f.write("step\tpercent\tsamples\tclients\tmoved\tbad\tskipped\tmoved_to\n")
        for k, (p, n) in enumerate(zip(steps, counts)):
            to = ",".join(f"{addr}={v}" for addr, v in sorted(n["to"].items())) or "-"
            f.write(f"{k + 1}\t{p:g}\t{n['samples']}\t{len(n['seen'])}\t{n['moved']}\t{n['bad']}\t"
                    f"{n['skipped']}\t{to}\n")
    if a.examples:
        with open(a.examples, "w") as f:
            for k, (p, e) in enumerate(zip(steps, examples)):
                f.write(f"{p:g}\t{e['moved'] or '-'}\t{e['unmoved'] or '-'}\n")
    # A rising ramp only ever moves more clients, and a client stays put while a step holds:
    # count the clients seen both ways within one step, and those seen moved at one step and
    # answered from the region again at a later one.
    rising = all(x <= y for x, y in zip(steps, steps[1:]))
    mixed = sum(1 for m in marks.values() for b in m if b == 3)
    back = 0
    for m in marks.values():
        first_moved = next((k for k, b in enumerate(m) if b & 2), None)
        if first_moved is not None and any(b & 1 for b in m[first_moved + 1 :]):
            back += 1
    with open(a.out + ".stability", "w") as f:
        f.write(f"{mixed}\t{back if rising else 0}\n")
    print(f"ramp-sampler: {sent} queries sent from {len(clients)} clients, {c.timeouts} unanswered; "
          f"{mixed} (client, step) pairs answered both ways within the step, "
          f"{back if rising else '-'} clients moved back at a later step")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("select", "sample"))
    ap.add_argument("--port", type=int, required=True, help="Meridian's DNS port on 127.0.0.1")
    ap.add_argument("--name", default="geo.example.com.", help="the geo name to ask for (type A)")
    ap.add_argument("--answer", required=True, help="the ramped region's address in the answers")
    ap.add_argument("--window", type=int, default=64, help="queries in flight at once")
    ap.add_argument("--out", required=True)
    ap.add_argument("--candidates", help="select: subnets.txt of gen-queries.py")
    ap.add_argument("--count", type=int, default=5000, help="select: clients to keep")
    ap.add_argument("--seed", type=int, default=1, help="select: order in which candidates are tried")
    ap.add_argument("--max-seconds", type=float, default=60, help="select: give up after this long")
    ap.add_argument("--clients", help="sample: the clients select kept")
    ap.add_argument("--admin", help="sample: the admin API's base URL (http://127.0.0.1:PORT)")
    ap.add_argument("--ramp-id", help="sample: the ramp's id")
    ap.add_argument("--until", type=float, help="sample: stop sending at this unix time")
    ap.add_argument("--guard", type=float, default=0.3, help="sample: seconds around a step boundary to skip")
    ap.add_argument("--examples", help="sample: where to write a moved and an unmoved client per step")
    a = ap.parse_args()
    if a.window < 1 or a.window > 4096:
        sys.exit("ramp-sampler: --window is 1 to 4096")
    if a.mode == "select":
        if not a.candidates:
            sys.exit("ramp-sampler: select needs --candidates")
        select_clients(a)
    else:
        if not (a.clients and a.admin and a.ramp_id and a.until):
            sys.exit("ramp-sampler: sample needs --clients, --admin, --ramp-id and --until")
        sample(a)


if __name__ == "__main__":
    main()
