#!/usr/bin/env bash
# Meridian only: routing-table swaps under load. dnsperf sends workload b (geo name, a
# different ECS subnet per query) for DURATION seconds while a bounded loop calls the admin
# API SWAP_RATE times a second, alternating POST /v1/regions/$SWAP_REGION/evacuate and
# /restore. Each accepted call publishes a new routing table. Reports dnsperf's lost queries
# and response codes beside a baseline run without swaps, and how many swaps were done.
#
#   sudo WORK=/tmp/b bench/swap-under-load.sh
#
# Knobs: as run.sh (WORK DURATION NETWORKS SEED QUERIES WORKERS CLIENTS OUTSTANDING
# SERVER_CPUS CLIENT_CPUS SKIP_APT SKIP_BUILD), plus SWAP_RATE=10 (calls per second),
# SWAP_REGION=eu, BASELINE=1 (0: skip the run without swaps).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SWAP_RATE=${SWAP_RATE:-10}
SWAP_REGION=${SWAP_REGION:-eu}
BASELINE=${BASELINE:-1}

trap stop_server EXIT
trap 'exit 130' INT TERM

generation() { # admin port -> meridian_routing_table_generation (loopback reads need no token)
  curl -s -m 2 "http://127.0.0.1:$1/metrics" | awk '$1 == "meridian_routing_table_generation" {print $2; exit}'
}

admin_post() { # admin port, path -> "HTTP_CODE SECONDS"
  taskset -c "$CLIENT_CPUS" curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}\n' -X POST \
    -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$1$2" || echo "000 0"
}

# A subnet from workload b that is answered from the region we evacuate.
region_subnet() { # port -> subnet
  local s want want_addr
  case $SWAP_REGION in na) want_addr=127.0.0.11 ;; eu) want_addr=127.0.0.12 ;;
    as) want_addr=127.0.0.13 ;; sa) want_addr=127.0.0.14 ;; *) want_addr="" ;; esac
  while read -r s want; do
    if [ "$(dig_geo "$1" "$s" | awk '{print $1}')" = "$want_addr" ]; then echo "$s"; return 0; fi
  done < <(head -n 100 "$QDIR/subnets.txt")
  return 0
}

main() {
  check_knobs
  need_int SWAP_RATE "$SWAP_RATE"
  need_int BASELINE "$BASELINE"
  [ "$SWAP_RATE" -ge 1 ] || die "SWAP_RATE must be at least 1"
  if [ "$(id -u)" != 0 ] && [ "$SKIP_APT" != 1 ]; then
    die "run as root (it may install packages); SKIP_APT=1 to skip apt-get"
  fi
  ensure_deps dnsperf python3 taskset dig curl ps awk
  setup_work
  build_meridian
  prepare_data
  ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  local port aport dir=$WORK/srv-swap
  port=$(pick_port)
  aport=$(pick_port)
  start_server meridian "$dir" "$port" "$aport" || die "Meridian did not start"
  log "meridian: ${MERIDIAN_WORKERS_NOTE:-}"

  # The swap must change answers: evacuate, see the subnet move, restore, see it back.
  local probe before during after r
  probe=$(region_subnet "$port")
  [ -n "$probe" ] || die "no subnet of workload b is answered from region $SWAP_REGION"
  before=$(dig_geo "$port" "$probe")
  r=$(admin_post "$aport" "/v1/regions/$SWAP_REGION/evacuate")
  [ "${r%% *}" = 200 ] || die "evacuate returned HTTP ${r%% *} (see $dir/server.log)"
  during=$(dig_geo "$port" "$probe")
  r=$(admin_post "$aport" "/v1/regions/$SWAP_REGION/restore")
  [ "${r%% *}" = 200 ] || die "restore returned HTTP ${r%% *}"
  after=$(dig_geo "$port" "$probe")
  log "check with $probe: before [$before], evacuated [$during], restored [$after]"
  if [ "${before%% *}" = "${during%% *}" ] || [ "${before%% *}" != "${after%% *}" ]; then
    log "WARNING: evacuating $SWAP_REGION did not move $probe and back"
  fi

  local base=""
  if [ "$BASELINE" = 1 ]; then
    wait_quiet
    dnsperf_full "$port" "$QDIR/b.bin" "$DURATION" "$WORK/results/logs/swap-baseline.txt"
    base=$(dnsperf_fields "$WORK/results/logs/swap-baseline.txt")
  fi

  wait_quiet
  local gen0 gen1 out=$WORK/results/logs/swap-load.txt calls=$WORK/results/swap-calls.txt dp
  gen0=$(generation "$aport")
  dnsperf_full "$port" "$QDIR/b.bin" "$DURATION" "$out" &
  dp=$!
  : > "$calls"
  local n=$((DURATION * SWAP_RATE)) step_ns=$((1000000000 / SWAP_RATE)) t0 i action now wait_ns last=""
  t0=$(date +%s%N)
  for i in $(seq 1 "$n"); do
    kill -0 "$dp" 2>/dev/null || break
    if [ $((i % 2)) = 1 ]; then action=evacuate; else action=restore; fi
    echo "$action $(admin_post "$aport" "/v1/regions/$SWAP_REGION/$action")" >> "$calls"
    last=$action
    now=$(date +%s%N)
    wait_ns=$((t0 + i * step_ns - now))
    if [ "$wait_ns" -gt 0 ]; then
      sleep "$(printf '%d.%09d' $((wait_ns / 1000000000)) $((wait_ns % 1000000000)))"
    fi
  done
  wait "$dp" || true
  if [ "$last" = evacuate ]; then
    echo "restore $(admin_post "$aport" "/v1/regions/$SWAP_REGION/restore") (after the load)" >> "$calls"
  fi
  gen1=$(generation "$aport")

  local load
  load=$(dnsperf_fields "$out")
  {
    echo "swap under load: Meridian ($MERIDIAN_WORKERS_NOTE), workload b, ${DURATION}s, dnsperf -c $CLIENTS -q $OUTSTANDING on cpu $CLIENT_CPUS, server on cpu $SERVER_CPUS"
    echo "  fields: sent completed lost qps avg_latency_s response_bytes rcodes"
    [ -n "$base" ] && echo "  baseline (no swaps): $base"
    echo "  with swaps:          $load"
    printf '  admin calls: %s (%s), call time p50 %s ms, max %s ms\n' "$(wc -l < "$calls")" \
      "$(awk '{print "HTTP " $2}' "$calls" | sort | uniq -c | awk '{printf "%s%s x %s %s", sep, $1, $2, $3; sep = ", "}')" \
      "$(awk '{print $3}' "$calls" | sort -g | awk '{v[NR] = $1} END {printf "%.1f", 1000 * v[int(NR / 2) + 1]}')" \
      "$(awk '{print $3}' "$calls" | sort -g | tail -n 1 | awk '{printf "%.1f", 1000 * $1}')"
    echo "  routing-table generation: $gen0 -> $gen1 = $((gen1 - gen0)) table swaps during the run (target $((DURATION * SWAP_RATE)))"
    echo "  lost queries under swaps: $(awk '{print $3}' <<<"$load") of $(awk '{print $1}' <<<"$load") sent"
  } | tee "$WORK/results/swap-summary.txt"
}

main "$@"
