#!/usr/bin/env bash
# A fleet lab on one Linux machine: one etcd member and three Meridian instances (ns1, ns2,
# ns3), all on loopback, sharing evacuations and health through that etcd.
#
#   deploy/fleet/lab.sh up     [DIR]   start etcd and ns1..ns3; print how to use them
#   deploy/fleet/lab.sh status [DIR]   which processes are alive; each instance's readiness and fleet view
#   deploy/fleet/lab.sh down   [DIR]   stop what `up` started (by its recorded PIDs)
#
# DIR defaults to /tmp/meridian-fleet-lab and holds everything the lab writes: admin.token,
# lab.env (the addresses), etcd-data/, etcd.log, the PID files (etcd.pid, ns1.pid, ...) and
# per instance nsN/meridian.toml (generated), nsN/state/ (its state_dir) and nsN/meridian.log
# (its log, start-up lines included).
#
# Needs a meridian built with the etcd feature (cargo build --release --features etcd), the
# `etcd` binary (Debian: apt-get install etcd-server) and curl; dig and jq are optional.
# Environment: MERIDIAN=/path/to/meridian picks the binary, ETCD=/path/to/etcd the etcd.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
LAB_SH="$REPO/deploy/fleet/lab.sh"
BASE_CONFIG="$REPO/config/meridian.toml"
DEFAULT_DIR=/tmp/meridian-fleet-lab
MARKER=.meridian-fleet-lab
INSTANCES=(ns1 ns2 ns3)
PREFIX=/meridian-lab/
READY_TIMEOUT=30 # seconds each process gets to come up
STOP_TIMEOUT=10  # seconds each process gets to exit on SIGTERM before SIGKILL
US_CLIENT=11.0.0.0/24 # the test GeoIP fixture places 11.0.0.0/16 in the US (Ashburn)
EU_CLIENT=12.0.0.0/24 # and 12.0.0.0/16 in Germany

say() { printf '%s\n' "$*"; }
warn() { printf 'lab.sh: %s\n' "$*" >&2; }
die() {
    warn "$*"
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $0 up|status|down [DIR]

  up      start one etcd and three Meridian instances (ns1..ns3) on loopback
  status  show which lab processes are alive, and each instance's /readyz and /v1/cluster
  down    stop the processes 'up' started (by their recorded PIDs)

DIR defaults to $DEFAULT_DIR.
Environment: MERIDIAN=/path/to/meridian (a build with --features etcd), ETCD=/path/to/etcd.
EOF
    exit 2
}

# --- processes ---------------------------------------------------------------------------

# True while PID runs (a zombie waiting to be reaped counts as gone).
alive() {
    local pid=$1 state
    [[ -r /proc/$pid/stat ]] || return 1
    state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

# True if PID is a process this lab started: its command line names a path inside DIR, so
# a PID reused by an unrelated process after ours exited is never signalled.
ours() {
    local pid=$1 cmdline
    alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *" $DIR/"* ]]
}

