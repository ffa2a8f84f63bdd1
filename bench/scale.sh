#!/usr/bin/env bash
# Meridian beside gdnsd with many traffic-managed names: start time, memory, reloads and
# /metrics scrapes as the number of names grows.
#
#   bench/scale.sh                                  # 1000 10000 50000 names, gdnsd up to 10000
#   SIZES="1000 10000" bench/scale.sh
#   GDNSD_MAX=0 bench/scale.sh                      # Meridian only
#   MERIDIAN_BEFORE=/path/to/old/meridian bench/scale.sh   # adds rows meridian-before
#
# For each size N the script writes one zone, example.com., with N geo names g0 .. g(N-1),
# each with ENDPOINTS endpoints (addresses in 10.0.0.0/8, unique per name) spread over the
# four regions na, eu, as, sa, and no health checks (every endpoint is unmonitored, so it
# serves). Meridian serves it from a [[services]] entry per name, gdnsd from a DYNA geoip
# resource per name whose dcmap lists the same addresses per region. The table it prints:
#
#   start s      from spawning the server to Meridian's `ready` log line (gdnsd: to the
#                first answer for the last name)
#   rss start    VmRSS right after that, in MB
#   rss reload   VmRSS after RELOADS reloads (Meridian: SIGHUP, done when /readyz reports a
#                new generation, so the admin API's 60 s connection limit does not bound a
#                slow reload; gdnsd: `gdnsdctl reload-zones`, which reloads its zone files but
#                not the geoip resources of its config)
#   reload s     the slowest of those reloads
#   scrape s, wire MB, text MB, series, cpu s
#                SCRAPES scrapes of GET /metrics asking for gzip as Prometheus does
#                (Accept-Encoding: gzip): the slowest (the whole response, as curl
#                receives it), the last one's size on the wire (gzip, or the text when the
#                server sends it plain) and decoded, its series (lines that are not
#                comments) and the server's CPU for all the scrapes
#   rss scraped  VmRSS after the scrapes, in MB
#
# Outage-to-move time is not measured here: bench/health-storm.sh measures it (with
# thousands of probe targets in one service).
#
# Everything listens on 127.0.0.1 only, on ports picked free at start; every wait is a
# bounded loop; the server is stopped on exit (normal, error or Ctrl-C).
set -euo pipefail
export LC_ALL=C

# Before lib.sh, which defaults it to 180: a big config takes longer to load and reload.
START_TIMEOUT=${START_TIMEOUT:-1800}
# shellcheck source=bench/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# ---- knobs (environment; lib.sh's WORK, SKIP_APT, SKIP_BUILD, START_TIMEOUT also apply) ---
SIZES=${SIZES:-"1000 10000 50000"} # numbers of names
ENDPOINTS=${ENDPOINTS:-7}          # endpoints per name, over the regions na eu as sa
RELOADS=${RELOADS:-5}              # reloads before "rss reload"
SCRAPES=${SCRAPES:-3}              # /metrics scrapes before "rss scraped"
GDNSD_MAX=${GDNSD_MAX:-10000}      # run gdnsd only up to this many names (0: never)
# NETWORKS (lib.sh, default 1000000): networks in the synthetic GeoIP database

for k in ENDPOINTS RELOADS SCRAPES GDNSD_MAX NETWORKS START_TIMEOUT; do need_int "$k" "${!k}"; done
for n in $SIZES; do need_int SIZES "$n"; done
[ "$ENDPOINTS" -ge 4 ] || die "ENDPOINTS must be at least 4 (one per region)"
[ "$ENDPOINTS" -le 100 ] || die "ENDPOINTS is at most 100"
CLK_TCK=$(getconf CLK_TCK)

cleanup() { stop_server; }
trap cleanup EXIT
trap 'exit 130' INT TERM

