#!/usr/bin/env bash
# WAL benchmark (issue 5; see README.md in this folder), in one run:
#   1. the cost of Barque as a cluster's synchronous standby (RPO=0) next to pg_receivewal
#      --synchronous: TPS and lag under pgbench -c 2;
#   2. the streaming receivers' lag under heavier loads with no synchronous standby
#      (pgbench -c 8 -j 2 -M prepared, TPC-B-like and the bulk mix): within one segment?
#   3. archive_command throughput, segments/s: pgBackRest archive-push (synchronous, and
#      archive-async with process-max 2; lz4), cp + sync, and Barque's wal-push (plain and
#      --spool), each on the same backlog of segments ("backlog") and under pgbench -c 2 ("live").
#
#   tests/bench/wal.sh [--scale N] [--seconds S] [--runs N] [--heavy-clients N] [--backlog N]
#                      [--archive LIST] [--archive-runs N] [--live-load bulk|tpcb] [--check]
#
#   --scale N          pgbench -i -s N of both clusters (default 10)
#   --seconds S        pgbench -T S of every timed run (default 30)
#   --runs N           synchronous-standby runs of each receiver, alternated; medians (default 3)
#   --heavy-clients N  pgbench -c N -j 2 -M prepared in part 2 (default 8; 0 skips part 2); with
#                      --check only the bulk load runs
#   --backlog N        segments made with archiving paused in part 3 (default 119; 8 with --check)
#   --archive LIST     archivers of part 3, comma-separated, of cp,pgbr_sync,pgbr_async,barque,
#                      barque_spool (default: all; with --check cp,barque,barque_spool); none
#                      skips part 3
#   --archive-runs N   runs of each archiver, order rotated run by run; medians (default 1)
#   --live-load L      part 3's live load: bulk (default; -M prepared, the bulk mix) or tpcb
#                      (pgbench's TPC-B-like alone, a few MB/s of WAL)
#   --check            also assert outcomes (ctest bench.wal_smoke): every pgbench run exited 0
#                      with its receiver synchronous, Barque's wal-stream archived segments, and
#                      (when `barque wal-push` is built) wal-push archived the backlog. Never a speed.
#
# The bulk mix: pgbench's TPC-B-like transaction and, as often, an UPDATE of 1000 consecutive
# pgbench_accounts rows (range.sql); TPC-B alone writes a few MB/s of WAL here, the mix about 100.
# Part 1: synchronous_standby_names names the receiver under test (pg_receivewal --synchronous
# on its own slot, or Barque's wal-stream job through a real coordinator and worker:
# application_name barque_db1, synchronous = on), pgbench -c 2 -j 2 -T S, TPS read from pgbench;
# every 0.2 s the receiver's lag is sampled from pg_stat_replication (pg_current_wal_lsn() -
# flush_lsn, bytes; flush_lag). Part 2: the same sampling with synchronous_standby_names = '',
# after a CHECKPOINT, TPC-B-like then the bulk mix.
# Part 3, on a second cluster ("arch", archive_mode = on): with archive_command = '' (archiving
# paused, segments pile up as .ready) pgbench -c 8 -j 2 -M prepared (bulk mix) writes until N
# segments are ready; the stopped data directory is the template. Each archiver run starts a
# fresh copy of it (the same segments for every tool), sets the tool's archive_command,
# pg_reload_conf(), and times until the template's last ready segment is .done ("backlog":
# count = archived_count delta, segments/s = count / seconds); then CHECKPOINT and pgbench -c 2
# -j 2 -T S ("live": segments archived per second, the cluster's WAL rate, the .ready backlog at
# the end and its maximum, sampled every 0.5 s, and how long that backlog took to drain after
# the load; kept up = drained within 2 s). The
# harness's PostgreSQL runs with fsync = off; every receiver and archiver fsyncs. Barque's
# wal-push runs as postgres with a copy of the CLI config and the operator's keys in a
# directory of its own; clusters wp_rN / wps_rN (wal = archive) take its segments. Where
# `barque wal-push --help` does not exit 0, those rows say "wal-push: not built".
#
# Environment: BQ_BIN_COORDINATOR, BQ_BIN_WORKER, BQ_BIN_CLI (or BQ_BUILD), BQ_KEEP=1.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../integration/lib.sh
source "$root/tests/integration/lib.sh"
# shellcheck source=../integration/fleet.sh
source "$root/tests/integration/fleet.sh"

scale=10
seconds=30
runs=3
check=0
heavy_clients=8
backlog=
archive_list=
archive_runs=1
live_load=bulk
while (($#)); do
    case $1 in
    --scale) scale=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --heavy-clients) heavy_clients=$2; shift 2 ;;
    --backlog) backlog=$2; shift 2 ;;
    --archive) archive_list=$2; shift 2 ;;
    --archive-runs) archive_runs=$2; shift 2 ;;
    --live-load) live_load=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0"; exit 0 ;;
    *) echo "wal.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
