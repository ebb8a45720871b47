#!/usr/bin/env bash
# Backup and restore benchmark (issue 4; see README.md in this folder): Barque's `backup --wait`
# and `recover --wait` through a real coordinator and worker, next to pg_basebackup, pgBackRest
# and cp -a + sync, on one pgbench cluster, in one run.
#
#   tests/bench/backup.sh [--scale N] [--runs N] [--pgbench-seconds S] [--check] [--json FILE]
#
#   --scale N            pgbench -i -s N (default 100: a data directory of about 1.7 GB)
#   --runs N             timed runs of every backup and restore; figures are medians (default 3)
#   --pgbench-seconds S  pgbench -c 2 -T S between the full and the second backups (default 60)
#   --check              also assert outcomes (ctest bench.backup_smoke): every tool's backups and
#                        restores exited 0, Barque's backups are DONE, its restore passes
#                        pg_verifybackup, the summary has every line. Never a speed.
#   --json FILE          also write the summary as one JSON object to FILE
#
# Steps: (a) a PostgreSQL 15 cluster from the integration harness (data checksums, max_wal_size
# 128MB), pgbench -i -s N, CHECKPOINT; then archive_mode on with pgBackRest's archive-push as
# archive_command, a restart, a coordinator and one worker (store key, fresh store) on loopback,
# and a pgBackRest stanza with two local repos: repo1 lz4 + repo-bundle + repo-block (block
# incremental, beta in 2.45), repo2 lz4 plain; (b) tar | zstd -1 of the data directory (size);
# (c) the full backups, the tools' order rotated run by run: barque (a fresh store each run),
# pgBackRest repo1 and repo2 (full), pg_basebackup -Fp and -Ft --compress=server-lz4, cp -a + sync;
# (d) restores of the last full, rotated likewise: barque recover, pgBackRest restore (repo1,
# repo2) to a fresh --pg1-path, cp -a + sync; pg_verifybackup of Barque's; (e) pgbench -c 2 -T S,
# then Barque's second backup and pgBackRest's incremental into each repo: bytes added. The
# worker's VmHWM (/proc/PID/status) is read after every backup and restore. A benchmark, not a
# timed test: a goal that is missed prints MISS, never fails.
#
# Environment:
#   BQ_BIN_COORDINATOR, BQ_BIN_WORKER, BQ_BIN_CLI  the Barque binaries (ctest sets them), or
#   BQ_BUILD        the CMake build dir they are taken from
#   BQ_TMPROOT      where the scratch dir is made (default /tmp); it needs about 3.5 times the
#                   data directory free (the data, one copy or restore at a time, the repos)
#   BQ_KEEP=1       keep the scratch dir
# Needs root or the postgres user (pgBackRest and PostgreSQL run as postgres), pgbackrest
# (deploy/install-deps.sh), pg_basebackup and pg_verifybackup (postgresql-15), zstd, python3.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../integration/lib.sh
source "$root/tests/integration/lib.sh"
# shellcheck source=../integration/fleet.sh
source "$root/tests/integration/fleet.sh"
# shellcheck source=../integration/backup.sh
source "$root/tests/integration/backup.sh"

scale=100
runs=3
pgbench_s=60
check=0
json_out=
while (($#)); do
    case $1 in
    --scale) scale=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --pgbench-seconds) pgbench_s=$2; shift 2 ;;
    --check) check=1; shift ;;
    --json) json_out=$2; shift 2 ;;
    -h | --help) sed -n '2,/^here=/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "backup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $scale =~ ^[0-9]+$ && $scale -ge 1 ]] || { echo "backup.sh: --scale $scale: a positive integer" >&2; exit 2; }
[[ $runs =~ ^[0-9]+$ && $runs -ge 1 && $runs -le 20 ]] || { echo "backup.sh: --runs $runs: 1..20" >&2; exit 2; }
[[ $pgbench_s =~ ^[0-9]+$ && $pgbench_s -ge 1 ]] || { echo "backup.sh: --pgbench-seconds $pgbench_s: a positive integer" >&2; exit 2; }

bq_require_bins
for tool in pgbackrest zstd tar cp sync find awk df python3 runuser; do
    command -v "$tool" >/dev/null || { echo "backup.sh: $tool is not installed (deploy/install-deps.sh)" >&2; exit 2; }
done
for tool in pgbench pg_basebackup pg_verifybackup pg_ctl; do
    [[ -x $BQ_PGBIN/$tool ]] || { echo "backup.sh: $BQ_PGBIN/$tool is missing (postgresql-15)" >&2; exit 2; }
done

