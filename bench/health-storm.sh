#!/usr/bin/env bash
# Meridian only: how fast answers move when thousands of probe targets fail at once.
#
#   bench/health-storm.sh                          # 3000 targets, state_dir on, one run
#   TARGETS=10000 bench/health-storm.sh
#   STATE_DIR=none bench/health-storm.sh           # without [server] state_dir
#   TARGETS=10000 SERVICES=10000 bench/health-storm.sh   # 10,000 names sharing the targets
#   MERIDIAN=/path/to/other/meridian bench/health-storm.sh
#
# A python3 backend listens on TCP port 8080 on TARGETS loopback addresses (127.1.X.Y), one
# per probe target, and accepts and closes every connection, so Meridian's `kind = "tcp"`
# check passes on all of them. One service, storm.example.com, has every address as an
# endpoint, split into REGIONS blocks (east, west, ...); a US client (ECS 11.0.0.0/24 in the
# fixture GeoIP database) is answered from east while east has an endpoint up. The script
# measures the first probe round, then closes every east listener at once (connections are
# refused, the checks fail) and times how long until the answer is a west address. See
# bench/README.md, "What health-storm.sh measures".
#
# Everything runs on loopback; every wait is a bounded loop; Meridian and the backend are
# stopped on exit (normal, error or Ctrl-C).
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# ---- knobs (environment) ---------------------------------------------------------------
TARGETS=${TARGETS:-3000}        # probe targets in all (one loopback address each)
REGIONS=${REGIONS:-2}           # regions the targets are split into: east, west, r3, r4, ...
SERVICES=${SERVICES:-1}         # names in all: storm.example.com and SERVICES-1 more (s1, s2, ...)
PER_SERVICE=${PER_SERVICE:-8}   # endpoints of each further name: consecutive targets (all regions)
INTERVAL=${INTERVAL:-5s}        # [checks.web] interval (5s, 500ms, or plain seconds)
TIMEOUT_S=${TIMEOUT_S:-1s}      # [checks.web] timeout
FALL=${FALL:-3}                 # [checks.web] fall
RISE=${RISE:-2}                 # [checks.web] rise
WORK=${WORK:-}                  # scratch dir; default: a new mktemp -d
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/meridian}
STATE_DIR=${STATE_DIR:-on}      # on: $WORK/run-N/state; none: no state_dir; else that dir
RUNS=${RUNS:-1}                 # rounds, each with a fresh Meridian (and state dir)
WAIT_LIMIT=${WAIT_LIMIT:-300}   # seconds any one wait may take before the run gives up
POLL_MS=${POLL_MS:-50}          # pause between two polls (dig, /readyz)
MERIDIAN_LOG=${MERIDIAN_LOG:-warn}
QUIET_WAIT=${QUIET_WAIT:-60}    # seconds to wait, before each run, for the machine to be idle

BACKEND_PORT=8080
SUBNET=11.0.0.0/24              # US in geoip-fixtures/world-city.mmdb
NAME=storm.example.com

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_int() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number (got '$2')"; }

# "5s" / "500ms" / "5" (seconds) -> milliseconds
dur_ms() {
  case $2 in
    *ms) need_int "$1" "${2%ms}"; echo "${2%ms}" ;;
    *s) need_int "$1" "${2%s}"; echo $((${2%s} * 1000)) ;;
    *) need_int "$1" "$2"; echo $(($2 * 1000)) ;;
  esac
}

