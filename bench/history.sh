#!/usr/bin/env bash
# Meridian only: what-if predictions against the answers counted, and a rollback under load.
#
# 1. Predictions: dnsperf sends workload b at LOAD_QPS. After WARM seconds (the query rate is
#    measured every 5 s) the script counts each region's answers to geo.example.com over
#    WINDOW seconds (from /metrics), asks POST /v1/what-if {"evacuate": [REGION]}, applies the
#    evacuation, counts again over WINDOW seconds, and restores. It prints the predicted share
#    per region now and after beside the counted ones.
# 2. Rollback under load: dnsperf at LOAD_QPS for ROLLBACK_SECONDS; meanwhile a bad config (the
#    REGION endpoint answering 127.0.0.99) is reloaded and then rolled back with
#    POST /v1/rollback to the generation before it. Reports dnsperf's lost queries, the
#    rollback call's time (it answers once the new generation is being served), and that the
#    bad answer is gone.
# 3. Writes the what-if response, the history of the run and a summary to $WORK/results.
#
#   sudo WORK=/tmp/b bench/history.sh
#   SKIP_APT=1 SKIP_BUILD=1 WORK=/tmp/b NETWORKS=200000 bench/history.sh
#
# Knobs: as run.sh (WORK NETWORKS SEED QUERIES WORKERS CLIENTS OUTSTANDING SERVER_CPUS
# CLIENT_CPUS SKIP_APT SKIP_BUILD), plus LOAD_QPS=20000, WARM=12, WINDOW=5, REGION=eu,
# ROLLBACK_SECONDS=20.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOAD_QPS=${LOAD_QPS:-20000}
WARM=${WARM:-12}
WINDOW=${WINDOW:-5}
REGION=${REGION:-eu}
ROLLBACK_SECONDS=${ROLLBACK_SECONDS:-20}

trap stop_server EXIT
trap 'exit 130' INT TERM

dnsperf_rate() { # port, query file, seconds, output file
  taskset -c "$CLIENT_CPUS" dnsperf -B -d "$2" -s 127.0.0.1 -p "$1" -l "$3" \
    -c "$CLIENTS" -q "$OUTSTANDING" -T 1 -t 2 -Q "$LOAD_QPS" > "$4" 2>&1 || true
}

