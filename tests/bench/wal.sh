#!/usr/bin/env bash
# WAL benchmark (issue 5; see README.md in this folder): the cost of Barque as a cluster's
# synchronous standby (RPO=0) next to pg_receivewal --synchronous, and the streaming receiver's
# lag under load, in one run.
#
#   tests/bench/wal.sh [--scale N] [--seconds S] [--runs N] [--check]
#
#   --scale N     pgbench -i -s N (default 10)
#   --seconds S   pgbench -c 2 -T S per timed run (default 30)
#   --runs N      timed runs of each receiver, alternated; figures are medians (default 3)
#   --check       also assert outcomes (ctest bench.wal_smoke): every pgbench run exited 0 with
#                 its receiver synchronous, and Barque archived segments. Never a speed.
#
# Each run: synchronous_standby_names names the receiver under test (pg_receivewal
# --synchronous on its own slot, or Barque's wal-stream job through a real coordinator and
# worker: application_name barque_db1, synchronous = on), pgbench -c 2 -T S, TPS read from
# pgbench; every 0.2 s the receiver's lag is sampled from pg_stat_replication
# (pg_current_wal_lsn() - flush_lsn, bytes; flush_lag). The harness's PostgreSQL runs with
# fsync = off, for both receivers alike; the receivers fsync.
# Not measured yet: wal-push (archive_command) against pgBackRest's archive-push and cp + sync
# (wal-push is not built): the summary says so.
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
while (($#)); do
    case $1 in
    --scale) scale=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "wal.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in "$scale" "$seconds" "$runs"; do
    [[ $v =~ ^[0-9]+$ && $v -ge 1 ]] || { echo "wal.sh: $v: a positive integer" >&2; exit 2; }
done
bq_require_bins
[[ -x $BQ_PGBIN/pg_receivewal && -x $BQ_PGBIN/pgbench ]] || { echo "wal.sh: postgresql-15 tools missing" >&2; exit 2; }

calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
goal() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= g : v <= g; print ok ? "PASS" : "MISS" }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
summary=()
sum() { summary+=("$1: $2"); }
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
fail_check=0
check_fail() { echo "wal.sh: --check: $*" >&2; fail_check=1; }

bq_tmpdir
chmod 755 "$BQ_TMP"
C=$(pg_start main)
"$BQ_PGBIN/pgbench" -i -s "$scale" -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1 || { cat "$BQ_TMP/pgbench-init.log"; exit 1; }
seg_size=$(pg_psql main -c "SELECT pg_size_bytes(current_setting('wal_segment_size'))")

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
fleet_cluster db1 east "$C"
printf 'synchronous = on\n' >>"$FLEET/coordinator.conf"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store

standby_is() { # NAME: the synchronous standby is NAME, streaming
    [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND sync_state = 'sync' AND state = 'streaming'") == 1 ]]
}
set_sync() {
    pg_psql main -c "ALTER SYSTEM SET synchronous_standby_names = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
}

# one timed run with receiver $1 (pg_receivewal | barque_db1): prints "TPS MAXLAG_BYTES MAXLAG_MS WAL_BYTES"
one_run() {
    local app=$1 out lsn0 lsn1 maxb=0 maxms=0 b ms pid
    set_sync "$app"
    bq_wait_for "$app to be the synchronous standby" 30 standby_is "$app"
    lsn0=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
    "$BQ_PGBIN/pgbench" -c 2 -j 2 -T "$seconds" -n "$C" >"$BQ_TMP/pgbench-$app.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        read -r b ms < <(pg_psql main -F' ' -c "SELECT pg_current_wal_lsn() - flush_lsn, coalesce(extract(epoch FROM flush_lag) * 1000, 0)::bigint FROM pg_stat_replication WHERE application_name = '$app'")
        [[ ${b:-0} =~ ^-?[0-9]+$ ]] && ((b > maxb)) && maxb=$b
        [[ ${ms:-0} =~ ^[0-9]+$ ]] && ((ms > maxms)) && maxms=$ms
        sleep 0.2
    done
    wait "$pid" || { echo "pgbench with $app failed: $(tail -3 "$BQ_TMP/pgbench-$app.log")" >&2; return 1; }
    lsn1=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
    out=$(awk '/^tps = / { print $3; exit }' "$BQ_TMP/pgbench-$app.log")
    echo "$out $maxb $maxms $(pg_psql main -c "SELECT '$lsn1'::pg_lsn - '$lsn0'::pg_lsn")"
}

declare -A tps lagb lagms walb
for ((r = 1; r <= runs; r++)); do
    if ((r % 2)); then order="barque_db1 pg_receivewal"; else order="pg_receivewal barque_db1"; fi
    for app in $order; do
        [[ $app == pg_receivewal ]] && rx_start
        line=$(one_run "$app") || { check_fail "run $r of $app failed"; line="0 0 0 0"; }
        [[ $app == pg_receivewal ]] && rx_stop
        read -r t b ms w <<<"$line"
        tps[$app]+="$t "
        lagb[$app]+="$b "
        lagms[$app]+="$ms "
        walb[$app]+="$w "
        echo "# run $r $app: $t tps, max lag $b bytes / $ms ms, $(calc "$w / 1e6" 1) MB of WAL in $seconds s [load $(load)]"
    done
done
set_sync ""

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
sum wal_push "not measured: wal-push (archive_command) is not built yet; pgBackRest archive-push and cp + sync figures come with it"
echo "---- summary ----"
printf '%s\n' "${summary[@]}"
if ((check)); then
    ((archived > 0)) || check_fail "Barque archived no WAL file"
    ((fail_check == 0)) || exit 1
    echo "wal.sh: --check: passed"
fi