# --check keeps the smoke test short: a backlog of 8, the cheap archivers, the bulk load only.
[[ -n $backlog ]] || { ((check)) && backlog=8 || backlog=119; }
[[ -n $archive_list ]] || { ((check)) && archive_list=cp,barque,barque_spool || archive_list=all; }
for v in "$scale" "$seconds" "$runs" "$backlog" "$archive_runs"; do
    [[ $v =~ ^[0-9]+$ && $v -ge 1 ]] || { echo "wal.sh: $v: a positive integer" >&2; exit 2; }
done
[[ $live_load == bulk || $live_load == tpcb ]] || { echo "wal.sh: --live-load $live_load: bulk or tpcb" >&2; exit 2; }
[[ $heavy_clients =~ ^[0-9]+$ && ($heavy_clients == 0 || $heavy_clients -ge 2) ]] ||
    { echo "wal.sh: --heavy-clients $heavy_clients: 0 or at least 2" >&2; exit 2; }
all_archivers=(cp pgbr_sync pgbr_async barque barque_spool)
archivers=()
case $archive_list in
all) archivers=("${all_archivers[@]}") ;;
none) ;;
*)
    IFS=, read -ra archivers <<<"$archive_list"
    for a in "${archivers[@]}"; do
        [[ " ${all_archivers[*]} " == *" $a "* ]] || { echo "wal.sh: --archive: unknown archiver $a (of ${all_archivers[*]})" >&2; exit 2; }
    done
    ;;
esac
bq_require_bins
[[ -x $BQ_PGBIN/pg_receivewal && -x $BQ_PGBIN/pgbench ]] || { echo "wal.sh: postgresql-15 tools missing" >&2; exit 2; }
# archive_command runs in the data directory: the CLI's path must be absolute.
cli_abs=$(readlink -f "$BQ_BIN_CLI")
have_pgbr=0
command -v pgbackrest >/dev/null && have_pgbr=1
have_walpush=0
"$BQ_BIN_CLI" wal-push --help >/dev/null 2>&1 && have_walpush=1

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", ($1) }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
goal() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= g : v <= g; print ok ? "PASS" : "MISS" }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
summary=()
sum() { summary+=("$1: $2"); }
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_dir() { mkdir -p "$1"; ((EUID != 0)) || chown postgres:postgres "$1"; chmod 700 "$1"; }
fail_check=0
check_fail() { echo "wal.sh: --check: $*" >&2; fail_check=1; }

bq_tmpdir
chmod 755 "$BQ_TMP"
cli_abs=$(readlink -f "$BQ_BIN_CLI") # bq_tmpdir may have copied it where postgres can run it
echo "# wal.sh: $(date -u +%FT%TZ), $(nproc) CPUs, load $(load); commit $(git -C "$root" log -1 --format=%h 2>/dev/null || echo '?')"
# The bulk mix (see the top): heap updates, index inserts and full-page images.
cat >"$BQ_TMP/range.sql" <<'SQL'
\set a random(1, :naccounts - 999)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :a AND :a + 999;
SQL
chmod 644 "$BQ_TMP/range.sql"
bulk_args=(-b tpcb-like -f "$BQ_TMP/range.sql" -D "naccounts=$((scale * 100000))")
case $live_load in
bulk) live_args=(-M prepared "${bulk_args[@]}") ;;
tpcb) live_args=() ;;
esac
C=$(pg_start main)
"$BQ_PGBIN/pgbench" -i -s "$scale" -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1 || { cat "$BQ_TMP/pgbench-init.log"; exit 1; }
seg_size=$(pg_psql main -c "SELECT pg_size_bytes(current_setting('wal_segment_size'))")