for k in TARGETS REGIONS SERVICES PER_SERVICE FALL RISE RUNS WAIT_LIMIT POLL_MS QUIET_WAIT; do need_int "$k" "${!k}"; done
INTERVAL_MS=$(dur_ms INTERVAL "$INTERVAL")
TIMEOUT_MS=$(dur_ms TIMEOUT_S "$TIMEOUT_S")
[ "$REGIONS" -ge 2 ] || die "REGIONS must be at least 2 (east fails, west takes over)"
[ "$TARGETS" -ge "$REGIONS" ] || die "TARGETS must be at least REGIONS"
[ "$TARGETS" -le 60000 ] || die "TARGETS is at most 60000 (127.1.0.1 .. 127.1.239.250)"
[ "$TIMEOUT_MS" -lt "$INTERVAL_MS" ] || die "TIMEOUT_S must be below INTERVAL (Meridian refuses it)"
if [ "$RUNS" -lt 1 ] || [ "$FALL" -lt 1 ] || [ "$RISE" -lt 1 ] || [ "$SERVICES" -lt 1 ]; then
  die "RUNS, FALL, RISE and SERVICES must be at least 1"
fi
if [ "$PER_SERVICE" -lt 1 ] || [ "$PER_SERVICE" -gt "$TARGETS" ]; then die "PER_SERVICE must be 1 to TARGETS"; fi
for c in python3 dig curl awk; do command -v "$c" >/dev/null 2>&1 || die "missing: $c"; done
[ -x "$MERIDIAN" ] || die "no Meridian binary at $MERIDIAN (cargo build --release --bin meridian, or set MERIDIAN)"
MMDB=$REPO_DIR/geoip-fixtures/world-city.mmdb
[ -s "$MMDB" ] || die "missing $MMDB"

if [ -z "$WORK" ]; then WORK=$(mktemp -d /tmp/meridian-storm.XXXXXX); fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
RES=$WORK/results
mkdir -p "$RES"

# Budgets, in ms: what the check settings promise.
FIRST_BUDGET=$((INTERVAL_MS + TIMEOUT_MS))
MOVE_BUDGET=$((FALL * INTERVAL_MS + TIMEOUT_MS + 1000))
BACK_BUDGET=$((RISE * INTERVAL_MS + TIMEOUT_MS + 1000))
WAIT_LIMIT_US=$((WAIT_LIMIT * 1000000))
MAX_POLLS=$((WAIT_LIMIT * 1000 / POLL_MS + 1))
POLL_SLEEP=$(awk -v m="$POLL_MS" 'BEGIN { printf "%.3f", m / 1000 }')
CLK_TCK=$(getconf CLK_TCK)

region_name() { # index -> east, west, r3, ...
  case $1 in 0) echo east ;; 1) echo west ;; *) echo "r$(($1 + 1))" ;; esac
}

# ---- time and CPU -------------------------------------------------------------------------
now_us() { NOW=${EPOCHREALTIME/[.,]/}; }        # sets NOW (microseconds), no fork
fmt_s() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }
fmt_ms() { awk -v m="$1" 'BEGIN { printf "%.1f", m / 1000 }'; }

proc_ticks() { # pid -> utime+stime in clock ticks, all threads
  local line rest f
  read -r line < "/proc/$1/stat" || { echo 0; return; }
  rest=${line##*) }
  read -r -a f <<<"$rest"
  echo $((f[11] + f[12]))
}

host_ticks() { # -> "busy total" of all CPUs from /proc/stat
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat
}

host_busy_pct() { # "busy total" before, after -> percent of all CPUs
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    t = y[2] - x[2]; printf "%.0f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }'
}

# Wait (at most QUIET_WAIT seconds) until the machine is less than 15% busy over a second, so
# a run does not start on top of someone's build; says so when it never is.
wait_quiet() {
  local i a b
  for ((i = 0; i < QUIET_WAIT; i++)); do
    a=$(host_ticks); sleep 1; b=$(host_ticks)
    [ "$(host_busy_pct "$a" "$b")" -lt 15 ] && return 0
  done
  [ "$QUIET_WAIT" -gt 0 ] && log "warning: the machine is still busy after ${QUIET_WAIT}s of waiting; measuring anyway"
  return 0
}

# ---- the backend --------------------------------------------------------------------------
TARGETS_FILE=$WORK/targets.tsv
# "region address" per target: target i is 127.1.(i/250).(i%250+1), in region i % REGIONS.
# Interleaved, so each region's targets are spread over the whole probe interval (the prober
# gives target k of n the start offset k/n of the interval, in config order): the last east
# target then sees its first failure about one interval after the outage, whatever its phase.
awk -v n="$TARGETS" -v r="$REGIONS" 'BEGIN {
  for (i = 0; i < n; i++) {
    k = i % r
    name = (k == 0 ? "east" : (k == 1 ? "west" : "r" (k + 1)))
    printf "%s 127.1.%d.%d\n", name, int(i / 250), i % 250 + 1
  }
}' > "$TARGETS_FILE"

