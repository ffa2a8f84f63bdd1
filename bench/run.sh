#!/usr/bin/env bash
# Meridian against gdnsd and NSD on loopback: throughput, CPU per query, latency at a fixed
# rate and memory, on the same zone and the same GeoIP database. See bench/README.md.
#
#   sudo WORK=/tmp/b bench/run.sh
#   sudo RUNS=1 DURATION=3 NETWORKS=200000 QUERIES=5000 bench/run.sh     # quick look
#
# Knobs (environment; defaults in bench/lib.sh):
#   WORK=mktemp -d  RUNS=3  DURATION=10  LAT_QPS=20000  LAT_DURATION=5  NETWORKS=1000000
#   QUERIES=50000  PEERS="gdnsd nsd floor"  WORKERS=1  WORKLOADS="a b c"  CLIENTS=8  OUTSTANDING=200
#   SERVER_CPUS=0  CLIENT_CPUS=1  SEED=1  CHECK_SUBNETS=20  QUIET_WAIT=20  SKIP_APT=0  SKIP_BUILD=0
#   DNSTAP=0 (1: add row meridian-dnstap, logging every query to fstrm_capture)  DNSTAP_SAMPLE=1
#   DNSSEC=0 (1: add row meridian-signed, the zone signed; pair with WORKLOADS="b bdo")
#   DRAIN=0 (N: drain N % of region eu through the admin API on every Meridian row, after
#   its sanity checks: an active partial drain while measuring)
#
# Only 127.0.0.1 is used. Every server this script starts is stopped on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHECK_SUBNETS=${CHECK_SUBNETS:-20}