# Reads DIR/NAME.pid; prints the PID if the file holds one.
recorded_pid() {
    local file="$DIR/$1.pid" pid
    [[ -f $file ]] || return 1
    pid=$(head -n1 "$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$pid"
}

# Waits (bounded) for PID to exit; true if it did.
wait_exit() {
    local pid=$1 seconds=$2 i deadline=$((SECONDS + $2))
    for ((i = 0; i < seconds * 10 && SECONDS <= deadline; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    ! alive "$pid"
}

# Stops the process recorded in DIR/NAME.pid, if it is still ours, and forgets it.
stop_recorded() {
    local name=$1 pid
    if ! pid=$(recorded_pid "$name"); then
        rm -f "$DIR/$name.pid"
        return 0
    fi
    if ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        if wait_exit "$pid" "$STOP_TIMEOUT"; then
            say "stopped $name (pid $pid)"
        else
            warn "$name (pid $pid) did not exit ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_exit "$pid" 5 || warn "$name (pid $pid) is still running"
        fi
    elif alive "$pid"; then
        warn "$name: pid $pid is no longer a lab process; leaving it alone"
    else
        say "$name (pid $pid) was not running"
    fi
    rm -f "$DIR/$name.pid"
}

# Starts a command in its own session (so closing the terminal does not signal it), with
# stdout and stderr in files; records and prints its PID.
start_detached() {
    local name=$1 out=$2 err=$3 pid
    shift 3
    if command -v setsid >/dev/null; then
        setsid "$@" </dev/null >"$out" 2>"$err" &
    else
        nohup "$@" </dev/null >"$out" 2>"$err" &
    fi
    pid=$!
    printf '%s\n' "$pid" >"$DIR/$name.pid"
    printf '%s\n' "$pid"
}

# --- the lab directory -------------------------------------------------------------------

# Resolves DIR to an absolute path; with "create", makes it (refusing a non-empty directory
# that is not a lab directory).
set_dir() {
    local dir=${1:-$DEFAULT_DIR} mode=$2
    if [[ $mode == create ]]; then
        if [[ -d $dir && ! -e $dir/$MARKER ]] && [[ -n $(ls -A "$dir") ]]; then
            die "$dir exists, is not empty and is not a lab directory; pick another DIR"
        fi
        mkdir -p "$dir"
    elif [[ ! -e $dir/$MARKER ]]; then
        die "$dir is not a lab directory (no $MARKER in it); nothing to do"
    fi
    DIR=$(cd "$dir" && pwd -P)
    [[ $DIR != / ]] || die "refusing to use / as the lab directory"
}

# Values recorded by `up` in DIR/lab.env (KEY=value lines).
lab_get() {
    [[ -f $DIR/lab.env ]] || return 1
    sed -n "s/^$1=//p" "$DIR/lab.env" | head -n1
}

# --- up ----------------------------------------------------------------------------------

# The meridian to run: MERIDIAN, else target/release or target/debug (CARGO_TARGET_DIR
# first when set) whose `check` accepts the generated config (a build without the etcd
# feature refuses [cluster]).
pick_meridian() {
    local config=$1 candidates=() c out
    if [[ -n ${MERIDIAN:-} ]]; then
        candidates=("$MERIDIAN")
    else
        if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
            candidates+=("$CARGO_TARGET_DIR/release/meridian" "$CARGO_TARGET_DIR/debug/meridian")
        fi
        candidates+=("$REPO/target/release/meridian" "$REPO/target/debug/meridian")
    fi
    local tried=0
    for c in "${candidates[@]}"; do
        [[ -x $c ]] || continue
        tried=1
        if out=$("$c" check --config "$config" 2>&1); then
            MERIDIAN_BIN=$c
            return 0
        fi
        warn "$c cannot run the lab config:"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
    done
    if ((tried == 0)); then
        warn "no meridian binary found (looked for: ${candidates[*]})"
    fi
    warn "build one with the etcd feature (needs protoc: apt-get install protobuf-compiler libprotobuf-dev), from $REPO:"
    warn "    cargo build --release --features etcd --bin meridian"
    warn "or point MERIDIAN=/path/to/meridian at such a build"
    exit 1
}

# The base config's [geoip] database line with every relative path made absolute (relative
# paths are taken from the base config's directory).
geoip_line() {
    local line value q list=0 quoted=()
    line=$(sed -n '/^\[geoip\]/,/^\[/{/^database[[:space:]]*=/p}' "$BASE_CONFIG" | head -n1)
    [[ -n $line ]] || die "$BASE_CONFIG has no [geoip] database line"
    value=${line#*=}
    [[ $value =~ ^[[:space:]]*\[ ]] && list=1
    if ((list)) && [[ $value != *\]* ]]; then
        die "$BASE_CONFIG: write [geoip] database on one line for the lab"
    fi
    while IFS= read -r q; do
        q=${q#\"}
        q=${q%\"}
        [[ $q == /* ]] || q=$(realpath -m "$(dirname "$BASE_CONFIG")/$q")
        [[ -f $q ]] || die "GeoIP database $q (from $BASE_CONFIG) does not exist"
        quoted+=("\"$q\"")
    done < <(grep -o '"[^"]*"' <<<"$value")
    ((${#quoted[@]} > 0)) || die "$BASE_CONFIG: cannot read the [geoip] database path"
    if ((list)); then
        local IFS=,
        printf 'database = [%s]\n' "${quoted[*]}"
    else
        printf 'database = %s\n' "${quoted[0]}"
    fi
}

# Writes DIR/NAME/meridian.toml: the example config with loopback listeners on ports the kernel
# picks, this instance's state_dir, the shared token, absolute GeoIP and zone file paths and
# [cluster].
write_config() {
    local name=$1 etcd_url=$2 db=$3
    if grep -q '^\[cluster\]' "$BASE_CONFIG"; then
        die "$BASE_CONFIG already has a [cluster] section"
    fi
    {
        # Every instance's file is the same but for [cluster] name (paths are relative to
        # its own directory), as in a real fleet.
        say "# Generated by deploy/fleet/lab.sh from config/meridian.toml; the lab sets [server]'s"
        say "# listeners, state_dir and admin_token_file, the [geoip] and zone file paths and [cluster]. Port 0:"
        say "# the kernel picks free ports; meridian prints them and ../lab.env records them."
        awk -v db="$db" -v confdir="$(dirname "$BASE_CONFIG")" '
            /^\[/ {
                section = $0
                print
                if (section == "[server]") {
                    print "dns_listen = [\"127.0.0.1:0\"]"
                    print "admin_listen = \"127.0.0.1:0\""
                    print "state_dir = \"state\""
                    print "admin_token_file = \"../admin.token\""
                }
                next
            }
            section == "[server]" && /^(dns_listen|admin_listen|state_dir|admin_token_file|read_token_file)[[:space:]]*=/ { next }
            section == "[geoip]" && /^database[[:space:]]*=/ { print db; next }
            section == "[[zones]]" && /^file[[:space:]]*=[[:space:]]*"[^\/]/ {
                sub(/"/, "\"" confdir "/")
                print
                next
            }
            { print }
        ' "$BASE_CONFIG"
        cat <<EOF

[cluster]
backend = "etcd"
endpoints = ["$etcd_url"]
prefix = "$PREFIX"
name = "$name"
EOF
    } >"$DIR/$name/meridian.toml"
}

# True if something listens on 127.0.0.1:PORT (TCP).
port_busy() {
    local port=$1
    if command -v ss >/dev/null; then
        [[ -n $(ss -Htln "sport = :$port" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

# Starts etcd on the first free pair of loopback ports from 23790 on; sets ETCD_URL.
start_etcd() {
    local etcd_bin=$1 client peer pid attempt=0 i
    for ((client = 23790; client < 23990; client += 2)); do
        peer=$((client + 1))
        port_busy "$client" || port_busy "$peer" || {
            attempt=$((attempt + 1))
            ETCD_URL="http://127.0.0.1:$client"
            local peer_url="http://127.0.0.1:$peer"
            rm -rf "$DIR/etcd-data"
            pid=$(start_detached etcd /dev/null "$DIR/etcd.log" \
                "$etcd_bin" --name lab --data-dir "$DIR/etcd-data" \
                --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
                --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
                --initial-cluster "lab=$peer_url" --initial-cluster-state new \
                --initial-cluster-token meridian-fleet-lab \
                --logger zap --log-outputs stderr)
            local deadline=$((SECONDS + READY_TIMEOUT))
            for ((i = 0; i < READY_TIMEOUT * 5 && SECONDS <= deadline; i++)); do
                if curl -fsS --max-time 1 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; then
                    say "etcd  ready on $ETCD_URL (pid $pid)"
                    return 0
                fi
                alive "$pid" || break
                sleep 0.2
            done
            if alive "$pid"; then
                stop_recorded etcd
                die "etcd did not become healthy within ${READY_TIMEOUT}s; see $DIR/etcd.log"
            fi
            warn "etcd exited on port $client (taken meanwhile?):"
            tail -n 5 "$DIR/etcd.log" | sed 's/^/    /' >&2
            rm -f "$DIR/etcd.pid"
            ((attempt < 3)) || die "etcd failed to start 3 times; see $DIR/etcd.log"
        }
    done
    die "no free pair of loopback ports for etcd between 23790 and 23989"
}

# Waits (bounded) for NAME to log `ready`; then records its addresses from its start-up lines.
wait_ready() {
    local name=$1 pid=$2 out="$DIR/$1/meridian.log" i dns admin deadline=$((SECONDS + READY_TIMEOUT))
    for ((i = 0; i < READY_TIMEOUT * 5 && SECONDS <= deadline; i++)); do
        if grep -q ' meridian::startup: ready' "$out" 2>/dev/null; then
            dns=$(sed -n 's/.* meridian::startup: serving DNS .*addr=\([^ ]*\).*/\1/p' "$out" | head -n1)
            admin=$(sed -n 's|.* meridian::startup: admin API listening .*url=\(http://[^ ]*\).*|\1|p' "$out" | head -n1)
            [[ -n $dns && -n $admin ]] || die "$name is ready but did not log its addresses; see $out"
            {
                say "${name}_DNS=$dns"
                say "${name}_ADMIN=$admin"
            } >>"$DIR/lab.env"
            say "$name   ready: DNS on $dns, admin API on $admin (pid $pid)"
            return 0
        fi
        if ! alive "$pid"; then
            warn "$name exited before it was ready; the end of $DIR/$name/meridian.log:"
            tail -n 20 "$DIR/$name/meridian.log" | sed 's/^/    /' >&2
            exit 1
        fi
        sleep 0.2
    done
    die "$name did not log 'ready' within ${READY_TIMEOUT}s; see $DIR/$name/meridian.log"
}

# How many live peers an instance's /v1/cluster lists, and whether it is connected.
cluster_summary() {
    local body
    body=$(curl -fsS --max-time 2 "$1/v1/cluster" 2>/dev/null) || return 1
    if command -v jq >/dev/null; then
        jq -r '"\(.status.connected) \(.status.peers | length)"' <<<"$body"
    else
        awk '
            /"connected": true/ { c = "true" }
            /"connected": false/ { c = "false" }
            /"peers": \{/ { inside = 1; next }
            inside && /\}/ { inside = 0 }
            inside { n++ }
            END { print (c == "" ? "false" : c), n + 0 }
        ' <<<"$body"
    fi
}

# Waits (bounded) until every instance is connected to etcd and sees the other two.
wait_fleet() {
    local i name admin summary pending deadline=$((SECONDS + READY_TIMEOUT))
    for ((i = 0; i < READY_TIMEOUT * 5 && SECONDS <= deadline; i++)); do
        pending=()
        for name in "${INSTANCES[@]}"; do
            admin=$(lab_get "${name}_ADMIN")
            summary=$(cluster_summary "$admin") || summary=""
            [[ $summary == "true $((${#INSTANCES[@]} - 1))" ]] || pending+=("$name")
        done
        if ((${#pending[@]} == 0)); then
            say "fleet: every instance is connected to etcd and sees the other $((${#INSTANCES[@]} - 1))"
            return 0
        fi
        sleep 0.2
    done
    warn "after ${READY_TIMEOUT}s, ${pending[*]} still do not see the whole fleet; check '$LAB_SH status $DIR'"
}

UP_DONE=0
up_failed() {
    ((UP_DONE)) && return 0
    warn "start-up failed; stopping what was started (logs stay in $DIR)"
    local name
    for name in "${INSTANCES[@]}" etcd; do
        stop_recorded "$name" >/dev/null 2>&1 || true
    done
}

cmd_up() {
    set_dir "${1:-}" create
    local name
    for name in etcd "${INSTANCES[@]}"; do
        local pid
        if pid=$(recorded_pid "$name") && ours "$pid"; then
            die "the lab in $DIR is running ($name is pid $pid); '$LAB_SH down $DIR' first"
        fi
    done
    command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
    local etcd_bin=${ETCD:-}
    if [[ -z $etcd_bin ]]; then
        etcd_bin=$(command -v etcd) || die "etcd is not installed: apt-get install etcd-server (or set ETCD=/path/to/etcd)"
    fi
    [[ -x $etcd_bin ]] || die "$etcd_bin is not executable"

    # A fresh lab each time: clear what an earlier run of `up` left here, and nothing else.
    touch "$DIR/$MARKER"
    rm -rf "$DIR/etcd-data" "$DIR/etcd.log" "$DIR/lab.env" "$DIR"/*.pid
    for name in "${INSTANCES[@]}"; do
        rm -rf "${DIR:?}/$name"
    done
    (
        umask 077
        head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/admin.token"
    )

    # Configs first, so a binary without the etcd feature is caught before anything starts.
    # The etcd port is not known yet; check with a placeholder, then write the real ones.
    local db
    db=$(geoip_line)
    for name in "${INSTANCES[@]}"; do
        mkdir -p "$DIR/$name/state"
    done
    write_config ns1 "http://127.0.0.1:2379" "$db"
    MERIDIAN_BIN=""
    pick_meridian "$DIR/ns1/meridian.toml"
    say "meridian: $MERIDIAN_BIN"

    trap up_failed EXIT
    start_etcd "$etcd_bin"
    say "ETCD_URL=$ETCD_URL" >"$DIR/lab.env"
    for name in "${INSTANCES[@]}"; do
        write_config "$name" "$ETCD_URL" "$db"
    done
    local -A pids=()
    for name in "${INSTANCES[@]}"; do
        pids[$name]=$(start_detached "$name" /dev/null "$DIR/$name/meridian.log" \
            "$MERIDIAN_BIN" serve --config "$DIR/$name/meridian.toml")
    done
    for name in "${INSTANCES[@]}"; do
        wait_ready "$name" "${pids[$name]}"
    done
    wait_fleet
    UP_DONE=1
    trap - EXIT
    print_instructions
}

print_instructions() {
    local n1_dns n1_admin ports=() name dns
    n1_dns=$(lab_get ns1_DNS)
    n1_admin=$(lab_get ns1_ADMIN)
    for name in "${INSTANCES[@]}"; do
        dns=$(lab_get "${name}_DNS")
        ports+=("${dns##*:}")
    done
    local n3_admin
    n3_admin=$(lab_get ns3_ADMIN)
    say ""
    say "The fleet lab is up in $DIR:"
    printf '  %-5s %-57s pid %s\n' etcd "$ETCD_URL" "$(recorded_pid etcd)"
    for name in "${INSTANCES[@]}"; do
        printf '  %-5s DNS %-17s admin API %-25s pid %s\n' "$name" "$(lab_get "${name}_DNS")" \
            "$(lab_get "${name}_ADMIN")" "$(recorded_pid "$name")"
    done
    cat <<EOF
Configs: $DIR/nsN/meridian.toml; logs: $DIR/nsN/meridian.log and $DIR/etcd.log.
The example zone and services are config/meridian.toml's; the GeoIP data is the test
fixture, in which $US_CLIENT is a US client and $EU_CLIENT a German one.

1. Ask each instance for www.example.com as a US client (each answers 192.0.2.10, us-east):

EOF
    for name in "${INSTANCES[@]}"; do
        dns=$(lab_get "${name}_DNS")
        say "   dig @127.0.0.1 -p ${dns##*:} www.example.com A +subnet=$US_CLIENT +short    # $name"
    done
    cat <<EOF

   +nsid names the instance that answered (fleet mode sets NSID to its [cluster] name):

   dig @127.0.0.1 -p ${n1_dns##*:} www.example.com A +subnet=$US_CLIENT +nsid +norec

2. Evacuate us-east through ns1's admin API; etcd carries it to ns2 and ns3:

   TOKEN=\$(cat $DIR/admin.token)
   curl -s -X POST -H "Authorization: Bearer \$TOKEN" -d '{"reason": "lab drill"}' \\
       $n1_admin/v1/regions/us-east/evacuate

   Then every instance sends the US client to the next region, eu-west (198.51.100.10):

   for p in ${ports[*]}; do dig @127.0.0.1 -p \$p www.example.com A +subnet=$US_CLIENT +short; done

   Each instance's view of the evacuation (who, when, why):

   curl -s $(lab_get ns2_ADMIN)/v1/regions | jq '.regions[] | {name, evacuated, evacuation}'

3. Restore it, through any instance (here ns3), and the answers move back:

   curl -s -X POST -H "Authorization: Bearer \$TOKEN" $n3_admin/v1/regions/us-east/restore
   for p in ${ports[*]}; do dig @127.0.0.1 -p \$p www.example.com A +subnet=$US_CLIENT +short; done

4. The fleet as one instance sees it (connection, revisions, live peers, config drift):

   curl -s $n1_admin/v1/cluster
   $LAB_SH status $DIR

   The instances' files differ only in [cluster] name, which the config hash leaves
   out: "drifted" is empty. Edit one file and reload that instance to see it listed.

5. Stop the lab (logs and data stay in $DIR; remove it yourself when done):

   $LAB_SH down $DIR
EOF
}

# --- status ------------------------------------------------------------------------------

cmd_status() {
    set_dir "${1:-}" existing
    local name pid etcd_url
    etcd_url=$(lab_get ETCD_URL) || etcd_url=""
    if pid=$(recorded_pid etcd) && ours "$pid"; then
        local health
        health=$(curl -fsS --max-time 2 "$etcd_url/health" 2>/dev/null) || health="no answer"
        say "etcd  running (pid $pid) on $etcd_url: /health $health"
    else
        say "etcd  not running${etcd_url:+ (was $etcd_url)}"
    fi
    for name in "${INSTANCES[@]}"; do
        local dns admin
        dns=$(lab_get "${name}_DNS") || dns=""
        admin=$(lab_get "${name}_ADMIN") || admin=""
        if ! { pid=$(recorded_pid "$name") && ours "$pid"; }; then
            say "$name   not running"
            continue
        fi
        say "$name   running (pid $pid): DNS on ${dns:-?}, admin API on ${admin:-?}"
        [[ -n $admin ]] || continue
        local code readyz cluster regions
        readyz=$(curl -sS --max-time 2 -w '\n%{http_code}' "$admin/readyz" 2>/dev/null) || readyz=$'\n000'
        code=${readyz##*$'\n'}
        readyz=${readyz%$'\n'*}
        cluster=$(curl -fsS --max-time 2 "$admin/v1/cluster" 2>/dev/null) || cluster=""
        regions=$(curl -fsS --max-time 2 "$admin/v1/regions" 2>/dev/null) || regions=""
        if command -v jq >/dev/null; then
            jq -r --arg code "$code" \
                '"      /readyz      \($code): ready \(.ready), degraded \(.degraded), generation \(.generation)"' \
                <<<"${readyz:-null}" 2>/dev/null || say "      /readyz      $code"
            if [[ -n $cluster ]]; then
                jq -r '.status as $s |
                    "      /v1/cluster  connected \($s.connected), revision applied \($s.applied_revision) of \($s.store_revision), peers \($s.peers | keys | join(",") | if . == "" then "none" else . end), drifted \(.drifted | join(",") | if . == "" then "none" else . end)" +
                    (if $s.last_error then ", last error: \($s.last_error)" else "" end)' <<<"$cluster"
            else
                say "      /v1/cluster  no answer"
            fi
            if [[ -n $regions ]]; then
                jq -r '"      evacuated    " + ([.regions[] | select(.evacuated) | "\(.name) (\(.evacuation.reason // "no reason"), by \(.evacuation.by))"] | if length == 0 then "none" else join(", ") end)' <<<"$regions"
            fi
        else
            say "      /readyz      $code"
            grep -E '"(ready|degraded|generation)"' <<<"$readyz" | head -n3 | sed 's/^ */        /'
            say "      /v1/cluster"
            grep -E '"(connected|applied_revision|store_revision|last_error)"' <<<"$cluster" | sed 's/^ */        /'
            say "        (install jq for peers, drift and evacuations)"
        fi
    done
}

# --- down --------------------------------------------------------------------------------

cmd_down() {
    set_dir "${1:-}" existing
    local name any=0
    # Instances first, so none of them logs losing etcd on the way down.
    for name in "${INSTANCES[@]}" etcd; do
        if [[ -f $DIR/$name.pid ]]; then
            any=1
            stop_recorded "$name"
        fi
    done
    ((any)) || say "nothing recorded as running in $DIR"
    say "logs, configs and data stay in $DIR"
}

(($# >= 1 && $# <= 2)) || usage
case $1 in
up) cmd_up "${2:-}" ;;
status) cmd_status "${2:-}" ;;
down) cmd_down "${2:-}" ;;
*) usage ;;
esac