want=(dig curl awk python3 gzip)
[ "$GDNSD_MAX" -gt 0 ] && want+=(gdnsd gdnsdctl)
ensure_deps "${want[@]}"
setup_work
build_meridian
[ -z "$MERIDIAN_BEFORE" ] || [ -x "$MERIDIAN_BEFORE" ] || die "MERIDIAN_BEFORE is not an executable: $MERIDIAN_BEFORE"
MMDB=$WORK/geo.mmdb
if [ ! -s "$MMDB" ] || [ "$(cat "$WORK/geo.params" 2>/dev/null)" != "networks=$NETWORKS seed=$SEED" ]; then
  log "writing the GeoIP database ($NETWORKS networks)"
  "$MERIDIAN" geoip-synth --networks "$NETWORKS" --seed "$SEED" --out "$MMDB" >&2 \
    || die "meridian geoip-synth failed"
  echo "networks=$NETWORKS seed=$SEED" > "$WORK/geo.params"
fi

# "name region address" lines for N names: ENDPOINTS endpoints per name, dealt round-robin
# over the regions, addresses 10.x.y.z numbered from 1.
endpoint_lines() { # n
  awk -v n="$1" -v e="$ENDPOINTS" 'BEGIN {
    split("na eu as sa", r, " ")
    for (i = 0; i < n; i++) for (j = 0; j < e; j++) {
      k = i * e + j + 1
      printf "g%d %s 10.%d.%d.%d\n", i, r[j % 4 + 1], int(k / 65536) % 256, int(k / 256) % 256, k % 256
    }
  }'
}

meridian_scale_config() { # dir n dns-port admin-port
  local dir=$1
  mkdir -p "$dir/state"
  {
    echo "# written by bench/scale.sh: $2 names, $ENDPOINTS endpoints each"
    echo "[server]"
    echo "dns_listen = [\"127.0.0.1:$3\"]"
    echo "admin_listen = \"127.0.0.1:$4\""
    echo "state_dir = \"$dir/state\""
    echo
    echo "[geoip]"
    echo "database = \"$MMDB\""
    echo
    echo "[routing]"
    echo 'default_order = ["na", "eu", "as", "sa"]'
    echo
    meridian_zone_and_regions 1
    echo
    endpoint_lines "$2" | awk '
      $1 != name {
        if (name != "") print "]\n"
        name = $1
        print "[[services]]"
        printf "name = \"%s.example.com.\"\nttl = 30\npolicy = \"geo\"\nendpoints = [\n", name
      }
      { printf "  { region = \"%s\", address = \"%s\" },\n", $2, $3 }
      END { if (name != "") print "]" }'
  } > "$dir/meridian.toml"
}

gdnsd_scale_config() { # dir n port
  local dir=$1
  mkdir -p "$dir/etc/zones" "$dir/run" "$dir/state"
  {
    zone_file "; $2 geo names follow"
    awk -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "g%d 30 IN DYNA geoip!g%d\n", i, i }'
  } > "$dir/etc/zones/example.com"
  {
    gdnsd_config_head "$dir" "$3" 1 "written by bench/scale.sh (gdnsd 3.8): $2 names, $ENDPOINTS endpoints each"
    endpoint_lines "$2" | awk '
      function flush() {
        if (name == "") return
        printf "      %s => { map => by_continent, dcmap => { na => [ %s ], eu => [ %s ], as => [ %s ], sa => [ %s ] } }\n", name, a["na"], a["eu"], a["as"], a["sa"]
      }
      $1 != name { flush(); name = $1; delete a }
      { a[$2] = (a[$2] == "" ? $3 : a[$2] ", " $3) }
      END { flush() }'
    echo "    }"
    echo "  }"
    echo "}"
  } > "$dir/etc/config"
}

mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
secs() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1e6 }'; }
now_us() { NOW=${EPOCHREALTIME/[.,]/}; }
generation() { # admin-url -> the generation /readyz reports, or "-"
  local out
  out=$(curl -s --max-time 5 "$1/readyz" 2>/dev/null || true)
  out=$(sed -n 's/.*"generation": *\([0-9]*\).*/\1/p' <<<"$out" | head -n 1)
  echo "${out:--}"
}
proc_cpu_ticks() { # pid -> utime+stime, all threads
  local line rest f
  read -r line < "/proc/$1/stat" || { echo 0; return; }
  rest=${line##*) }
  read -r -a f <<<"$rest"
  echo $((f[11] + f[12]))
}

# Appends one row to $RES/table: server n start rss-start rss-reload reload-s scrape-s wire-mb text-mb series scrape-cpu rss-scraped
measure_meridian() { # row-name binary n
  local row=$1 bin=$2 n=$3 dir port aport t0 t_ready i j gen admin rss0 rss1 rss2 worst=0 t1 t2 out
  local s_worst=0 wire=0 size=0 series=0 c0 c1
  dir=$WORK/$row-$n
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(pick_port); aport=$(pick_port)
  log "$row, $n names: writing the config"
  meridian_scale_config "$dir" "$n" "$port" "$aport"
  out=$("$bin" check --config "$dir/meridian.toml" 2>&1) || die "meridian check failed:"$'\n'"${out:0:2000}"
  wait_quiet
  log "$row, $n names: starting $bin"
  now_us; t0=$NOW
  MERIDIAN_LOG=${MERIDIAN_LOG:-warn} \
    "$bin" serve --config "$dir/meridian.toml" > "$dir/server.log" 2>&1 &
  SRV_PID=$!
  t_ready=""
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    if grep -q ' meridian::startup: ready' "$dir/server.log" 2>/dev/null; then
      now_us; t_ready=$NOW; break
    fi
    kill -0 "$SRV_PID" 2>/dev/null || { tail -n 20 "$dir/server.log" >&2; die "$row exited during start-up"; }
    sleep 0.1
  done
  [ -n "$t_ready" ] || die "$row did not log 'ready' within ${START_TIMEOUT}s"
  admin=$(sed -n 's/.* meridian::startup: admin API listening .*url=\(http:[^ ]*\).*/\1/p' "$dir/server.log" | head -n 1)
  [ -n "$admin" ] || die "$row is ready but did not log its admin URL; see $dir/server.log"
  [ -n "$(dig_short "$port" "g$((n - 1)).example.com" A)" ] || die "$row does not answer g$((n - 1)).example.com"
  rss0=$(server_rss_kb)
  for ((i = 1; i <= RELOADS; i++)); do
    gen=$(generation "$admin")
    now_us; t1=$NOW
    kill -HUP "$SRV_PID"
    t2=""
    for ((j = 0; j < START_TIMEOUT * 20; j++)); do
      if [ "$(generation "$admin")" != "$gen" ]; then now_us; t2=$NOW; break; fi
      kill -0 "$SRV_PID" 2>/dev/null || die "$row exited during reload $i; see $dir/server.log"
      sleep 0.05
    done
    [ -n "$t2" ] || die "$row: reload $i did not publish a new table within ${START_TIMEOUT}s; see $dir/server.log"
    [ $((t2 - t1)) -gt "$worst" ] && worst=$((t2 - t1))
  done
  sleep 1
  rss1=$(server_rss_kb)
  c0=$(proc_cpu_ticks "$SRV_PID")
  for ((i = 1; i <= SCRAPES; i++)); do
    now_us; t1=$NOW
    curl -s --max-time 600 -H 'Accept-Encoding: gzip' -D "$dir/metrics.head" -o "$dir/metrics.body" \
      "$admin/metrics" || die "$row: scrape $i failed"
    now_us; t2=$NOW
    [ $((t2 - t1)) -gt "$s_worst" ] && s_worst=$((t2 - t1))
  done
  c1=$(proc_cpu_ticks "$SRV_PID")
  wire=$(stat -c %s "$dir/metrics.body")
  if grep -qi '^content-encoding: *gzip' "$dir/metrics.head"; then
    gzip -dc < "$dir/metrics.body" > "$dir/metrics.txt" || die "$row: the scrape is not a whole gzip stream"
  else
    cp "$dir/metrics.body" "$dir/metrics.txt"
  fi
  size=$(stat -c %s "$dir/metrics.txt")
  series=$(grep -vc '^#' "$dir/metrics.txt" || true)
  sleep 1
  rss2=$(server_rss_kb)
  stop_server
  printf '%s %s %s %s %s %s %s %s %s %s %s %s\n' "$row" "$n" "$(secs $((t_ready - t0)))" "$(mb "$rss0")" \
    "$(mb "$rss1")" "$(secs "$worst")" "$(secs "$s_worst")" \
    "$(awk -v b="$wire" 'BEGIN { printf "%.1f", b / 1048576 }')" \
    "$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')" "$series" \
    "$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')" "$(mb "$rss2")" >> "$RES/table"
}

measure_gdnsd() { # n
  local n=$1 dir port t0 t_ready i rss0 rss1 worst=0 t1 t2
  dir=$WORK/gdnsd-$n
  rm -rf "$dir"; mkdir -p "$dir"
  port=$(pick_port)
  log "gdnsd, $n names: writing the config"
  gdnsd_scale_config "$dir" "$n" "$port"
  wait_quiet
  log "gdnsd, $n names: starting"
  now_us; t0=$NOW
  gdnsd -c "$dir/etc" start > "$dir/server.log" 2>&1 &
  SRV_PID=$!
  t_ready=""
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    if [ -n "$(dig_short "$port" "g$((n - 1)).example.com" A)" ]; then
      now_us; t_ready=$NOW; break
    fi
    kill -0 "$SRV_PID" 2>/dev/null || { tail -n 20 "$dir/server.log" >&2; die "gdnsd exited during start-up"; }
    sleep 0.2
  done
  [ -n "$t_ready" ] || die "gdnsd did not answer within ${START_TIMEOUT}s"
  rss0=$(server_rss_kb)
  for ((i = 1; i <= RELOADS; i++)); do
    now_us; t1=$NOW
    gdnsdctl -c "$dir/etc" reload-zones >> "$dir/reload.log" 2>&1 || die "gdnsd: reload $i failed; see $dir/reload.log"
    now_us; t2=$NOW
    [ $((t2 - t1)) -gt "$worst" ] && worst=$((t2 - t1))
  done
  sleep 1
  rss1=$(server_rss_kb)
  stop_server
  printf '%s %s %s %s %s %s %s %s %s %s %s %s\n' gdnsd "$n" "$(secs $((t_ready - t0)))" "$(mb "$rss0")" \
    "$(mb "$rss1")" "$(secs "$worst")" - - - - - - >> "$RES/table"
}

: > "$RES/table"
for n in $SIZES; do
  measure_meridian meridian "$MERIDIAN" "$n"
  [ -z "$MERIDIAN_BEFORE" ] || measure_meridian meridian-before "$MERIDIAN_BEFORE" "$n"
  if [ "$n" -le "$GDNSD_MAX" ]; then
    measure_gdnsd "$n"
  else
    log "gdnsd, $n names: skipped (GDNSD_MAX=$GDNSD_MAX)"
  fi
done

{
  echo
  echo "$ENDPOINTS endpoints per name, no health checks; $RELOADS reloads, $SCRAPES scrapes; sizes in MB"
  printf '%-16s %7s %8s %9s %10s %8s %8s %7s %7s %8s %7s %11s\n' server names "start s" "rss start" "rss reload" \
    "reload s" "scrape s" "wire MB" "text MB" series "cpu s" "rss scraped"
  while read -r a b c d e f g h i j k l; do
    printf '%-16s %7s %8s %9s %10s %8s %8s %7s %7s %8s %7s %11s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j" "$k" "$l"
  done < "$RES/table"
} | tee "$RES/scale.txt"
log "table: $RES/scale.txt"
