#!/usr/bin/env bash
# Geo copy benchmark (issue 8; see README.md in this folder): the coordinator's copy of a DONE
# backup from worker east-1 to a worker at another site, next to rsync of the same PostgreSQL
# data directory over the same link, on loopback and over a link with a round-trip delay.
#
#   tests/bench/replicate.sh [--scale N] [--delay-ms MS] [--method auto|netem|proxy]
#                            [--proxy-buffer-kib N] [--timeout S] [--check]
#
#   --scale N             pgbench -i -s N (default 100: a data directory of about 1.5 GB)
#   --delay-ms MS         the round-trip time of the delayed link (default 50)
#   --method M            how the delay is made: netem (tc netem on a veth pair into a network
#                         namespace of this script), proxy (tests/bench/delay_proxy.c on
#                         loopback), auto (default: netem when the kernel has it, else proxy)
#   --proxy-buffer-kib N  bytes the delay proxy holds per direction and connection (default
#                         16384: a connection carries at most N KiB per RTT/2)
#   --timeout S           bound of every copy, rsync and backup (default max(300, 8 x scale))
#   --check               also assert outcomes (ctest bench.replicate_smoke): every copy DONE,
#                         every rsync exited 0, the delayed copies went through the link, the
#                         summary has every line. Never a speed.
#
# Steps: (a) a PostgreSQL 15 cluster from the integration harness, pgbench -i -s N, CHECKPOINT
# (max_wal_size 128MB); a coordinator and three workers, one per site, each with its own store
# and data port and one store master key: east-1 (site east, the cluster's), west-1 (west) and
# far-1 (far), `replicate_to = west, far`; an rsync daemon (read-only module on the data
# directory, pg_wal/ and the files pg_basebackup leaves out excluded) on 127.0.0.1.
# (b) loopback: backup 1 at east; the coordinator copies it to west-1 by itself (far-1 is not
# started yet); rsync -a of the data directory from the daemon into an empty directory.
# (c) the delayed link: east-1 restarted with data_advertise = the link's end in front of its
# data port, far-1 started: it copies backup 1 through the link; rsync through the link (in
# front of the daemon) into another empty directory. (d) far-1 stopped; UPDATE 0.1% of
# pgbench_accounts (every 1000th aid), CHECKPOINT, backup 2, copied to west-1 through the link;
# then rsync through the link into (b)'s directory, so its delta algorithm applies.
# Figures: MB/s = data bytes / duration (the copy's duration_ms, the worker's own; rsync's wall
# time); bytes sent = the copy's bytes_fetched, rsync's "Total bytes received". A benchmark, not
# a timed test: a goal that is missed prints FAIL, and the script still exits 0.
#
# Environment:
#   BQ_BIN_COORDINATOR, BQ_BIN_WORKER, BQ_BIN_CLI  the Barque binaries (ctest sets them), or
#   BQ_BUILD          the CMake build dir they are taken from
#   BQ_DELAY_PROXY    bench_delay_proxy (default: $BQ_BUILD/tests/bench/bench_delay_proxy)
#   BQ_TMPROOT        where the scratch dir is made (default /tmp); it needs about 5 times the
#                     data directory free (the data, three stores, two rsync copies)
#   BQ_KEEP=1         keep the scratch dir
# Needs root or the postgres user (PostgreSQL runs as postgres), rsync, python3, timeout; root
# and `ip` for the netem method.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../integration/lib.sh
source "$root/tests/integration/lib.sh"
# shellcheck source=../integration/fleet.sh
source "$root/tests/integration/fleet.sh"
# shellcheck source=../integration/backup.sh
source "$root/tests/integration/backup.sh"

scale=100
delay_ms=50
method=auto
proxy_buf_kib=16384
tmo=
check=0
while (($#)); do
    case $1 in
    --scale) scale=$2; shift 2 ;;
    --delay-ms) delay_ms=$2; shift 2 ;;
    --method) method=$2; shift 2 ;;
    --proxy-buffer-kib) proxy_buf_kib=$2; shift 2 ;;
    --timeout) tmo=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h | --help) sed -n '2,/^here=/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "replicate.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $scale =~ ^[0-9]+$ && $scale -ge 1 ]] || { echo "replicate.sh: --scale $scale: a positive integer" >&2; exit 2; }
[[ $delay_ms =~ ^[0-9]+$ && $delay_ms -ge 2 && $delay_ms -le 10000 ]] || { echo "replicate.sh: --delay-ms $delay_ms: 2..10000" >&2; exit 2; }
[[ $method =~ ^(auto|netem|proxy)$ ]] || { echo "replicate.sh: --method $method: auto, netem or proxy" >&2; exit 2; }
[[ $proxy_buf_kib =~ ^[0-9]+$ && $proxy_buf_kib -ge 4 ]] || { echo "replicate.sh: --proxy-buffer-kib $proxy_buf_kib: at least 4" >&2; exit 2; }
[[ -z $tmo ]] && tmo=$((scale * 8 > 300 ? scale * 8 : 300))
[[ $tmo =~ ^[0-9]+$ && $tmo -ge 10 ]] || { echo "replicate.sh: --timeout $tmo: at least 10" >&2; exit 2; }