# ---- helpers (as in store.sh) -------------------------------------------------------------------

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mb() { calc "$1 / 1e6" 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
load1() { cut -d' ' -f1 /proc/loadavg; }
gitstate() {
    local h d
    h=$(git -C "$root" log -1 --format=%h 2>/dev/null || echo "?")
    d=$(git -C "$root" diff --stat -- worker/ store/ pg/ 2>/dev/null | awk '/\|/ { printf "%s%s", n++ ? ", " : "", $1 } END { if (!n) printf "unmodified" }')
    echo "commit $h; modified in worker/ store/ pg/: $d"
}
bytes_of_tree() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }
goal() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= g : (op == "<") ? v < g : v <= g; print ok ? "PASS" : "MISS" }'; }
pg_dir() { mkdir -p "$1"; ((EUID != 0)) || chown postgres:postgres "$1"; chmod 700 "$1"; }

summary=()   # "key: value" lines, printed together at the end
sum() { summary+=("$1: $2"); }
declare -A status   # "backup TOOL" / "restore TOOL" -> "ok" once every run exited 0

bq_tmpdir
work=$BQ_TMP
chmod 755 "$work"

# timed NAME LOG CMD...: run CMD (output to LOG), print its wall seconds; fail naming LOG when
# it exits non-zero (the benchmark then stops: a figure of a failed run means nothing).
timed() {
    local name=$1 log=$2 t0 rc=0
    shift 2
    sync
    t0=$(now)
    "$@" >"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail -n 20 "$log" >&2
        fail "$name exited $rc (output in $log)"
    fi
    elapsed "$t0" "$(now)"
}

echo "# backup.sh: $(date -u +%FT%TZ), $(nproc) CPUs, load $(load)"
echo "# $(gitstate)"
newer=$(find "$root/worker" "$root/store" "$root/pg" -name '*.[ch]' -newer "$BQ_BIN_WORKER" -printf '%f ' 2>/dev/null || true)
if [[ -n $newer ]]; then
    echo "# note: changed since $BQ_BIN_WORKER was built: ${newer% } (rebuild it to measure the current code)"
fi
sum git_at_start "$(gitstate)"
sum worker_binary "$BQ_BIN_WORKER (built $(date -u -r "$BQ_BIN_WORKER" +%FT%TZ)${newer:+; files changed since: ${newer% }})"
sum tools "$(pgbackrest version), $("$BQ_PGBIN/pg_basebackup" --version), zstd $(zstd --version | grep -o 'v[0-9][0-9.]*' | head -n 1), $(nproc) CPUs"

# ---- free space ---------------------------------------------------------------------------------

tmproot=${BQ_TMPROOT:-/tmp}
avail=$(df -B1 --output=avail "$tmproot" | tail -n 1 | tr -d ' ')
est=$((scale * 17000000 + 200000000)) # tables and indexes, plus pg_wal at max_wal_size 128MB
need=$((est * 35 / 10 + 1000000000))
echo "# free space in $tmproot: $(calc "$avail / 1e9" 1) GB; this run needs about $(calc "$need / 1e9" 1) GB"
if ((avail < need)); then
    fail "not enough free space in $tmproot: $(calc "$avail / 1e9" 1) GB free, about $(calc "$need / 1e9" 1) GB needed (the data, one copy or restore at a time, the pgBackRest repos and Barque's store); set BQ_TMPROOT or lower --scale"
fi

# ---- (a) the cluster, the fleet, the stanza -----------------------------------------------------

t0=$(now)
pg_start main >/dev/null
pg_psql main -c "ALTER SYSTEM SET max_wal_size = '128MB'" -c "SELECT pg_reload_conf()" >/dev/null
if ! "$BQ_PGBIN/pgbench" -i -q -s "$scale" "$(pg_conninfo main)" >"$work/pgbench-init.log" 2>&1; then
    tail -n 20 "$work/pgbench-init.log" >&2
    fail "pgbench -i -s $scale failed (log $work/pgbench-init.log)"
fi
pg_psql main -c CHECKPOINT
# shellcheck disable=SC2154
data=$PG_DATA_main # (set by pg_start)
echo "# pgbench -i -s $scale and CHECKPOINT: $(elapsed "$t0" "$(now)") s"

# pgBackRest: its own scratch (owned by postgres, which runs it and the server's archive_command).
pgbr=$work/pgbackrest
pg_dir "$pgbr"
for d in log lock spool; do pg_dir "$pgbr/$d"; done
pgbr_conf=$pgbr/pgbackrest.conf
# The server runs again under the name src (pg_start_dir): socket in $work/src.
cat >"$pgbr_conf" <<CONF
[global]
repo1-path=$pgbr/repo1
repo1-bundle=y
repo1-block=y
repo1-retention-full=9999
repo2-path=$pgbr/repo2
repo2-retention-full=9999
beta=y
compress-type=lz4
process-max=2
start-fast=y
log-path=$pgbr/log
lock-path=$pgbr/lock
spool-path=$pgbr/spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$data
pg1-socket-path=$work/src
CONF
((EUID != 0)) || chown postgres:postgres "$pgbr_conf"
pg_psql main -c "ALTER SYSTEM SET archive_mode = on" \
    -c "ALTER SYSTEM SET archive_command = 'pgbackrest --config=$pgbr_conf --stanza=bench archive-push %p'" >/dev/null
