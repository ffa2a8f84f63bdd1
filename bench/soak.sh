#!/usr/bin/env bash
# Meridian only: a soak test with everything happening at once against one server.
# For SOAK_SECONDS (after a warm-up of SOAK_WARMUP seconds):
#   - dnsperf sends workload b (geo name, a different ECS subnet per query) at a fixed rate
#     (SOAK_QPS, dnsperf -Q) for the whole duration;
#   - Meridian health-checks three loopback HTTP backends every second (rise 2, fall 2): two
#     flap between 200 and 500 (every FLAP_A_SECONDS and FLAP_B_SECONDS), one stays at 200 so
#     the geo service always keeps a serving region;
#   - the config is reloaded every RELOAD_EVERY seconds, alternately by SIGHUP and by
#     POST /v1/reload; each reload bumps the zone's SOA serial, and the script checks that the
#     new serial is answered;
#   - SOAK_REGION is evacuated and restored through the admin API every EVAC_EVERY seconds;
#   - every SAMPLE_EVERY seconds: VmRSS, open file descriptors, threads and
#     meridian_routing_table_generation.
# Prints a summary and exits non-zero if Meridian died, dnsperf lost more than 0.1% of its
# queries (or sent none), or Meridian's open file descriptors grew by more than MAX_FD_GROWTH.
#
#   sudo bench/soak.sh                       # 120 s
#   sudo bench/soak.sh --seconds 600         # or SOAK_SECONDS=600
#   SKIP_APT=1 SKIP_BUILD=1 WORK=/tmp/b bench/soak.sh --seconds 60
#
# Knobs: as run.sh (WORK NETWORKS SEED QUERIES WORKERS CLIENTS OUTSTANDING SERVER_CPUS
# CLIENT_CPUS SKIP_APT SKIP_BUILD START_TIMEOUT), plus SOAK_SECONDS=120, SOAK_WARMUP=10,
# SOAK_QPS=20000, RELOAD_EVERY=5, EVAC_EVERY=2, SAMPLE_EVERY=5, SOAK_REGION=eu,
# FLAP_A_SECONDS=4, FLAP_B_SECONDS=6, MAX_FD_GROWTH=20, MERIDIAN_LOG (default: info, with
# hickory at warn, so health changes and reloads are in the server log).
#
# Only 127.0.0.1 is used. Every process this script starts is stopped on exit, by its pid.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec </dev/null

