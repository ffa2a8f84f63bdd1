#!/usr/bin/env python3
"""The answer sampler of bench/ramp.sh (python3 standard library only).

dnsperf counts responses but not what they say, so this script asks Meridian itself: raw
UDP DNS queries for one geo name, each with an EDNS Client Subnet option for one client /24,
and it reads the A record of each answer. Everything goes to 127.0.0.1.

  select   query candidate /24s (from bench/gen-queries.py's subnets.txt) and keep the first
           --count whose answer is --answer (the ramped region's address), i.e. the clients
           that region serves before the ramp. Writes them to --out, one a line.
  sample   cycle through the clients of --clients until --until (unix time), a window of
           --window queries in flight, while a thread polls GET /v1/ramps every --poll
           seconds. /v1/ramps reads the table the DNS path serves, so the polls bracket when
           each step's table was in force: from the answer of the first poll that showed it
           to the request of the last poll that still showed it. An answer counts under a
           step when its query was sent and answered inside that step's bracket, at least
           --guard seconds from either end; the rest are skipped. Writes one TSV row per step
           to --out (with how late the step was first seen against its scheduled moment,
           start + k * step_every) and the stability counts to --out.stability.

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
import threading
import time
import urllib.request
from array import array

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


def ramp_info(opener, admin, ramp_id):
    with opener.open(f"{admin}/v1/ramps", timeout=5) as r:
        doc = json.load(r)
    for ramp in doc.get("ramps", []):
        if ramp.get("id") == ramp_id:
            return ramp
    raise KeyError(f"no ramp {ramp_id!r} in {admin}/v1/ramps")


class Poller(threading.Thread):
    """Polls GET /v1/ramps every `every` seconds: (asked at, answered at, step) per poll.

    /v1/ramps reads the table the DNS path serves, so a poll that says step k shows that
    step k was in force at some moment between the request and its answer.
    """

    def __init__(self, admin, ramp_id, every):
        super().__init__(daemon=True)
        # No proxy: the admin API is on loopback whatever http_proxy says.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.admin, self.ramp_id, self.every = admin, ramp_id, every
        self.polls, self.errors = [], 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.time()
            try:
                r = ramp_info(self.opener, self.admin, self.ramp_id)
                if r.get("state") in ("running", "done"):
                    self.polls.append((t0, time.time(), int(r["step"]) - 1))
            except (OSError, ValueError, KeyError):
                self.errors += 1
            self.stop.wait(self.every)


def step_windows(polls, n):
    """Per step, the (from, to) during which it was surely the table in force.

    From: the answer of the first poll showing this step or a later one. To: the request of
    the last poll still showing this step or an earlier one (the last step: for ever).
    """
    out = []
    for k in range(n):
        begun = [t1 for _, t1, s in polls if s >= k]
        before_next = [t0 for t0, _, s in polls if s <= k]
        lo = min(begun) if begun else None
        hi = float("inf") if k == n - 1 else (max(before_next) if before_next else None)
        out.append((lo, hi))
    return out


def sample(a):
    with open(a.clients) as f:
        clients = [line.strip() for line in f if line.strip()]
    if not clients:
        sys.exit("ramp-sampler: no clients")
    poller = Poller(a.admin, a.ramp_id, a.poll)
    try:
        ramp = ramp_info(poller.opener, a.admin, a.ramp_id)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"ramp-sampler: {e}")
    start, every, steps = float(ramp["start"]), float(ramp["step_every"]), ramp["steps"]
    if ramp.get("paused_secs") or ramp.get("paused_at") or ramp.get("aborted"):
        sys.exit("ramp-sampler: the ramp is paused or aborted; its steps are not on the plain clock")
    poller.start()

    # Every answer, kept compactly and counted once the polls have bracketed every step.
    sent_at, answered_at, who, how = array("d"), array("d"), array("i"), bytearray()
    index = {s: n for n, s in enumerate(clients)}
    bad_at = array("d")
    dests = []  # moved answers' addresses; how = 1 from the region, 2 + index moved there
    slowest = (0.0, 0.0)
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
            if t1 - t0 > slowest[0]:
                slowest = (t1 - t0, t0)
            if rcode != 0 or not addrs:
                bad_at.append(t0)
                continue
            sent_at.append(t0)
            answered_at.append(t1)
            who.append(index[subnet])
            if addrs[0] == a.answer:
                how.append(1)
            else:
                if addrs[0] not in dests:
                    dests.append(addrs[0])
                how.append(2 + dests.index(addrs[0]))
    poller.stop.set()
    poller.join(10)

    windows = step_windows(poller.polls, len(steps))
    counts = [dict(samples=0, moved=0, bad=0, skipped=0, seen=set(), to={}) for _ in steps]
    # Per client, per step: 1 seen answered from the region, 2 seen moved.
    marks = [bytearray(len(steps)) for _ in clients]
    for t0, t1, n, h in zip(sent_at, answered_at, who, how):
        k = next((k for k, (lo, hi) in enumerate(windows) if lo is not None and lo <= t0 < hi), None)
        if k is None:
            continue
        lo, hi = windows[k]
        c_ = counts[k]
        if t0 < lo + a.guard or t1 > hi - a.guard:
            c_["skipped"] += 1
            continue
        c_["samples"] += 1
        c_["seen"].add(n)
        marks[n][k] |= 1 if h == 1 else 2
        if h >= 2:
            c_["moved"] += 1
            to = dests[h - 2]
            c_["to"][to] = c_["to"].get(to, 0) + 1
    for t in bad_at:
        k = next((k for k, (lo, hi) in enumerate(windows) if lo is not None and lo <= t < hi), None)
        if k is not None:
            counts[k]["bad"] += 1

    with open(a.out, "w") as f:
        f.write("step\tpercent\tsamples\tclients\tmoved\tbad\tskipped\tlate_ms\tmoved_to\n")
        for k, (p, n, (lo, _)) in enumerate(zip(steps, counts, windows)):
            to = ",".join(f"{addr}={v}" for addr, v in sorted(n["to"].items())) or "-"
            # How long after its scheduled moment the step was first seen served (the first
            # step: after the ramp's start, which is its creation cut to the second).
            late = "-" if lo is None else f"{(lo - (start + k * every)) * 1000:.0f}"
            f.write(f"{k + 1}\t{p:g}\t{n['samples']}\t{len(n['seen'])}\t{n['moved']}\t{n['bad']}\t"
                    f"{n['skipped']}\t{late}\t{to}\n")
    # A rising ramp only ever moves more clients, and a client stays put while a step holds:
    # count the clients seen both ways within one step, and those seen moved at one step and
    # answered from the region again at a later one.
    rising = all(x <= y for x, y in zip(steps, steps[1:]))
    mixed = sum(1 for m in marks for b in m if b == 3)
    back = 0
    for m in marks:
        first_moved = next((k for k, b in enumerate(m) if b & 2), None)
        if first_moved is not None and any(b & 1 for b in m[first_moved + 1 :]):
            back += 1
    with open(a.out + ".stability", "w") as f:
        f.write(f"{mixed}\t{back if rising else 0}\n")
    print(f"ramp-sampler: {sent} queries sent from {len(clients)} clients, {c.timeouts} unanswered, "
          f"slowest answer {slowest[0] * 1000:.0f} ms (sent {time.strftime('%H:%M:%S', time.gmtime(slowest[1]))}); "
          f"{len(poller.polls)} polls of /v1/ramps ({poller.errors} failed); "
          f"{mixed} (client, step) pairs answered both ways within a step, "
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
    ap.add_argument("--poll", type=float, default=0.02, help="sample: seconds between two polls of /v1/ramps")
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
