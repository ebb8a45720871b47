#!/usr/bin/env bash
# shellcheck disable=SC2154  # pg_start exports PG_PORT_<name>, PG_CONNINFO_<name>, PG_DATA_<name>
# integration.pg_basebackup: pg/basebackup.h against a real PostgreSQL 15 (data checksums on,
# a second tablespace, pgbench data, writes going on during the backup).
#   1. basebackup_test (BQ_BASEBACKUP_TEST) with BQ_TEST_CONNINFO: its live cases.
#   2. pg_backup_tool (BQ_PG_BACKUP_TOOL) writes a data directory (tablespace relocated), its
#      backup_manifest and the WAL from start to stop through a temporary slot;
#      pg_verifybackup passes on it; a server started on it has the marker row and the pgbench
#      rows; the source has no slot and no walsender left.
#   3. A corrupted page: the backup completes, names the file and block, and fails (BQ_E_PG).
#   4. Refusals: role without REPLICATION (BQ_E_PERM), nothing listening (BQ_E_PG), a backup
#      stopped by should_stop (BQ_E_CANCELLED), a WAL stream that never completes its last
#      segment (BQ_E_TIMEOUT after the stall timeout).
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

[[ -x ${BQ_PG_BACKUP_TOOL:-} ]] || fail "BQ_PG_BACKUP_TOOL is not set (ctest sets it)"
[[ -x ${BQ_BASEBACKUP_TEST:-} ]] || fail "BQ_BASEBACKUP_TEST is not set (ctest sets it)"

bq_tmpdir
echo "scratch dir: $BQ_TMP"

as_pg() {
    if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

# tool NAME ARGS...: run pg_backup_tool, output in $BQ_TMP/NAME.log (the harness scans logs
# for sanitizer reports); prints the exit status.
tool() {
    local name=$1 rc=0
    shift
    "$BQ_PG_BACKUP_TOOL" "$@" >"$BQ_TMP/$name.log" 2>&1 || rc=$?
    echo "$rc"
}

pg_start main >/dev/null
port=$PG_PORT_main
conninfo=$PG_CONNINFO_main
assert_eq "on" "$(pg_psql main -c 'SHOW data_checksums')" "data_checksums"

# --- a second tablespace, a marker, pgbench data
ts_src=$BQ_TMP/ts_src
mkdir -m 700 "$ts_src"
((EUID != 0)) || chown postgres:postgres "$ts_src"
pg_psql main -c "CREATE TABLESPACE bq_ts LOCATION '$ts_src'"
pg_psql main -c "CREATE TABLE marker (id int PRIMARY KEY, note text) TABLESPACE bq_ts"
pg_psql main -c "INSERT INTO marker VALUES (1, 'barque was here')"
pg_psql main -c "CREATE TABLE ts_data TABLESPACE bq_ts AS
                 SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 50000) g"
"$BQ_PGBIN/pgbench" -i -s 2 -q "$conninfo" >"$BQ_TMP/pgbench_init.log" 2>&1 \
    || fail "pgbench -i failed: $(tail -5 "$BQ_TMP/pgbench_init.log")"
ts_oid=$(pg_psql main -c "SELECT oid FROM pg_tablespace WHERE spcname = 'bq_ts'")

# --- 1. the unit binary's live cases
BQ_TEST_CONNINFO=$conninfo "$BQ_BASEBACKUP_TEST" >"$BQ_TMP/basebackup_test.log" 2>&1 || {
    cat "$BQ_TMP/basebackup_test.log" >&2
    fail "basebackup_test failed against cluster main"
}
out=$(cat "$BQ_TMP/basebackup_test.log")
assert_contains "$out" "[       OK ] test_live_backup_and_wal"
assert_contains "$out" "[       OK ] test_live_stopped_backups"
assert_contains "$out" "[       OK ] test_live_role_without_replication"
assert_not_contains "$out" "SKIPPED"