cleanup() {
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pick CHECK_SUBNETS subnets spread evenly over subnets.txt: three quarters IPv4, the rest IPv6.
check_subnets() {
  local n4=$(( CHECK_SUBNETS * 3 / 4 )) n6
  n6=$(( CHECK_SUBNETS - n4 ))
  spread() { # count file -> every k-th line, at most count lines
    awk -v n="$1" 'NR == FNR { c++; next }
      FNR == 1 { k = int(c / (n > 0 ? n : 1)); if (k < 1) k = 1 }
      (FNR - 1) % k == 0 && got < n { print; got++ }' "$2" "$2"
  }
  grep -v ':' "$QDIR/subnets.txt" > "$WORK/subnets4.txt" || true
  grep ':' "$QDIR/subnets.txt" > "$WORK/subnets6.txt" || true
  spread "$n4" "$WORK/subnets4.txt"
  spread "$n6" "$WORK/subnets6.txt"
}

# The query generator re-creates geoip-synth's layout; make sure Meridian's database agrees.
verify_layout() {
  local dir=$WORK/layout-check bad=0 n=0 s want got
  mkdir -p "$dir/state"
  meridian_setup "$dir" 0 0
  while read -r s want; do
    n=$((n + 1))
    # "geoip      network NET: country ..." or "network NET: not in the database"
    got=$("$MERIDIAN" explain --config "$dir/meridian.toml" geo.example.com A --client "$s" \
      | awk '/^geoip/ {net = $3; sub(/:$/, "", net); print net, (/not in the database/ ? "missing" : "found"); exit}') || got="? missing"
    # IPv4 networks never overlap, so the network must be the generator's; IPv6 ones do
    # (several draws truncate to one /32), so there it is enough that the subnet is found.
    if [[ $got == *missing ]] || { [[ $s != *:* ]] && [ "${got% *}" != "$want" ]; }; then
      bad=$((bad + 1))
      log "layout mismatch: $s: generator says $want, meridian explain says $got"
    fi
  done < <(check_subnets)
  echo "ECS subnets checked against meridian explain: $n, not in the expected database network: $bad" \
    | tee -a "$RES/sanity.txt" >&2
  [ "$bad" = 0 ] || log "WARNING: gen-queries.py's copy of the geoip-synth layout is stale; workload b may hit unknown networks"
}

# Sanity answers of the running server, and the spot-check answers used for comparison.
sanity() { # name port
  local name=$1 port=$2 nx line s want
  nx=$(dig_rcode "$port" nx-sanity.example.com A)
  line="$name: www-static=$(dig_short "$port" www-static.example.com A) ns1=$(dig_short "$port" ns1.example.com A)"
  line+=" NS=$(dig_short "$port" example.com NS) s42=$(dig_short "$port" s42.example.com A) nx=${nx:-none}"
  line+=" geo(no ECS)=$(dig_short "$port" geo.example.com A)"
  echo "$line" | tee -a "$RES/sanity.txt" >&2
  : > "$RES/spot-$name.txt"
  while read -r s want; do
    echo "$s $(dig_geo "$port" "$s")" >> "$RES/spot-$name.txt"
  done < <(check_subnets)
}

# Compare Meridian's answers with a peer's for the spot-check subnets.
compare_spot() { # peer
  local peer=$1 f=$RES/spot-$1.txt m=$RES/spot-meridian.txt
  [ -s "$f" ] && [ -s "$m" ] || return 0
  {
    echo "spot check, geo.example.com A with ECS: subnet  meridian(answer scope rcode)  $peer(answer scope rcode)"
    join -j 1 <(sort "$m") <(sort "$f") | awk -v peer="$peer" '
      { mark = ($2 == $5 && $4 == $7) ? "same" : "MISMATCH"; if (mark != "same") bad++
        printf "  %-26s %-16s %-4s %-8s | %-16s %-4s %-8s %s\n", $1, $2, $3, $4, $5, $6, $7, mark }
      END { printf "meridian vs %s: %d subnets, %d answer mismatches\n", peer, NR, bad + 0 }'
  } | tee -a "$RES/sanity.txt" >&2
}

# A partial drain of region eu, through the admin API (knob DRAIN): the answers then depend on
# each client's drain bucket as well as its place.
drain_eu() { # server admin-port
  local auth=()
  if [ -n "${ADMIN_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $ADMIN_TOKEN"); fi
  curl -sf --max-time 10 -X POST -H 'Content-Type: application/json' "${auth[@]}" \
    -d "{\"percent\": $DRAIN, \"reason\": \"bench: an active drain\"}" \
    "http://127.0.0.1:$2/v1/regions/eu/drain" > /dev/null \
    || die "$1: draining eu $DRAIN % through the admin API failed"
  log "$1: eu drained $DRAIN %"
}

# Row meridian-dnstap: what the collector got and what was dropped, after each workload
# (counters since the server started), into results/dnstap.txt.
dnstap_counts() { # aport workload round
  local m
  m=$(curl -s "http://127.0.0.1:$1/metrics" | awk '/^meridian_dnstap_(messages|dropped)_total/ {printf "%s ", $0}')
  echo "round $3 after workload $2: $m" | tee -a "$RES/dnstap.txt" >&2
}

# One throughput run and one fixed-rate latency run of workload $3 against server $1.
measure() { # name port workload round
  local name=$1 port=$2 wl=$3 round=$4 f=$QDIR/$3.bin t0 t1 out lat rss fields pct latlost
  local sent completed lost qps avg resp rc u0 s0 u1 s1 p50 p99 lsrc c0 c1 cpu
  out=$RES/logs/$name-$wl-$round.txt
  lat=$RES/logs/$name-$wl-$round-latency.txt
  wait_quiet
  c0=$(cpu_sample)
  t0=$(server_ticks)
  dnsperf_full "$port" "$f" "$DURATION" "$out"
  t1=$(server_ticks)
  c1=$(cpu_sample)
  rss=$(server_rss_kb)
  fields=$(dnsperf_fields "$out")
  taskset -c "$CLIENT_CPUS" dnsperf -B -d "$f" -s 127.0.0.1 -p "$port" -l "$LAT_DURATION" \
    -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -t 2 -Q "$LAT_QPS" -v > "$lat" 2>&1 || true
  # Percentiles from dnsperf's per-query lines ("> RCODE ... SECONDS"); without them, the average.
  pct=$(awk '/^> / {print $NF}' "$lat" | sort -g | awk '
    { v[NR] = $1 }
    END { if (NR == 0) { print "- -"; exit }
          i50 = int(NR * 0.50) + 1; i99 = int(NR * 0.99) + 1; if (i99 > NR) i99 = NR
          printf "%.6f %.6f\n", v[i50], v[i99] }')
  if [ "${pct%% *}" = "-" ]; then
    pct="$(dnsperf_fields "$lat" | awk '{print $5}') - avg"
  else
    pct="$pct pct"
  fi
  latlost=$(dnsperf_fields "$lat" | awk '{print $3}')
  # round server workload sent completed lost qps avg_s resp_bytes rcodes utime stime hz rss_kb
  # p50_s p99_s lat_source(pct|avg) lat_lost, then /proc/stat deltas (see cpu_sample)
  read -r sent completed lost qps avg resp rc <<<"$fields"
  read -r u0 s0 <<<"$t0"
  read -r u1 s1 <<<"$t1"
  read -r p50 p99 lsrc <<<"$pct"
  cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " ");
    printf "%d\t%d\t%d\t%d\t%d", y[1]-x[1], y[2]-x[2], y[3]-x[3], y[4]-x[4], y[5]-x[5] }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$round" "$name" "$wl" "$sent" "$completed" "$lost" "$qps" "$avg" "$resp" "$rc" \
    "$((u1 - u0))" "$((s1 - s0))" "$HZ" "$rss" "$p50" "$p99" "$lsrc" "$latlost" "$cpu" >> "$RAW"
  log "$(printf '%-8s wl %s round %s: %8.0f qps, lost %s, cpu %s+%s ticks, p50 %s s, rss %s kB, rcodes %s' \
    "$name" "$wl" "$round" "$qps" "$lost" "$((u1 - u0))" "$((s1 - s0))" "$p50" "$rss" "$rc")"
}

