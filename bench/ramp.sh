#!/usr/bin/env bash
# Meridian only: a ramp of one region from 0 to 100 % under a fixed load. Checks that no
# query is lost and that each step moves its share of the region's clients. See
# bench/README.md, "What ramp.sh measures".
#
#   bench/ramp.sh                                      # about 70 s after the data is ready
#   STEP_EVERY=10s RAMP_QPS=40000 bench/ramp.sh
#   WORK=/tmp/b MERIDIAN=/path/to/other/meridian bench/ramp.sh
#
# dnsperf sends workload b (geo.example.com A, a different ECS subnet per query) at RAMP_QPS
# for the whole ramp. Beside it, bench/ramp-sampler.py cycles through SAMPLE_CLIENTS client
# /24s that RAMP_REGION answers before the ramp, and counts per step (the step of the table in
# force, as polls of GET /v1/ramps bracket it) how many answers moved.
# Half-way through the EXPLAIN_AT step, `meridian ctl explain` shows one moved and one
# unmoved client. Exits non-zero when dnsperf lost a query or a step's moved share is more
# than TOLERANCE points off its percentage.
#
# Knobs (environment): RAMP_QPS=20000  RAMP_REGION=eu  RAMP_STEPS=10,20,...,100  STEP_EVERY=5s
#   SAMPLE_CLIENTS=5000  SAMPLE_SEED=1  GUARD=0.3  POLL=0.02  TOLERANCE=3  EXPLAIN_AT=50  LEAD=2
#   SAMPLER_WINDOW=64  SAMPLER_CPUS=$CLIENT_CPUS
#   MERIDIAN=target/release/meridian  MERIDIAN_LOG=warn,meridian::audit=info
#   and from bench/lib.sh: WORK NETWORKS SEED QUERIES WORKERS CLIENTS OUTSTANDING SERVER_CPUS
#   CLIENT_CPUS QUIET_WAIT SKIP_APT
#
# Only 127.0.0.1 is used; every wait is bounded; everything the script starts is stopped on
# exit (normal, error or Ctrl-C).
set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- knobs (environment) ---------------------------------------------------------------
RAMP_QPS=${RAMP_QPS:-20000}          # dnsperf -Q: the fixed rate of workload b
RAMP_REGION=${RAMP_REGION:-eu}       # the region ramped (na eu as sa)
RAMP_STEPS=${RAMP_STEPS:-10,20,30,40,50,60,70,80,90,100}
STEP_EVERY=${STEP_EVERY:-5s}         # the ramp's step_every: whole seconds, "5s" or "5"
SAMPLE_CLIENTS=${SAMPLE_CLIENTS:-5000} # distinct client /24s the sampler cycles through
GUARD=${GUARD:-0.3}                  # seconds around a step boundary whose samples are skipped
TOLERANCE=${TOLERANCE:-3}            # points a step's moved share may be off its percentage
EXPLAIN_AT=${EXPLAIN_AT:-50}         # the step (a percentage of RAMP_STEPS) explained
LEAD=${LEAD:-2}                      # seconds of load before the ramp is created
SAMPLER_WINDOW=${SAMPLER_WINDOW:-64} # sampler queries in flight
SAMPLE_SEED=${SAMPLE_SEED:-1}        # the order in which workload-b /24s are tried as clients
POLL=${POLL:-0.02}                   # seconds between two polls of GET /v1/ramps by the sampler
SAMPLER_CPUS=${SAMPLER_CPUS:-$CLIENT_CPUS}
MERIDIAN=${MERIDIAN:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/meridian}
MERIDIAN_LOG=${MERIDIAN_LOG:-warn,meridian::audit=info}
NAME=geo.example.com