# --- 2. a backup with writes going on, written as a data directory
mkdir -m 755 "$BQ_TMP/restore"
dest=$BQ_TMP/restore/data
bq_spawn pgbench "$BQ_PGBIN/pgbench" -c 2 -T 8 -n "$conninfo" >/dev/null
sleep 1
rc=$(tool backup backup "$conninfo" "$dest" --stall 60)
out=$(cat "$BQ_TMP/backup.log")
assert_eq 0 "$rc" "exit status of the backup (output: $out)"
assert_contains "$out" "archive name=$ts_oid.tar oid=$ts_oid location=$ts_src"
assert_contains "$out" "archive name=base.tar oid=0 location="
assert_contains "$out" "checksum_failures=0"
assert_contains "$out" "slot name=barque_"
[[ $out =~ wal_segments=([0-9]+) ]] || fail "no WAL segment count in: $out"
((BASH_REMATCH[1] >= 1)) || fail "no WAL segments fetched"
[[ $out =~ files=([0-9]+) ]] && ((BASH_REMATCH[1] > 900)) || fail "too few files: $out"
[[ -s $dest/backup_manifest && -f $dest/tablespace_map && -f $dest/backup_label ]] \
    || fail "backup_manifest, tablespace_map or backup_label missing in $dest"
assert_eq "${dest}_ts$ts_oid" "$(readlink "$dest/pg_tblspc/$ts_oid")" "relocated tablespace link"
echo "backup: $(grep '^done' <<<"$out")"

# No slot and no walsender are left behind on the source.
bq_wait_for "walsenders of the backup to exit" 10 \
    test "$(pg_psql main -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'")" = 0
assert_eq 0 "$(pg_psql main -c 'SELECT count(*) FROM pg_replication_slots')" "slots left"

((EUID != 0)) || chown -R postgres:postgres "$BQ_TMP/restore"
verify=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$dest" 2>&1) || fail "pg_verifybackup failed: $verify"
assert_contains "$verify" "backup successfully verified"

# Start a server on it: its own port and socket, the tablespace where we put it.
printf '%s %s\n' "$ts_oid" "${dest}_ts$ts_oid" >"$dest/tablespace_map"
rport=$(bq_free_port)
cat >>"$dest/postgresql.conf" <<EOF

# restored by integration.pg_basebackup
port = $rport
unix_socket_directories = '$BQ_TMP/restore'
archive_mode = off
EOF
((EUID != 0)) || chown -R postgres:postgres "$BQ_TMP/restore"
(cd "$BQ_TMP/restore" && as_pg "$BQ_PGBIN/pg_ctl" -D "$dest" -l "$BQ_TMP/restore/postgres.log" \
    -w -t 120 start) >"$BQ_TMP/restore_pg_ctl.log" 2>&1 || fail "the restored cluster did not start"
bq__register "$(head -n 1 "$dest/postmaster.pid")" pg
rconn="host=127.0.0.1 port=$rport user=postgres dbname=postgres"
rq() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$rconn" -c "$1"; }
assert_eq "barque was here" "$(rq 'SELECT note FROM marker WHERE id = 1')" "marker row"
assert_eq 200000 "$(rq 'SELECT count(*) FROM pgbench_accounts')" "pgbench_accounts rows"
assert_eq 20 "$(rq 'SELECT count(*) FROM pgbench_tellers')" "pgbench_tellers rows"
assert_eq 50000 "$(rq 'SELECT count(*) FROM ts_data')" "rows in the tablespace"
assert_eq "${dest}_ts$ts_oid" "$(rq "SELECT pg_tablespace_location(oid) FROM pg_tablespace
                                    WHERE spcname = 'bq_ts'")" "tablespace location"