summarize() {
  python3 - "$RAW" "$LAT_QPS" "$DURATION" "$RUNS" <<'PY'
import csv, statistics, sys

raw, lat_qps, duration, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
groups = {}
for r in rows:
    groups.setdefault((r["server"], r["wl"]), []).append(r)

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def per_query_us(r, field):
    done = int(r["completed"] or 0)
    if done == 0:
        return None
    return int(r[field]) / int(r["hz"]) * 1e6 / done

def lat_ms(r, field):
    try:
        return float(r[field]) * 1000
    except ValueError:
        return None

def pct(part, total):
    total = int(total or 0)
    return None if total <= 0 else 100.0 * int(part) / total

stats = {}
for key, rs in groups.items():
    q = [float(r["qps"]) for r in rs]
    s = {
        "qps": med(q), "qmin": min(q), "qmax": max(q),
        "lost": sum(int(r["lost"]) for r in rs), "sent": sum(int(r["sent"]) for r in rs),
        "usr": med([per_query_us(r, "utime") for r in rs]),
        "sys": med([per_query_us(r, "stime") for r in rs]),
        "tot": med([(per_query_us(r, "utime") or 0) + (per_query_us(r, "stime") or 0) for r in rs]),
        "p50": med([lat_ms(r, "p50_s") for r in rs]),
        "p99": med([lat_ms(r, "p99_s") for r in rs]),
        "src": "/".join(sorted({r["lat_source"] for r in rs})),
        "latlost": sum(int(r["lat_lost"] or 0) for r in rs),
        "rss": med([int(r["rss_kb"]) / 1024 for r in rs]),
        "resp": rs[-1]["resp_bytes"], "rc": rs[-1]["rcodes"], "n": len(rs),
        "scpu": med([pct(r["scpu_busy"], r["scpu_total"]) for r in rs]),
        "si": med([pct(r["scpu_si"], r["scpu_total"]) for r in rs]),
        "ccpu": med([pct(r["ccpu_busy"], r["ccpu_total"]) for r in rs]),
        "other": max(pct(int(r["scpu_busy"]) - int(r["scpu_si"]) - int(r["utime"]) - int(r["stime"]),
                         r["scpu_total"]) or 0 for r in rs),
    }
    stats[key] = s

def f(x, fmt):
    return "-" if x is None else format(x, fmt)

servers = []
for r in rows:
    if r["server"] not in servers:
        servers.append(r["server"])
wls = sorted({r["wl"] for r in rows})
names = {"a": "a geo", "b": "b geo+ECS", "c": "c mix"}
print(f"\nResults: median of {runs} run(s) of {duration}s; lost = sum over runs; "
      f"latency at {lat_qps} qps fixed rate; CPU from /proc/PID/stat over the throughput run")
sw = max([9] + [len(s) for s in servers])
hdr = (f"{'server':{sw}} {'workload':10} {'QPS':>8} {'min-max':>15} {'lost':>5} {'usr µs/q':>8} {'sys µs/q':>8} "
       f"{'cpu µs/q':>8} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>7} {'resp B':>6} {'cpu0%':>5} {'si0%':>4} {'cpu1%':>5}  rcodes")
print(hdr)
print("-" * len(hdr))
noisy = client_bound = False
for wl in wls:
    for srv in servers:
        s = stats.get((srv, wl))
        if not s:
            continue
        flag = ""
        if s["other"] > 10:
            flag, noisy = " !", True
        if (s["ccpu"] or 0) >= 95 and (s["scpu"] or 0) < 95:
            flag, client_bound = flag + " c", True
        print(f"{srv:{sw}} {names.get(wl, wl):10} {f(s['qps'], '.0f'):>8} {f(s['qmin'], '.0f') + '-' + f(s['qmax'], '.0f'):>15} "
              f"{s['lost']:>5} {f(s['usr'], '.2f'):>8} {f(s['sys'], '.2f'):>8} {f(s['tot'], '.2f'):>8} "
              f"{f(s['p50'], '.3f'):>7} {f(s['p99'], '.3f'):>7} {f(s['rss'], '.1f'):>7} {s['resp']:>6} "
              f"{f(s['scpu'], '.0f'):>5} {f(s['si'], '.0f'):>4} {f(s['ccpu'], '.0f'):>5}  {s['rc']}{flag}")
print("cpu0% / si0% / cpu1%: busy share of the server's CPU, the softirq part of it (loopback delivery),"
      " and the busy share of dnsperf's CPU, from /proc/stat over the throughput run.")
if client_bound:
    print("c = dnsperf's CPU was saturated while the server's was not: QPS there is the load generator's"
          " limit, not the server's; compare CPU per query instead.")
if noisy:
    print("! = more than 10% of the server's CPU went to something other than the server and softirq"
          " (other processes on the machine): treat that row as noisy.")

peers = [s for s in servers if s != "meridian"]
if "meridian" in servers and peers:
    print("\nMeridian / peer (QPS: above 1 is better for Meridian; CPU, p50, RSS: below 1 is better)")
    pw = max([7] + [len(p) for p in peers])
    hdr2 = f"{'workload':10} {'peer':{pw}} {'QPS':>6} {'usr CPU':>8} {'tot CPU':>8} {'p50':>6} {'RSS':>6}"
    print(hdr2)
    print("-" * len(hdr2))
    for wl in wls:
        m = stats.get(("meridian", wl))
        for p in peers:
            o = stats.get((p, wl))
            if not m or not o:
                continue
            def ratio(k):
                return "-" if not m[k] or not o[k] else f"{m[k] / o[k]:.2f}"
            print(f"{names.get(wl, wl):10} {p:{pw}} {ratio('qps'):>6} {ratio('usr'):>8} {ratio('tot'):>8} "
                  f"{ratio('p50'):>6} {ratio('rss'):>6}")
    print("(NSD serves geo.example.com as one static A record: its geo rows are a no-geo baseline.)")
    if "floor" in peers:
        print("(floor: examples/udp_floor.rs reflects each query as an empty answer with the same batched"
              " system calls and no DNS work: the kernel's UDP path alone, the least CPU per query any"
              " server here can spend.)")
avg_rows = sorted(f"{k[0]}/{k[1]}" for k, v in stats.items() if v["src"] != "pct")
print("p50/p99: percentiles of dnsperf -v per-query response times at the fixed rate"
      + (f"; NO per-query times for {', '.join(avg_rows)}: there p50 is dnsperf's average latency and p99 is -"
         if avg_rows else ""))
PY
}

