# shellcheck shell=bash disable=SC2034  # (variables are read by the scripts that source this)
# Shared by run.sh and swap-under-load.sh: knobs, install, build, data, server configs,
# process accounting. Sourced, never run. Callers set `set -euo pipefail` first.
#
# Everything listens on and sends to 127.0.0.1 only. Every wait is a bounded loop.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---- knobs (environment) ---------------------------------------------------------------
WORK=${WORK:-}                    # scratch dir; default: a new mktemp -d
RUNS=${RUNS:-3}                   # rounds; each round runs every server on every workload
DURATION=${DURATION:-10}          # seconds per throughput run (dnsperf -l)
LAT_QPS=${LAT_QPS:-20000}         # fixed rate of the latency run (dnsperf -Q)
LAT_DURATION=${LAT_DURATION:-5}   # seconds per latency run
NETWORKS=${NETWORKS:-1000000}     # meridian geoip-synth --networks
SEED=${SEED:-1}                   # meridian geoip-synth --seed
QUERIES=${QUERIES:-50000}         # queries per workload file (= distinct ECS subnets in b)
PEERS=${PEERS:-"gdnsd nsd floor"} # peers run beside Meridian (floor: examples/udp_floor.rs)
WORKERS=${WORKERS:-1}             # Meridian [server] workers; also gdnsd udp_threads, NSD server-count
WORKLOADS=${WORKLOADS:-"a b c"}   # a: geo no ECS, b: geo + ECS per query, c: mix
CLIENTS=${CLIENTS:-8}             # dnsperf -c
OUTSTANDING=${OUTSTANDING:-200}   # dnsperf -q
SERVER_CPUS=${SERVER_CPUS:-0}     # taskset list for the server
CLIENT_CPUS=${CLIENT_CPUS:-1}     # taskset list for dnsperf (one dnsperf thread: -T 1)
SKIP_APT=${SKIP_APT:-0}           # 1: never call apt-get (fail if something is missing)
SKIP_BUILD=${SKIP_BUILD:-0}       # 1: use the existing target/release/meridian
START_TIMEOUT=${START_TIMEOUT:-180} # seconds a server may take to answer after start
QUIET_WAIT=${QUIET_WAIT:-20}      # seconds to wait for idle CPUs before each throughput run
MERIDIAN_BEFORE=${MERIDIAN_BEFORE:-} # run.sh: another meridian binary, measured as row meridian-before
DNSTAP=${DNSTAP:-0}               # run.sh: 1 adds row meridian-dnstap (same build, dnstap to fstrm_capture)
DNSTAP_SAMPLE=${DNSTAP_SAMPLE:-1} # [dnstap] sample of row meridian-dnstap (1: every query)
DNSSEC=${DNSSEC:-0}               # run.sh: 1 adds row meridian-signed (the zone signed, a KSK/ZSK pair)
DRAIN=${DRAIN:-0}                 # run.sh: percent of region eu drained on every Meridian row (0: none)

# ---- small helpers ----------------------------------------------------------------------
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_int() { # name value
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number (got '$2')"
}

check_knobs() {
  local k
  for k in RUNS DURATION LAT_QPS LAT_DURATION NETWORKS SEED QUERIES WORKERS CLIENTS OUTSTANDING START_TIMEOUT QUIET_WAIT DNSTAP DNSTAP_SAMPLE DNSSEC; do
    need_int "$k" "${!k}"
  done
  if [ "$RUNS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$WORKERS" -lt 1 ]; then
    die "RUNS, DURATION and WORKERS must be at least 1"
  fi
}

setup_work() {
  if [ -z "$WORK" ]; then
    WORK=$(mktemp -d /tmp/meridian-bench.XXXXXX)
  fi
  mkdir -p "$WORK"
  WORK=$(cd "$WORK" && pwd)
  MMDB=$WORK/geo.mmdb
  QDIR=$WORK/queries
  RES=$WORK/results
  mkdir -p "$RES/logs"
  log "work dir: $WORK"
}

