# integration.wal_failover: WAL across a failover (issue 5, items 1 and 4).
#   A primary and a streaming standby; db1's conninfo lists both hosts with
#   target_session_attrs=read-write. The primary is SIGKILLed and the standby promoted: the
#   wal-stream job moves to the new primary by itself (a new slot there, resumed where the
#   archive ended), the history file of timeline 2 is archived, and the WAL index has no gap on
#   either timeline nor between them. A point-in-time recovery from the backup taken on
#   timeline 1 to a time on timeline 2 has exactly the rows committed before it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

pg_start main >/dev/null
PP=$(pg_port main)
pg_dir "$BQ_TMP/standby.parent"
as_pg "$BQ_PGBIN/pg_basebackup" -d "host=127.0.0.1 port=$PP user=postgres" \
    -D "$BQ_TMP/standby.parent/data" -R -X stream -c fast >"$BQ_TMP/standby-basebackup.log" 2>&1 ||
    fail "pg_basebackup of the standby: $(cat "$BQ_TMP/standby-basebackup.log")"
pg_start_dir standby "$BQ_TMP/standby.parent/data"
PS=$(pg_port standby)
[[ $(pg_psql standby -c "SELECT pg_is_in_recovery()") == t ]] || fail "the standby is not in recovery"
C="host=127.0.0.1,127.0.0.1 port=$PP,$PS user=postgres dbname=postgres target_session_attrs=read-write"

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
printf 'data_listen = tcp://127.0.0.1:%s\n' "$(bq_free_port)" >>"$FLEET/east-1.conf"
fleet_cluster db1 east "$C"
fleet_coord_start
PGCLI=$(fleet_cli_for_pg "$BQ_TMP/pgcli")
printf 'cli_command = %s -c %s\n' "$BQ_BIN_CLI" "$PGCLI" >>"$FLEET/east-1.conf"
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
streaming_on() { [[ $(pg_psql "$1" -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'barque_db1'") == 1 ]]; }
bq_wait_for "the wal-stream job to stream from the primary" 30 streaming_on main

pg_psql main -c "CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL)"
bid=$(backup_take db1) || fail "backup: $(cat "$BQ_TMP/backup-last.err")"
pg_psql main -c "INSERT INTO t (batch) SELECT 1 FROM generate_series(1, 100)"
out=$(fleet_cli switch-wal db1 --archive 2>&1) || fail "switch-wal on timeline 1: $out"
lsn=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
replayed() { [[ $(pg_psql standby -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'") == t ]]; }
bq_wait_for "the standby to replay up to $lsn" 30 replayed

# ---- the failover ---------------------------------------------------------------------------------
kill -KILL "$(pg_pid main)"
bq_wait_for "the primary to be gone" 10 bq__pid_gone "$(pg_pid main)"
(cd "$BQ_TMP/standby" && as_pg "$BQ_PGBIN/pg_ctl" -D "$BQ_TMP/standby.parent/data" -w -t 60 promote) \
    >"$BQ_TMP/promote.log" 2>&1 || fail "promote: $(cat "$BQ_TMP/promote.log")"
[[ $(pg_psql standby -c "SELECT pg_is_in_recovery()") == f ]] || fail "the standby did not promote"
[[ $(pg_psql standby -c "SELECT timeline_id FROM pg_control_checkpoint()") -ge 1 ]]
pg_psql standby -c "INSERT INTO t (batch) SELECT 2 FROM generate_series(1, 100)"
T2=$(pg_psql standby -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
sleep 1.1 # commit timestamps have microseconds: a clear second between T2 and batch 3
pg_psql standby -c "INSERT INTO t (batch) SELECT 3 FROM generate_series(1, 100)"
bq_wait_for "the wal-stream job to stream from the new primary" 90 streaming_on standby
out=$(fleet_cli switch-wal db1 --archive --wait-timeout 60 2>&1) || fail "switch-wal on timeline 2: $out"

# ---- the WAL index across the switch ----------------------------------------------------------------
fleet_cli list-wal db1 --json >"$BQ_TMP/list-wal.json"
python3 - "$BQ_TMP/list-wal.json" <<'PY' || fail "list-wal across the failover: $(fleet_cli list-wal db1)"
import json, sys
tls = {t["timeline"]: t for t in json.load(open(sys.argv[1]))}
assert 1 in tls and 2 in tls, f"timelines {sorted(tls)}"
for n, t in tls.items():
    assert not t["gaps"], f"timeline {n} has gaps {t['gaps']}"
assert tls[2]["history"], "no 00000002.history"
seg = lambda name: int(name[8:16], 16) * 256 + int(name[16:24], 16)
end1 = max([seg(tls[1]["last"])] + [seg(p) for p in tls[1]["partials"]])
assert seg(tls[2]["first"]) <= end1 + 1, f"segments missing between {tls[1]['last']} and {tls[2]['first']}"
PY

# ---- recovery to a point on timeline 2 ----------------------------------------------------------------
pg_dir "$BQ_TMP/r2.parent"
recover_json db1 auto "$BQ_TMP/r2.parent/data" --worker east-1 --target-time "$T2" \
    --target-tli latest --target-action promote >/dev/null ||
    fail "recover to $T2 on timeline 2: $(cat "$BQ_TMP/recover-last.err")"
pg_start_dir r2 "$BQ_TMP/r2.parent/data"
promoted() { [[ $(pg_psql r2 -c "SELECT pg_is_in_recovery()") == f ]]; }
bq_wait_for "the copy to reach $T2 and promote" 60 promoted
assert_eq "1 2" "$(pg_psql r2 -c "SELECT string_agg(DISTINCT batch::text, ' ' ORDER BY batch::text) FROM t")" \
    "batches at $T2 on timeline 2"
grep -q 'restored log file "00000002.history"' "$BQ_TMP/r2/postgres.log" ||
    fail "the copy did not fetch 00000002.history: $(grep -i 'restored\|timeline' "$BQ_TMP/r2/postgres.log" | tail -5)"
pg_stop r2
echo "wal_failover: OK"