# Answers to geo.example.com per region, as "region count" lines.
answers() { # admin port
  curl -s -m 2 "http://127.0.0.1:$1/metrics" | awk '
    /^meridian_dns_answers_total\{/ && /service="geo.example.com."/ {
      r = $0; sub(/.*region="/, "", r); sub(/".*/, "", r); n[r] += $NF }
    END { for (r in n) print r, n[r] }' | sort
}

# Share per region of the answers counted between two `answers` outputs, as "region pct".
shares() { # before-file after-file
  awk 'NR == FNR { b[$1] = $2; next } { d[$1] = $2 - b[$1]; t += $2 - b[$1] }
       END { for (r in d) printf "%s %.2f\n", r, (t > 0 ? 100 * d[r] / t : 0) }' "$1" "$2" | sort
}

api() { # method port path [body] -> body; "time code" appended to $CALLS
  local out=$WORK/results/api.out
  local tc
  tc=$(curl -s -o "$out" -m 10 -w '%{time_total} %{http_code}' -X "$1" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    --data "${4:-}" "http://127.0.0.1:$2$3" || echo "0 000")
  echo "$1 $3 $tc" >> "$CALLS"
  cat "$out"
}

main() {
  check_knobs
  if [ "$(id -u)" != 0 ] && [ "$SKIP_APT" != 1 ]; then
    die "run as root (it may install packages); SKIP_APT=1 to skip apt-get"
  fi
  ensure_deps dnsperf python3 taskset dig curl jq awk
  setup_work
  build_meridian
  prepare_data
  ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  CALLS=$RES/history-calls.txt
  : > "$CALLS"
  local port aport dir=$WORK/srv-history
  port=$(pick_port)
  aport=$(pick_port)
  start_server meridian "$dir" "$port" "$aport" || die "Meridian did not start"

  # ---- 1. predictions --------------------------------------------------------------------
  local total=$((WARM + 3 * WINDOW + 6)) dp
  dnsperf_rate "$port" "$QDIR/b.bin" "$total" "$RES/logs/history-predict.txt" &
  dp=$!
  sleep $((WARM - WINDOW))
  answers "$aport" > "$RES/answers-0.txt"
  sleep "$WINDOW"
  answers "$aport" > "$RES/answers-1.txt"
  api POST "$aport" /v1/what-if "{\"evacuate\": [\"$REGION\"]}" > "$RES/what-if.json"
  api POST "$aport" "/v1/regions/$REGION/evacuate" '{"reason": "bench: what-if check"}' > /dev/null
  sleep 1
  answers "$aport" > "$RES/answers-2.txt"
  sleep "$WINDOW"
  answers "$aport" > "$RES/answers-3.txt"
  api POST "$aport" "/v1/regions/$REGION/restore" > /dev/null
  wait "$dp" || true
  shares "$RES/answers-0.txt" "$RES/answers-1.txt" > "$RES/counted-now.txt"
  shares "$RES/answers-2.txt" "$RES/answers-3.txt" > "$RES/counted-after.txt"
  jq -r '.services[] | select(.service == "geo.example.com.") | .regions[] | "\(.region) \(.now) \(.after)"' \
    "$RES/what-if.json" | sort > "$RES/predicted.txt"

  # ---- 2. rollback under load --------------------------------------------------------------
  local good bad_gen rb probe
  good=$(api GET "$aport" "/v1/history?limit=1" | jq '.entries[0].generation')
  probe=""
  while read -r s _; do
    if [ "$(dig_geo "$port" "$s" | awk '{print $1}')" = 127.0.0.12 ]; then probe=$s; break; fi
  done < <(head -n 200 "$QDIR/subnets.txt")
  [ -n "$probe" ] || die "no subnet of workload b is answered from eu"
  dnsperf_rate "$port" "$QDIR/b.bin" "$ROLLBACK_SECONDS" "$RES/logs/history-rollback.txt" &
  dp=$!
  sleep 3
  cp "$dir/meridian.toml" "$dir/meridian.toml.good"
  sed 's/address = "127.0.0.12"/address = "127.0.0.99"/' "$dir/meridian.toml.good" > "$dir/meridian.toml.new"
  mv "$dir/meridian.toml.new" "$dir/meridian.toml"
  bad_gen=$(api POST "$aport" /v1/reload | jq '.generation')
  local bad_answer
  bad_answer=$(dig_geo "$port" "$probe" | awk '{print $1}')
  sleep 3
  rb=$(api POST "$aport" /v1/rollback "{\"to\": $good, \"reason\": \"bench: bad endpoint address\"}")
  local rb_time after_answer
  rb_time=$(awk '$2 == "/v1/rollback" {print $3}' "$CALLS" | tail -n 1)
  after_answer=$(dig_geo "$port" "$probe" | awk '{print $1}')
  wait "$dp" || true
  api GET "$aport" "/v1/history?limit=12" > "$RES/history.json"

  local load
  load=$(dnsperf_fields "$RES/logs/history-rollback.txt")
  {
    echo "what-if predictions: workload b at $LOAD_QPS qps, evacuate $REGION, windows of ${WINDOW}s"
    echo "  sampled $(jq .sampled "$RES/what-if.json") queries standing for $(jq .qps "$RES/what-if.json") qps"
    echo "  region  predicted-now counted-now  predicted-after counted-after  (percent of geo.example.com answers)"
    join -a 1 "$RES/predicted.txt" "$RES/counted-now.txt" | join -a 1 - "$RES/counted-after.txt" |
      awk '{ printf "  %-6s  %13s %11s  %15s %13s   diff after %+.2f\n", $1, $2, $4, $3, $5, $5 - $3 }'
    echo "  predict load: $(dnsperf_fields "$RES/logs/history-predict.txt")"
    echo
    echo "rollback under load: workload b at $LOAD_QPS qps for ${ROLLBACK_SECONDS}s"
    echo "  good generation $good; bad config reloaded as generation $bad_gen ($probe answered $bad_answer)"
    echo "  rollback: $(jq -c '{generation, to, config_hash}' <<<"$rb") in ${rb_time}s (answers once the new generation is served)"
    echo "  $probe answered $after_answer after the rollback"
    echo "  dnsperf fields: sent completed lost qps avg_latency_s response_bytes rcodes"
    echo "  $load"
    echo "  lost queries: $(awk '{print $3}' <<<"$load") of $(awk '{print $1}' <<<"$load") sent"
    echo
    echo "admin calls (method path seconds status):"
    sed 's/^/  /' "$CALLS"
  } | tee "$RES/history-summary.txt"
}

main "$@"