assert_eq f "$(rq 'SELECT pg_is_in_recovery()')" "restored cluster in recovery"
assert_contains "$(cat "$BQ_TMP/restore/postgres.log")" "consistent recovery state reached"
(cd "$BQ_TMP/restore" && as_pg "$BQ_PGBIN/pg_ctl" -D "$dest" -m fast -w -t 60 stop) \
    >>"$BQ_TMP/restore_pg_ctl.log" 2>&1 || fail "could not stop the restored cluster"

# --- 3. a page that fails its checksum
pg_psql main -c "CREATE TABLE corrupt AS SELECT g FROM generate_series(1, 2000) g"
pg_psql main -c "CHECKPOINT"
relpath=$(pg_psql main -c "SELECT pg_relation_filepath('corrupt')")
printf '\xde\xad\xbe\xef' | dd of="$PG_DATA_main/$relpath" bs=1 seek=$((8192 + 4000)) \
    conv=notrunc status=none
rc=$(tool corrupt backup "$conninfo" "$BQ_TMP/corrupt_copy" --no-wal)
out=$(cat "$BQ_TMP/corrupt.log")
assert_eq 1 "$rc" "exit status of the backup of a corrupt page (output: $out)"
assert_contains "$out" "checksum_failures=1"
assert_contains "$out" "failure file=./$relpath block=1"
assert_contains "$out" "error: BQ_E_PG: base backup of 127.0.0.1:$port is complete but the server found 1 page checksum failure (first: file \"./$relpath\", block 1)"
# the backup itself went to the end: the manifest is there
[[ -s $BQ_TMP/corrupt_copy/backup_manifest ]] || fail "no manifest after checksum failures"
pg_psql main -c "DROP TABLE corrupt"

# --- 4. refusals
pg_psql main -c "CREATE ROLE bq_plain LOGIN"
rc=$(tool norepl backup "$conninfo user=bq_plain" "$BQ_TMP/norepl")
out=$(cat "$BQ_TMP/norepl.log")
assert_eq 1 "$rc" "exit status without REPLICATION (output: $out)"
assert_contains "$out" "error: BQ_E_PERM: could not open a replication connection to 127.0.0.1:$port as role bq_plain: "
assert_contains "$out" "must be superuser or replication role"
[[ ! -e $BQ_TMP/norepl ]] || fail "a refused backup created its destination"

dead=$(bq_free_port)
rc=$(tool dead backup "host=127.0.0.1 port=$dead user=postgres" "$BQ_TMP/dead")
out=$(cat "$BQ_TMP/dead.log")
assert_eq 1 "$rc" "exit status with nothing listening (output: $out)"
assert_contains "$out" "error: BQ_E_PG: could not open a replication connection to 127.0.0.1:$dead as role postgres: "
assert_contains "$out" "Connection refused"

rc=$(tool cancel backup "$conninfo" "$BQ_TMP/cancelled" --cancel-after 2000000)
out=$(cat "$BQ_TMP/cancel.log")
assert_eq 1 "$rc" "exit status of a cancelled backup (output: $out)"
assert_contains "$out" "error: BQ_E_CANCELLED: base backup of 127.0.0.1:$port cancelled"
bq_wait_for "walsenders of the cancelled backup to exit" 10 \
    test "$(pg_psql main -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'")" = 0
assert_eq 0 "$(pg_psql main -c 'SELECT count(*) FROM pg_replication_slots')" "slots left"

t0=$(bq__now_ms)
rc=$(tool stall wal-stall "$conninfo" 3)
t1=$(bq__now_ms)
out=$(cat "$BQ_TMP/stall.log")
assert_eq 1 "$rc" "exit status of a stalled WAL stream (output: $out)"
assert_contains "$out" "error: BQ_E_TIMEOUT: WAL stream from 127.0.0.1:$port stalled: no WAL for 3 s"
assert_contains "$out" "second call: BQ_E_STATE: the WAL connection to 127.0.0.1:$port was closed"
(((t1 - t0) >= 2900 && (t1 - t0) < 20000)) || fail "the stall took $((t1 - t0)) ms, want 3 s"

echo "pg_basebackup: all checks passed"