bq_require_bins
proxy_bin=${BQ_DELAY_PROXY:-${BQ_BUILD:+$BQ_BUILD/tests/bench/bench_delay_proxy}}
[[ -n $proxy_bin && -x $proxy_bin ]] ||
    fail "BQ_DELAY_PROXY is not set to bench_delay_proxy (ctest sets it; by hand, set BQ_BUILD)"
for tool in rsync python3 timeout find awk df ss; do
    command -v "$tool" >/dev/null || { echo "replicate.sh: $tool is not installed (deploy/install-deps.sh)" >&2; exit 2; }
done
for tool in pgbench pg_ctl; do
    [[ -x $BQ_PGBIN/$tool ]] || { echo "replicate.sh: $BQ_PGBIN/$tool is missing (postgresql-15)" >&2; exit 2; }
done

# ---- helpers (as in backup.sh) ------------------------------------------------------------------

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
mb() { calc "$1 / 1e6" 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
gitstate() {
    local h d
    h=$(git -C "$root" log -1 --format=%h 2>/dev/null || echo "?")
    d=$(git -C "$root" diff --stat -- worker/ store/ coordinator/ 2>/dev/null | awk '/\|/ { printf "%s%s", n++ ? ", " : "", $1 } END { if (!n) printf "unmodified" }')
    echo "commit $h; modified in worker/ store/ coordinator/: $d"
}
bytes_of_tree() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }
# goal VALUE LIMIT OP: PASS or FAIL
goal() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= g : v <= g; print ok ? "PASS" : "FAIL" }'; }
cli() { timeout 60 "$BQ_BIN_CLI" -c "$FLEET/cli.conf" "$@"; }

summary=() # "key: value" lines, printed together at the end
sum() { summary+=("$1: $2"); }

bq_tmpdir
work=$BQ_TMP
chmod 755 "$work"

echo "# replicate.sh: $(date -u +%FT%TZ), $(nproc) CPUs, load $(load)"
echo "# $(gitstate)"
newer=$(find "$root/worker" "$root/store" "$root/coordinator" -name '*.[ch]' -newer "$BQ_BIN_WORKER" -printf '%f ' 2>/dev/null || true)
[[ -z $newer ]] || echo "# note: changed since $BQ_BIN_WORKER was built: ${newer% } (rebuild to measure the current code)"
sum git_at_start "$(gitstate)"
sum tools "$(rsync --version | sed -n '1 { s/  */ /g; p }'), PostgreSQL $("$BQ_PGBIN/postgres" --version | awk '{ print $3 }'), $(nproc) CPUs, kernel $(uname -r)"

# ---- free space -------------------------------------------------------------------------------

tmproot=${BQ_TMPROOT:-/tmp}
avail=$(df -B1 --output=avail "$tmproot" | tail -n 1 | tr -d ' ')
est=$((scale * 16000000 + 150000000))
need=$((est * 5 + 500000000))
echo "# free space in $tmproot: $(calc "$avail / 1e9" 1) GB; this run needs about $(calc "$need / 1e9" 1) GB"
((avail >= need)) || fail "not enough free space in $tmproot: $(calc "$avail / 1e9" 1) GB free, about $(calc "$need / 1e9" 1) GB needed; set BQ_TMPROOT or lower --scale"

# ---- (a) the cluster ------------------------------------------------------------------------------

t0=$(now)
pg_start main >/dev/null
pg_psql main -c "ALTER SYSTEM SET max_wal_size = '128MB'" -c "SELECT pg_reload_conf()" >/dev/null
if ! timeout "$((tmo * 3))" "$BQ_PGBIN/pgbench" -i -q -s "$scale" "$(pg_conninfo main)" >"$work/pgbench-init.log" 2>&1; then
    tail -n 20 "$work/pgbench-init.log" >&2
    fail "pgbench -i -s $scale failed or took more than $((tmo * 3)) s (log $work/pgbench-init.log)"
fi
# The load's WAL is not copied: the WAL copies start after it.
pg_psql main -c CHECKPOINT -c "SELECT pg_switch_wal()" -c CHECKPOINT >/dev/null
conn=$(pg_conninfo main)
# shellcheck disable=SC2154
data=$PG_DATA_main # (set by pg_start)
echo "# pgbench -i -s $scale and CHECKPOINT: $(elapsed "$t0" "$(now)") s"
sum data_set "pgbench -i -s $scale (PostgreSQL $(cat "$data/PG_VERSION"), data checksums, max_wal_size 128MB), running and idle during the first copies"

# ---- the delayed link: netem on a veth pair, or the delay proxy ------------------------------