check_knobs
for k in RAMP_QPS SAMPLE_CLIENTS TOLERANCE LEAD SAMPLER_WINDOW SAMPLE_SEED; do need_int "$k" "${!k}"; done
STEP_S=${STEP_EVERY%s}
need_int STEP_EVERY "$STEP_S"
[ "$STEP_S" -ge 1 ] || die "STEP_EVERY must be at least 1s"
[[ $GUARD =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "GUARD must be a number of seconds (got '$GUARD')"
[[ $POLL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "POLL must be a number of seconds (got '$POLL')"
awk -v g="$GUARD" -v s="$STEP_S" 'BEGIN { exit !(2 * g < s) }' || die "GUARD must be under half of STEP_EVERY"
[[ $RAMP_STEPS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "RAMP_STEPS must be whole percentages, comma-separated (got '$RAMP_STEPS')"
IFS=, read -r -a STEPS <<<"$RAMP_STEPS"
NSTEPS=${#STEPS[@]}
EXPLAIN_STEP=""
for i in "${!STEPS[@]}"; do
  [ "${STEPS[$i]}" -le 100 ] || die "a step is at most 100 (got ${STEPS[$i]})"
  if [ "${STEPS[$i]}" = "$EXPLAIN_AT" ] && [ -z "$EXPLAIN_STEP" ]; then EXPLAIN_STEP=$i; fi
done
[ -n "$EXPLAIN_STEP" ] || die "EXPLAIN_AT=$EXPLAIN_AT is not one of RAMP_STEPS ($RAMP_STEPS)"
[ "$SAMPLE_CLIENTS" -ge 1 ] || die "SAMPLE_CLIENTS must be at least 1"
[ -x "$MERIDIAN" ] || die "no Meridian binary at $MERIDIAN (cargo build --release --bin meridian, or set MERIDIAN)"

# ---- processes ----------------------------------------------------------------------------
DNSPERF_PID=""
SAMPLER_PID=""

cleanup() {
  stop_pid "$SAMPLER_PID" 5
  SAMPLER_PID=""
  stop_pid "$DNSPERF_PID" 5
  DNSPERF_PID=""
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_s() { printf '%s\n' "$EPOCHREALTIME"; }

sleep_until() { # unix time (fractional); at most STEP_S * NSTEPS + 60 seconds
  local d
  d=$(awk -v t="$1" -v n="$EPOCHREALTIME" -v m=$((STEP_S * NSTEPS + 60)) \
    'BEGIN { d = t - n; if (d > m) d = m; if (d > 0) printf "%.3f", d; else print 0 }')
  sleep "$d"
}

api() { # method path [json body] -> body on stdout; fails on an HTTP error
  local m=$1 p=$2 body=${3:-}
  local args=(-sS --noproxy '*' --max-time 10 -X "$m" --fail-with-body)
  [ "$m" = POST ] && args+=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "$ADMIN$p"
}

json_get() { # python expression over the JSON document `d` read from stdin
  python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# ---- set up -------------------------------------------------------------------------------
ensure_deps dnsperf python3 taskset dig curl awk
taskset -c "$SERVER_CPUS" true 2>/dev/null || die "cannot pin to SERVER_CPUS=$SERVER_CPUS"
taskset -c "$CLIENT_CPUS" true 2>/dev/null || die "cannot pin to CLIENT_CPUS=$CLIENT_CPUS"
setup_work
prepare_data
DIR=$WORK/ramp
rm -rf "$DIR"; mkdir -p "$DIR"
OUT=$RES/ramp
mkdir -p "$OUT"

# lib.sh's workload-b config on port 0 (the ports come from the start-up log), plus a token file.
meridian_setup "$DIR" 0 0
TOKEN=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$TOKEN" > "$DIR/admin.token")
sed -i "/^\[server\]\$/a admin_token_file = \"$DIR/admin.token\"" "$DIR/meridian.toml"
out=$("$MERIDIAN" check --config "$DIR/meridian.toml" 2>&1) || die "meridian check failed:"$'\n'"$out"
RAMP_ANSWER=$(sed -n "s/.*region = \"$RAMP_REGION\", address = \"\([0-9.]*\)\".*/\1/p" "$DIR/meridian.toml" | head -n 1)
[ -n "$RAMP_ANSWER" ] || die "RAMP_REGION=$RAMP_REGION has no endpoint in $DIR/meridian.toml (regions: na eu as sa)"

log "starting Meridian ($MERIDIAN) on cpu $SERVER_CPUS"
MERIDIAN_LOG=$MERIDIAN_LOG taskset -c "$SERVER_CPUS" "$MERIDIAN" serve --config "$DIR/meridian.toml" \
  > "$DIR/server.log" 2>&1 &
SRV_PID=$!
ready=""
for ((i = 0; i < START_TIMEOUT * 20; i++)); do
  if grep -q ' meridian::startup: ready' "$DIR/server.log" 2>/dev/null; then ready=1; break; fi
  kill -0 "$SRV_PID" 2>/dev/null || { tail -n 20 "$DIR/server.log" >&2; SRV_PID=""; die "Meridian exited during start-up"; }
  sleep 0.05
done
[ -n "$ready" ] || die "Meridian did not log 'ready' within ${START_TIMEOUT}s"
PORT=$(sed -n 's/.* meridian::startup: serving DNS .*addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$DIR/server.log" | head -n 1)
ADMIN=$(sed -n 's/.* meridian::startup: admin API listening .*url=\(http:[^ ]*\).*/\1/p' "$DIR/server.log" | head -n 1)
if [ -z "$PORT" ] || [ -z "$ADMIN" ]; then die "Meridian is ready but did not log its addresses; see $DIR/server.log"; fi
log "Meridian answers on 127.0.0.1:$PORT, admin API $ADMIN; $RAMP_REGION answers $RAMP_ANSWER"

# ---- the clients ----------------------------------------------------------------------------
# Workload-b /24s that the region answers at 0 %: the ones the ramp is to move.
taskset -c "$SAMPLER_CPUS" python3 "$BENCH_DIR/ramp-sampler.py" select --port "$PORT" --name "$NAME." \
  --answer "$RAMP_ANSWER" --candidates "$QDIR/subnets.txt" --count "$SAMPLE_CLIENTS" \
  --window "$SAMPLER_WINDOW" --seed "$SAMPLE_SEED" --out "$OUT/clients.txt" > "$OUT/select.log" 2>&1 \
  || { cat "$OUT/select.log" >&2; die "could not find $SAMPLE_CLIENTS client /24s answered from $RAMP_REGION (raise QUERIES?)"; }
log "$(cat "$OUT/select.log")"

# ---- the ramp under load ----------------------------------------------------------------------
RUN_S=$((LEAD + NSTEPS * STEP_S + 3))
steps_json="[$RAMP_STEPS]"
wait_quiet
c0=$(cpu_sample)
log "dnsperf: workload b at $RAMP_QPS qps for ${RUN_S}s on cpu $CLIENT_CPUS"
taskset -c "$CLIENT_CPUS" dnsperf -B -d "$QDIR/b.bin" -s 127.0.0.1 -p "$PORT" -l "$RUN_S" \
  -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -t 2 -Q "$RAMP_QPS" > "$OUT/dnsperf.txt" 2>&1 &
DNSPERF_PID=$!
sleep "$LEAD"
kill -0 "$DNSPERF_PID" 2>/dev/null || { cat "$OUT/dnsperf.txt" >&2; die "dnsperf exited early"; }

reply=$(api POST "/v1/regions/$RAMP_REGION/ramp" \
  "{\"steps\": $steps_json, \"step_every\": \"${STEP_S}s\", \"reason\": \"bench/ramp.sh\"}") \
  || die "the ramp was refused: $reply"
RAMP_ID=$(json_get 'd["id"]' <<<"$reply")
api GET /v1/ramps > "$OUT/ramps-start.json"
read -r START STATE0 PCT0 < <(json_get \
  '" ".join(str(r[k]) for r in d["ramps"] if r["id"] == "'"$RAMP_ID"'" for k in ("start", "state", "percent"))' \
  < "$OUT/ramps-start.json")
[[ ${START:-} =~ ^[0-9]+$ ]] || die "ramp $RAMP_ID is not in /v1/ramps; see $OUT/ramps-start.json"
END=$((START + NSTEPS * STEP_S))
log "ramp $RAMP_ID: steps $RAMP_STEPS every ${STEP_S}s from $(date -u -d "@$START" +%H:%M:%S) (now $STATE0 at $PCT0 %)"

taskset -c "$SAMPLER_CPUS" python3 "$BENCH_DIR/ramp-sampler.py" sample --port "$PORT" --name "$NAME." \
  --answer "$RAMP_ANSWER" --clients "$OUT/clients.txt" --admin "$ADMIN" --ramp-id "$RAMP_ID" \
  --until "$END" --guard "$GUARD" --window "$SAMPLER_WINDOW" --poll "$POLL" --out "$OUT/steps.tsv" \
  > "$OUT/sample.log" 2>&1 &
SAMPLER_PID=$!

# Half-way through the EXPLAIN_AT step: one moved and one unmoved client, by explain, with
# their DNS answers at the same moment.
sleep_until "$(awk -v s="$START" -v k="$EXPLAIN_STEP" -v e="$STEP_S" 'BEGIN { printf "%.3f", s + k * e + e / 2 }')"
moved="" unmoved="" tried=0
: > "$OUT/explain.txt"
while read -r s && [ "$tried" -lt 200 ]; do
  tried=$((tried + 1))
  [ -n "$moved" ] && [ -n "$unmoved" ] && break
  ex=$("$MERIDIAN" ctl --server "$ADMIN" explain "$NAME" A --client "$s" 2>&1) || { log "explain $s failed: $ex"; continue; }
  ans=$(dig_geo "$PORT" "$s")
  t=$(now_s)
  chosen=$(awk '$1 == "chosen" { print $2; exit }' <<<"$ex")
  if [ "$chosen" = "$RAMP_REGION" ] && [ -z "$unmoved" ]; then
    unmoved=$s
  elif [ -n "$chosen" ] && [ "$chosen" != "$RAMP_REGION" ] && [ -z "$moved" ]; then
    moved=$s
  else
    continue
  fi
  kind=unmoved
  if [ "$s" = "$moved" ]; then kind=moved; fi
  {
    echo "--- $kind client $s at $EXPLAIN_AT % ($(date -u -d "@${t%.*}" +%H:%M:%S), $(awk -v t="$t" -v s="$START" -v e="$STEP_S" 'BEGIN { printf "%.1f", (t - s) / e + 1 }') steps in)"
    echo "\$ meridian ctl explain $NAME A --client $s"
    echo "$ex"
    echo "dig +subnet=$s: answer scope rcode = $ans"
  } >> "$OUT/explain.txt"
done < "$OUT/clients.txt"
t=$(now_s)
explain_late=$(awk -v t="$t" -v s="$START" -v k="$EXPLAIN_STEP" -v e="$STEP_S" 'BEGIN { print (t >= s + (k + 1) * e) ? 1 : 0 }')

# Until the sampler and dnsperf are done (both bounded by their own clocks).
for ((i = 0; i < (NSTEPS * STEP_S + LEAD + 60) * 10; i++)); do
  kill -0 "$SAMPLER_PID" 2>/dev/null || break
  sleep 0.1
done
sampler_rc=0
wait "$SAMPLER_PID" || sampler_rc=$?
SAMPLER_PID=""
for ((i = 0; i < (RUN_S + 30) * 10; i++)); do
  kill -0 "$DNSPERF_PID" 2>/dev/null || break
  sleep 0.1
done
wait "$DNSPERF_PID" || true
DNSPERF_PID=""
c1=$(cpu_sample)
alive=yes
kill -0 "$SRV_PID" 2>/dev/null || alive=no
final=""
if [ "$alive" = yes ]; then
  final=$(api GET /v1/ramps | json_get \
    '" ".join(str(r[k]) for r in d["ramps"] if r["id"] == "'"$RAMP_ID"'" for k in ("state", "percent"))') || true
fi
stop_server

# ---- summary ------------------------------------------------------------------------------
read -r sent completed lost qps _ _ rcodes < <(dnsperf_fields "$OUT/dnsperf.txt")
busy=$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " ");
  printf "%.0f %.0f", (y[3] > x[3] ? 100 * (y[1] - x[1]) / (y[3] - x[3]) : 0), (y[5] > x[5] ? 100 * (y[4] - x[4]) / (y[5] - x[5]) : 0) }')
panics=$(grep -c -i 'panick' "$DIR/server.log" || true)
read -r mixed back < "$OUT/steps.tsv.stability" 2>/dev/null || { mixed=-; back=-; }
# When each step's table came out: the audit line "ramp ID at P %" against the step's boundary.
lag=$(python3 - "$DIR/server.log" "$RAMP_ID" "$START" "$STEP_S" "$RAMP_STEPS" <<'PY'
import datetime, re, sys
log, rid, start, every, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split(",")
lags = []
for line in open(log, errors="replace"):
    m = re.match(r"(\S+Z) .*meridian::audit: .*action=\"ramp " + re.escape(rid) + r" at ([0-9.]+) %\"", line)
    if not m:
        continue
    t = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    k = next((i for i, p in enumerate(steps) if float(p) == float(m.group(2))), None)
    if k:
        lags.append((t - (start + k * every)) * 1000)
if lags:
    print(f"{len(lags)} of {len(steps) - 1} step changes logged, {min(lags):.1f} to {max(lags):.1f} ms after their boundary")
else:
    print("no step audit lines in the log (MERIDIAN_LOG must let meridian::audit=info through)")
PY
) || lag="could not read the log"
fail=0
{
  echo "ramp: $RAMP_REGION ($RAMP_ANSWER) through $RAMP_STEPS % every ${STEP_S}s, ramp $RAMP_ID; meridian $("$MERIDIAN" --version 2>/dev/null | head -n 1) ($MERIDIAN)"
  echo "load: dnsperf workload b ($NAME A, $QUERIES ECS subnets) at $RAMP_QPS qps for ${RUN_S}s, -c $CLIENTS -q $OUTSTANDING -t 2; server cpu $SERVER_CPUS (workers $WORKERS), dnsperf cpu $CLIENT_CPUS, sampler cpu $SAMPLER_CPUS"
  echo "sampler: $(wc -l < "$OUT/clients.txt") client /24s answered from $RAMP_REGION at 0 % (SAMPLE_SEED=$SAMPLE_SEED), $SAMPLER_WINDOW in flight, samples within ${GUARD}s of a step boundary skipped"
  echo
  if [ -s "$OUT/steps.tsv" ]; then
    awk -F '\t' -v tol="$TOLERANCE" '
      BEGIN { printf "%5s %6s %8s %8s %8s %7s %5s %8s  %s\n", "step", "ramp%", "samples", "clients", "moved%", "dev", "", "seen ms", "moved to (answers)" }
      NR == 1 { next }
      { moved = ($3 > 0) ? 100 * $5 / $3 : -1
        dev = moved - $2
        ok = ($3 > 0 && $6 == 0 && dev <= tol && dev >= -tol)
        if (!ok) bad++
        printf "%5s %6s %8s %8s %8s %7s %5s %8s  %s%s\n", $1, $2, $3, $4,
          (moved < 0 ? "-" : sprintf("%.2f", moved)), (moved < 0 ? "-" : sprintf("%+.2f", dev)),
          (ok ? "PASS" : "FAIL"), $8, $9, ($6 > 0 ? "  bad answers: " $6 : "") }
      END { exit bad > 0 }' "$OUT/steps.tsv" || fail=1
  else
    echo "no sampler results (exit $sampler_rc): see $OUT/sample.log"
    fail=1
  fi
  echo "moved% = answers not from $RAMP_REGION / samples in the step; dev = moved% - ramp% in points; PASS within ±$TOLERANCE"
  echo "seen ms = when /v1/ramps first showed the step, after its scheduled moment (step 1: after the ramp's start, the creation cut to the second)"
  echo "sampler: $(tail -n 1 "$OUT/sample.log")"
  echo
  echo "dnsperf: sent $sent, completed $completed, lost $lost, $qps qps, rcodes $rcodes"
  echo "cpu busy over the run: server cpu ${busy% *} %, client cpu ${busy#* } % (/proc/stat)"
  echo "step tables: $lag"
  echo "ramp at the end: ${final:-unknown}; Meridian alive: $alive; panics in its log: $panics"
  echo
  if [ -s "$OUT/explain.txt" ]; then cat "$OUT/explain.txt"; else echo "no explain output"; fi
  if [ "$explain_late" = 1 ]; then echo "note: the explains ran past the end of the $EXPLAIN_AT % step"; fi
} > "$RES/ramp-summary.txt"
cat "$RES/ramp-summary.txt"

problems=()
[ "$fail" = 0 ] || problems+=("a step's moved share is off by more than $TOLERANCE points, or has no samples or bad answers")
[ "$sampler_rc" = 0 ] || problems+=("the sampler failed (exit $sampler_rc)")
[ "${sent:-0}" -gt 0 ] || problems+=("dnsperf sent nothing")
[ "${lost:-1}" = 0 ] || problems+=("dnsperf lost $lost queries")
[ "$alive" = yes ] || problems+=("Meridian died")
[ "${final%% *}" = "done" ] || problems+=("the ramp did not end done (${final:-unknown})")
{ [ -n "$moved" ] && [ -n "$unmoved" ]; } || problems+=("explain found no moved or no unmoved client at $EXPLAIN_AT %")
[ "$mixed" = 0 ] || problems+=("$mixed (client, step) pairs were answered both ways within one step")
[ "$back" = 0 ] || problems+=("$back clients came back to $RAMP_REGION at a later, higher step")
[ "$panics" = 0 ] || problems+=("Meridian's log has $panics panic lines")
log "results in $RES (ramp-summary.txt, ramp/); config and log in $DIR"
if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do log "FAIL: $p"; done
  exit 1
fi
log "PASS: no lost queries, every step within ±$TOLERANCE points"