# Install what is missing with apt-get; then stop any gdnsd/nsd service the packages started
# (Debian starts them on port 53). Services are stopped through their service manager.
ensure_deps() { # required commands...
  local missing=() c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$SKIP_APT" = 1 ] && die "missing: ${missing[*]} (SKIP_APT=1)"
    [ "$(id -u)" = 0 ] || die "missing: ${missing[*]}; run as root so apt-get can install them"
    log "installing packages for: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      dnsperf gdnsd nsd python3 util-linux bind9-dnsutils bind9-utils procps curl fstrm-bin gzip >/dev/null
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "still missing after apt-get: $c"; done
  fi
  stop_system_services
}

stop_system_services() {
  local s
  for s in gdnsd nsd; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      if systemctl is-active --quiet "$s" 2>/dev/null; then
        log "stopping the packaged $s service (systemctl)"
        systemctl stop "$s" || log "warning: could not stop $s"
      fi
    elif [ -x "/etc/init.d/$s" ] && "/etc/init.d/$s" status >/dev/null 2>&1; then
      log "stopping the packaged $s service (/etc/init.d)"
      "/etc/init.d/$s" stop >/dev/null 2>&1 || log "warning: could not stop $s"
    fi
  done
}

build_meridian() {
  local target=${CARGO_TARGET_DIR:-$REPO_DIR/target}
  MERIDIAN=$target/release/meridian
  if [ "$SKIP_BUILD" != 1 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found (install a Rust toolchain >= 1.88)"
    log "building Meridian (cargo build --release)"
    (cd "$REPO_DIR" && cargo build --release --quiet --bin meridian --example udp_floor) \
      || die "cargo build --release failed"
  fi
  [ -x "$MERIDIAN" ] || die "no Meridian binary at $MERIDIAN"
  UDP_FLOOR=$target/release/examples/udp_floor
}

# The GeoIP database and the query files, regenerated only when their inputs change.
prepare_data() {
  local want
  want="networks=$NETWORKS seed=$SEED"
  if [ ! -s "$MMDB" ] || [ "$(cat "$WORK/geo.params" 2>/dev/null)" != "$want" ]; then
    log "writing the GeoIP database ($want)"
    "$MERIDIAN" geoip-synth --networks "$NETWORKS" --seed "$SEED" --out "$MMDB" >&2 \
      || die "meridian geoip-synth failed"
    echo "$want" > "$WORK/geo.params"
    rm -f "$WORK/queries.params"
  fi
  want="networks=$NETWORKS seed=$SEED queries=$QUERIES"
  if [ ! -s "$QDIR/c.bin" ] || [ "$(cat "$WORK/queries.params" 2>/dev/null)" != "$want" ]; then
    log "writing the query files ($want)"
    python3 "$BENCH_DIR/gen-queries.py" --out "$QDIR" --networks "$NETWORKS" --seed "$SEED" \
      --queries "$QUERIES" >&2 || die "gen-queries.py failed"
    echo "$want" > "$WORK/queries.params"
  fi
}

# A port free for both UDP and TCP on 127.0.0.1 right now.
pick_port() {
  python3 - <<'PY'
import socket, sys
for _ in range(100):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        t.close()
    u.close()
    print(port)
    sys.exit(0)
sys.exit("no free port")
PY
}

# ---- the zone ---------------------------------------------------------------------------
# Static content shared by every server: name type data (TTL 300 unless said).
static_records() {
  echo "ns1 A 127.0.0.53"
  echo "www-static A 192.0.2.80"
  local i
  for i in $(seq 0 99); do echo "s$i A 198.51.100.$i"; done
}

zone_file() { # geo line -> stdout, RFC 1035 zone file for gdnsd / NSD
  echo "\$ORIGIN example.com."
  echo "\$TTL 300"
  echo "@ IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 86400 60"
  echo "@ IN NS ns1.example.com."
  echo "$1"
  static_records | while read -r n t d; do echo "$n IN $t $d"; done
}

# Meridian's [[zones]] (SOA serial $1) and [[regions]] tables, shared with soak.sh.
meridian_zone_and_regions() { # serial
  echo "[[zones]]"
  echo 'origin = "example.com."'
  echo 'ns = ["ns1.example.com."]'
  echo "soa = { mname = \"ns1.example.com.\", rname = \"hostmaster.example.com.\", serial = $1, refresh = 7200, retry = 3600, expire = 86400, minimum = 60 }"
  echo "ttl = 300"
  echo "records = ["
  static_records | while read -r n t d; do echo "  { name = \"$n\", type = \"$t\", data = \"$d\" },"; done
  echo "]"
  local r words conts
  for r in "na NA AN" "eu EU AF" "as AS OC" "sa SA"; do
    read -r -a words <<<"$r"
    conts=$(printf '"%s", ' "${words[@]:1}")
    echo
    echo "[[regions]]"
    echo "name = \"${words[0]}\""
    echo "continents = [${conts%, }]"
  done
}

# Meridian config. $1 = dir, $2 = dns port, $3 = admin port, $4 = with workers (yes|no)
meridian_config() {
  local dir=$1 port=$2 aport=$3 workers=$4
  {
    echo "# written by bench/lib.sh"
    echo "[server]"
    echo "dns_listen = [\"127.0.0.1:$port\"]"
    echo "admin_listen = \"127.0.0.1:$aport\""
    echo "max_udp_payload = 1232"
    echo "state_dir = \"$dir/state\""
    [ "$workers" = yes ] && echo "workers = $WORKERS"
    echo
    echo "[geoip]"
    echo "database = \"$MMDB\""
    echo
    echo "[routing]"
    echo 'default_order = ["na", "eu", "as", "sa"]'
    echo
    meridian_zone_and_regions 1
    echo
    echo "[[services]]"
    echo 'name = "geo.example.com."'
    echo "ttl = 30"
    echo 'policy = "geo"'
    echo "endpoints = ["
    echo '  { region = "na", address = "127.0.0.11" },'
    echo '  { region = "eu", address = "127.0.0.12" },'
    echo '  { region = "as", address = "127.0.0.13" },'
    echo '  { region = "sa", address = "127.0.0.14" },'
    echo "]"
  } > "$dir/meridian.toml"
}

# Write and validate Meridian's config; drops `workers` when this build does not know it.
# Sets MERIDIAN_WORKERS_NOTE.
meridian_setup() { # dir port aport [binary, default $MERIDIAN]
  local dir=$1 out bin=${4:-$MERIDIAN}
  mkdir -p "$dir/state"
  meridian_config "$dir" "$2" "$3" yes
  if ! out=$("$bin" check --config "$dir/meridian.toml" 2>&1); then
    if grep -q 'unknown field .workers.' <<<"$out"; then
      MERIDIAN_WORKERS_NOTE="this Meridian build has no [server] workers key: ran without it (the build's own default threading)"
      meridian_config "$dir" "$2" "$3" no
      out=$("$bin" check --config "$dir/meridian.toml" 2>&1) || die "meridian check failed:"$'\n'"$out"
    else
      die "meridian check failed:"$'\n'"$out"
    fi
  else
    MERIDIAN_WORKERS_NOTE="workers = $WORKERS"
  fi
}

# gdnsd's options and the geoip plugin's continent map, up to the opening of `resources`
# (the caller writes the resources and closes the blocks). Shared by run.sh and scale.sh, so
# both map continents in the order Meridian's config gives.
gdnsd_config_head() { # dir port udp_threads comment
  cat <<EOF
# $4
options => {
  listen => [ 127.0.0.1 ]
  dns_port => $2
  udp_threads => $3
  tcp_threads => 1
  edns_client_subnet => true
  run_dir => "$1/run"
  state_dir => "$1/state"
}
plugins => {
  geoip => {
    maps => {
      by_continent => {
        geoip2_db => "$MMDB"
        datacenters => [ na, eu, as, sa ]
        # Same order as Meridian: the continent's region, then routing.default_order.
        map => {
          default => [ na, eu, as, sa ]
          NA => [ na, eu, as, sa ]
          AN => [ na, eu, as, sa ]
          EU => [ eu, na, as, sa ]
          AF => [ eu, na, as, sa ]
          AS => [ as, na, eu, sa ]
          OC => [ as, na, eu, sa ]
          SA => [ sa, na, eu, as ]
        }
      }
    }
    resources => {
EOF
}

gdnsd_setup() { # dir port
  local dir=$1 port=$2
  mkdir -p "$dir/etc/zones" "$dir/run" "$dir/state"
  zone_file "geo 30 IN DYNA geoip!geo" > "$dir/etc/zones/example.com"
  {
    gdnsd_config_head "$dir" "$port" "$WORKERS" "written by bench/lib.sh (gdnsd 3.8)"
    cat <<EOF
      geo => {
        map => by_continent
        dcmap => { na => 127.0.0.11, eu => 127.0.0.12, as => 127.0.0.13, sa => 127.0.0.14 }
      }
    }
  }
}
EOF
  } > "$dir/etc/config"
  gdnsd -c "$dir/etc" checkconf > "$dir/checkconf.log" 2>&1 || { cat "$dir/checkconf.log" >&2; die "gdnsd checkconf failed"; }
}

nsd_setup() { # dir port
  local dir=$1 port=$2
  mkdir -p "$dir/run" "$dir/state"
  zone_file "geo 30 IN A 127.0.0.11" > "$dir/example.com.zone"
  cat > "$dir/nsd.conf" <<EOF
# written by bench/lib.sh (NSD 4)
server:
  ip-address: 127.0.0.1@$port
  do-ip6: no
  server-count: $WORKERS
  reuseport: yes
  username: ""
  chroot: ""
  zonesdir: "$dir"
  database: ""
  zonelistfile: "$dir/state/zone.list"
  xfrdfile: "$dir/state/xfrd.state"
  xfrdir: "$dir/state"
  pidfile: "$dir/run/nsd.pid"
  cookie-secret-file: "$dir/state/cookiesecrets.txt"
  verbosity: 0
  hide-version: yes
  minimal-responses: yes
  round-robin: no
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: example.com
  zonefile: example.com.zone
EOF
  nsd-checkconf "$dir/nsd.conf" >&2 || die "nsd-checkconf failed"
}

# ---- server processes ---------------------------------------------------------------------
SRV_PID=""
COLLECTOR_PID=""

# Row meridian-dnstap: fstrm_capture on a socket in $1, writing $1/capture.fstrm (not pinned:
# its CPU is not the server's, and the server's CPU per query is what the row measures).
start_collector() { # dir
  local i
  fstrm_capture -t protobuf:dnstap.Dnstap -u "$1/dnstap.sock" -w "$1/capture.fstrm" \
    > "$1/collector.log" 2>&1 &
  COLLECTOR_PID=$!
  for i in $(seq 1 100); do
    [ -S "$1/dnstap.sock" ] && return 0
    sleep 0.1
  done
  die "fstrm_capture did not create $1/dnstap.sock"
}

stop_collector() {
  [ -n "$COLLECTOR_PID" ] || return 0
  kill -INT "$COLLECTOR_PID" 2>/dev/null || true
  wait "$COLLECTOR_PID" 2>/dev/null || true
  COLLECTOR_PID=""
}

# Start server $1 in dir $2 on port $3 (admin port $4 for Meridian), pinned to SERVER_CPUS.
start_server() {
  local name=$1 dir=$2 port=$3 aport=${4:-0} i
  rm -rf "$dir"; mkdir -p "$dir"
  case $name in
    meridian | meridian-before | meridian-dnstap | meridian-signed)
      # meridian-before: the same config, workers and pinning, with the $MERIDIAN_BEFORE binary.
      # meridian-dnstap: the same, logging queries to a collector.
      local bin=$MERIDIAN keep=${MERIDIAN_WORKERS_NOTE:-}
      if [ "$name" = meridian-before ]; then bin=$MERIDIAN_BEFORE; fi
      meridian_setup "$dir" "$port" "$aport" "$bin"
      if [ "$name" = meridian-dnstap ]; then
        start_collector "$dir"
        printf '\n[dnstap]\nsocket = "%s"\nsample = %s\n' "$dir/dnstap.sock" "$DNSTAP_SAMPLE" \
          >> "$dir/meridian.toml"
      fi
      if [ "$name" = meridian-signed ]; then
        # A KSK and a ZSK from BIND's dnssec-keygen, ECDSA P-256 (algorithm 13).
        mkdir -p "$dir/keys"
        local ksk zsk
        ksk=$(cd "$dir/keys" && dnssec-keygen -q -K . -a ECDSAP256SHA256 -f KSK -n ZONE example.com)
        zsk=$(cd "$dir/keys" && dnssec-keygen -q -K . -a ECDSAP256SHA256 -n ZONE example.com)
        sed -i "s|^ttl = 300\$|ttl = 300\ndnssec = { keys = [\"$dir/keys/$ksk.private\", \"$dir/keys/$zsk.private\"] }|" \
          "$dir/meridian.toml"
        "$bin" check --config "$dir/meridian.toml" > "$dir/check.txt" 2>&1 \
          || die "meridian check of the signed config failed:"$'\n'"$(cat "$dir/check.txt")"
      fi
      if [ "$name" = meridian-before ]; then
        MERIDIAN_BEFORE_NOTE=$MERIDIAN_WORKERS_NOTE MERIDIAN_WORKERS_NOTE=$keep
      fi
      MERIDIAN_LOG=${MERIDIAN_LOG:-warn} MERIDIAN_ADMIN_TOKEN=${ADMIN_TOKEN:-} \
        taskset -c "$SERVER_CPUS" "$bin" serve --config "$dir/meridian.toml" > "$dir/server.log" 2>&1 &
      ;;
    gdnsd)
      gdnsd_setup "$dir" "$port"
      taskset -c "$SERVER_CPUS" gdnsd -c "$dir/etc" start > "$dir/server.log" 2>&1 &
      ;;
    nsd)
      nsd_setup "$dir" "$port"
      taskset -c "$SERVER_CPUS" nsd -d -c "$dir/nsd.conf" > "$dir/server.log" 2>&1 &
      ;;
    floor)
      [ -x "$UDP_FLOOR" ] || die "no udp_floor binary at $UDP_FLOOR (cargo build --release --example udp_floor)"
      taskset -c "$SERVER_CPUS" "$UDP_FLOOR" "127.0.0.1:$port" > "$dir/server.log" 2>&1 &
      ;;
    *) die "unknown server '$name' (known: meridian meridian-before meridian-dnstap meridian-signed gdnsd nsd floor)" ;;
  esac
  SRV_PID=$!
  for i in $(seq 1 $((START_TIMEOUT * 5))); do
    # Ready when both a static and the geo name answer (gdnsd loads its map at start); the
    # floor reflector has no data: ready when it answers at all.
    if { [ "$name" = floor ] && [ "$(dig_rcode "$port" www-static.example.com A)" = NOERROR ]; } \
      || { [ -n "$(dig_short "$port" www-static.example.com A)" ] \
        && [ -n "$(dig_short "$port" geo.example.com A 192.0.2.0/24)" ]; }; then
      log "$name is answering on 127.0.0.1:$port (pid $SRV_PID)"
      return 0
    fi
    if ! kill -0 "$SRV_PID" 2>/dev/null; then
      log "$name exited during start-up; last lines of $dir/server.log:"
      tail -n 20 "$dir/server.log" >&2
      SRV_PID=""
      return 1
    fi
    sleep 0.2
  done
  log "$name did not answer within ${START_TIMEOUT}s"
  stop_server
  return 1
}