declare -A REGION_OF=()
while read -r r a; do REGION_OF[$a]=$r; done < "$TARGETS_FILE"

cat > "$WORK/backend.py" <<'PY'
# Health-storm backend: listens on TCP PORT on every address of TARGETS_FILE ("region address"
# lines) and accepts and closes each connection. A control connection on 127.0.0.1 (its port
# written to PORT_FILE) takes one command a line and answers one line:
#   down REGION|all   close that region's listeners (new connections are then refused)
#   up REGION|all     listen there again
#   status            how many addresses listen
# Python 3 standard library only; one thread, one event loop.
import asyncio, os, signal, socket, sys, time

targets_file, port, port_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
by_region = {}
for line in open(targets_file):
    region, addr = line.split()
    by_region.setdefault(region, []).append(addr)
listeners = {}  # addr -> socket
loop = None
accepted = 0


def on_accept(sock):
    global accepted
    for _ in range(64):
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        accepted += 1
        conn.close()


def listen(addr):
    if addr in listeners:
        return 0
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(128)
    s.setblocking(False)
    loop.add_reader(s.fileno(), on_accept, s)
    listeners[addr] = s
    return 1


def unlisten(addr):
    s = listeners.pop(addr, None)
    if s is None:
        return 0
    loop.remove_reader(s.fileno())
    s.close()
    return 1


def addrs(which):
    if which == "all":
        return [a for v in by_region.values() for a in v]
    return by_region.get(which)


async def control(reader, writer):
    while True:
        line = await reader.readline()
        if not line:
            break
        words = line.decode().split()
        t0 = time.monotonic()
        if len(words) == 2 and words[0] in ("down", "up") and addrs(words[1]) is not None:
            f = unlisten if words[0] == "down" else listen
            n = sum(f(a) for a in addrs(words[1]))
            reply = "ok %s %s changed=%d listening=%d took_ms=%.1f" % (
                words[0], words[1], n, len(listeners), (time.monotonic() - t0) * 1000)
        elif words == ["status"]:
            reply = "ok listening=%d accepted=%d fds=%d" % (
                len(listeners), accepted, len(os.listdir("/proc/self/fd")))
        else:
            reply = "error: unknown command %r" % line.decode().strip()
        writer.write((reply + "\n").encode())
        await writer.drain()
    writer.close()


async def main():
    global loop
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    for a in addrs("all"):
        listen(a)
    server = await asyncio.start_server(control, "127.0.0.1", 0)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.sockets[0].getsockname()[1])
    os.rename(tmp, port_file)
    print("backend: listening on %d addresses, %d fds open" % (
        len(listeners), len(os.listdir("/proc/self/fd"))), flush=True)
    await stop


asyncio.run(main())
PY

BACKEND_PID=""
MERIDIAN_PID=""

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