# ---- part 3's template: a cluster with a backlog of ready segments ------------------------------
# Made first, so its port can go into the coordinator's config (clusters wal = archive).
ARCH_DIR=$BQ_TMP/arch
ARCH_TEMPLATE=$BQ_TMP/arch-template
ARCH_DATA=$ARCH_DIR/data
ARCH_B=0
ARCH_LAST=
ready_count() { find "$ARCH_DATA/pg_wal/archive_status" -name '*.ready' 2>/dev/null | wc -l; }
last_ready() { find "$ARCH_DATA/pg_wal/archive_status" -name '*.ready' -printf '%f\n' 2>/dev/null | sed 's/\.ready$//' | sort | tail -n 1; }
# arch_start: start the data directory ARCH_DATA (its postgresql.conf has the port and socket
# pg_start gave cluster arch), registered for cleanup; pg_stop arch stops it.
arch_start() {
    if ! (cd "$ARCH_DIR" && as_pg "$BQ_PGBIN/pg_ctl" -D "$ARCH_DATA" -l "$ARCH_DIR/postgres.log" -w -t 120 start) \
        >>"$ARCH_DIR/pg_ctl.log" 2>&1; then
        tail -n 30 "$ARCH_DIR/postgres.log" >&2
        fail "could not start the archive cluster on $ARCH_DATA"
    fi
    local pid
    pid=$(head -n 1 "$ARCH_DATA/postmaster.pid")
    bq__register "$pid" pg
    echo "$pid" >"$ARCH_DIR/pid"
}
if ((${#archivers[@]})); then
    pg_start arch >/dev/null
    ARCH_PORT=$(pg_port arch)
    ARCH_CONN=$(pg_conninfo arch)
    "$BQ_PGBIN/pgbench" -i -s "$scale" -q "$ARCH_CONN" >"$BQ_TMP/pgbench-init-arch.log" 2>&1 || { cat "$BQ_TMP/pgbench-init-arch.log"; exit 1; }
    # archive_command = '' with archive_mode = on: archiving paused, WAL kept as .ready.
    pg_psql arch -c "ALTER SYSTEM SET archive_mode = on" -c "ALTER SYSTEM SET archive_command = ''" >/dev/null
    pg_stop arch
    arch_start
    t0=$(now)
    gen_pid=$(bq_spawn pgbench-backlog "$BQ_PGBIN/pgbench" -c 8 -j 2 -M prepared "${bulk_args[@]}" -T 3600 -n "$ARCH_CONN")
    for ((i = 0; i < 6000; i++)); do # at most 600 s
        (($(ready_count) < backlog)) && bq_pid_alive "$gen_pid" || break
        sleep 0.1
    done
    bq_kill "$gen_pid" TERM
    pg_stop arch
    ARCH_B=$(ready_count)
    ARCH_LAST=$(last_ready)
    ((ARCH_B >= backlog)) || fail "the backlog has $ARCH_B ready segments, not $backlog (pgbench-backlog.log: $(tail -n 2 "$BQ_TMP/pgbench-backlog.log"))"
    mv "$ARCH_DATA" "$ARCH_TEMPLATE"
    echo "# archive backlog: $ARCH_B ready segments (last $ARCH_LAST) in $(elapsed "$t0" "$(now)") s"
fi

# ---- the receivers ------------------------------------------------------------------------------
RX=$BQ_TMP/receivewal
mkdir -p "$RX"
((EUID != 0)) || chown postgres:postgres "$RX"
as_pg "$BQ_PGBIN/pg_receivewal" -d "$C" -S bench_rx --create-slot >/dev/null 2>&1 || true
rx_pid=
rx_start() {
    rx_pid=$(bq_spawn receivewal runuser -u postgres -- "$BQ_PGBIN/pg_receivewal" \
        -d "$C application_name=pg_receivewal" -D "$RX" -S bench_rx --synchronous --no-loop)
}
rx_stop() { [[ -n $rx_pid ]] && bq_kill "$rx_pid" TERM; rx_pid=; }

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
# wal-push sends to the worker's data port
printf 'data_listen = tcp://127.0.0.1:%s\n' "$(bq_free_port)" >>"$FLEET/east-1.conf"
fleet_cluster db1 east "$C"
printf 'synchronous = on\n' >>"$FLEET/coordinator.conf"
want_walpush=0
[[ " ${archivers[*]} " == *" barque"* ]] && want_walpush=1
if ((want_walpush && have_walpush)); then
    for ((r = 1; r <= archive_runs; r++)); do # one cluster per run and variant: each starts empty
        for cl in "wp_r$r" "wps_r$r"; do
            fleet_cluster "$cl" east "$ARCH_CONN"
            printf 'wal = archive\n' >>"$FLEET/coordinator.conf"
        done
    done
fi
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store

# The CLI config and the operator's keys as postgres reads them (archive_command runs as it).
PGCLI=$BQ_TMP/pgcli
walpush_why=
if ((want_walpush && have_walpush)); then
    fleet_cli_for_pg "$PGCLI" >/dev/null # cli.conf, keys/ (ops.key 0600), all owned by postgres
    if ! as_pg test -x "$cli_abs"; then
        walpush_why="$cli_abs is not executable by postgres"
    elif ! out=$(as_pg "$cli_abs" -c "$PGCLI/cli.conf" workers 2>&1); then
        walpush_why="the CLI as postgres with $PGCLI/cli.conf fails: $(tail -n 1 <<<"$out")"
    fi
fi

standby_is() { # NAME: the synchronous standby is NAME, streaming
    [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND sync_state = 'sync' AND state = 'streaming'") == 1 ]]
}
streaming_is() { # NAME: NAME streams (any sync_state)
    [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND state = 'streaming'") == 1 ]]
}
set_sync() {
    pg_psql main -c "ALTER SYSTEM SET synchronous_standby_names = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
}

# one_run APP MODE CLIENTS [PGBENCH_ARGS...]: one timed run with receiver APP (pg_receivewal |
# barque_db1); MODE sync: APP is the synchronous standby; async: there is none, APP streams.
# pgbench -c CLIENTS -j 2 -T S. Prints "TPS MAXLAG_BYTES MAXLAG_MS WAL_BYTES".
one_run() {
    local app=$1 mode=$2 clients=$3 out lsn0 lsn1 maxb=0 maxms=0 b ms pid log
    shift 3
    log=$BQ_TMP/pgbench-$app-$mode.log
    if [[ $mode == sync ]]; then
        set_sync "$app"
        bq_wait_for "$app to be the synchronous standby" 30 standby_is "$app"
    else
        set_sync ""
        bq_wait_for "$app to stream" 30 streaming_is "$app"
    fi
    lsn0=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
    "$BQ_PGBIN/pgbench" -c "$clients" -j 2 -T "$seconds" -n "$@" "$C" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        read -r b ms < <(pg_psql main -F' ' -c "SELECT pg_current_wal_lsn() - flush_lsn, coalesce(extract(epoch FROM flush_lag) * 1000, 0)::bigint FROM pg_stat_replication WHERE application_name = '$app'")
        [[ ${b:-0} =~ ^-?[0-9]+$ ]] && ((b > maxb)) && maxb=$b
        [[ ${ms:-0} =~ ^[0-9]+$ ]] && ((ms > maxms)) && maxms=$ms
        sleep 0.2
    done
    wait "$pid" || { echo "pgbench with $app ($mode) failed: $(tail -3 "$log")" >&2; return 1; }
    lsn1=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
    out=$(awk '/^tps = / { print $3; exit }' "$log")
    echo "$out $maxb $maxms $(pg_psql main -c "SELECT '$lsn1'::pg_lsn - '$lsn0'::pg_lsn")"
}

# ---- part 1: the synchronous standby ------------------------------------------------------------
declare -A tps lagb lagms walb
for ((r = 1; r <= runs; r++)); do
    if ((r % 2)); then order="barque_db1 pg_receivewal"; else order="pg_receivewal barque_db1"; fi
    for app in $order; do
        [[ $app == pg_receivewal ]] && rx_start
        line=$(one_run "$app" sync 2) || { check_fail "run $r of $app failed"; line="0 0 0 0"; }
        [[ $app == pg_receivewal ]] && rx_stop
        read -r t b ms w <<<"$line"
        tps[$app]+="$t "
        lagb[$app]+="$b "
        lagms[$app]+="$ms "
        walb[$app]+="$w "
        echo "# run $r $app: $t tps, max lag $b bytes / $ms ms, $(calc "$w / 1e6" 1) MB of WAL in $seconds s [load $(load)]"
    done
done

# ---- part 2: the receivers' lag under heavier loads, no synchronous standby -------------------
# tpcb: pgbench -c N -j 2 -M prepared (TPC-B-like); bulk: the same with the bulk mix. Each run
# starts with a CHECKPOINT, so each begins with full-page images alike.
heavy_loads=()
((heavy_clients == 0)) || heavy_loads=(tpcb bulk)
((heavy_clients == 0 || check == 0)) || heavy_loads=(bulk)
declare -A htps hlagb hlagms hwalb
for hl in "${heavy_loads[@]}"; do
    hargs=(-M prepared)
    [[ $hl == tpcb ]] || hargs+=("${bulk_args[@]}")
    for app in barque_db1 pg_receivewal; do
        [[ $app == pg_receivewal ]] && rx_start
        pg_psql main -c CHECKPOINT
        line=$(one_run "$app" async "$heavy_clients" "${hargs[@]}") || { check_fail "the $hl run of $app failed"; line="0 0 0 0"; }
        [[ $app == pg_receivewal ]] && rx_stop
        read -r t b ms w <<<"$line"
        htps[$hl.$app]=$t hlagb[$hl.$app]=$b hlagms[$hl.$app]=$ms hwalb[$hl.$app]=$w
        echo "# heavy $hl $app: $t tps, max lag $b bytes / $ms ms, $(calc "$w / 1e6" 1) MB of WAL in $seconds s ($(calc "$w / 1e6 / $seconds" 1) MB/s) [load $(load)]"
    done
done
set_sync ""

# ---- part 3: archive_command throughput ---------------------------------------------------------
declare -A bl_rate bl_count bl_secs bl_status lv_rate lv_mbs lv_segs lv_end lv_max lv_drain lv_status wp_files
declare -A label=(
    [cp]="cp + sync"
    [pgbr_sync]="pgBackRest archive-push, lz4"
    [pgbr_async]="pgBackRest archive-push, archive-async, process-max 2, lz4"
    [barque]="barque wal-push"
    [barque_spool]="barque wal-push --spool"
)
# pids_with STRING: processes whose command line contains STRING (a path of this run's scratch).
pids_with() {
    local p c
    for p in /proc/[0-9]*; do
        c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        [[ $c == *"$1"* ]] && echo "${p#/proc/}"
    done
    return 0
}
# reap STRING: what an archiver left running (pgBackRest's async process, a spool sender) gets
# 30 s to end, then SIGTERM, then SIGKILL; by PID.
reap() {
    local pid i left
    for ((i = 0; i < 150; i++)); do
        left=$(pids_with "$1")
        [[ -n $left ]] || return 0
        sleep 0.2
    done
    for pid in $left; do
        echo "# reap: $pid still running ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)): SIGTERM" >&2
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        [[ -n $(pids_with "$1") ]] || return 0
        sleep 0.1
    done
    for pid in $(pids_with "$1"); do kill -KILL "$pid" 2>/dev/null || true; done
}
# arch_prepare TOOL R DIR: sets arch_cmd, the archive_command of TOOL in run R (its files in DIR,
# owned by postgres); 1 with arch_why set when the tool cannot run.
arch_prepare() {
    local tool=$1 r=$2 d=$3 x
    case $tool in
    cp)
        pg_dir "$d/archive"
        arch_cmd="test ! -f $d/archive/%f && cp %p $d/archive/%f && sync $d/archive/%f"
        ;;
    pgbr_sync | pgbr_async)
        ((have_pgbr)) || { arch_why="pgbackrest: not installed (deploy/install-deps.sh)"; return 1; }
        for x in repo log lock spool; do pg_dir "$d/$x"; done
        {
            printf '[global]\nrepo1-path=%s/repo\ncompress-type=lz4\n' "$d"
            printf 'log-path=%s/log\nlock-path=%s/lock\nspool-path=%s/spool\n' "$d" "$d" "$d"
            printf 'log-level-console=warn\nlog-level-file=info\n'
            [[ $tool == pgbr_sync ]] || printf 'archive-async=y\nprocess-max=2\n'
            printf '\n[arch]\npg1-path=%s\npg1-socket-path=%s\npg1-port=%s\n' "$ARCH_DATA" "$ARCH_DIR" "$ARCH_PORT"
        } >"$d/pgbackrest.conf"
        ((EUID != 0)) || chown postgres:postgres "$d/pgbackrest.conf"
        if ! as_pg pgbackrest --config="$d/pgbackrest.conf" --stanza=arch stanza-create >"$d/stanza-create.log" 2>&1; then
            arch_why="pgbackrest stanza-create failed: $(tail -n 1 "$d/stanza-create.log")"
            return 1
        fi
        arch_cmd="pgbackrest --config=$d/pgbackrest.conf --stanza=arch archive-push %p"
        ;;
    barque | barque_spool)
        ((have_walpush)) || { arch_why="wal-push: not built"; return 1; }
        [[ -z $walpush_why ]] || { arch_why="wal-push: $walpush_why"; return 1; }
        if [[ $tool == barque ]]; then
            arch_cmd="$cli_abs -c $PGCLI/cli.conf wal-push wp_r$r %p"
        else
            pg_dir "$d/spool"
            arch_cmd="$cli_abs -c $PGCLI/cli.conf wal-push wps_r$r %p --spool $d/spool"
        fi
        ;;
    esac
}
archiver_stats() { pg_psql arch -F' ' -c "SELECT archived_count, failed_count, coalesce(last_archived_wal, '') FROM pg_stat_archiver"; }
# arch_run TOOL R: one run of archiver TOOL on a fresh copy of the template; adds its figures.
arch_run() {
    local tool=$1 r=$2 d=$BQ_TMP/archivers/$1-r$2 t0 t1 a0 a1 a2 f0 f1 lastw n ready prev_ready
    local stalled_since deadline st=ok secs count lsn0 lsn1 pid ready_max=0 ready_end wal live_st=ok i drain
    rm -rf "$ARCH_DATA"
    cp -a "$ARCH_TEMPLATE" "$ARCH_DATA"
    sync
    pg_dir "$d"
    arch_start
    arch_cmd='' arch_why=''
    if ! arch_prepare "$tool" "$r" "$d"; then
        pg_stop arch
        bl_status[$tool]=$arch_why
        echo "# archive run $r $tool: $arch_why"
        return 0
    fi
    read -r a0 f0 lastw < <(archiver_stats)
    pg_psql arch -c "ALTER SYSTEM SET archive_command = '$arch_cmd'" >/dev/null
    # backlog: from the reload to the .done of the template's last ready segment
    deadline=$(calc "$(now) + ($ARCH_B * 4 > 120 ? $ARCH_B * 4 : 120)" 3)
    t0=$(now)
    pg_psql arch -c "SELECT pg_reload_conf()" >/dev/null
    prev_ready=$ARCH_B stalled_since=$t0
    for ((i = 1; ; i++)); do
        [[ -e $ARCH_DATA/pg_wal/archive_status/$ARCH_LAST.done ]] && break
        if ((i % 20 == 0)); then # every second or so: done (its .done gone already)? stalled? late?
            read -r a1 f1 lastw < <(archiver_stats)
            [[ -n $lastw && ! $lastw < $ARCH_LAST ]] && break
            ready=$(ready_count)
            ((ready < prev_ready)) && { prev_ready=$ready; stalled_since=$(now); }
            if [[ $(calc "$(now) - $stalled_since > 60" 0) == 1 ]]; then st="stalled (no segment archived for 60 s; $((f1 - f0)) failures)"; break; fi
            if [[ $(calc "$(now) > $deadline" 0) == 1 ]]; then st="timed out"; break; fi
        fi
        sleep 0.05
    done
    t1=$(now)
    read -r a1 f1 lastw < <(archiver_stats)
    count=$((a1 - a0))
    secs=$(elapsed "$t0" "$t1")
    bl_rate[$tool]+="$(calc "$count / $secs" 2) "
    bl_count[$tool]+="$count "
    bl_secs[$tool]+="$secs "
    [[ $st == ok ]] || bl_status[$tool]+="run $r: $st; "
    ((f1 == f0)) || bl_status[$tool]+="run $r: $((f1 - f0)) archive_command failures; "
    echo "# archive run $r $tool backlog: $count segments in $secs s = $(calc "$count / $secs" 1) segments/s${st/#ok/} [load $(load)]"
    # live: pgbench -c 2 while it archives
    if [[ $st == ok ]]; then
        pg_psql arch -c CHECKPOINT # every tool's live run starts with full-page images alike
        lsn0=$(pg_psql arch -c "SELECT pg_current_wal_lsn()")
        t0=$(now)
        "$BQ_PGBIN/pgbench" -c 2 -j 2 "${live_args[@]}" -T "$seconds" -n "$ARCH_CONN" >"$BQ_TMP/pgbench-live-$tool-r$r.log" 2>&1 &
        pid=$!
        for ((i = 0; i < (seconds + 60) * 2; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            ready=$(ready_count)
            ((ready > ready_max)) && ready_max=$ready
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && { kill -TERM "$pid" 2>/dev/null; live_st="pgbench did not end"; }
        wait "$pid" || live_st="pgbench failed: $(tail -n 1 "$BQ_TMP/pgbench-live-$tool-r$r.log")"
        t1=$(now)
        ready_end=$(ready_count)
        lsn1=$(pg_psql arch -c "SELECT pg_current_wal_lsn()")
        read -r a2 f1 lastw < <(archiver_stats)
        secs=$(elapsed "$t0" "$t1")
        wal=$(pg_psql arch -c "SELECT '$lsn1'::pg_lsn - '$lsn0'::pg_lsn")
        lv_rate[$tool]+="$(calc "($a2 - $a1) / $secs" 2) "
        lv_mbs[$tool]+="$(calc "$wal / 1e6 / $secs" 1) "
        lv_segs[$tool]+="$(calc "$wal / $seg_size / $secs" 2) "
        lv_end[$tool]+="$ready_end "
        lv_max[$tool]+="$ready_max "
        # the drain: how long after the load the .ready backlog took to reach 0 (at most 120 s)
        for ((i = 0; i < 1200; i++)); do
            (($(ready_count) > 0)) || break
            sleep 0.1
        done
        drain=$(elapsed "$t1" "$(now)")
        (($(ready_count) == 0)) || drain=">120"
        lv_drain[$tool]+="$drain "
        [[ $live_st == ok ]] || lv_status[$tool]+="run $r: $live_st; "
        echo "# archive run $r $tool live: $((a2 - a1)) segments in $secs s = $(calc "($a2 - $a1) / $secs" 1) segments/s; WAL $(calc "$wal / 1e6 / $secs" 1) MB/s ($(calc "$wal / $seg_size / $secs" 1) segments/s); .ready at the end $ready_end, max $ready_max, drained in $drain s [load $(load)]"
    fi
    if [[ $tool == barque* ]]; then
        n=wp_r$r
        [[ $tool == barque ]] || n=wps_r$r
        wp_files[$tool]+="$(find "$STORE/wal/$n" -type f 2>/dev/null | wc -l) "
    fi
    # pause archiving again (a stop would otherwise archive what is left), stop, reap, free space
    pg_psql arch -c "ALTER SYSTEM SET archive_command = ''" -c "SELECT pg_reload_conf()" >/dev/null
    pg_stop arch
    reap "$d/"
    [[ -z $PGCLI ]] || reap "$PGCLI/"
    rm -rf "$ARCH_DATA" "$d/archive" "$d/repo" "$d/spool"
}
if ((${#archivers[@]})); then
    mkdir -p "$BQ_TMP/archivers"
    ((EUID != 0)) || chown postgres:postgres "$BQ_TMP/archivers"
    for ((r = 1; r <= archive_runs; r++)); do
        n=${#archivers[@]}
        for ((k = 0; k < n; k++)); do
            arch_run "${archivers[(k + r - 1) % n]}" "$r"
        done
    done
fi

# ---- summary ------------------------------------------------------------------------------------
max_of() { printf '%s\n' "$@" | sort -g | tail -1; }
# shellcheck disable=SC2086
{
    tb=$(median ${tps[barque_db1]}); tr=$(median ${tps[pg_receivewal]})
    lb=$(max_of ${lagb[barque_db1]}); lr=$(max_of ${lagb[pg_receivewal]})
    mb_=$(max_of ${lagms[barque_db1]}); mr=$(max_of ${lagms[pg_receivewal]})
    wr=$(median ${walb[barque_db1]})
}
ratio=$(calc "$tb / ($tr > 0 ? $tr : 1)" 3)
rate=$(calc "$wr / $seconds / 1e6" 1)
archived=$(find "$STORE/wal/db1" -type f 2>/dev/null | wc -l)
sum data_set "pgbench -i -s $scale, pgbench -c 2 -j 2 -T $seconds per run, $runs runs each, alternated (PostgreSQL fsync = off; the receivers fsync)"
sum tps_barque "$tb (median of ${tps[barque_db1]% })"
sum tps_pg_receivewal "$tr (median of ${tps[pg_receivewal]% })"
sum wal_rate "$rate MB/s of WAL under pgbench with Barque as the synchronous standby ($(calc "$wr / $seg_size / $seconds" 1) segments/s of $((seg_size >> 20)) MiB)"
sum lag_barque "max $lb bytes, $mb_ ms (flush_lag) behind pg_current_wal_lsn(), sampled every 0.2 s"
sum lag_pg_receivewal "max $lr bytes, $mr ms"
sum barque_archived "$archived WAL files in the worker's store for db1"
sum goal_tps_vs_pg_receivewal "$ratio of pg_receivewal --synchronous's TPS (goal >= 0.95): $(goal "$ratio" 0.95 '>=')"
sum goal_receiver_lag "$(calc "$lb / $seg_size" 3) segments at most (goal <= 1): $(goal "$(calc "$lb / $seg_size" 3)" 1 '<=')"
for hl in "${heavy_loads[@]}"; do
    if [[ $hl == tpcb ]]; then
        sum heavy_data_set "pgbench -c $heavy_clients -j 2 -M prepared -T $seconds after a CHECKPOINT, no synchronous standby, one run each; tpcb: TPC-B-like, bulk: TPC-B-like and UPDATEs of 1000 accounts (range.sql), as often"
    fi
    hw=${hwalb[$hl.barque_db1]}
    sum "heavy_${hl}_wal_rate" "$(calc "$hw / $seconds / 1e6" 1) MB/s of WAL with Barque streaming ($(calc "$hw / $seg_size / $seconds" 1) segments/s; ${htps[$hl.barque_db1]} tps); with pg_receivewal $(calc "${hwalb[$hl.pg_receivewal]} / $seconds / 1e6" 1) MB/s (${htps[$hl.pg_receivewal]} tps)"
    sum "heavy_${hl}_lag_barque" "max ${hlagb[$hl.barque_db1]} bytes, ${hlagms[$hl.barque_db1]} ms (flush_lag)"
    sum "heavy_${hl}_lag_pg_receivewal" "max ${hlagb[$hl.pg_receivewal]} bytes, ${hlagms[$hl.pg_receivewal]} ms"
    hs=$(calc "${hlagb[$hl.barque_db1]} / $seg_size" 3)
    sum "goal_receiver_lag_heavy_$hl" "$hs segments at most = ${hlagb[$hl.barque_db1]} of $seg_size bytes behind (goal: never more than one segment behind): $(goal "$hs" 1 '<=')"
done
((heavy_clients)) || sum heavy_data_set "not run (--heavy-clients 0)"
if ((${#archivers[@]})); then
    sum archive_data_set "backlog: $ARCH_B segments of $((seg_size >> 20)) MiB (last $ARCH_LAST) written by pgbench -c 8 -j 2 -M prepared, the bulk mix, with archive_command = '' (pgbench -i -s $scale), a fresh copy of that data directory for every run; live: CHECKPOINT, then pgbench -c 2 -j 2 -T $seconds, the $live_load load; $archive_runs runs, medians"
    live_mbs_all=()
    # shellcheck disable=SC2086
    for tool in "${all_archivers[@]}"; do
        [[ " ${archivers[*]} " == *" $tool "* ]] || continue
        if [[ -z ${bl_rate[$tool]:-} ]]; then
            sum "archive_backlog_$tool" "${bl_status[$tool]:-not run}"
            sum "archive_live_$tool" "${bl_status[$tool]:-not run}"
            continue
        fi
        st=${bl_status[$tool]:-}
        sum "archive_backlog_$tool" "$(median ${bl_rate[$tool]}) segments/s (${label[$tool]}: ${bl_count[$tool]% } segments in ${bl_secs[$tool]% } s)${st:+; ${st%; }}"
        if [[ -n ${lv_rate[$tool]:-} ]]; then
            # kept up: the backlog left at the end drained within 2 s in every run (a batch
            # archiver such as pgBackRest's async one ends with a batch in flight)
            kept=yes
            for x in ${lv_drain[$tool]}; do
                [[ $x != ">120" && $(calc "$x <= 2" 0) == 1 ]] || kept=no
            done
            lst=${lv_status[$tool]:-}
            sum "archive_live_$tool" "$(median ${lv_rate[$tool]}) segments/s archived while the cluster wrote $(median ${lv_mbs[$tool]}) MB/s ($(median ${lv_segs[$tool]}) segments/s); .ready at the end ${lv_end[$tool]% } (max ${lv_max[$tool]% }), drained in ${lv_drain[$tool]% } s: kept up: $kept${lst:+; ${lst%; }}"
            read -ra x <<<"${lv_mbs[$tool]}"
            live_mbs_all+=("${x[@]}")
        else
            sum "archive_live_$tool" "not run (the backlog did not finish)"
        fi
        [[ $tool != barque* ]] || sum "archive_store_files_$tool" "${wp_files[$tool]% } files in the worker's store for its cluster"
    done
    ((${#live_mbs_all[@]})) && sum wal_rate_live "$(median "${live_mbs_all[@]}") MB/s ($(calc "$(median "${live_mbs_all[@]}") * 1e6 / $seg_size" 2) segments/s) of WAL under the live load ($live_load, pgbench -c 2 -j 2) on the archiving cluster (median of all live runs)"
    sum archive_reference "measured in the issue before any Barque code (backlog of 119): pgBackRest sync lz4 17 segments/s, async lz4 process-max 2 33/s, cp + sync 23/s; WAL under load about 190 MB/s (12 segments/s)"
    # shellcheck disable=SC2086
    for tool in barque barque_spool; do
        [[ " ${archivers[*]} " == *" $tool "* ]] || continue
        g=goal_wal_push_backlog
        [[ $tool == barque ]] || g=goal_wal_push_spool_backlog
        if [[ -z ${bl_rate[$tool]:-} || -n ${bl_status[$tool]:-} ]]; then
            sum "$g" "${label[$tool]} backlog >= pgBackRest async backlog: ${bl_status[$tool]:-not measured}"
        elif [[ -z ${bl_rate[pgbr_async]:-} || -n ${bl_status[pgbr_async]:-} ]]; then
            sum "$g" "${label[$tool]} backlog >= pgBackRest async backlog: no pgBackRest async figure (${bl_status[pgbr_async]:-not run})"
        else
            v=$(median ${bl_rate[$tool]}) a=$(median ${bl_rate[pgbr_async]})
            sum "$g" "${label[$tool]} backlog >= pgBackRest async backlog: $v vs $a segments/s: $(goal "$v" "$a" '>=')"
        fi
    done
else
    sum archive_data_set "not run (--archive none)"
fi
echo "---- summary ----"
printf '%s\n' "${summary[@]}"
if ((check)); then
    ((archived > 0)) || check_fail "Barque archived no WAL file"
    if ((have_walpush)); then
        # shellcheck disable=SC2086
        for tool in barque barque_spool; do
            [[ " ${archivers[*]} " == *" $tool "* ]] || continue
            [[ -n ${bl_count[$tool]:-} && $(max_of ${bl_count[$tool]}) -ge 1 && -z ${bl_status[$tool]:-} ]] ||
                check_fail "${label[$tool]} did not archive the backlog: ${bl_status[$tool]:-${bl_count[$tool]:-no run}}"
        done
    fi
    ((fail_check == 0)) || exit 1
    echo "wal.sh: --check: passed"
fi