# Stops a process of this script: TERM, up to `seconds` to exit, then KILL.
stop_pid() { # pid seconds
  local p=$1 i
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 1 $(($2 * 10))); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# The server and its descendants (NSD forks its serving processes).
proc_tree() {
  local p=$1 c
  [ -d "/proc/$p" ] || return 0
  echo "$p"
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do proc_tree "$c"; done
}

stop_server() {
  [ -n "$SRV_PID" ] || return 0
  local pids i p
  pids=$(proc_tree "$SRV_PID")
  kill -TERM "$SRV_PID" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
  stop_collector
}

# "utime stime" in clock ticks, summed over the server's process tree (all threads).
server_ticks() {
  local u=0 s=0 p a b
  for p in $(proc_tree "$SRV_PID"); do
    # Fields after "pid (comm) ": state is 1st, utime the 12th, stime the 13th.
    if read -r a b < <(sed -e 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}'); then
      u=$((u + ${a:-0})); s=$((s + ${b:-0}))
    fi
  done
  echo "$u $s"
}

# VmRSS in kB summed over the server's process tree.
server_rss_kb() {
  local t=0 p r
  for p in $(proc_tree "$SRV_PID"); do
    r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    t=$((t + ${r:-0}))
  done
  echo "$t"
}

# dig helpers (+norec, 2 s). dig prints its errors on stdout, as ";;" lines: drop those.
dig_short() { # port name type [subnet] -> first answer's data, or nothing
  local e=() out
  [ -n "${4:-}" ] && e=("+subnet=$4")
  out=$(dig +norec +tries=1 +time=2 @127.0.0.1 -p "$1" "$2" "$3" "${e[@]}" +short 2>/dev/null || true)
  grep -v '^;' <<<"$out" | grep -m 1 . || true
}

