# integration.pitr: point-in-time recovery (issue 5, item 4) on a streaming cluster.
#   Batches of rows are committed with their times recorded; then each target recovers exactly
#   the batches committed before it and none after:
#     --target-time T1 (between batches 1 and 2)       -> batch 1
#     --target-name rp2 (a restore point after 2)      -> batches 1-2
#     --target-xid X3 (batch 3's transaction)           -> batches 1-3; with --exclusive 1-2
#     --target-lsn L4 (after batch 4's commit)          -> batches 1-4
#   each from BACKUP_ID auto (the newest backup ending before the target), written with
#   recovery.signal and restore_command = '... wal-get db1 %f %p', started, promoted.
#   Refusals: a time before every backup, a time in the future, an unknown timeline.
#   RPO=0: with synchronous = on and synchronous_standby_names = 'barque_db1', 1,200 commits
#   (each returned, so acknowledged) then the primary SIGKILLed while another session writes;
#   a recovery to the end of the archive (--target-tli latest) has every one of them: the
#   segment being streamed comes from the receiver's spool through wal-get.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
printf 'data_listen = tcp://127.0.0.1:%s\n' "$(bq_free_port)" >>"$FLEET/east-1.conf"
fleet_cluster db1 east "$C"
printf 'synchronous = on\n' >>"$FLEET/coordinator.conf"
fleet_coord_start
PGCLI=$(fleet_cli_for_pg "$BQ_TMP/pgcli")
printf 'cli_command = %s -c %s\n' "$BQ_BIN_CLI" "$PGCLI" >>"$FLEET/east-1.conf"
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
streaming() { [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'barque_db1'") == 1 ]]; }
bq_wait_for "the wal-stream job of db1 to stream" 30 streaming

pg_psql main -c "CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL)"
bid=$(backup_take db1) || fail "backup: $(cat "$BQ_TMP/backup-last.err")"
batch() { pg_psql main -c "INSERT INTO t (batch) SELECT $1 FROM generate_series(1, 100)"; }
utc_now() { pg_psql main -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"; }
rc=0; out=$(fleet_cli recover db1 auto /nowhere --worker east-1 --target-time "2000-01-01 00:00:00" 2>&1) || rc=$?
assert_eq 1 "$rc" "a time before every backup: $out"
assert_contains "$out" "no DONE backup ends before it"
sleep 1.1 # the backup's job end (its stop time in the catalog) is before T1
batch 1
T1=$(utc_now)
sleep 1.1 # commit timestamps have microseconds; a clear second between T1 and batch 2
batch 2
pg_psql main -c "SELECT pg_create_restore_point('rp2')" >/dev/null
X3=$(pg_psql main -c "BEGIN" -c "INSERT INTO t (batch) SELECT 3 FROM generate_series(1, 100)" -c "SELECT txid_current()" -c "COMMIT")
batch 4
L4=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
batch 5
out=$(fleet_cli switch-wal db1 --archive --json 2>&1) || fail "switch-wal --archive: $out"
sw=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["wal_file"])' "$out")
out=$(fleet_cli status)
assert_contains "$out" "WAL stream, last archived $sw"
assert_contains "$out" "receiver RUNNING on east-1"

# recover_to NAME ARGS...: recover db1 (auto) into a new directory with ARGS, start it, wait
# for the end of recovery, print the batches it has ("1 2 3"), stop it.
recover_to() {
    local name=$1 dest=$BQ_TMP/$1.restore
    shift
    pg_dir "$dest.parent"
    recover_json db1 auto "$dest.parent/data" --worker east-1 "$@" --target-action promote \
        >/dev/null || fail "recover to $*: $(cat "$BQ_TMP/recover-last.err")"
    [[ -f $dest.parent/data/recovery.signal ]] || fail "no recovery.signal in the restore ($*)"
    grep -q "restore_command = '.* wal-get db1 %f %p --prefer-site east'" "$dest.parent/data/postgresql.auto.conf" ||
        fail "no restore_command in postgresql.auto.conf: $(tail -n 8 "$dest.parent/data/postgresql.auto.conf")"
    pg_start_dir "$name" "$dest.parent/data"
    promoted() { [[ $(pg_psql "$1" -c "SELECT pg_is_in_recovery()") == f ]]; }
    bq_wait_for "$name to end recovery and promote" 60 promoted "$name"
    pg_psql "$name" -c "SELECT string_agg(DISTINCT batch::text, ' ' ORDER BY batch::text) FROM t"
    pg_psql "$name" -c "SELECT count(*) FROM t" >"$BQ_TMP/$name.count"
    pg_stop "$name"
}
assert_eq "1" "$(recover_to r_time --target-time "$T1")" "--target-time $T1"
assert_eq 100 "$(cat "$BQ_TMP/r_time.count")" "rows at $T1"
assert_eq "1 2" "$(recover_to r_name --target-name rp2)" "--target-name rp2"
assert_eq "1 2 3" "$(recover_to r_xid --target-xid "$X3")" "--target-xid $X3"
assert_eq "1 2" "$(recover_to r_xidx --target-xid "$X3" --exclusive)" "--target-xid $X3 --exclusive"
assert_eq "1 2 3 4" "$(recover_to r_lsn --target-lsn "$L4")" "--target-lsn $L4"
assert_eq 400 "$(cat "$BQ_TMP/r_lsn.count")" "rows at $L4"

# ---- refusals --------------------------------------------------------------------------------------
rc=0; out=$(fleet_cli recover db1 auto /nowhere --worker east-1 --target-time "2099-01-01 00:00:00" 2>&1) || rc=$?
assert_eq 1 "$rc" "a time in the future: $out"
assert_contains "$out" "is in the future"
rc=0; out=$(fleet_cli recover db1 "$bid" /nowhere --worker east-1 --target-tli 7 2>&1) || rc=$?
assert_eq 1 "$rc" "an unknown timeline: $out"
assert_contains "$out" "target timeline 7 is not in the archive"
rc=0; out=$(fleet_cli recover db1 auto /nowhere --worker east-1 2>&1) || rc=$?
assert_eq 2 "$rc" "auto with no target: $out"
rc=0; out=$(fleet_cli recover db1 auto /nowhere --worker east-1 --target-time "yesterday" 2>&1) || rc=$?
assert_eq 2 "$rc" "a bad time: $out"
assert_contains "$out" "is not a time"
# ---- RPO=0 ---------------------------------------------------------------------------------------
pg_psql main -c "ALTER SYSTEM SET synchronous_standby_names = 'barque_db1'" -c "SELECT pg_reload_conf()" >/dev/null
sync_standby() { [[ $(pg_psql main -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'barque_db1'") == sync ]]; }
bq_wait_for "barque_db1 to be the synchronous standby" 30 sync_standby
pg_psql main -c "CREATE TABLE acked (id int PRIMARY KEY)" -c "CREATE TABLE noise (id serial, v text)"
python3 -c 'print("\n".join(f"INSERT INTO acked VALUES ({i});" for i in range(1, 1201)))' >"$BQ_TMP/acked.sql"
psql -X -q -d "$C" -v ON_ERROR_STOP=1 -f "$BQ_TMP/acked.sql" || fail "the 1,200 synchronous commits failed"
psql -X -q -d "$C" -c "INSERT INTO noise (v) SELECT md5(g::text) FROM generate_series(1, 3000000) g" \
    >/dev/null 2>&1 &
noise=$!
bq__register "$noise" psql
noisy() { [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO noise%'") == 1 ]]; }
bq_wait_for "the noise transaction to be writing" 10 noisy
kill -KILL "$(pg_pid main)"
wait "$noise" 2>/dev/null || true
bq_wait_for "the primary to be gone" 10 bq__pid_gone "$(pg_pid main)"
dest=$BQ_TMP/rpo.parent
pg_dir "$dest"
recover_json db1 latest "$dest/data" --worker east-1 --target-tli latest >/dev/null ||
    fail "recover to the end of the archive: $(cat "$BQ_TMP/recover-last.err")"
pg_start_dir rpo "$dest/data"
promoted() { [[ $(pg_psql rpo -c "SELECT pg_is_in_recovery()") == f ]]; }
bq_wait_for "the RPO=0 copy to end recovery" 60 promoted
assert_eq 1200 "$(pg_psql rpo -c "SELECT count(*) FROM acked")" "acknowledged commits after the primary's SIGKILL"
grep -q 'restored log file' "$BQ_TMP/rpo/postgres.log" || fail "the copy restored no WAL through wal-get"
pg_stop rpo
echo "pitr: OK"