# link_up: sets method (netem or proxy), link_host (where a client reaches the link's far end)
# and link_why (why not netem). proxy_start NAME TARGET_PORT then prints the port of a new end
# of the link in front of 127.0.0.1:TARGET_PORT: with netem a bench_delay_proxy without delay
# listening in the namespace (its packets cross the veth, delayed RTT/2 each way by netem),
# else one on 127.0.0.1 that holds what it forwards RTT/2 each way.
link_why=
link_up() {
    local out half_us=$((delay_ms * 500))
    if [[ $method == proxy ]]; then
        link_why="--method proxy"
    elif ((EUID != 0)); then
        link_why="not root: no network namespaces"
    elif ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
        link_why="ip or tc (iproute2) is not installed"
    else
        lns=bqrep-$$ lva=bqr${$}a lvb=bqr${$}b # interface names: at most 15 characters
        lnet=10.254.$(($$ % 250))
        if out=$(ip netns add "$lns" 2>&1); then
            bq_on_cleanup "ip netns del '$lns' 2>/dev/null; ip link del '$lva' 2>/dev/null"
            if out=$({ ip link add "$lva" type veth peer name "$lvb" netns "$lns" &&
                ip addr add "$lnet.1/30" dev "$lva" && ip link set "$lva" up &&
                ip -n "$lns" addr add "$lnet.2/30" dev "$lvb" && ip -n "$lns" link set "$lvb" up &&
                ip -n "$lns" link set lo up; } 2>&1); then
                if out=$({ tc qdisc add dev "$lva" root netem delay "${half_us}us" limit 100000 &&
                    tc -n "$lns" qdisc add dev "$lvb" root netem delay "${half_us}us" limit 100000; } 2>&1); then
                    method=netem
                    link_host=$lnet.2
                    return 0
                fi
                link_why="tc qdisc add dev $lva root netem delay ${half_us}us said: $(echo "$out" | head -n 1)"
            else
                link_why="the veth pair could not be made: $(echo "$out" | head -n 1)"
            fi
            ip netns del "$lns" 2>/dev/null || true
            ip link del "$lva" 2>/dev/null || true
        else
            link_why="ip netns add said: $(echo "$out" | head -n 1)"
        fi
    fi
    [[ $method != netem ]] || fail "--method netem: $link_why"
    method=proxy
    link_host=127.0.0.1
}
proxy_start() {
    local name=$1 target=$2 port pid i
    port=$(bq_free_port)
    # The link is not to wait for a CPU behind the tools it carries: a higher priority as root.
    local nice=()
    ((EUID != 0)) || nice=(nice -n -10)
    if [[ $method == netem ]]; then
        pid=$(bq_spawn "proxy-$name" "${nice[@]}" "$proxy_bin" --listen "$link_host:$port" --listen-netns "$lns" \
            --target "127.0.0.1:$target" --delay-ms 0 --buffer-kib "$proxy_buf_kib" --stats "$work/proxy-$name.stats")
    else
        pid=$(bq_spawn "proxy-$name" "${nice[@]}" "$proxy_bin" --listen "127.0.0.1:$port" --target "127.0.0.1:$target" \
            --delay-ms "$delay_ms" --buffer-kib "$proxy_buf_kib" --stats "$work/proxy-$name.stats")
    fi
    for ((i = 0; i < 50; i++)); do
        [[ -s $work/proxy-$name.stats ]] && break
        bq_pid_alive "$pid" || break
        sleep 0.1
    done
    [[ -s $work/proxy-$name.stats ]] || { cat "$work/proxy-$name.log" >&2; fail "the delay proxy $name did not start"; }
    echo "$pid" >"$work/proxy-$name.pid"
    echo "$port"
}
# pstat NAME KEY: one counter of proxy NAME's stats file, as of the last psnap NAME.
pstat() { awk -v k="$2" '$1 == k { print $2 }' "$work/proxy-$1.stats"; }
# psnap NAME: have proxy NAME write its stats file now (SIGUSR1; it writes no other time while
# it runs, so that it never waits for the disk while it carries a copy); waits up to 5 s.
psnap() {
    local s0 pid i
    s0=$(pstat "$1" serial)
    pid=$(cat "$work/proxy-$1.pid")
    kill -USR1 "$pid"
    for ((i = 0; i < 50; i++)); do
        [[ $(pstat "$1" serial) == "$s0" ]] || return 0
        sleep 0.1
    done
    fail "the delay proxy $1 (PID $pid) did not write its stats within 5 s"
}

link_up
if [[ $method == netem ]]; then
    link_desc="netem: tc netem delay $(calc "$delay_ms / 2" 1) ms on each end of a veth pair into network namespace $lns ($lnet.1 <-> $lnet.2), bench_delay_proxy --delay-ms 0 listening in the namespace in front of each loopback port"
else
    link_desc="proxy: bench_delay_proxy on 127.0.0.1 holding each read $(calc "$delay_ms / 2" 1) ms each way, at most $proxy_buf_kib KiB per direction and connection (netem unavailable: $link_why)"
fi
echo "# delayed link: $link_desc"

# ---- the fleet ------------------------------------------------------------------------------------

# shellcheck disable=SC2034 # (both read by fleet_init)
FLEET_JOB_LEASE=60s
# shellcheck disable=SC2034
FLEET_LOG_LEVEL=info
fleet_init
fleet_site east
fleet_site west
fleet_site far
"$BQ_BIN_CLI" keygen deploy --store-key --dir "$FLEET/keys" >/dev/null
declare -A dport
for w in east-1:east west-1:west far-1:far; do
    IFS=: read -r name site <<<"$w"
    dport[$name]=$(bq_free_port)
    fleet_worker_conf "$name" "$site" 4
    printf 'store_key_file = keys/deploy.storekey\ndata_listen = tcp://127.0.0.1:%s\n' "${dport[$name]}" >>"$FLEET/$name.conf"