SOAK_SECONDS=${SOAK_SECONDS:-120}
SOAK_WARMUP=${SOAK_WARMUP:-10}
SOAK_QPS=${SOAK_QPS:-20000}
RELOAD_EVERY=${RELOAD_EVERY:-5}
EVAC_EVERY=${EVAC_EVERY:-2}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
SOAK_REGION=${SOAK_REGION:-eu}
FLAP_A_SECONDS=${FLAP_A_SECONDS:-4}
FLAP_B_SECONDS=${FLAP_B_SECONDS:-6}
MAX_FD_GROWTH=${MAX_FD_GROWTH:-20}
export MERIDIAN_LOG=${MERIDIAN_LOG:-info,hickory_server=warn,hickory_proto=warn}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case $1 in
    --seconds) [ $# -ge 2 ] || die "--seconds needs a value"; SOAK_SECONDS=$2; shift 2 ;;
    --seconds=*) SOAK_SECONDS=${1#--seconds=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done

# ---- processes we start (stopped on exit, by pid) -------------------------------------------
BACKEND_PIDS=()
LOOP_PIDS=()
DP_PID=""

cleanup() {
  local p i
  for p in "${LOOP_PIDS[@]}" $DP_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${BACKEND_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${BACKEND_PIDS[@]}" "${LOOP_PIDS[@]}" $DP_PID; do
    for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers --------------------------------------------------------------------------------
now_ns() { date +%s%N; }

sleep_until() { # absolute time in ns; returns at once when it has passed
  local w
  w=$(( $1 - $(now_ns) ))
  if [ "$w" -gt 0 ]; then
    sleep "$(printf '%d.%09d' $((w / 1000000000)) $((w % 1000000000)))"
  fi
  return 0
}

# Meridian is running (a dead child stays a zombie until waited for: kill -0 is not enough).
alive() {
  local st
  [ -n "$SRV_PID" ] || return 1
  st=$(sed -e 's/^.*) //' "/proc/$SRV_PID/stat" 2>/dev/null | awk '{print $1}') || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

metrics() { # admin port -> /metrics text (loopback reads need no token)
  curl -s -m 2 "http://127.0.0.1:$1/metrics" 2>/dev/null || true
}

generation() { # admin port
  metrics "$1" | awk '$1 == "meridian_routing_table_generation" {print $2; exit}'
}

admin_post() { # admin port, path -> "HTTP_CODE SECONDS"
  taskset -c "$CLIENT_CPUS" curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}\n' -X POST \
    -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$1$2" 2>/dev/null || echo "000 0"
}

# "rss_kb fds threads generation" of Meridian now, or "dead".
sample() { # admin port
  local rss fds thr gen
  if ! alive; then echo dead; return 0; fi
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SRV_PID/status" 2>/dev/null || true)
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$SRV_PID/status" 2>/dev/null || true)
  fds=$({ ls "/proc/$SRV_PID/fd" 2>/dev/null || true; } | wc -l)
  gen=$(generation "$1")
  if ! alive; then echo dead; return 0; fi
  echo "${rss:-0} ${fds:-0} ${thr:-0} ${gen:--}"
}

soa_serial() { # dns port
  dig_short "$1" example.com SOA | awk '{print $3}'
}

# ---- flapping HTTP backends -------------------------------------------------------------------
write_backend_script() {
  cat > "$WORK/soak-backend.py" <<'PY'
"""A loopback HTTP backend for Meridian's health checks (bench/soak.sh).

argv: port_file period phase lifetime stats_file
period 0: always 200. Otherwise 200 and 500 alternate every `period` seconds (phase 1
starts with 500). Binds 127.0.0.1 on a free port and writes it to port_file. Exits on
SIGTERM/SIGINT or after `lifetime` seconds, then writes "200=N 500=M" to stats_file.
"""
import http.server
import os
import signal
import sys
import threading
import time

port_file, period, phase, lifetime, stats_file = (
    sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
start = time.monotonic()
counts = {200: 0, 500: 0}
lock = threading.Lock()


def status():
    if period <= 0:
        return 200
    return 500 if (int((time.monotonic() - start) / period) + phase) % 2 else 200


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, body):
        code = status()
        text = b"ok\n" if code == 200 else b"failing\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)
        with lock:
            counts[code] += 1

    def do_GET(self):
        self.reply(True)

    def do_HEAD(self):
        self.reply(False)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True


def stop(*_):
    threading.Thread(target=server.shutdown, daemon=True).start()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
timer = threading.Timer(lifetime, stop)
timer.daemon = True
timer.start()
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % server.server_address[1])
os.replace(port_file + ".tmp", port_file)
server.serve_forever(poll_interval=0.2)
with open(stats_file, "w") as f:
    f.write("200=%d 500=%d\n" % (counts[200], counts[500]))
PY
}

start_backend() { # name period phase -> sets BACKEND_PORT
  local name=$1 pf=$WORK/soak/backend-$1.port i
  rm -f "$pf" "$WORK/soak/backend-$name.stats"
  taskset -c "$CLIENT_CPUS" python3 "$WORK/soak-backend.py" "$pf" "$2" "$3" \
    "$((SOAK_WARMUP + SOAK_SECONDS + START_TIMEOUT + 120))" "$WORK/soak/backend-$name.stats" \
    > "$WORK/soak/backend-$name.log" 2>&1 &
  BACKEND_PIDS+=("$!")
  for i in $(seq 1 100); do
    [ -s "$pf" ] && break
    kill -0 "${BACKEND_PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$pf" ] || { cat "$WORK/soak/backend-$name.log" >&2; die "backend $name did not start"; }
  BACKEND_PORT=$(cat "$pf")
  local code
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$BACKEND_PORT/health" || true)
  log "backend $name on 127.0.0.1:$BACKEND_PORT (pid ${BACKEND_PIDS[-1]}, flap period ${2}s, now HTTP $code)"
}

# ---- Meridian's config: lib.sh's, plus a health check on every geo endpoint ----------------
# Replaces lib.sh's meridian_config (meridian_setup and start_server call it). Written to a
# temporary file and renamed, so a reload never reads half a file. SOA_SERIAL is bumped for
# each reload so that every reload changes what is served.
SOA_SERIAL=1
meridian_config() { # dir port aport with-workers(yes|no)
  local dir=$1 port=$2 aport=$3 workers=$4
  SOAK_WORKERS_ARG=$workers
  {
    echo "# written by bench/soak.sh (lib.sh's config with health checks)"
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
    echo "[checks.web]"
    echo 'kind = "http"'
    echo 'path = "/health"'
    echo 'interval = "1s"'
    echo 'timeout = "500ms"'
    echo "rise = 2"
    echo "fall = 2"
    echo
    meridian_zone_and_regions "$SOA_SERIAL"
    echo
    echo "[[services]]"
    echo 'name = "geo.example.com."'
    echo "ttl = 30"
    echo 'policy = "geo"'
    echo "endpoints = ["
    echo "  { region = \"na\", address = \"127.0.0.11\", port = $PORT_A, check = \"web\", check_address = \"127.0.0.1\" },"
    echo "  { region = \"eu\", address = \"127.0.0.12\", port = $PORT_B, check = \"web\", check_address = \"127.0.0.1\" },"
    echo "  { region = \"as\", address = \"127.0.0.13\", port = $PORT_C, check = \"web\", check_address = \"127.0.0.1\" },"
    echo "  { region = \"sa\", address = \"127.0.0.14\", port = $PORT_C, check = \"web\", check_address = \"127.0.0.1\" },"
    echo "]"
  } > "$dir/meridian.toml.tmp"
  mv -f "$dir/meridian.toml.tmp" "$dir/meridian.toml"
}

# ---- the churn loops (each runs in the background, bounded, paced on the clock) --------------
# One line per reload: "n how http_code seconds serial applied(yes|no)".
reload_loop() { # t0_ns port aport dir
  local t0=$1 port=$2 aport=$3 dir=$4 n i how r serial got applied
  n=$(( (SOAK_SECONDS - 1) / RELOAD_EVERY ))
  for i in $(seq 1 "$n"); do
    sleep_until $((t0 + i * RELOAD_EVERY * 1000000000))
    alive || break
    SOA_SERIAL=$((SOA_SERIAL + 1))
    serial=$SOA_SERIAL
    meridian_config "$dir" "$port" "$aport" "$SOAK_WORKERS_ARG"
    if [ $((i % 2)) = 1 ]; then
      how=hup
      if kill -HUP "$SRV_PID" 2>/dev/null; then r="- 0"; else r="000 0"; fi
    else
      how=post
      r=$(admin_post "$aport" /v1/reload)
    fi
    applied=no
    for _ in $(seq 1 30); do
      got=$(soa_serial "$port")
      if [ "$got" = "$serial" ]; then applied=yes; break; fi
      sleep 0.1
    done
    echo "$i $how $r $serial $applied"
  done
}

# One line per call: "action http_code seconds". Evacuate at the start of each EVAC_EVERY
# slot, restore half a slot later.
evac_loop() { # t0_ns aport
  local t0=$1 aport=$2 n i half slot last=""
  n=$(( SOAK_SECONDS / EVAC_EVERY ))
  half=$(( EVAC_EVERY * 500000000 ))
  for i in $(seq 0 $((n - 1))); do
    slot=$((t0 + i * EVAC_EVERY * 1000000000))
    sleep_until "$slot"
    alive || break
    echo "evacuate $(admin_post "$aport" "/v1/regions/$SOAK_REGION/evacuate")"
    last=evacuate
    sleep_until $((slot + half))
    alive || break
    echo "restore $(admin_post "$aport" "/v1/regions/$SOAK_REGION/restore")"
    last=restore
  done
  if [ "$last" = evacuate ] && alive; then
    echo "restore $(admin_post "$aport" "/v1/regions/$SOAK_REGION/restore") (after the loop)"
  fi
}

# One line per sample: "t rss_kb fds threads generation" (or "t dead").
sample_loop() { # t0_ns aport
  local t0=$1 aport=$2 i s
  for i in $(seq 0 $((SOAK_SECONDS / SAMPLE_EVERY))); do
    sleep_until $((t0 + i * SAMPLE_EVERY * 1000000000))
    s=$(sample "$aport")
    echo "$((i * SAMPLE_EVERY)) $s"
    [ "$s" = dead ] && break
  done
}

codes() { # "code" lines on stdin -> "N x HTTP 200, M x HTTP 409" (or "none")
  local out
  out=$(sort | uniq -c | awk '{printf "%s%s x HTTP %s", sep, $1, $2; sep = ", "}')
  echo "${out:-none}"
}

plain_log() { # the server log without ANSI colour codes
  sed -e 's/\x1b\[[0-9;]*m//g' "$1"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

main() {
  check_knobs
  local k
  for k in SOAK_SECONDS SOAK_WARMUP SOAK_QPS RELOAD_EVERY EVAC_EVERY SAMPLE_EVERY \
    FLAP_A_SECONDS FLAP_B_SECONDS MAX_FD_GROWTH; do
    need_int "$k" "${!k}"
  done
  [ "$SOAK_SECONDS" -ge 10 ] || die "SOAK_SECONDS must be at least 10"
  for k in SOAK_QPS RELOAD_EVERY EVAC_EVERY SAMPLE_EVERY; do
    [ "${!k}" -ge 1 ] || die "$k must be at least 1"
  done
  case $SOAK_REGION in na | eu | as | sa) ;; *) die "SOAK_REGION must be na, eu, as or sa" ;; esac
  if [ "$(id -u)" != 0 ] && [ "$SKIP_APT" != 1 ]; then
    die "run as root (it may install packages); SKIP_APT=1 to skip apt-get"
  fi
  ensure_deps dnsperf python3 taskset dig curl ps awk
  setup_work
  build_meridian
  prepare_data
  local S=$WORK/soak
  rm -rf "$S"; mkdir -p "$S"
  ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

  # Backends: A and B flap (B starts failing), C always answers 200.
  write_backend_script
  start_backend a "$FLAP_A_SECONDS" 0; PORT_A=$BACKEND_PORT
  start_backend b "$FLAP_B_SECONDS" 1; PORT_B=$BACKEND_PORT
  start_backend c 0 0; PORT_C=$BACKEND_PORT

  local port aport dir=$WORK/srv-soak
  port=$(pick_port)
  aport=$(pick_port)
  start_server meridian "$dir" "$port" "$aport" || die "Meridian did not start"
  log "meridian: ${MERIDIAN_WORKERS_NOTE:-}, pid $SRV_PID, log $dir/server.log"
  local launch
  launch=$(sample "$aport")

  local dp_args=(-B -d "$QDIR/b.bin" -s 127.0.0.1 -p "$port" -Q "$SOAK_QPS" -c "$CLIENTS"
    -q "$OUTSTANDING" -T 1 -t 2)

  # Warm-up: the same load, one reload of each kind and one evacuate/restore pair.
  local warm=""
  if [ "$SOAK_WARMUP" -gt 0 ]; then
    log "warm-up: ${SOAK_WARMUP}s of workload b at ${SOAK_QPS} q/s, one reload each way, one evacuation"
    taskset -c "$CLIENT_CPUS" dnsperf "${dp_args[@]}" -l "$SOAK_WARMUP" > "$S/dnsperf-warmup.txt" 2>&1 &
    DP_PID=$!
    SOA_SERIAL=$((SOA_SERIAL + 1)); meridian_config "$dir" "$port" "$aport" "$SOAK_WORKERS_ARG"
    kill -HUP "$SRV_PID" 2>/dev/null || true
    sleep 1
    SOA_SERIAL=$((SOA_SERIAL + 1)); meridian_config "$dir" "$port" "$aport" "$SOAK_WORKERS_ARG"
    log "warm-up reload: $(admin_post "$aport" /v1/reload)"
    log "warm-up evacuate: $(admin_post "$aport" "/v1/regions/$SOAK_REGION/evacuate")"
    sleep 1
    log "warm-up restore: $(admin_post "$aport" "/v1/regions/$SOAK_REGION/restore")"
    wait "$DP_PID" || true
    DP_PID=""
    warm=$(dnsperf_fields "$S/dnsperf-warmup.txt")
  fi
  alive || die "Meridian died during the warm-up (see $dir/server.log)"

  # The soak. The loops continue SOA_SERIAL from here (each in its own subshell; only the
  # reload loop changes it).
  log "soak: ${SOAK_SECONDS}s: workload b at ${SOAK_QPS} q/s, reload every ${RELOAD_EVERY}s, evacuate/restore $SOAK_REGION every ${EVAC_EVERY}s, sample every ${SAMPLE_EVERY}s"
  local start_sample t0 t1
  start_sample=$(sample "$aport")
  t0=$(now_ns)
  taskset -c "$CLIENT_CPUS" dnsperf "${dp_args[@]}" -l "$SOAK_SECONDS" > "$S/dnsperf.txt" 2>&1 &
  DP_PID=$!
  sample_loop "$t0" "$aport" > "$S/samples.txt" 2>>"$S/loops.err" &
  LOOP_PIDS+=("$!")
  reload_loop "$t0" "$port" "$aport" "$dir" > "$S/reloads.txt" 2>>"$S/loops.err" &
  LOOP_PIDS+=("$!")
  evac_loop "$t0" "$aport" > "$S/evacuations.txt" 2>>"$S/loops.err" &
  LOOP_PIDS+=("$!")

  local dp_rc=0 p
  wait "$DP_PID" || dp_rc=$?
  DP_PID=""
  t1=$(now_ns)
  # The loops end on their own (bounded); wait for them.
  for p in "${LOOP_PIDS[@]}"; do wait "$p" || true; done
  LOOP_PIDS=()
  sleep 2   # let probe and admin connections close before the last count
  local end_sample
  end_sample=$(sample "$aport")
  local m
  m=$(metrics "$aport")

  # ---- the numbers ----
  local dp sent done_ lost rcodes lost_pct
  dp=$(dnsperf_fields "$S/dnsperf.txt")
  read -r sent done_ lost _ _ _ rcodes <<<"$dp"
  lost_pct=$(awk -v l="$lost" -v s="$sent" 'BEGIN { printf "%.3f", (s > 0 ? 100 * l / s : 0) }')

  local rs_kb rs_fd rs_thr rs_gen re_kb re_fd re_thr re_gen rmax_kb died=no srv_rc=""
  if [ "$start_sample" = dead ]; then start_sample="0 0 0 -"; fi
  read -r rs_kb rs_fd rs_thr rs_gen <<<"$start_sample"
  rmax_kb=$(awk -v s="$rs_kb" '$2 != "dead" && $2 > m { m = $2 } END { print (m > s ? m : s) }' m=0 "$S/samples.txt")
  if [ "$end_sample" = dead ] || ! alive; then
    died=yes
    srv_rc=0
    wait "$SRV_PID" 2>/dev/null || srv_rc=$?
    SRV_PID=""
    # The last sample taken while it was alive.
    end_sample=$(awk '$2 != "dead" {l = $2 " " $3 " " $4 " " $5} END {print (l == "" ? "0 0 0 -" : l)}' "$S/samples.txt")
  else
    rmax_kb=$(awk -v a="$rmax_kb" -v b="${end_sample%% *}" 'BEGIN { print (b > a ? b : a) }')
  fi
  read -r re_kb re_fd re_thr re_gen <<<"$end_sample"
  local final_gen
  final_gen=$(awk '$1 == "meridian_routing_table_generation" {print $2; exit}' <<<"$m")
  [ -n "$final_gen" ] || final_gen=$re_gen

  local n_reload n_hup n_post applied hup_sent reload_ok reload_fail
  n_reload=$(wc -l < "$S/reloads.txt")
  n_hup=$(awk '$2 == "hup"' "$S/reloads.txt" | wc -l)
  n_post=$(awk '$2 == "post"' "$S/reloads.txt" | wc -l)
  hup_sent=$(awk '$2 == "hup" && $3 == "-"' "$S/reloads.txt" | wc -l)
  applied=$(awk '$6 == "yes"' "$S/reloads.txt" | wc -l)
  reload_ok=$(awk -F'[ "]' '/^meridian_config_reloads_total\{result="success"\}/ {print $NF}' <<<"$m")
  reload_fail=$(awk -F'[ "]' '/^meridian_config_reloads_total\{result="failure"\}/ {print $NF}' <<<"$m")

  local n_evac n_rest
  n_evac=$(awk '$1 == "evacuate"' "$S/evacuations.txt" | wc -l)
  n_rest=$(awk '$1 == "restore"' "$S/evacuations.txt" | wc -l)

  local probes_ok probes_fail health_changes health_down log_bad panics
  if [ -z "$m" ]; then m="# /metrics unavailable"; fi
  probes_ok=$(awk '/^meridian_probe_results_total\{/ && /result="success"/ {s += $NF} END {print s + 0}' <<<"$m")
  probes_fail=$(awk '/^meridian_probe_results_total\{/ && /result="failure"/ {s += $NF} END {print s + 0}' <<<"$m")
  plain_log "$dir/server.log" > "$S/server-plain.log"
  health_changes=$(grep -c 'health changed' "$S/server-plain.log" || true)
  health_down=$(grep 'health changed' "$S/server-plain.log" | grep -Ec 'health="?down' || true)
  # WARN/ERROR lines other than the expected "health changed" (to down) ones.
  log_bad=$(grep -E '(WARN|ERROR) ' "$S/server-plain.log" | grep -vc 'health changed' || true)
  panics=$(grep -c 'panicked' "$S/server-plain.log" || true)

  local fd_growth=$((re_fd - rs_fd)) failures=()
  [ "$died" = yes ] && failures+=("Meridian died (exit status $srv_rc)")
  [ "$sent" -gt 0 ] || failures+=("dnsperf sent no queries (exit $dp_rc)")
  if [ "$sent" -gt 0 ] && [ $((lost * 1000)) -gt "$sent" ]; then
    failures+=("lost $lost of $sent queries (${lost_pct}% > 0.1%)")
  fi
  [ "$fd_growth" -gt "$MAX_FD_GROWTH" ] && failures+=("open FDs grew by $fd_growth (> $MAX_FD_GROWTH)")

  {
    echo "soak: Meridian ($MERIDIAN_WORKERS_NOTE) on cpu $SERVER_CPUS; dnsperf -Q $SOAK_QPS -c $CLIENTS -q $OUTSTANDING on cpu $CLIENT_CPUS; workload b ($QUERIES ECS subnets); work dir $WORK"
    printf '  duration:          %s s (asked %s s, after a %s s warm-up)\n' \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')" "$SOAK_SECONDS" "$SOAK_WARMUP"
    [ -n "$warm" ] && echo "  warm-up queries:   sent $(awk '{print $1}' <<<"$warm"), completed $(awk '{print $2}' <<<"$warm"), lost $(awk '{print $3}' <<<"$warm")"
    echo "  queries:           sent $sent, completed $done_, lost $lost (${lost_pct}%); rcodes $rcodes"
    echo "  reloads:           $n_reload ($n_hup SIGHUP: $hup_sent sent; $n_post POST /v1/reload: $(awk '$2 == "post" {print $3}' "$S/reloads.txt" | codes)); new SOA serial answered within 3 s: $applied/$n_reload"
    if [ -n "$reload_ok$reload_fail" ]; then
      echo "                     meridian_config_reloads_total: success ${reload_ok:-0}, failure ${reload_fail:-0} (includes the warm-up's reloads)"
    else
      echo "                     meridian_config_reloads_total: n/a (no /metrics at the end)"
    fi
    echo "  evacuations:       $n_evac evacuate ($(awk '$1 == "evacuate" {print $2}' "$S/evacuations.txt" | codes)), $n_rest restore ($(awk '$1 == "restore" {print $2}' "$S/evacuations.txt" | codes)) of region $SOAK_REGION"
    echo "  health checks:     backends a (flaps every ${FLAP_A_SECONDS}s, na), b (every ${FLAP_B_SECONDS}s, eu), c (steady, as+sa); probes ok $probes_ok, failed $probes_fail$([ "$died" = yes ] && echo " (n/a: no /metrics at the end)"); health changes $health_changes ($health_down to down)"
    echo "  RSS:               start $(mib "$rs_kb") (after warm-up; $(mib "$(awk '{print $1}' <<<"$launch")") at launch), max $(mib "$rmax_kb"), end $(mib "$re_kb"); growth $(awk -v a="$rs_kb" -v b="$re_kb" 'BEGIN { printf "%+.1f MiB (%+.1f%%)", (b - a) / 1024, (a > 0 ? 100 * (b - a) / a : 0) }')"
    printf '  %-19s%s MiB\n' "RSS every ${SAMPLE_EVERY} s:" "$(awk '$2 != "dead" {printf "%s%.1f", sep, $2 / 1024; sep = " "}' "$S/samples.txt")"
    echo "  FDs:               start $rs_fd, end $re_fd ($(printf '%+d' "$fd_growth"))"
    echo "  threads:           start $rs_thr, end $re_thr"
    echo "  table generation:  $final_gen at the end ($rs_gen at the start of the soak)"
    echo "  server log:        $panics panics, $log_bad WARN/ERROR lines besides health changes ($dir/server.log)"
    if [ "$died" = yes ]; then
      echo "  Meridian alive:    NO (exit status $srv_rc)"
    else
      echo "  Meridian alive:    yes (pid $SRV_PID)"
    fi
    if [ ${#failures[@]} -eq 0 ]; then
      echo "  result:            PASS"
    else
      echo "  result:            FAIL: $(printf '%s; ' "${failures[@]}" | sed 's/; $//')"
    fi
  } | tee "$RES/soak-summary.txt"
  echo "samples (t rss_kb fds threads generation): $S/samples.txt; reloads: $S/reloads.txt; admin calls: $S/evacuations.txt" >&2
  if [ "$log_bad" != 0 ]; then
    log "server log lines (WARN/ERROR besides health changes), first 10:"
    grep -E '(WARN|ERROR) ' "$S/server-plain.log" | grep -v 'health changed' | head -n 10 >&2 || true
  fi
  [ ${#failures[@]} -eq 0 ]
}

main "$@"