pg_stop main
pg_start_dir src "$data"
conn=$(pg_conninfo src)
echo "pg1-port=$(pg_port src)" >>"$pgbr_conf"
pgbr_cmd() { as_pg pgbackrest --config="$pgbr_conf" --stanza=bench "$@"; }
if ! pgbr_cmd stanza-create >"$work/pgbr-stanza.log" 2>&1 || ! pgbr_cmd check >>"$work/pgbr-stanza.log" 2>&1; then
    cat "$work/pgbr-stanza.log" >&2
    fail "pgbackrest stanza-create / check failed (log $work/pgbr-stanza.log, $pgbr/log)"
fi

data_bytes=$(bytes_of_tree "$data")
data_files=$(find "$data" -type f | wc -l)
wal_bytes=$(bytes_of_tree "$data/pg_wal")
sum data_set "pgbench -i -s $scale (PostgreSQL $(cat "$data/PG_VERSION"), data checksums, max_wal_size 128MB, archive_mode on with pgbackrest archive-push), running and idle during the full backups"
sum data_bytes "$data_bytes ($(mb "$data_bytes") MB in $data_files files; pg_wal/ $(mb "$wal_bytes") MB, which cp -a and tar copy and the backup tools do not)"
echo "# data directory: $(mb "$data_bytes") MB in $data_files files"

# shellcheck disable=SC2034 # (both read by fleet_init)
FLEET_JOB_LEASE=60s
# shellcheck disable=SC2034
FLEET_LOG_LEVEL=info
fleet_init
fleet_site east
fleet_site west
fleet_worker_conf east-1 east 2
fleet_worker_store_key east-1
printf 'data_listen = tcp://127.0.0.1:%s\n' "$(bq_free_port)" >>"$FLEET/east-1.conf"
# west-1 (site west, its own store, the same master key) restores east-1's backup over
# east-1's data port: the restore from a peer's store, beside the local one.
fleet_worker_conf west-1 west 2
printf 'store_key_file = keys/east-1.storekey\ndata_listen = tcp://127.0.0.1:%s\n' \
    "$(bq_free_port)" >>"$FLEET/west-1.conf"
fleet_cluster db1 east "$conn"
fleet_coord_start
store=$FLEET/east-1/store
wpid=
# worker_start [fresh]: start east-1 (after removing its store and scratch when "fresh") and wait
# until the coordinator lists it online; sets wpid.
worker_start() {
    if [[ ${1:-} == fresh ]]; then rm -rf "$store" "$FLEET/east-1/scratch"; fi
    fleet_worker_start east-1
    # shellcheck disable=SC2154
    wpid=$FLEET_PID_east_1 # (set by fleet_worker_start)
    bq_wait_for "worker east-1 online" 30 fleet_worker_online east-1
    [[ $(cat "/proc/$wpid/comm") == barque-worker* ]] || fail "PID $wpid is $(cat "/proc/$wpid/comm"), not barque-worker"
}
# worker_stop: SIGTERM, then wait until the coordinator sees it gone (so no job goes to it).
worker_stop() {
    bq_kill "$wpid" TERM
    bq_wait_for "worker east-1 offline" 30 fleet_worker_offline east-1
}
cp_sync() { cp -a "$1" "$2" && sync; }
vmhwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$wpid/status"; } # KiB
worker_start fresh

# ---- (b) tar | zstd -1 ------------------------------------------------------------------------

find "$data" -type f -exec cat {} + >/dev/null # warm the page cache
t0=$(now)
tar -cf - -C "$data" . | zstd -1 -T1 -q >"$work/data.tar.zst"
zstd1_s=$(elapsed "$t0" "$(now)")
zstd1_bytes=$(stat -c %s "$work/data.tar.zst")
rm -f "$work/data.tar.zst"
sum tar_zstd1 "$(mb "$zstd1_bytes") MB ($zstd1_s s, one run, zstd -1 -T1, pg_wal/ included), ratio $(calc "$data_bytes / $zstd1_bytes" 2) [load $(load)]"

# ---- (c) full backups -------------------------------------------------------------------------

