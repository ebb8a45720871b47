#!/usr/bin/env bash
# shellcheck disable=SC2012
# integration.wal_stream: pg_wal_stream (pg/basebackup.h) as PostgreSQL 15's synchronous standby.
#   1. pg_backup_tool stream creates the permanent slot barque_db1 (RESERVE_WAL) and streams as
#      application_name barque_db1; a base backup is taken (pg_basebackup -X none).
#   2. With synchronous_standby_names = 'barque_db1' it is the sync standby (pg_stat_replication).
#   3. RPO=0: a client commits rows one transaction at a time, printing each id as its COMMIT
#      returns; after at least 1,000 the primary is killed with SIGKILL and its data directory
#      set aside. The base backup recovered with only the streamed WAL (restore_command copies
#      from the receiver's directory; the last segment is its full-size .partial) has every row
#      whose COMMIT returned.
#   4. The receiver restarts on the existing slot and resumes with no gap: the segments it
#      completes continue the ones it had; each one's page header (pg/walfile.h) names its
#      own place and this cluster's system, and another cluster's is refused.
#   5. Streaming from a standby that is then promoted: the end of timeline 1 (its last segment
#      kept as .partial), 00000002.history, and segments of timeline 2.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
[[ -x ${BQ_PG_BACKUP_TOOL:-} ]] || fail "BQ_PG_BACKUP_TOOL is not set (ctest sets it)"
bq_tmpdir
echo "scratch dir: $BQ_TMP"
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
chmod 755 "$BQ_TMP"

C=$(pg_start main)
pg_psql main -c "CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT now())"
pg_psql main -c "SELECT system_identifier FROM pg_control_system()" >"$BQ_TMP/sysid1"
WAL=$BQ_TMP/wal
mkdir -p "$WAL"

# ---- 1. the receiver, then a base backup --------------------------------------------------------
rx=$(bq_spawn rx "$BQ_PG_BACKUP_TOOL" stream "$C" "$WAL" barque_db1 barque_db1)
bq_wait_log "$BQ_TMP/rx.log" '^slot barque_db1 created' 15
bq_wait_log "$BQ_TMP/rx.log" '^position ' 15
assert_eq "physical" "$(pg_psql main -c "SELECT slot_type FROM pg_replication_slots WHERE slot_name = 'barque_db1'")"
pg_dir() { mkdir -p "$1"; ((EUID != 0)) || chown postgres:postgres "$1"; }
pg_dir "$BQ_TMP/base"
as_pg "$BQ_PGBIN/pg_basebackup" -d "$C" -D "$BQ_TMP/base/data" -X none -c fast \
    >"$BQ_TMP/basebackup.log" 2>&1 || fail "pg_basebackup: $(cat "$BQ_TMP/basebackup.log")"