done
fleet_cluster db1 east "$conn"
printf 'replicate_to = west, far\n' >>"$FLEET/coordinator.conf"
fleet_coord_start
# worker_up NAME: start it, wait until the coordinator lists it online; its PID in wpid[NAME].
declare -A wpid
worker_up() {
    fleet_worker_start "$1"
    local v=FLEET_PID_${1//-/_}
    wpid[$1]=${!v}
    bq_wait_for "worker $1 online" 30 fleet_worker_online "$1"
}
worker_down() {
    bq_kill "${wpid[$1]}" TERM
    bq_wait_for "worker $1 offline" 30 fleet_worker_offline "$1"
}
worker_up east-1
worker_up west-1
streaming() { [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'barque_db1'") == 1 ]]; }
bq_wait_for "the wal-stream job of db1 to stream" 60 streaming

# take_backup: barque backup db1 --wait --json (bounded); prints the id, fails unless DONE.
take_backup() {
    local rc=0 id
    timeout "$tmo" "$BQ_BIN_CLI" -c "$FLEET/cli.conf" backup db1 --wait --json \
        >"$work/backup-last.jsonl" 2>"$work/backup-last.err" || rc=$?
    id=$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
d = [e for e in ev if e.get("event") == "done"]
print(d[-1]["backup"]["id"] if d and d[-1].get("backup") else "")' "$work/backup-last.jsonl")
    if ((rc != 0)) || [[ -z $id ]]; then
        cat "$work/backup-last.err" >&2
        fail "barque backup db1 --wait exited $rc (124: more than $tmo s; events in $work/backup-last.jsonl)"
    fi
    [[ $(backup_field db1 "$id" state) == DONE ]] || fail "backup $id is not DONE"
    echo "$id"
}
# copy_get ID SITE: the copy of backup ID at SITE into the array CP (state, duration_ms,
# bytes_fetched, chunks_*, worker, source, attempts, error).
declare -A CP
copy_get() {
    local k v
    CP=()
    while IFS='=' read -r k v; do CP[$k]=$v; done < <(cli show-backup db1 "$1" --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
c = [c for c in b["copies"] if c["site"] == sys.argv[1]]
c = c[0] if c else {"state": "NONE"}
for k in ("state", "duration_ms", "bytes_fetched", "chunks_total", "chunks_present",
          "chunks_fetched", "chunks_refetched", "worker", "source", "attempts", "error"):
    v = c.get(k)
    print("%s=%s" % (k, "" if v is None else str(v).replace("\n", " ")))' "$2")
}
# wait_copy ID SITE: until the copy is DONE (fails when FAILED or after --timeout s); CP holds it.
wait_copy() {
    local deadline=$((SECONDS + tmo))
    while :; do
        copy_get "$1" "$2"
        [[ ${CP[state]} == DONE ]] && return 0
        [[ ${CP[state]} == FAILED ]] && fail "the copy of $1 at $2 FAILED: ${CP[error]}"
        ((SECONDS < deadline)) || fail "the copy of $1 at $2 is ${CP[state]:-?} after $tmo s (${CP[error]:-no error})"
        sleep 0.5
    done
}

# ---- the rsync daemon -------------------------------------------------------------------------

rs=$work/rsync
mkdir -p "$rs"
rsync_port=$(bq_free_port)
{
    echo "use chroot = no"
    echo "pid file = $rs/rsyncd.pid"
    echo "lock file = $rs/rsyncd.lock"
    echo "log file = $rs/rsyncd.log"
    echo "[pgdata]"
    echo "path = $data"
    echo "read only = yes"
    ((EUID != 0)) || printf 'uid = postgres\ngid = postgres\n'
    # what pg_basebackup (and Barque's backup, and Barman's rsync) leave out; pg_wal's content
    # goes as WAL files, not with the data directory
    echo "exclude = /pg_wal/** /postmaster.pid /postmaster.opts /pg_stat_tmp/** /pg_replslot/** /pg_dynshmem/** /pg_notify/** /pg_serial/** /pg_snapshots/** /pg_subtrans/** pgsql_tmp*"
} >"$rs/rsyncd.conf"
rsyncd_pid=$(bq_spawn rsyncd rsync --daemon --no-detach --config="$rs/rsyncd.conf" --port="$rsync_port" --address=127.0.0.1)
bq_wait_for "rsyncd to listen on $rsync_port" 15 bash -c "ss -Htln 'sport = :$rsync_port' | grep -q ."
bq_pid_alive "$rsyncd_pid" || fail "rsync --daemon exited (log $work/rsyncd.log)"

declare -A RS
# rsync_run NAME PORT DEST: rsync -a --delete --stats of the module through 127.0.0.1:PORT (the
# daemon, or the link in front of it: link_host) into DEST, timed; RS holds its figures.
rsync_run() {
    local name=$1 host=127.0.0.1 port=$2 dest=$3 log=$work/rsync-$1.log t0 rc=0
    [[ $port == "$rsync_port" ]] || host=$link_host
    mkdir -p "$dest"
    sync
    t0=$(now)
    timeout "$tmo" rsync -a --delete --stats --timeout=120 "rsync://$host:$port/pgdata/" "$dest/" >"$log" 2>&1 || rc=$?
    RS=([s]=$(elapsed "$t0" "$(now)"))
    # 24: files vanished while it ran (the server is up): the copy is still made
    if ((rc != 0 && rc != 24)); then
        tail -n 20 "$log" >&2
        fail "rsync $name exited $rc (124: more than $tmo s; output in $log)"
    fi
    RS[rc]=$rc
    local k v
    while IFS='=' read -r k v; do RS[$k]=$v; done < <(awk -F': ' '
        { gsub(/,/, "", $2); split($2, a, " ") }
        $1 == "Total file size" { print "file_bytes=" a[1] }
        $1 == "Total transferred file size" { print "transferred_bytes=" a[1] }
        $1 == "Literal data" { print "literal=" a[1] }
        $1 == "Matched data" { print "matched=" a[1] }
        $1 == "Total bytes sent" { print "sent=" a[1] }
        $1 == "Total bytes received" { print "received=" a[1] }
        $1 == "Number of regular files transferred" { print "files=" a[1] }' "$log")
    [[ -n ${RS[received]:-} && -n ${RS[file_bytes]:-} && -n ${RS[sent]:-} ]] ||
        fail "rsync $name: no --stats figures in $log"
    echo "# rsync $name: ${RS[s]} s, $(mb "${RS[file_bytes]}") MB of files, $(mb "${RS[received]}") MB received, $(mb "${RS[sent]}") MB sent (rc ${RS[rc]}) [load $(load)]"
}
# rtt_probe PORT: the median of 5 round trips of an rsync daemon listing ("#list" to its
# "@RSYNCD: EXIT") through 127.0.0.1:PORT or the link, in ms.
rtt_probe() {
    local host=127.0.0.1
    [[ $1 == "$rsync_port" ]] || host=$link_host
    timeout 60 python3 - "$host" "$1" <<'PY'
import socket, sys, time
ms = []
for _ in range(5):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()  # the daemon's greeting
    s.sendall(b"@RSYNCD: 30.0\n")
    t = time.monotonic()
    s.sendall(b"#list\n")
    while not f.readline().startswith(b"@RSYNCD: EXIT"):
        pass
    ms.append((time.monotonic() - t) * 1000)
    s.close()
print("%.1f" % sorted(ms)[2])
PY
}

# ---- (b) loopback: backup 1, its copy to west-1, rsync -----------------------------------------

t0=$(now)
id1=$(take_backup)
b1_data=$(backup_field db1 "$id1" data_bytes)
b1_stored=$(backup_field db1 "$id1" stored_bytes)
b1_files=$(backup_field db1 "$id1" files)
echo "# backup 1 $id1: $(mb "$b1_data") MB data, $(mb "$b1_stored") MB stored, $(elapsed "$t0" "$(now)") s [load $(load)]"
sum backup_1 "$id1: $(mb "$b1_data") MB data in $b1_files files, $(mb "$b1_stored") MB stored (zstd, encrypted), worker $(backup_field db1 "$id1" duration_ms) ms"
wait_copy "$id1" west
[[ ${CP[source]} == east-1 && ${CP[worker]} == west-1 ]] || fail "the copy of $id1 at west came from ${CP[source]} to ${CP[worker]}, not east-1 to west-1"
declare -A C1L
for k in "${!CP[@]}"; do C1L[$k]=${CP[$k]}; done
echo "# copy 1 to west-1 (loopback): ${C1L[duration_ms]} ms, $(mb "${C1L[bytes_fetched]}") MB fetched, ${C1L[chunks_fetched]} of ${C1L[chunks_total]} chunks [load $(load)]"

rtt_direct=$(rtt_probe "$rsync_port")
rsync_run loopback "$rsync_port" "$rs/dest1"
declare -A R1L
for k in "${!RS[@]}"; do R1L[$k]=${RS[$k]}; done
data_dir_bytes=${R1L[file_bytes]}

# ---- (c) the delayed link: backup 1 to far-1, rsync -----------------------------------------------

east_link=$(proxy_start east "${dport[east-1]}")
rsync_link=$(proxy_start rsync "$rsync_port")
rtt_link=$(rtt_probe "$rsync_link")
echo "# round trip of an rsync daemon listing: $rtt_direct ms direct, $rtt_link ms through the link"
worker_down east-1
printf 'data_advertise = tcp://%s:%s\n' "$link_host" "$east_link" >>"$FLEET/east-1.conf"
worker_up east-1
bq_wait_for "the wal-stream job of db1 to stream again" 60 streaming
sleep 0.5
psnap east
east_to_client0=$(pstat east bytes_to_client)
east_accepted0=$(pstat east connections_accepted)
worker_up far-1
wait_copy "$id1" far
[[ ${CP[source]} == east-1 && ${CP[worker]} == far-1 ]] || fail "the copy of $id1 at far came from ${CP[source]} to ${CP[worker]}, not east-1 to far-1"
declare -A C1D
for k in "${!CP[@]}"; do C1D[$k]=${CP[$k]}; done
psnap east
c1d_link_bytes=$(($(pstat east bytes_to_client) - east_to_client0))
c1d_link_conns=$(($(pstat east connections_accepted) - east_accepted0))
echo "# copy 1 to far-1 (delayed link): ${C1D[duration_ms]} ms, $(mb "${C1D[bytes_fetched]}") MB fetched; the link carried $(mb "$c1d_link_bytes") MB from east-1 on $c1d_link_conns connections [load $(load)]"

rsync_run delayed "$rsync_link" "$rs/dest2"
declare -A R1D
for k in "${!RS[@]}"; do R1D[$k]=${RS[$k]}; done
psnap rsync
r1d_link_bytes=$(pstat rsync bytes_to_client)
rm -rf "$rs/dest2"

# ---- (d) light writes, backup 2, its copy to west-1 and rsync again (both through the link) ---

worker_down far-1 # only west-1 copies backup 2
acc_pages=$(pg_psql main -c "SELECT pg_relation_size('pgbench_accounts') / 8192")
read -r upd_rows upd_pages < <(pg_psql main -F ' ' -c "SELECT count(*), count(DISTINCT (ctid::text::point)[0]) FROM pgbench_accounts WHERE aid % 1000 = 0")
pg_psql main -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 1000 = 0" >/dev/null
read -r new_pages < <(pg_psql main -c "SELECT count(DISTINCT (ctid::text::point)[0]) FROM pgbench_accounts WHERE aid % 1000 = 0")
acc_pages2=$(pg_psql main -c "SELECT pg_relation_size('pgbench_accounts') / 8192")
pg_psql main -c CHECKPOINT >/dev/null
sum writes "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 1000 = 0: $upd_rows rows ($(calc "$upd_rows * 100 / ($scale * 100000)" 2)%), their old versions on $upd_pages of $acc_pages heap pages ($(calc "$upd_pages * 100 / $acc_pages" 2)%), the new ones on $new_pages pages (the table now $acc_pages2 pages), then CHECKPOINT"

t0=$(now)
psnap east
west_to_client0=$(pstat east bytes_to_client)
wal_at_west0=$(find "$FLEET/west-1/store/wal" -type f | wc -l)
wal_bytes_west0=$(bytes_of_tree "$FLEET/west-1/store/wal")
id2=$(take_backup)
b2_data=$(backup_field db1 "$id2" data_bytes)
b2_stored=$(backup_field db1 "$id2" stored_bytes)
b2_dedup=$(backup_field db1 "$id2" dedup_bytes)
b2_delta=$(backup_field db1 "$id2" delta_bytes)
echo "# backup 2 $id2: $(mb "$b2_data") MB data, $(mb "$b2_stored") MB stored, $(elapsed "$t0" "$(now)") s [load $(load)]"
sum backup_2 "$id2: $(mb "$b2_data") MB data, $(mb "$b2_stored") MB new in east-1's store ($(mb "$b2_dedup") MB deduplicated, $(mb "$b2_delta") MB as deltas), worker $(backup_field db1 "$id2" duration_ms) ms"
wait_copy "$id2" west
[[ ${CP[source]} == east-1 ]] || fail "the copy of $id2 at west came from ${CP[source]}, not east-1"
declare -A C2
for k in "${!CP[@]}"; do C2[$k]=${CP[$k]}; done
psnap east
c2_link_bytes=$(($(pstat east bytes_to_client) - west_to_client0))
wal_at_west=$(($(find "$FLEET/west-1/store/wal" -type f | wc -l) - wal_at_west0))
wal_bytes_west=$(($(bytes_of_tree "$FLEET/west-1/store/wal") - wal_bytes_west0))
echo "# copy 2 to west-1 (delayed link): ${C2[duration_ms]} ms, $(mb "${C2[bytes_fetched]}") MB fetched, ${C2[chunks_present]} of ${C2[chunks_total]} chunks already there [load $(load)]"

# The pages that differ between the data directory now and rsync's copy of it from (b): what a
# second copy of either tool has to find (the files rsync copies; pages of 8 KiB).
read -r pg_changed pg_total pg_files < <(timeout "$tmo" python3 - "$data" "$rs/dest1" <<'PY'
import os, sys
src, old = sys.argv[1], sys.argv[2]
skip_dirs = {"pg_wal", "pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial",
             "pg_snapshots", "pg_subtrans"}
changed = total = files = 0
B, P = 1 << 20, 8192
for d, dirs, names in os.walk(src):
    rel = os.path.relpath(d, src)
    if rel == ".":
        dirs[:] = [x for x in dirs if x not in skip_dirs]
    dirs[:] = [x for x in dirs if not x.startswith("pgsql_tmp")]
    for n in names:
        if rel == "." and n in ("postmaster.pid", "postmaster.opts"):
            continue
        p = os.path.join(d, n)
        if not os.path.isfile(p) or os.path.islink(p):
            continue
        q = os.path.join(old, rel, n)
        size = os.path.getsize(p)
        pages = (size + P - 1) // P
        total += pages
        file_changed = 0
        try:
            fo = open(q, "rb")
        except OSError:
            fo = None
        with open(p, "rb") as fn:
            while True:
                a = fn.read(B)
                if not a:
                    break
                b = fo.read(B) if fo else b""
                if a == b:
                    continue
                for i in range(0, len(a), P):
                    if a[i:i + P] != b[i:i + P]:
                        file_changed += 1
        if fo:
            fo.close()
        changed += file_changed
        files += file_changed > 0
print(changed, total, files)
PY
)
[[ -n ${pg_total:-} ]] || fail "the page comparison of the data directory with rsync's first copy failed"
sum pages_changed "$pg_changed of $pg_total pages of 8 KiB ($(calc "$pg_changed * 100 / $pg_total" 2)%) in $pg_files files differ between the data directory at backup 2 and at backup 1 (compared with rsync's first copy; what rsync copies)"
echo "# pages changed: $pg_changed of $pg_total in $pg_files files"

psnap rsync
rsync_before=$(pstat rsync bytes_to_client)
rsync_run second "$rsync_link" "$rs/dest1"
declare -A R2
for k in "${!RS[@]}"; do R2[$k]=${RS[$k]}; done
psnap rsync
psnap east
r2_link_bytes=$(($(pstat rsync bytes_to_client) - rsync_before))

# ---- figures -------------------------------------------------------------------------------------

# rate BYTES MS: MB/s
rate() { awk -v b="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.1f", b / 1e6 / (ms / 1000); else print "inf" }'; }
ms_of() { calc "$1 * 1000" 0; }
c1l_rate=$(rate "$b1_data" "${C1L[duration_ms]}")
c1d_rate=$(rate "$b1_data" "${C1D[duration_ms]}")
r1l_rate=$(rate "${R1L[file_bytes]}" "$(ms_of "${R1L[s]}")")
r1d_rate=$(rate "${R1D[file_bytes]}" "$(ms_of "${R1D[s]}")")
ratio_l=$(calc "$c1l_rate / $r1l_rate" 3)
ratio_d=$(calc "$c1d_rate / $r1d_rate" 3)
ratio_2=$(calc "${C2[bytes_fetched]} / ${R2[received]}" 4)

sum link "$link_desc"
sum link_rtt "$rtt_link ms through the link, $rtt_direct ms direct (median of 5 rsync daemon listings, '#list' to '@RSYNCD: EXIT')"
sum data_dir_bytes "$data_dir_bytes ($(mb "$data_dir_bytes") MB: the files rsync copies, pg_wal/ and what pg_basebackup leaves out excluded); backup 1 holds $(mb "$b1_data") MB"
sum copy1_loopback_barque "$c1l_rate MB/s ($(mb "$b1_data") MB data in ${C1L[duration_ms]} ms, the worker's duration_ms), ${C1L[bytes_fetched]} bytes fetched ($(mb "${C1L[bytes_fetched]}") MB, ${C1L[chunks_fetched]} of ${C1L[chunks_total]} chunks, ${C1L[chunks_refetched]} again, ${C1L[attempts]} attempt(s)), east-1 -> west-1"
sum copy1_loopback_rsync "$r1l_rate MB/s ($(mb "${R1L[file_bytes]}") MB in ${R1L[s]} s wall), ${R1L[received]} bytes received ($(mb "${R1L[received]}") MB; ${R1L[sent]} sent), ${R1L[files]} files"
sum copy1_loopback_ratio "barque / rsync throughput $ratio_l; bytes $(calc "${C1L[bytes_fetched]} / ${R1L[received]}" 3)"
sum copy1_delayed_barque "$c1d_rate MB/s ($(mb "$b1_data") MB data in ${C1D[duration_ms]} ms), ${C1D[bytes_fetched]} bytes fetched ($(mb "${C1D[bytes_fetched]}") MB, ${C1D[chunks_fetched]} of ${C1D[chunks_total]} chunks, ${C1D[attempts]} attempt(s)), east-1 -> far-1; the link carried $c1d_link_bytes bytes from east-1 meanwhile ($c1d_link_conns connections), $((c1d_link_bytes - C1D[bytes_fetched])) of them not the copy's chunks (WAL copies, requests' framing)"
sum copy1_delayed_rsync "$r1d_rate MB/s ($(mb "${R1D[file_bytes]}") MB in ${R1D[s]} s wall), ${R1D[received]} bytes received ($(mb "${R1D[received]}") MB; ${R1D[sent]} sent); the link carried $r1d_link_bytes bytes from the daemon (the RTT probes included)"
sum copy1_delayed_ratio "barque / rsync throughput $ratio_d; barque delayed / loopback $(calc "$c1d_rate / $c1l_rate" 3), rsync delayed / loopback $(calc "$r1d_rate / $r1l_rate" 3)"
sum copy2_barque "${C2[bytes_fetched]} bytes fetched ($(mb "${C2[bytes_fetched]}") MB, ${C2[chunks_fetched]} chunks; ${C2[chunks_present]} of ${C2[chunks_total]} already at west), ${C2[duration_ms]} ms, through the link ($c2_link_bytes bytes from east-1 meanwhile, $((c2_link_bytes - C2[bytes_fetched])) of them not the copy's chunks: WAL copies, framing); $(calc "${C2[bytes_fetched]} * 100 / ${C1L[bytes_fetched]}" 2)% of copy 1's"
sum wal_copies_delayed "$wal_at_west WAL files reached west-1's store from backup 2 to its copy's end ($(mb "$wal_bytes_west") MB as stored there); the link carried $(mb "$((c2_link_bytes - C2[bytes_fetched]))") MB from east-1 beside the copy's chunks meanwhile (replicate-wal jobs, framing)"
sum copy2_rsync "${R2[received]} bytes received ($(mb "${R2[received]}") MB; ${R2[sent]} sent: the block checksums), ${R2[s]} s wall, through the link ($r2_link_bytes bytes from the daemon); ${R2[files]} files transferred, literal $(mb "${R2[literal]}") MB, matched $(mb "${R2[matched]}") MB"
sum copy2_ratio "barque / rsync bytes $ratio_2 (received); with what each sent back: rsync $(calc "(${R2[received]} + ${R2[sent]}) / 1e6" 1) MB both ways"
sum goal_copy1_throughput_loopback "barque $c1l_rate MB/s vs rsync $r1l_rate MB/s, ratio $ratio_l (goal >= 1): $(goal "$ratio_l" 1 '>=')"
sum goal_copy1_throughput_delayed "barque $c1d_rate MB/s vs rsync $r1d_rate MB/s at $delay_ms ms RTT ($method), ratio $ratio_d (goal >= 1): $(goal "$ratio_d" 1 '>=')"
sum goal_copy2_bytes "barque ${C2[bytes_fetched]} vs rsync ${R2[received]} bytes, ratio $ratio_2 (goal <= 0.1): $(goal "$ratio_2" 0.1 '<=')"
plate() { echo "$(pstat "$1" late_max_us) us late at most, $(pstat "$1" late_over_1ms) of $(pstat "$1" releases) more than 1 ms, $(pstat "$1" late_over_5ms) more than 5 ms; $(pstat "$1" held_max_bytes) bytes held at most"; }
sum link_proxy "releases of the proxy in front of east-1: $(plate east); of rsync's: $(plate rsync)"
sum git_at_end "$(gitstate)"
sum load_at_end "$(load)"

table=()
table+=("| copy | barque MB/s | barque bytes sent | rsync MB/s | rsync bytes received | barque / rsync |")
table+=("|---|---:|---:|---:|---:|---:|")
table+=("| 1st, loopback | $c1l_rate | $(mb "${C1L[bytes_fetched]}") MB | $r1l_rate | $(mb "${R1L[received]}") MB | $ratio_l (MB/s) |")
table+=("| 1st, ${delay_ms} ms RTT ($method) | $c1d_rate | $(mb "${C1D[bytes_fetched]}") MB | $r1d_rate | $(mb "${R1D[received]}") MB | $ratio_d (MB/s) |")
table+=("| 2nd, ${delay_ms} ms RTT ($method), $(calc "$pg_changed * 100 / $pg_total" 2)% of pages changed | $(rate "$b2_data" "${C2[duration_ms]}") | $(mb "${C2[bytes_fetched]}") MB | $(rate "${R2[file_bytes]}" "$(ms_of "${R2[s]}")") | $(mb "${R2[received]}") MB | $ratio_2 (bytes) |")

{
    echo "---- summary ----"
    printf '%s\n' "${summary[@]}"
    printf '%s\n' "${table[@]}"
    echo "---- end ----"
} | tee "$work/summary.txt"

if ((check)); then
    for k in git_at_start tools data_set backup_1 backup_2 writes pages_changed link link_rtt \
        data_dir_bytes copy1_loopback_barque copy1_loopback_rsync copy1_loopback_ratio \
        copy1_delayed_barque copy1_delayed_rsync copy1_delayed_ratio copy2_barque copy2_rsync \
        copy2_ratio wal_copies_delayed goal_copy1_throughput_loopback \
        goal_copy1_throughput_delayed goal_copy2_bytes link_proxy git_at_end load_at_end; do
        grep -q "^$k: " "$work/summary.txt" || fail "check: the summary has no $k line"
    done
    grep -Eq "^goal_.*: (PASS|FAIL)$" "$work/summary.txt" || fail "check: no goal line ends in PASS or FAIL"
    for v in "${C1L[bytes_fetched]}" "${C1D[bytes_fetched]}" "${C1L[duration_ms]}" "${C1D[duration_ms]}" \
        "${C2[duration_ms]}" "${R1L[received]}" "${R1D[received]}" "${R2[received]}"; do
        [[ $v =~ ^[0-9]+$ && $v -gt 0 ]] || fail "check: a figure is missing or zero: '$v'"
    done
    [[ ${C2[bytes_fetched]} =~ ^[0-9]+$ ]] || fail "check: copy 2 has no bytes_fetched"
    ((c1d_link_bytes >= C1D[bytes_fetched])) ||
        fail "check: the delayed copy fetched ${C1D[bytes_fetched]} bytes but the link carried $c1d_link_bytes: it did not go through the link"
    ((r1d_link_bytes >= R1D[received])) ||
        fail "check: the delayed rsync received ${R1D[received]} bytes but the link carried $r1d_link_bytes"
    awk -v a="$rtt_link" -v d="$delay_ms" 'BEGIN { exit !(a >= d * 0.9) }' ||
        fail "check: a round trip through the link took $rtt_link ms, not about $delay_ms"
    ((R2[received] < R1L[received])) || fail "check: the second rsync received no less than the first: no delta"
    echo "replicate.sh: check passed"
fi