tools=(barque pgbr_block pgbr_plain pgbb_plain pgbb_lz4 cp_sync)
declare -A label=(
    [barque]="barque backup --wait (zstd 3, encrypted, dedup)"
    [pgbr_block]="pgBackRest full, lz4, process-max 2, bundle + block (repo1)"
    [pgbr_plain]="pgBackRest full, lz4, process-max 2 (repo2)"
    [pgbb_plain]="pg_basebackup -Fp -c fast"
    [pgbb_lz4]="pg_basebackup -Ft --compress=server-lz4 -c fast"
    [cp_sync]="cp -a + sync"
)
declare -A bt bsize bload rt rload
declare -A pgbr_sets   # repo -> labels of the fulls
bq_durations=()
bq_stored=()
bq_store_dir=()
hwm_backup=0
out=$work/out
pg_dir "$out"

# pgbr_last REPO FIELD: a figure of the newest backup of REPO from `pgbackrest info --output=json`
# (label, type, repo_delta: bytes it added to the repo, repo_delta_map: its block maps' bytes
# (bundle + block), size: its database size).
pgbr_last() {
    pgbr_cmd --repo="$1" info --output=json | python3 -c '
import json, sys
b = json.load(sys.stdin)[0]["backup"][-1]
r = b["info"]["repository"]
f = {"label": b["label"], "type": b["type"], "repo_delta": r["delta"],
     "repo_delta_map": r.get("delta-map", 0), "size": b["info"]["size"]}
print(f[sys.argv[1]])' "$2"
}

# run_backup TOOL RUN: one timed full backup; appends to bt[TOOL], bsize[TOOL], bload[TOOL].
run_backup() {
    local tool=$1 r=$2 t size id repo before
    sync # every tool starts from a clean page cache: none pays for the writeback of another
    case $tool in
    barque)
        # A fresh store every run: a second full into the same store would find every chunk
        # already stored (dedup), which is not what a first backup costs.
        worker_stop
        worker_start fresh
        sync
        local t0 rc=0
        t0=$(now)
        id=$(backup_take db1) || rc=$?
        t=$(elapsed "$t0" "$(now)")
        if ((rc != 0)) || [[ -z $id ]]; then
            cat "$work/backup-last.err" >&2
            fail "barque backup db1 --wait exited $rc (events in $work/backup-last.jsonl)"
        fi
        [[ $(backup_field db1 "$id" state) == DONE ]] || fail "barque backup $id is not DONE"
        bq_last=$id
        bq_durations+=("$(backup_field db1 "$id" duration_ms)")
        bq_stored+=("$(backup_field db1 "$id" stored_bytes)")
        size=$(bytes_of_tree "$store")
        bq_store_dir+=("$size")
        local h
        h=$(vmhwm)
        ((h > hwm_backup)) && hwm_backup=$h
        ;;
    pgbr_block | pgbr_plain)
        repo=1
        [[ $tool == pgbr_plain ]] && repo=2
        before=$(bytes_of_tree "$pgbr/repo$repo/backup")
        t=$(timed "pgbackrest backup --repo=$repo --type=full" "$work/pgbr-backup-$repo-r$r.log" \
            pgbr_cmd --repo="$repo" --type=full backup)
        size=$(($(bytes_of_tree "$pgbr/repo$repo/backup") - before))
        [[ $(pgbr_last "$repo" type) == full ]] || fail "pgbackrest repo$repo: the newest backup is not a full"
        pgbr_sets[$repo]+=" $(pgbr_last "$repo" label)"
        ;;
    pgbb_plain)
        rm -rf "$out/pgbb"
        t=$(timed "pg_basebackup -Fp" "$work/pgbb-plain-r$r.log" \
            "$BQ_PGBIN/pg_basebackup" -d "$conn" -D "$out/pgbb" -Fp -c fast -X stream)
        size=$(bytes_of_tree "$out/pgbb")
        rm -rf "$out/pgbb"
        ;;
    pgbb_lz4)
        rm -rf "$out/pgbb"
        t=$(timed "pg_basebackup -Ft --compress=server-lz4" "$work/pgbb-lz4-r$r.log" \
            "$BQ_PGBIN/pg_basebackup" -d "$conn" -D "$out/pgbb" -Ft --compress=server-lz4 -c fast -X stream)
        size=$(bytes_of_tree "$out/pgbb")
        rm -rf "$out/pgbb"
        ;;
    cp_sync)
        rm -rf "$out/cp"
        t=$(timed "cp -a + sync" "$work/cp-r$r.log" cp_sync "$data" "$out/cp")
        size=$(bytes_of_tree "$out/cp")
        ;; # the copy stays: the cp restore copies it back
    esac
    bt[$tool]+=" $t"
    bsize[$tool]=$size
    bload[$tool]+=" $(load1)"
    echo "# run $r backup $tool: $t s, $(mb "$size") MB [load $(load)]"
}