# ---- 2. the synchronous standby ------------------------------------------------------------------
pg_psql main -c "ALTER SYSTEM SET synchronous_standby_names = 'barque_db1'" -c "SELECT pg_reload_conf()" >/dev/null
sync_state() { [[ $(pg_psql main -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'barque_db1'") == sync ]]; }
bq_wait_for "barque_db1 to be the synchronous standby" 15 sync_state

# ---- 3. commits, then SIGKILL of the primary -------------------------------------------------------
# one id per line, printed when its COMMIT returned (line-buffered)
python3 -c '
import sys
for i in range(1, 100001):
    print(f"INSERT INTO t (id) VALUES ({i}) RETURNING id;")' >"$BQ_TMP/inserts.sql"
client=$(bq_spawn client stdbuf -oL psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$C" -f "$BQ_TMP/inserts.sql")
acked() { (($(grep -c '^[0-9]' "$BQ_TMP/client.log" 2>/dev/null || echo 0) >= 1000)); }
bq_wait_for "1,000 commits" 120 acked
bq_kill "$(pg_pid main)" KILL
bq_wait_for "the client to see the primary gone" 20 bq__pid_gone "$client"
grep '^[0-9]' "$BQ_TMP/client.log" | sort -n >"$BQ_TMP/acked.txt"
n_acked=$(wc -l <"$BQ_TMP/acked.txt")
((n_acked >= 1000)) || fail "only $n_acked commits returned"
bq_wait_for "the receiver to stop on the lost primary" 70 bq__pid_gone "$rx"
grep -q '^error: ' "$BQ_TMP/rx.log" || fail "the receiver ended without an error: $(tail -3 "$BQ_TMP/rx.log")"
# the primary's data directory is gone for good (moved aside, never started again)
mv "$BQ_TMP/main/data" "$BQ_TMP/main-lost"

# recover the base backup from the streamed WAL only
ARCH=$BQ_TMP/arch
mkdir -p "$ARCH"
for f in "$WAL"/*; do
    b=$(basename "$f")
    cp "$f" "$ARCH/${b%.partial}"
done
chmod -R a+rX "$ARCH"
cat >>"$BQ_TMP/base/data/postgresql.auto.conf" <<CONF
restore_command = 'cp $ARCH/%f %p'
synchronous_standby_names = ''
CONF
touch "$BQ_TMP/base/data/recovery.signal"
chown -R postgres:postgres "$BQ_TMP/base/data" 2>/dev/null || true
pg_start_dir r1 "$BQ_TMP/base/data"
pg_psql r1 -c "SELECT id FROM t ORDER BY id" >"$BQ_TMP/recovered.txt"
missing=$(comm -23 "$BQ_TMP/acked.txt" "$BQ_TMP/recovered.txt" | wc -l)
assert_eq 0 "$missing" "rows whose COMMIT returned but are missing after recovery (of $n_acked): $(comm -23 "$BQ_TMP/acked.txt" "$BQ_TMP/recovered.txt" | head -5 | tr '\n' ' ')"
n_rec=$(wc -l <"$BQ_TMP/recovered.txt")
pg_stop r1

# ---- 4. restart on the existing slot: no gap --------------------------------------------------------
C2=$(pg_start second)
W2=$BQ_TMP/wal2
mkdir -p "$W2"
rx2=$(bq_spawn rx2 "$BQ_PG_BACKUP_TOOL" stream "$C2" "$W2" barque_db2 barque_db2)
bq_wait_log "$BQ_TMP/rx2.log" '^slot barque_db2 created' 15
pg_psql second -c "CREATE TABLE u AS SELECT g FROM generate_series(1, 100000) g" -c "SELECT pg_switch_wal()" >/dev/null
bq_wait_log "$BQ_TMP/rx2.log" '^complete ' 30
bq_kill "$rx2" KILL # no goodbye: the slot alone says where to resume
first=$(grep '^complete ' "$BQ_TMP/rx2.log" | tail -1 | cut -d' ' -f2)
pg_psql second -c "INSERT INTO u SELECT g FROM generate_series(1, 100000) g" -c "SELECT pg_switch_wal()" >/dev/null
pg_psql second -c "INSERT INTO u SELECT g FROM generate_series(1, 100000) g" -c "SELECT pg_switch_wal()" >/dev/null
rx3=$(bq_spawn rx3 "$BQ_PG_BACKUP_TOOL" stream "$C2" "$W2" barque_db2 barque_db2)
bq_wait_log "$BQ_TMP/rx3.log" '^slot barque_db2 existing' 15
last_want=$(pg_psql second -c "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
have_last() { [[ -f $W2/$last_want ]]; }
bq_wait_for "segment $last_want after the restart" 30 have_last
# every segment from the first one to the last, none missing
python3 - "$W2" "$last_want" <<'PY' || fail "a gap in the streamed WAL after the restart: $(ls "$W2" | tr '\n' ' ')"
import os, sys
d, last = sys.argv[1], sys.argv[2]
names = sorted(n for n in os.listdir(d) if len(n) == 24)
seg = lambda n: int(n[8:16], 16) * 256 + int(n[16:24], 16)
want = range(seg(names[0]), seg(last) + 1)
have = {seg(n) for n in names}
missing = [s for s in want if s not in have]
sys.exit(1 if missing else 0)
PY
# the streamed segments are this cluster's, each at its own place (pg_wal_segment_check); a
# segment of the other cluster is refused naming both systems
sysid2=$(pg_psql second -c "SELECT system_identifier FROM pg_control_system()")
for f in "$W2"/????????????????????????; do
    out=$("$BQ_PG_BACKUP_TOOL" wal-check "$f" "$sysid2") || fail "wal-check $f: $out"
done
sysid1=$(cat "$BQ_TMP/sysid1")
rc=0; out=$("$BQ_PG_BACKUP_TOOL" wal-check "$(ls "$W2"/???????????????????????? | head -1)" "$sysid1") || rc=$?
assert_eq 1 "$rc" "wal-check of another cluster's segment"
assert_contains "$out" "belongs to system $sysid2, not $sysid1"
bq_kill "$rx3" TERM
grep -q '^stopped after' "$BQ_TMP/rx3.log" || fail "the receiver did not stop cleanly on SIGTERM: $(tail -3 "$BQ_TMP/rx3.log")"
# ---- 5. a promotion: the receiver follows the timeline switch ----------------------------------
# The receiver streams from a standby (cascading); the standby is promoted. Restarted as the
# job would be after an error, it resumes on the slot's timeline, gets the end of timeline 1,
# its history file, and goes on on timeline 2.
C3=$(pg_start tl)
pg_dir "$BQ_TMP/sb"
as_pg "$BQ_PGBIN/pg_basebackup" -d "$C3" -D "$BQ_TMP/sb/data" -R -X stream -c fast \
    >"$BQ_TMP/sb-basebackup.log" 2>&1 || fail "pg_basebackup of the standby: $(cat "$BQ_TMP/sb-basebackup.log")"
pg_start_dir sb "$BQ_TMP/sb/data"
SB=$(pg_conninfo sb)
W3=$BQ_TMP/wal3
mkdir -p "$W3"
rx4=$(bq_spawn rx4 bash -c 'for i in $(seq 1 40); do [[ -e $1/STOP ]] && exit 0; "$2" stream "$3" "$4" barque_tl barque_tl; sleep 0.3; done' \
    _ "$BQ_TMP" "$BQ_PG_BACKUP_TOOL" "$SB" "$W3")
bq_wait_log "$BQ_TMP/rx4.log" '^slot barque_tl created' 20
pg_psql tl -c "CREATE TABLE v AS SELECT g FROM generate_series(1, 50000) g" -c "SELECT pg_switch_wal()" >/dev/null
bq_wait_log "$BQ_TMP/rx4.log" '^complete 00000001' 30
# a little more, no switch: the promotion then ends timeline 1 inside a segment
last1=$(grep '^complete 00000001' "$BQ_TMP/rx4.log" | tail -1 | cut -d' ' -f2)
pg_psql tl -c "INSERT INTO v SELECT g FROM generate_series(1, 1000) g" >/dev/null
bq_wait_log "$BQ_TMP/rx4.log" "^segment 00000001.* from 0\$" 30
# the newest begun (a receiver restarted by the loop begins again at its slot's segment)
[[ $(grep '^segment 00000001' "$BQ_TMP/rx4.log" | cut -d' ' -f2 | sort | tail -1) > $last1 ]] ||
    fail "the receiver did not begin the segment after $last1"
as_pg "$BQ_PGBIN/pg_ctl" -D "$BQ_TMP/sb/data" -w -t 60 promote >"$BQ_TMP/promote.log" 2>&1 ||
    fail "promote: $(cat "$BQ_TMP/promote.log")"
pg_psql sb -c "INSERT INTO v SELECT g FROM generate_series(1, 50000) g" -c "SELECT pg_switch_wal()" >/dev/null
bq_wait_log "$BQ_TMP/rx4.log" '^history 00000002.history for timeline 2' 30
bq_wait_log "$BQ_TMP/rx4.log" '^complete 00000002' 30
grep -q '^timeline 1 ended at ' "$BQ_TMP/rx4.log" || fail "the receiver did not see timeline 1 end: $(grep -v '^position' "$BQ_TMP/rx4.log" | tail -8)"
ls "$W3"/00000001????????????????.partial >/dev/null 2>&1 || fail "no .partial of timeline 1's last segment: $(ls "$W3" | tr '\n' ' ')"
assert_contains "$(cat "$W3/00000002.history")" "1	"
touch "$BQ_TMP/STOP"
bq_kill "$rx4" TERM
tl_end=$(grep '^timeline 1 ended at ' "$BQ_TMP/rx4.log" | head -1)

echo "wal_stream test: $n_acked commits returned before SIGKILL, $n_rec rows recovered from the streamed WAL, none missing; restart after $first resumed with no gap to $last_want; promotion: $tl_end"