dig_rcode() { # port name type -> RCODE, or "timeout"
  local out
  out=$(dig +norec +tries=2 +time=2 @127.0.0.1 -p "$1" "$2" "$3" 2>/dev/null || true)
  out=$(sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$out" | head -n 1)
  echo "${out:-timeout}"
}

# "ANSWER SCOPE RCODE" for geo.example.com A with ECS $2 (scope "-" when no ECS came back).
dig_geo() { # port subnet
  { dig +norec +tries=2 +time=2 @127.0.0.1 -p "$1" geo.example.com A "+subnet=$2" 2>/dev/null || true; } | awk '
    /status:/ { s = $0; sub(/.*status: /, "", s); sub(/,.*/, "", s); rcode = s }
    /CLIENT-SUBNET:/ { n = split($NF, f, "/"); scope = f[n] }
    $4 == "A" && $1 ~ /^geo\./ && ans == "" { ans = $5 }
    END { printf "%s %s %s\n", (ans == "" ? "-" : ans), (scope == "" ? "-" : scope), (rcode == "" ? "-" : rcode) }'
}

# Run dnsperf at full speed: $1 port, $2 query file, $3 seconds, $4 output file.
dnsperf_full() {
  taskset -c "$CLIENT_CPUS" dnsperf -B -d "$2" -s 127.0.0.1 -p "$1" -l "$3" \
    -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -t 2 > "$4" 2>&1 || true
}

# Fields from a dnsperf report: sent completed lost qps avg_s resp_bytes rcodes
dnsperf_fields() {
  awk '
    /Queries sent:/ { sent = $3 }
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Queries per second:/ { qps = $4 }
    /Average Latency \(s\):/ { avg = $4 }
    /Average packet size:/ { resp = $NF }
    /Response codes:/ { r = $0; sub(/.*Response codes: */, "", r); gsub(/ \([0-9.]+%\)/, "", r); gsub(/, /, ",", r); gsub(/ /, "=", r); rc = r }
    END { printf "%s %s %s %s %s %s %s\n", (sent==""?0:sent), (done==""?0:done), (lost==""?0:lost), (qps==""?0:qps), (avg==""?0:avg), (resp==""?0:resp), (rc==""?"-":rc) }' "$1"
}

# "busy softirq total" ticks of the server's CPU, then "busy total" of the client's CPU, from
# /proc/stat (the first CPU of SERVER_CPUS / CLIENT_CPUS). busy counts user, nice, system,
# irq, softirq and steal; softirq is where loopback packet delivery is mostly accounted.
cpu_sample() {
  awk -v a="cpu${SERVER_CPUS%%[,-]*}" -v b="cpu${CLIENT_CPUS%%[,-]*}" '
    $1 == a { sb = $2 + $3 + $4 + $7 + $8 + $9; ss = $8; st = sb + $5 + $6 }
    $1 == b { cb = $2 + $3 + $4 + $7 + $8 + $9; ct = cb + $5 + $6 }
    END { print sb + 0, ss + 0, st + 0, cb + 0, ct + 0 }' /proc/stat
}

# Wait (at most QUIET_WAIT seconds) until neither benchmark CPU is more than 15% busy, so a
# run does not start on top of someone's build. Logs when the machine stays busy.
wait_quiet() {
  local i a b
  for i in $(seq 1 "$QUIET_WAIT"); do
    a=$(cpu_sample); sleep 1; b=$(cpu_sample)
    if awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
         s = (y[3] - x[3]) > 0 ? (y[1] - x[1]) / (y[3] - x[3]) : 0;
         c = (y[5] - x[5]) > 0 ? (y[4] - x[4]) / (y[5] - x[5]) : 0;
         exit !(s < 0.15 && c < 0.15) }'; then
      return 0
    fi
  done
  [ "$QUIET_WAIT" -gt 0 ] && log "warning: the benchmark CPUs are still busy after ${QUIET_WAIT}s of waiting; measuring anyway"
  return 0
}