for ((r = 1; r <= runs; r++)); do
    n=${#tools[@]}
    for ((i = 0; i < n; i++)); do # run r starts at the r-th tool: every tool goes first once
        run_backup "${tools[(i + r - 1) % n]}" "$r"
    done
done
for tool in "${tools[@]}"; do status["backup $tool"]=ok; done

# ---- (d) restores -----------------------------------------------------------------------------

# The worker restarts (its store kept) so that its VmHWM after the restores is theirs.
worker_stop
worker_start
fleet_worker_start west-1
bq_wait_for "worker west-1 online" 30 fleet_worker_online west-1
rtools=(barque pgbr_block pgbr_plain cp_sync barque_peer)
declare -A rlabel=(
    [barque]="barque recover --wait (+ sync)"
    [barque_peer]="barque recover --worker west-1 --wait (+ sync): west-1 reads east-1's store over its data port"
    [pgbr_block]="pgBackRest restore, repo1 (bundle + block), process-max 2 (+ sync)"
    [pgbr_plain]="pgBackRest restore, repo2 (plain lz4), process-max 2 (+ sync)"
    [cp_sync]="cp -a + sync"
)
bq_restore_ms=()
bq_peer_ms=() # "duration_ms peer_bytes read_from" of each restore by west-1
restore_dir=$work/restore
pg_dir "$restore_dir"
verify_result="not run"
# The timed restores: each ends with a sync (Barque syncs what it wrote; pgBackRest fsyncs its
# files; the sync makes the three comparable with cp -a + sync).
bq_recover() { "$BQ_BIN_CLI" -c "$FLEET/cli.conf" recover db1 "$bq_last" "$1" --worker "${2:-east-1}" --wait --json && sync; }
pgbr_restore() { pgbr_cmd --repo="$1" --pg1-path="$2" restore && sync; }
run_restore() {
    local tool=$1 r=$2 t dest=$restore_dir/$1
    rm -rf "$dest"
    sync # as for the backups: the previous restore's removal is not this one's to write back
    case $tool in
    barque)
        t=$(timed "barque recover db1 $bq_last" "$work/recover-r$r.jsonl" bq_recover "$dest")
        bq_restore_ms+=("$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print([e for e in ev if e.get("event") == "done"][-1]["restore"]["duration_ms"])' "$work/recover-r$r.jsonl")")
        local h
        h=$(vmhwm)
        ((h > hwm_restore)) && hwm_restore=$h
        if ((r == runs)); then # outside the timing: is it the backup the server made?
            if v=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$dest" 2>&1); then
                verify_result="passed ($(echo "$v" | tail -n 1))"
            else
                verify_result="FAILED: $(echo "$v" | head -n 3 | tr '\n' ' ')"
            fi
        fi
        ;;
    barque_peer)
        t=$(timed "barque recover db1 $bq_last --worker west-1" "$work/recover-peer-r$r.jsonl" \
            bq_recover "$dest" west-1)
        bq_peer_ms+=("$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
r = [e for e in ev if e.get("event") == "done"][-1]["restore"]
print(r["duration_ms"], r["peer_bytes"], r["read_from"])' "$work/recover-peer-r$r.jsonl")")
        ;;
    pgbr_block | pgbr_plain)
        local repo=1
        [[ $tool == pgbr_plain ]] && repo=2
        pg_dir "$dest"
        t=$(timed "pgbackrest restore --repo=$repo" "$work/pgbr-restore-$repo-r$r.log" \
            pgbr_restore "$repo" "$dest")
        ;;
    cp_sync)
        t=$(timed "cp -a + sync (restore)" "$work/cp-restore-r$r.log" cp_sync "$out/cp" "$dest")
        ;;
    esac
    rt[$tool]+=" $t"
    rload[$tool]+=" $(load1)"
    echo "# run $r restore $tool: $t s, $(mb "$(bytes_of_tree "$dest")") MB [load $(load)]"
    rm -rf "$dest"
}
hwm_restore=0
for ((r = 1; r <= runs; r++)); do
    n=${#rtools[@]}
    for ((i = 0; i < n; i++)); do
        run_restore "${rtools[(i + r - 1) % n]}" "$r"
    done
done
for tool in "${rtools[@]}"; do status["restore $tool"]=ok; done
rm -rf "$out/cp"

# ---- (e) after pgbench writes: the second backups -----------------------------------------------

# The harness runs PostgreSQL with fsync = off (fast tests); a production server syncs its WAL,
# which bounds how many pages a minute of pgbench touches. Writes here run with fsync on.
psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$conn" -c "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
t0=$(now)
if ! "$BQ_PGBIN/pgbench" -c 2 -T "$pgbench_s" "$conn" >"$work/pgbench-run.log" 2>&1; then
    tail -n 20 "$work/pgbench-run.log" >&2
    fail "pgbench -c 2 -T $pgbench_s failed (log $work/pgbench-run.log)"
fi
tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$work/pgbench-run.log")
sum pgbench_writes "pgbench -c 2 -T $pgbench_s: ${tps:-?} tps, $(awk '/number of transactions actually processed/ { print $NF }' "$work/pgbench-run.log") transactions [load $(load)]"

before=$(bytes_of_tree "$store")
sync
t0=$(now)
rc=0
id2=$(backup_take db1) || rc=$?
bq2_s=$(elapsed "$t0" "$(now)")
if ((rc != 0)) || [[ -z $id2 ]]; then
    cat "$work/backup-last.err" >&2
    fail "the second barque backup exited $rc"
fi
[[ $(backup_field db1 "$id2" state) == DONE ]] || fail "barque backup $id2 is not DONE"
status["backup barque second"]=ok
bq2_added=$(($(bytes_of_tree "$store") - before))
bq2_stored=$(backup_field db1 "$id2" stored_bytes)
bq2_dedup=$(backup_field db1 "$id2" dedup_bytes)
bq2_data=$(backup_field db1 "$id2" data_bytes)
bq2_ms=$(backup_field db1 "$id2" duration_ms)
h=$(vmhwm)
hwm_after_second=$h
sum barque_second_backup "$(mb "$bq2_added") MB added to the store dir ($(mb "$bq2_stored") MB new packs, $(mb "$bq2_dedup") of $(mb "$bq2_data") MB deduplicated), $bq2_s s wall, worker ${bq2_ms} ms [load $(load)]"

declare -A incr_added incr_delta incr_s
for repo in 1 2; do
    before=$(bytes_of_tree "$pgbr/repo$repo/backup")
    incr_s[$repo]=$(timed "pgbackrest backup --repo=$repo --type=incr" "$work/pgbr-incr-$repo.log" \
        pgbr_cmd --repo="$repo" --type=incr backup)
    [[ $(pgbr_last "$repo" type) == incr ]] || fail "pgbackrest repo$repo: the newest backup is not an incr"
    incr_added[$repo]=$(($(bytes_of_tree "$pgbr/repo$repo/backup") - before))
    incr_delta[$repo]=$(pgbr_last "$repo" repo_delta)
done
status["backup pgbackrest incr"]=ok
sum pgbr_block_incr "$(mb "${incr_added[1]}") MB added to repo1/backup ($(mb "${incr_delta[1]}") MB repository delta by pgbackrest info), ${incr_s[1]} s [load $(load)]"
sum pgbr_plain_incr "$(mb "${incr_added[2]}") MB added to repo2/backup ($(mb "${incr_delta[2]}") MB repository delta by pgbackrest info), ${incr_s[2]} s (file-level incremental)"

# ---- figures -------------------------------------------------------------------------------------

declare -A bmed rmed
for tool in "${tools[@]}"; do
    # shellcheck disable=SC2086
    bmed[$tool]=$(median ${bt[$tool]})
done
for tool in "${rtools[@]}"; do
    # shellcheck disable=SC2086
    rmed[$tool]=$(median ${rt[$tool]})
done
bq_dur_med=$(calc "$(median "${bq_durations[@]}") / 1000" 2)
bq_rdur_med=$(calc "$(median "${bq_restore_ms[@]}") / 1000" 2)
bq_full_stored=${bq_stored[-1]}
bq_full_dir=${bq_store_dir[-1]}
bsize[barque]=$bq_full_dir

table=()
table+=("| tool | full backup s, median (runs) | vs barque | stored MB | data / stored | restore s, median (runs) | vs barque | load 1-min, backup runs | load 1-min, restore runs |")
table+=("|---|---:|---:|---:|---:|---:|---:|---|---|")
for tool in "${tools[@]}"; do
    # shellcheck disable=SC2086
    line="| ${label[$tool]} | ${bmed[$tool]} ($(echo ${bt[$tool]} | tr ' ' '/')) | $(calc "${bmed[$tool]} / ${bmed[barque]}" 2)x | $(mb "${bsize[$tool]}") | $(calc "$data_bytes / ${bsize[$tool]}" 2) |"
    if [[ -n ${rmed[$tool]:-} ]]; then
        # shellcheck disable=SC2086
        line+=" ${rmed[$tool]} ($(echo ${rt[$tool]} | tr ' ' '/')) | $(calc "${rmed[$tool]} / ${rmed[barque]}" 2)x |"
    else
        line+=" – | – |"
    fi
    # shellcheck disable=SC2086
    # shellcheck disable=SC2086,SC2116
    line+=" $(echo ${bload[$tool]}) | $(echo ${rload[$tool]:-–}) |" # (echo: trims the spaces)
    table+=("$line")
    # shellcheck disable=SC2086
    sum "backup_$tool" "${bmed[$tool]} s (median of$(printf ' %s' ${bt[$tool]}) s; ${label[$tool]}), $(mb "${bsize[$tool]}") MB, ratio $(calc "$data_bytes / ${bsize[$tool]}" 2) [load 1-min per run:${bload[$tool]}]"
done
for tool in "${rtools[@]}"; do
    # shellcheck disable=SC2086
    sum "restore_$tool" "${rmed[$tool]} s (median of$(printf ' %s' ${rt[$tool]}) s; ${rlabel[$tool]}) [load 1-min per run:${rload[$tool]}]"
done
sum barque_backup_worker_duration "$bq_dur_med s (median of the worker's duration_ms:$(printf ' %s' "${bq_durations[@]}")); --wait polls every second, so the wall time above is up to about 1 s longer"
sum barque_full_stored "$(mb "$bq_full_dir") MB store dir ($(mb "$bq_full_stored") MB new packs by show-backup), ratio $(calc "$data_bytes / $bq_full_dir" 2)"
sum barque_restore_worker_duration "$bq_rdur_med s (median of the restore's duration_ms:$(printf ' %s' "${bq_restore_ms[@]}"))"
sum barque_restore_pg_verifybackup "$verify_result"
peer_durs=$(printf '%s\n' "${bq_peer_ms[@]}" | awk '{ print $1 }' | tr '\n' ' ')
# shellcheck disable=SC2086
sum barque_restore_from_peer "${rmed[barque_peer]} s wall, $(calc "$(median $peer_durs) / 1000" 2) s worker (median of the durations: ${peer_durs% }), $(calc "${rmed[barque_peer]} / ${rmed[barque]}" 3)x the local restore; $(mb "$(echo "${bq_peer_ms[-1]}" | awk '{ print $2 }')") MB received from $(echo "${bq_peer_ms[-1]}" | awk '{ print $3 }') (sealed chunks and store files)"
sum worker_vmhwm "after the full backups $(calc "$hwm_backup / 1024" 1) MiB (max of $runs fresh workers); after $runs restores $(calc "$hwm_restore / 1024" 1) MiB; after the restores and the second backup $(calc "$hwm_after_second / 1024" 1) MiB"

# Goals of issue 4, as ratios (3 decimals are judged). pgBackRest's best of its two repos counts.
pgbr_best_b=${bmed[pgbr_plain]}
pgbr_best_b_name=pgbr_plain
if awk -v a="${bmed[pgbr_block]}" -v b="${bmed[pgbr_plain]}" 'BEGIN { exit !(a < b) }'; then pgbr_best_b=${bmed[pgbr_block]}; pgbr_best_b_name=pgbr_block; fi
pgbr_best_r=${rmed[pgbr_plain]}
pgbr_best_r_name=pgbr_plain
if awk -v a="${rmed[pgbr_block]}" -v b="${rmed[pgbr_plain]}" 'BEGIN { exit !(a < b) }'; then pgbr_best_r=${rmed[pgbr_block]}; pgbr_best_r_name=pgbr_block; fi
g1=$(calc "${bmed[barque]} / $pgbr_best_b" 3)
g2=$(calc "${bmed[barque]} / ${bmed[pgbb_lz4]}" 3)
g3=$(calc "${rmed[barque]} / $pgbr_best_r" 3)
g4=$(calc "$bq2_added / ${incr_added[1]}" 3)
g5=$(calc "$bq_full_dir / $zstd1_bytes" 3)
hwm_max=$hwm_backup
((hwm_restore > hwm_max)) && hwm_max=$hwm_restore
((hwm_after_second > hwm_max)) && hwm_max=$hwm_after_second
g6=$(calc "$hwm_max / 1024" 1)
# (The goals are judged on the wall time of --wait; the ratio on the worker's own duration, which
# leaves out the CLI's 1 s polls, is printed beside it.)
sum goal_full_backup_vs_pgbackrest "$g1 of pgBackRest's full (${bmed[barque]} / $pgbr_best_b s, $pgbr_best_b_name, the faster repo; against the other: $(calc "${bmed[barque]} / ${bmed[pgbr_block]}" 3) repo1, $(calc "${bmed[barque]} / ${bmed[pgbr_plain]}" 3) repo2; on the worker's duration: $(calc "$bq_dur_med / $pgbr_best_b" 3)) (goal <= 0.75): $(goal "$g1" 0.75 '<=')"
sum goal_full_backup_vs_pg_basebackup_lz4 "$g2 of pg_basebackup -Ft --compress=server-lz4 (${bmed[barque]} / ${bmed[pgbb_lz4]} s; on the worker's duration: $(calc "$bq_dur_med / ${bmed[pgbb_lz4]}" 3)) (goal <= 2): $(goal "$g2" 2 '<=')"
sum goal_restore_vs_pgbackrest "$g3 of pgBackRest's restore (${rmed[barque]} / $pgbr_best_r s, $pgbr_best_r_name, the faster repo; on the worker's duration: $(calc "$bq_rdur_med / $pgbr_best_r" 3)) (goal <= 1): $(goal "$g3" 1 '<=')"
sum goal_second_backup_vs_pgbackrest_block_incr "$g4 of pgBackRest's block incremental ($(mb "$bq2_added") / $(mb "${incr_added[1]}") MB added; against its repository delta $(calc "$bq2_added / ${incr_delta[1]}" 3)) (goal <= 0.5): $(goal "$g4" 0.5 '<=')"
sum goal_full_stored_vs_tar_zstd1 "$g5 of tar | zstd -1 ($(mb "$bq_full_dir") / $(mb "$zstd1_bytes") MB) (goal <= 1.5): $(goal "$g5" 1.5 '<=')"
sum goal_worker_peak_rss "$g6 MiB, the highest VmHWM read (goal < 100 MiB): $(goal "$g6" 100 '<')"
sum git_at_end "$(gitstate)"
sum load_at_end "$(load)"

# ---- summary ----------------------------------------------------------------------------------

{
    echo "---- summary ----"
    printf '%s\n' "${summary[@]}"
    printf '%s\n' "${table[@]}"
    echo "---- end ----"
} | tee "$work/summary.txt"

if [[ -n $json_out ]]; then
    {
        echo "{"
        sep=" "
        for line in "${summary[@]}"; do
            k=${line%%: *}
            v=${line#*: }
            v=${v//\\/\\\\}
            v=${v//\"/\\\"}
            printf '%s "%s": "%s"\n' "$sep" "$k" "$v"
            sep=","
        done
        echo ", \"tools\": ["
        sep=" "
        for tool in "${tools[@]}"; do
            # shellcheck disable=SC2086
            printf '%s    {"tool": "%s", "backup_s": [%s], "backup_s_median": %s, "stored_bytes": %s, "restore_s": [%s], "restore_s_median": %s}\n' \
                "$sep" "$tool" "$(echo ${bt[$tool]} | tr ' ' ',')" "${bmed[$tool]}" "${bsize[$tool]}" \
                "$(echo ${rt[$tool]:-} | tr ' ' ',')" "${rmed[$tool]:-null}"
            sep=","
        done
        echo "  ]"
        echo "}"
    } >"$json_out"
fi

if ((check)); then
    for k in "${tools[@]}"; do
        [[ ${status["backup $k"]:-} == ok ]] || fail "check: backup $k did not exit 0 in every run"
    done
    for k in "${rtools[@]}"; do
        [[ ${status["restore $k"]:-} == ok ]] || fail "check: restore $k did not exit 0 in every run"
    done
    [[ ${status["backup barque second"]:-} == ok && ${status["backup pgbackrest incr"]:-} == ok ]] ||
        fail "check: a second backup did not succeed"
    [[ $verify_result == passed* ]] || fail "check: pg_verifybackup of Barque's restore: $verify_result"
    for k in git_at_start tools data_set data_bytes tar_zstd1 pgbench_writes barque_second_backup \
        pgbr_block_incr pgbr_plain_incr backup_barque backup_pgbr_block backup_pgbr_plain \
        backup_pgbb_plain backup_pgbb_lz4 backup_cp_sync restore_barque restore_pgbr_block \
        restore_pgbr_plain restore_cp_sync restore_barque_peer barque_restore_from_peer \
        barque_backup_worker_duration barque_full_stored \
        barque_restore_worker_duration barque_restore_pg_verifybackup worker_vmhwm \
        goal_full_backup_vs_pgbackrest goal_full_backup_vs_pg_basebackup_lz4 \
        goal_restore_vs_pgbackrest goal_second_backup_vs_pgbackrest_block_incr \
        goal_full_stored_vs_tar_zstd1 goal_worker_peak_rss git_at_end load_at_end; do
        grep -q "^$k: " "$work/summary.txt" || fail "check: the summary has no $k line"
    done
    [[ $(grep -c '^| [a-zA-Z]' "$work/summary.txt") -eq $((${#tools[@]} + 1)) ]] ||
        fail "check: the summary's table does not have one row per tool"
    echo "backup.sh: check passed"
fi