cleanup() {
  stop_pid "$MERIDIAN_PID" 10
  MERIDIAN_PID=""
  stop_pid "$BACKEND_PID" 5
  BACKEND_PID=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One listening socket per target, plus the loop's own and a margin for accepted connections.
BACKEND_FDS=$((TARGETS + 256))
log "work dir: $WORK"
log "starting the backend: $TARGETS addresses (127.1.0.1 ..), port $BACKEND_PORT, ulimit -n $BACKEND_FDS"
rm -f "$WORK/backend.port"
(
  if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$BACKEND_FDS" ]; then
    # The soft limit up to the hard one needs no privilege; past it, root (CAP_SYS_RESOURCE).
    ulimit -Sn "$BACKEND_FDS" 2>/dev/null || ulimit -n "$BACKEND_FDS" 2>/dev/null \
      || { echo "cannot raise ulimit -n to $BACKEND_FDS (hard limit $(ulimit -Hn))" >&2; exit 1; }
  fi
  exec python3 "$WORK/backend.py" "$TARGETS_FILE" "$BACKEND_PORT" "$WORK/backend.port"
) > "$WORK/backend.log" 2>&1 &
BACKEND_PID=$!
for _ in $(seq 1 $((WAIT_LIMIT * 10))); do
  [ -s "$WORK/backend.port" ] && break
  kill -0 "$BACKEND_PID" 2>/dev/null || { cat "$WORK/backend.log" >&2; die "the backend exited"; }
  sleep 0.1
done
[ -s "$WORK/backend.port" ] || die "the backend did not start within ${WAIT_LIMIT}s"
CONTROL_PORT=$(cat "$WORK/backend.port")
exec {CTL}<>"/dev/tcp/127.0.0.1/$CONTROL_PORT"

backend() { # command -> sets REPLY (one line)
  printf '%s\n' "$*" >&"$CTL"
  read -r -t 30 REPLY <&"$CTL" || die "no reply from the backend to '$*'"
  [[ $REPLY == ok* ]] || die "backend: $REPLY"
}
backend status
log "backend: $(head -n 1 "$WORK/backend.log"); $REPLY"

# ---- Meridian's config --------------------------------------------------------------------
write_config() { # file state_dir|""
  local file=$1 state=$2 i order
  order=$(for ((i = 0; i < REGIONS; i++)); do printf '"%s", ' "$(region_name "$i")"; done)
  {
    echo "# written by bench/health-storm.sh"
    echo "[server]"
    echo 'dns_listen = ["127.0.0.1:0"]'
    echo 'admin_listen = "127.0.0.1:0"'
    [ -n "$state" ] && echo "state_dir = \"$state\""
    echo
    echo "[geoip]"
    echo "database = \"$MMDB\""
    echo
    echo "[routing]"
    echo "default_order = [${order%, }]"
    echo
    echo "[[zones]]"
    echo 'origin = "example.com."'
    echo 'ns = ["ns1.example.com."]'
    echo 'soa = { mname = "ns1.example.com.", rname = "hostmaster.example.com.", serial = 1, minimum = 60 }'
    echo 'records = [ { name = "ns1", type = "A", data = "192.0.2.53" } ]'
    for ((i = 0; i < REGIONS; i++)); do
      echo
      echo "[[regions]]"
      echo "name = \"$(region_name "$i")\""
      # east serves the US (the ECS subnet) first; the others are reached by default_order.
      [ "$i" = 0 ] && echo 'countries = ["US"]'
      [ "$i" = 1 ] && echo 'countries = ["GB"]'
    done
    echo
    echo "[checks.web]"
    echo 'kind = "tcp"'
    echo "port = $BACKEND_PORT"
    echo "interval = \"${INTERVAL_MS}ms\""
    echo "timeout = \"${TIMEOUT_MS}ms\""
    echo "rise = $RISE"
    echo "fall = $FALL"
    echo
    echo "[[services]]"
    echo "name = \"$NAME.\""
    echo "ttl = 5"
    echo 'policy = "geo"'
    echo "answers = 1"
    echo "min_healthy = 1"
    echo 'check = "web"'
    echo "endpoints = ["
    awk -v p="$BACKEND_PORT" '{ printf "  { region = \"%s\", address = \"%s\", port = %d },\n", $1, $2, p }' "$TARGETS_FILE"
    echo "]"
    # Further names, each on PER_SERVICE consecutive targets (so in every region), spread
    # over all of them: a target's health reaches several names, as on a shared fleet.
    awk -v p="$BACKEND_PORT" -v n="$SERVICES" -v per="$PER_SERVICE" '
      { region[NR - 1] = $1; addr[NR - 1] = $2 }
      END {
        t = NR
        for (k = 1; k < n; k++) {
          printf "\n[[services]]\nname = \"s%d.example.com.\"\nttl = 5\npolicy = \"geo\"\n", k
          printf "answers = 1\nmin_healthy = 1\ncheck = \"web\"\nendpoints = [\n"
          for (j = 0; j < per; j++) {
            i = (k * per + j) % t
            printf "  { region = \"%s\", address = \"%s\", port = %d },\n", region[i], addr[i], p
          }
          print "]"
        }
      }' "$TARGETS_FILE"
  } > "$file"
}

# ---- one run ------------------------------------------------------------------------------
DNS_PORT=""
ADMIN=""

answer() { # -> sets ANS (first address or "-") and DIG_US (round trip incl. fork)
  local t0 out
  now_us; t0=$NOW
  out=$(dig +norec +tries=1 +time=1 @127.0.0.1 -p "$DNS_PORT" "$NAME" A "+subnet=$SUBNET" +short 2>/dev/null || true)
  now_us; DIG_US=$((NOW - t0))
  ANS=$(grep -v '^;' <<<"$out" | grep -m 1 . || true)
  ANS=${ANS:--}
}

answer_region() { # -> sets REG (region of ANS, or "none")
  answer
  REG=${REGION_OF[$ANS]:-none}
}

readyz() { curl -s --max-time 2 "$ADMIN/readyz" 2>/dev/null || true; }

# Poll until the answer's region is $1 (bounded). Sets T_SEEN, POLLS, DIG_FAILS, DIG_MAX_US.
wait_region() { # region start_us
  local want=$1 start=$2 i
  T_SEEN="" POLLS=0 DIG_FAILS=0 DIG_MAX_US=0
  for ((i = 0; i < MAX_POLLS; i++)); do
    answer_region
    POLLS=$((POLLS + 1))
    [ "$ANS" = - ] && DIG_FAILS=$((DIG_FAILS + 1))
    [ "$DIG_US" -gt "$DIG_MAX_US" ] && DIG_MAX_US=$DIG_US
    if [ "$REG" = "$want" ]; then
      T_SEEN=$NOW
      return 0
    fi
    [ $((NOW - start)) -ge "$WAIT_LIMIT_US" ] && return 1
    kill -0 "$MERIDIAN_PID" 2>/dev/null || die "Meridian exited; see its log"
    sleep "$POLL_SLEEP"
  done
  return 1
}

over() { [ "$1" -le "$2" ] && echo ok || echo OVER; } # measured_ms budget_ms

run_once() { # n
  local n=$1 dir state="" out i t_ready t_first c_ready c_first h0 h1 h2 h3
  local t_down c_down t_move c_move gen0 gen1 failures fds close_reply up_reply t_up
  dir=$WORK/run-$n
  rm -rf "$dir"; mkdir -p "$dir"
  case $STATE_DIR in
    on) state=$dir/state; mkdir -p "$state" ;;
    none) state="" ;;
    *)
      state=$STATE_DIR; mkdir -p "$state"
      [ -e "$state/health.json" ] && die "$state/health.json exists: a warm start would skew the first round; empty the dir or use STATE_DIR=on"
      ;;
  esac
  backend up all
  wait_quiet
  write_config "$dir/meridian.toml" "$state"
  out=$("$MERIDIAN" check --config "$dir/meridian.toml" 2>&1) \
    || die "meridian check refused the config ($TARGETS endpoints in one service):"$'\n'"$out"

  log "run $n: starting Meridian ($MERIDIAN), $TARGETS targets, state_dir ${state:-none}"
  MERIDIAN_LOG=$MERIDIAN_LOG "$MERIDIAN" serve --config "$dir/meridian.toml" \
    > "$dir/server.log" 2>&1 &
  MERIDIAN_PID=$!
  t_ready=""
  for ((i = 0; i < WAIT_LIMIT * 100; i++)); do
    if grep -q ' meridian::startup: ready' "$dir/server.log" 2>/dev/null; then
      now_us; t_ready=$NOW
      c_ready=$(proc_ticks "$MERIDIAN_PID"); h0=$(host_ticks)
      break
    fi
    kill -0 "$MERIDIAN_PID" 2>/dev/null || { tail -n 20 "$dir/server.log" >&2; die "Meridian exited during start-up"; }
    sleep 0.01
  done
  [ -n "$t_ready" ] || die "Meridian did not log 'ready' within ${WAIT_LIMIT}s"
  DNS_PORT=$(sed -n 's/.* meridian::startup: serving DNS .*addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/server.log" | head -n 1)
  ADMIN=$(sed -n 's/.* meridian::startup: admin API listening .*url=\(http:[^ ]*\).*/\1/p' "$dir/server.log" | head -n 1)
  if [ -z "$DNS_PORT" ] || [ -z "$ADMIN" ]; then die "Meridian is ready but did not log its addresses; see $dir/server.log"; fi

  # 1. First probe round: from the `ready` log line until /readyz says it is complete.
  t_first=""
  for ((i = 0; i < MAX_POLLS; i++)); do
    if readyz | grep -q '"first_probe_round_complete": *true'; then
      now_us; t_first=$NOW
      c_first=$(proc_ticks "$MERIDIAN_PID"); h1=$(host_ticks)
      break
    fi
    now_us; [ $((NOW - t_ready)) -ge "$WAIT_LIMIT_US" ] && break
    kill -0 "$MERIDIAN_PID" 2>/dev/null || die "Meridian exited; see $dir/server.log"
    sleep "$POLL_SLEEP"
  done
  [ -n "$t_first" ] || die "the first probe round did not complete within ${WAIT_LIMIT}s"

  # Every target up (no probe failed so far) and east answering.
  curl -s --max-time 30 "$ADMIN/metrics" > "$dir/metrics-before.txt" || true
  failures=$(awk '/^meridian_probe_results_total\{/ && /result="failure"/ { s += $NF } END { print s + 0 }' "$dir/metrics-before.txt")
  [ "$failures" = 0 ] || log "warning: $failures probes failed before the outage (backend overloaded?)"
  wait_region east "$t_first" || die "the answer for $SUBNET is not from east before the outage (last: $ANS, region $REG)"
  gen0=$(readyz | sed -n 's/.*"generation": *\([0-9]*\).*/\1/p')

  # 2. Outage: every east listener closed at once; poll until the answer is a west address.
  c_down=$(proc_ticks "$MERIDIAN_PID"); h2=$(host_ticks)
  now_us; t_down=$NOW
  backend down east
  close_reply=$REPLY
  wait_region west "$t_down" || die "the answer did not move to west within ${WAIT_LIMIT}s (last: $ANS, region $REG)"
  t_move=$T_SEEN
  c_move=$(proc_ticks "$MERIDIAN_PID"); h3=$(host_ticks)
  local polls=$POLLS dig_fails=$DIG_FAILS dig_max=$DIG_MAX_US
  gen1=$(readyz | sed -n 's/.*"generation": *\([0-9]*\).*/\1/p')

  # 3. Back: east listens again; poll until the answer is east again.
  now_us; t_up=$NOW
  backend up east
  up_reply=$REPLY
  local t_back=-1
  if wait_region east "$t_up"; then t_back=$((T_SEEN - t_up)); fi
  fds=$(find "/proc/$MERIDIAN_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  backend status
  local status_reply=$REPLY

  stop_pid "$MERIDIAN_PID" 10
  MERIDIAN_PID=""

  local first_ms=$(((t_first - t_ready) / 1000)) move_ms=$(((t_move - t_down) / 1000)) back_ms=$((t_back / 1000))
  local cpu_first cpu_move tables
  cpu_first=$(awk -v t=$((c_first - c_ready)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')
  cpu_move=$(awk -v t=$((c_move - c_down)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')
  tables=$([ -n "$gen0" ] && [ -n "$gen1" ] && echo $((gen1 - gen0)) || echo -)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$n" "$TARGETS" "${state:+on}" "$first_ms" "$FIRST_BUDGET" "$cpu_first" \
    "$move_ms" "$MOVE_BUDGET" "$tables" "$cpu_move" "$back_ms" "$BACK_BUDGET" \
    "$(host_busy_pct "$h0" "$h1")" "$(host_busy_pct "$h2" "$h3")" "$dig_fails/$polls" "$(fmt_ms "$dig_max")" \
    >> "$RES/storm-raw.tsv"
  {
    echo "run $n: backend: $close_reply"
    echo "run $n: backend: $up_reply"
    echo "run $n: backend: $status_reply"
    echo "run $n: Meridian fds at the end: $fds; probe failures before the outage: $failures"
    echo "run $n: tables published during the outage: $tables (generation $gen0 -> $gen1)"
    echo "run $n: dig during the outage: $polls queries, $dig_fails without an answer, slowest $(fmt_ms "$dig_max") ms (incl. starting dig)"
  } >> "$RES/storm-notes.txt"
  log "run $n: first round $(fmt_s $((first_ms * 1000))) s, outage to move $(fmt_s $((move_ms * 1000))) s, back $(fmt_s $((back_ms * 1000))) s"
}

: > "$RES/storm-raw.tsv"
: > "$RES/storm-notes.txt"
for ((run = 1; run <= RUNS; run++)); do run_once "$run"; done
cleanup

# ---- summary ------------------------------------------------------------------------------
{
  echo "health storm: $TARGETS targets in $REGIONS regions, $SERVICES names ($((SERVICES - 1)) with $PER_SERVICE endpoints each besides $NAME), check tcp interval $(fmt_s $((INTERVAL_MS * 1000)))s timeout $(fmt_s $((TIMEOUT_MS * 1000)))s rise $RISE fall $FALL"
  echo "meridian: $MERIDIAN ($("$MERIDIAN" --version 2>/dev/null || echo 'version unknown'), sha256 $(sha256sum "$MERIDIAN" | cut -c1-12))"
  echo "budgets: first round INTERVAL+TIMEOUT; move FALL*INTERVAL+TIMEOUT+1s; back RISE*INTERVAL+TIMEOUT+1s"
  echo
  awk -F '\t' '
    function s(ms) { return sprintf("%.2f", ms / 1000) }
    function v(ms, b) { return (ms <= b) ? "ok" : "OVER" }
    BEGIN { printf "%-4s %8s %6s  %-22s %7s  %-22s %7s %7s  %-20s %6s\n", "run", "targets", "state", "first round s (budget)", "cpu s", "outage->move s (budget)", "tables", "cpu s", "back s (budget)", "host%" }
    { printf "%-4s %8s %6s  %-22s %7s  %-22s %7s %7s  %-20s %6s\n", $1, $2, ($3 == "" ? "off" : "on"),
        s($4) " (" s($5) ") " v($4, $5), $6,
        s($7) " (" s($8) ") " v($7, $8), $9, $10,
        ($11 < 0 ? "-" : s($11) " (" s($12) ") " v($11, $12)), $13 "/" $14 }
  ' "$RES/storm-raw.tsv"
  echo
  echo "cpu s: Meridian user+system CPU (/proc/PID/stat) from ready to first round complete, and from the outage to the move."
  echo "host%: all CPUs busy (Meridian, backend, dig and anything else) over the first round / the outage."
  cat "$RES/storm-notes.txt"
} | tee "$RES/storm-summary.txt"
log "results in $RES (storm-summary.txt, storm-raw.tsv); configs and logs in $WORK/run-N/"