main() {
  check_knobs
  if [ "$(id -u)" != 0 ] && [ "$SKIP_APT" != 1 ]; then
    die "run as root (it installs packages and starts servers); SKIP_APT=1 to skip apt-get"
  fi
  local deps=(dnsperf python3 taskset dig ps awk join) p
  for p in $PEERS; do
    case $p in
      gdnsd | nsd) deps+=("$p") ;;
      floor) ;;
      *) die "unknown peer '$p' (known: gdnsd nsd floor)" ;;
    esac
  done
  [ "$DNSTAP" = 1 ] && deps+=(fstrm_capture curl)
  [ "$DNSSEC" = 1 ] && deps+=(dnssec-keygen)
  ensure_deps "${deps[@]}"
  if [ -n "$MERIDIAN_BEFORE" ] && [ ! -x "$MERIDIAN_BEFORE" ]; then
    die "no Meridian binary at MERIDIAN_BEFORE=$MERIDIAN_BEFORE"
  fi
  taskset -c "$SERVER_CPUS" true 2>/dev/null || die "cannot pin to SERVER_CPUS=$SERVER_CPUS"
  taskset -c "$CLIENT_CPUS" true 2>/dev/null || die "cannot pin to CLIENT_CPUS=$CLIENT_CPUS"
  setup_work
  build_meridian
  prepare_data
  # Changes through the admin API need a token (the DRAIN knob); one for this run.
  if [ "$DRAIN" != 0 ] && [ -z "${ADMIN_TOKEN:-}" ]; then
    ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  fi
  HZ=$(getconf CLK_TCK)
  RAW=$RES/raw.tsv
  printf 'round\tserver\twl\tsent\tcompleted\tlost\tqps\tavg_s\tresp_bytes\trcodes\tutime\tstime\thz\trss_kb\tp50_s\tp99_s\tlat_source\tlat_lost\tscpu_busy\tscpu_si\tscpu_total\tccpu_busy\tccpu_total\n' > "$RAW"
  : > "$RES/sanity.txt"
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -r), $(nproc) cpus"
    echo "meridian: $("$MERIDIAN" --version 2>&1 | head -n 1) ($(cd "$REPO_DIR" && git describe --always --dirty 2>/dev/null || echo 'no git'))"
    if [ -n "$MERIDIAN_BEFORE" ]; then
      echo "meridian-before: $("$MERIDIAN_BEFORE" --version 2>&1 | head -n 1) ($(git -C "$(dirname "$MERIDIAN_BEFORE")" describe --always --dirty 2>/dev/null || echo 'no git'); $MERIDIAN_BEFORE)"
    fi
    command -v gdnsd >/dev/null && echo "gdnsd: $(gdnsd 2>&1 | head -n 1)"
    command -v nsd >/dev/null && echo "nsd: $(nsd -v 2>&1 | head -n 1)"
    echo "dnsperf: $(dnsperf -h 2>&1 | grep -m1 Version)"
    echo "knobs: RUNS=$RUNS DURATION=$DURATION LAT_QPS=$LAT_QPS LAT_DURATION=$LAT_DURATION NETWORKS=$NETWORKS SEED=$SEED QUERIES=$QUERIES WORKERS=$WORKERS CLIENTS=$CLIENTS OUTSTANDING=$OUTSTANDING server cpus=$SERVER_CPUS dnsperf cpus=$CLIENT_CPUS DNSTAP=$DNSTAP DNSSEC=$DNSSEC DRAIN=$DRAIN"
    echo "geoip: $(head -n 1 "$QDIR/layout.txt")"
  } | tee "$RES/env.txt" >&2
  verify_layout

  local servers="meridian $PEERS" round srv port aport wl
  if [ -n "$MERIDIAN_BEFORE" ]; then servers="meridian meridian-before $PEERS"; fi
  if [ "$DNSTAP" = 1 ]; then servers="${servers/meridian /meridian meridian-dnstap }"; fi
  if [ "$DNSSEC" = 1 ]; then servers="${servers/meridian /meridian meridian-signed }"; fi
  for round in $(seq 1 "$RUNS"); do
    for srv in $servers; do
      port=$(pick_port)
      aport=$(pick_port)
      start_server "$srv" "$WORK/srv-$srv" "$port" "$aport" || { log "skipping $srv in round $round"; continue; }
      if [ "$round" = 1 ] && [ "$srv" != floor ]; then
        sanity "$srv" "$port"
      fi
      if [ "$DRAIN" != 0 ] && [[ $srv == meridian* ]]; then drain_eu "$srv" "$aport"; fi
      for wl in $WORKLOADS; do
        [ -s "$QDIR/$wl.bin" ] || die "no query file for workload '$wl'"
        measure "$srv" "$port" "$wl" "$round"
        if [ "$srv" = meridian-dnstap ]; then dnstap_counts "$aport" "$wl" "$round"; fi
        kill -0 "$SRV_PID" 2>/dev/null || { log "$srv died during workload $wl"; SRV_PID=""; break; }
      done
      stop_server
    done
    if [ "$round" = 1 ]; then
      if [ -n "$MERIDIAN_BEFORE" ]; then compare_spot meridian-before; fi
      for srv in $PEERS; do [ "$srv" = gdnsd ] && compare_spot gdnsd; done
      if [[ " $PEERS " == *" nsd "* ]] && [ -s "$RES/spot-nsd.txt" ]; then
        echo "nsd spot check: $(awk '{print $2}' "$RES/spot-nsd.txt" | sort | uniq -c | tr -s ' ' | tr '\n' ';') (static geo A, no ECS scope expected)" \
          | tee -a "$RES/sanity.txt" >&2
      fi
    fi
  done
  {
    cat "$RES/env.txt"
    echo "meridian: ${MERIDIAN_WORKERS_NOTE:-not run}"
    if [ -n "$MERIDIAN_BEFORE" ]; then echo "meridian-before: ${MERIDIAN_BEFORE_NOTE:-not run}"; fi
    echo "dnsperf: -T 1 -c $CLIENTS -q $OUTSTANDING -t 2, binary input (-B), pinned to cpu $CLIENT_CPUS; servers pinned to cpu $SERVER_CPUS"
    summarize
    echo
    echo "raw rows: $RAW; dnsperf logs: $RES/logs/; sanity and spot checks: $RES/sanity.txt"
  } | tee "$RES/summary.txt"
}

main "$@"
