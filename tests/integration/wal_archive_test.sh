# integration.wal_archive: archive_command and restore_command (issue 5, item 2).
#   1. archive_command = 'barque wal-push db1 %p' (cluster wal = archive): each segment the
#      server archives is in the worker's store, byte-identical, and in the WAL index.
#   2. wal-push rules: the same content again is exit 0 ("already archived"); other content
#      under an archived name is exit 1 and both copies are kept (the store's conflict file,
#      the first content still served); a file that is not WAL of the name it has, and a name
#      that is not a WAL name, are exit 1 with nothing stored.
#   3. wal-get: an archived segment is byte-identical at DEST, exit 0; a segment and a history
#      file that were never archived are exit 1; --prefetch 3 fetches the next segments in the
#      background and the next call takes one from there.
#   4. --spool: a backlog made while archiving failed is drained by the spool's pusher, with
#      every segment in the store and the index, and no segment reported before it was
#      durable; its markers are swept once the server marked the files done; a ready file
#      with other content than the archived one is exit 1 with the reason, no marker left.
#   6. A gap made on purpose (archive_command skips one segment): check reports the WAL archive
#      CRITICAL naming the segment; recover refuses a target beyond it, naming it, and takes
#      one before it.
#   5. With no worker online, wal-get of an archived segment is exit 2 (not "absent").
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
[[ -x ${BQ_STORE_WAL_GET:-} ]] || fail "BQ_STORE_WAL_GET is not set (ctest sets it)"
bq_tmpdir
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }

fleet_init
PGCLI=$(fleet_cli_for_pg "$BQ_TMP/pgcli")
pushcmd="$BQ_BIN_CLI -c $PGCLI wal-push db1"
getcmd="$BQ_BIN_CLI -c $PGCLI wal-get db1"
pg_start main >/dev/null
DATA=$BQ_TMP/main/data
pg_psql main -c "ALTER SYSTEM SET archive_mode = on" -c "ALTER SYSTEM SET archive_command = '$pushcmd %p'" >/dev/null
pg_stop main
pg_start_dir main "$DATA"
C=$(pg_conninfo main)
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
DP=$(bq_free_port)
printf 'data_listen = tcp://127.0.0.1:%s\n' "$DP" >>"$FLEET/east-1.conf"
fleet_cluster db1 east "$C"
printf 'wal = archive\n' >>"$FLEET/coordinator.conf"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store
KEY=$FLEET/keys/east-1.storekey

# ---- 1. archive_command --------------------------------------------------------------------------
pg_psql main -c "CREATE TABLE t (id serial PRIMARY KEY, v text)"
failing() { (($(pg_psql main -c "SELECT failed_count FROM pg_stat_archiver") > failed0)); }
switch_one() {
    pg_psql main -c "INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 2000) g" >/dev/null
    pg_psql main -c "SELECT pg_walfile_name(pg_switch_wal())"
}
last_archived() { [[ $(pg_psql main -c "SELECT last_archived_wal FROM pg_stat_archiver") == "$1" ]]; }
seg=$(switch_one)
bq_wait_for "the server to archive $seg" 30 last_archived "$seg"
[[ -f $STORE/wal/db1/${seg:0:8}/$seg ]] || fail "$seg is not in the store"
out=$("$BQ_STORE_WAL_GET" "$STORE" "$KEY" db1 "$seg" "$BQ_TMP/$seg.got") || fail "store_wal_get: $out"
cmp "$BQ_TMP/$seg.got" "$DATA/pg_wal/$seg" || fail "archived $seg differs from the server's"
indexed() { fleet_cli list-wal db1 --json | python3 -c '
import json, sys
tl = [t for t in json.load(sys.stdin) if t["timeline"] == 1]
sys.exit(0 if tl and tl[0]["last"] == sys.argv[1] and not tl[0]["gaps"] else 1)' "$1"; }
indexed "$seg" || fail "list-wal does not end at $seg: $(fleet_cli list-wal db1)"
[[ $(pg_psql main -c "SELECT failed_count FROM pg_stat_archiver") == 0 ]] || fail "the archiver failed"

# ---- 2. wal-push rules ----------------------------------------------------------------------------
mkdir -p "$BQ_TMP/push"
cp "$DATA/pg_wal/$seg" "$BQ_TMP/push/$seg"
chown -R postgres "$BQ_TMP/push" 2>/dev/null || true
rc=0; out=$(as_pg $pushcmd "$BQ_TMP/push/$seg" 2>&1) || rc=$?
assert_eq 0 "$rc" "the same content again: $out"
assert_contains "$out" "already archived"
python3 - "$BQ_TMP/push/$seg" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(200000); b = f.read(1); f.seek(200000); f.write(bytes([b[0] ^ 0xff]))
PY
rc=0; out=$(as_pg $pushcmd "$BQ_TMP/push/$seg" 2>&1) || rc=$?
assert_eq 1 "$rc" "other content under an archived name: $out"
assert_contains "$out" "holds other content"
ls "$STORE/wal/db1/${seg:0:8}/" | grep -q "^$seg.conflict-" || fail "the new content was not kept: $(ls "$STORE/wal/db1/${seg:0:8}/")"
"$BQ_STORE_WAL_GET" "$STORE" "$KEY" db1 "$seg" "$BQ_TMP/$seg.again" >/dev/null
cmp "$BQ_TMP/$seg.again" "$DATA/pg_wal/$seg" || fail "the first content of $seg is not what the store serves"
bogus=000000010000000000000099
head -c 16777216 /dev/urandom >"$BQ_TMP/push/$bogus"
rc=0; out=$(as_pg $pushcmd "$BQ_TMP/push/$bogus" 2>&1) || rc=$?
assert_eq 1 "$rc" "random bytes under a segment's name: $out"
assert_contains "$out" "WAL page header"
[[ ! -e $STORE/wal/db1/00000001/$bogus ]] || fail "the bogus segment was stored"
echo x >"$BQ_TMP/push/notwal"
rc=0; out=$(as_pg $pushcmd "$BQ_TMP/push/notwal" 2>&1) || rc=$?
assert_eq 1 "$rc" "not a WAL name: $out"
assert_contains "$out" "is not a WAL file name"

# ---- 3. wal-get --------------------------------------------------------------------------------------
mkdir -p "$BQ_TMP/get"
chown postgres "$BQ_TMP/get" 2>/dev/null || true
rc=0; out=$(as_pg $getcmd "$seg" "$BQ_TMP/get/RECOVERYXLOG" 2>&1) || rc=$?
assert_eq 0 "$rc" "wal-get of an archived segment: $out"
cmp "$BQ_TMP/get/RECOVERYXLOG" "$DATA/pg_wal/$seg" || fail "wal-get gave other bytes than the server's $seg"
rc=0; out=$(as_pg $getcmd 0000000100000000000000F0 "$BQ_TMP/get/RECOVERYXLOG" 2>&1) || rc=$?
assert_eq 1 "$rc" "wal-get of a segment never archived: $out"
assert_contains "$out" "is not in the archive"
rc=0; out=$(as_pg $getcmd 00000005.history "$BQ_TMP/get/RECOVERYHISTORY" 2>&1) || rc=$?
assert_eq 1 "$rc" "wal-get of a history file never archived: $out"
# prefetch: archive three more, then ask for the first of them with --prefetch 3
s1=$(switch_one); s2=$(switch_one); s3=$(switch_one)
bq_wait_for "the server to archive $s3" 30 last_archived "$s3"
rc=0; out=$(as_pg $getcmd "$s1" "$BQ_TMP/get/RECOVERYXLOG" --prefetch 3 --json 2>&1) || rc=$?
assert_eq 0 "$rc" "wal-get --prefetch: $out"
prefetched() { [[ -f $BQ_TMP/get/.barque-prefetch/$s2 && -f $BQ_TMP/get/.barque-prefetch/$s3 ]]; }
bq_wait_for "the prefetcher to fetch $s2 and $s3" 20 prefetched
rc=0; out=$(as_pg $getcmd "$s2" "$BQ_TMP/get/RECOVERYXLOG" --prefetch 3 --json 2>&1) || rc=$?
assert_eq 0 "$rc" "wal-get of a prefetched segment: $out"
assert_contains "$out" '"prefetched":true'
cmp "$BQ_TMP/get/RECOVERYXLOG" "$DATA/pg_wal/$s2" || fail "the prefetched $s2 differs"

# ---- 4. --spool: a backlog ------------------------------------------------------------------------
failed0=$(pg_psql main -c "SELECT failed_count FROM pg_stat_archiver")
pg_psql main -c "ALTER SYSTEM SET archive_command = '/bin/false'" -c "SELECT pg_reload_conf()" >/dev/null
backlog=("$(switch_one)")
bq_wait_for "the archiver to fail on ${backlog[0]} (archiving paused)" 30 failing
for i in 2 3 4 5 6; do backlog+=("$(switch_one)"); done
mkdir -p "$BQ_TMP/spool"
chown postgres "$BQ_TMP/spool" 2>/dev/null || true
pg_psql main -c "ALTER SYSTEM SET archive_command = '$pushcmd %p --spool $BQ_TMP/spool'" -c "SELECT pg_reload_conf()" >/dev/null
bq_wait_for "the server to archive the backlog up to ${backlog[5]}" 60 last_archived "${backlog[5]}"
for s in "${backlog[@]}"; do
    [[ -f $STORE/wal/db1/${s:0:8}/$s ]] || fail "backlog segment $s is not in the store"
done
indexed "${backlog[5]}" || fail "list-wal after the backlog: $(fleet_cli list-wal db1)"
# the backlog went through the spool's pusher: it holds the lock with its PID in it, and
# sweeps the markers of the files the server has marked done
PUSHER=$(head -n 1 "$BQ_TMP/spool/.pusher.lock" 2>/dev/null) || true
bq_pid_alive "$PUSHER" || fail "no pusher running for the spool (lock: '$PUSHER')"
bq__register "$PUSHER" proc
tr '\0' ' ' <"/proc/$PUSHER/cmdline" | grep -q -- "--spool-pusher" || fail "PID $PUSHER is not a pusher"
no_markers() { ! compgen -G "$BQ_TMP/spool/*.ok" >/dev/null; }
bq_wait_for "the pusher to sweep the markers of archived files" 10 no_markers
# back to the plain command (a pusher pushes every ready file, whatever archive_command says
# next: section 6 needs a gap); once a segment went that way, no call starts a pusher again
pg_psql main -c "ALTER SYSTEM SET archive_command = '$pushcmd %p'" -c "SELECT pg_reload_conf()" >/dev/null
s_plain=$(switch_one)
bq_wait_for "the server to archive $s_plain" 30 last_archived "$s_plain"
bq_kill "$PUSHER"
PUSHER=$(head -n 1 "$BQ_TMP/spool/.pusher.lock" 2>/dev/null) || true
if bq_pid_alive "$PUSHER"; then # started again before the reload took
    bq__register "$PUSHER" proc
    bq_kill "$PUSHER"
fi

# a ready file whose content differs from the archived one: the pusher refuses it, the call for
# it says why (exit 1) and takes the error away (the server's retry tries again); the store
# keeps the first content
FAKE=$BQ_TMP/fakewal
mkdir -p "$FAKE/archive_status" "$BQ_TMP/spool2"
cp "$BQ_TMP/push/$seg" "$FAKE/$seg"
touch "$FAKE/archive_status/$seg.ready"
chown -R postgres "$FAKE" "$BQ_TMP/spool2" 2>/dev/null || true
rc=0; out=$(as_pg $pushcmd "$FAKE/$seg" --spool "$BQ_TMP/spool2" 2>&1) || rc=$?
assert_eq 1 "$rc" "other content through the pusher: $out"
assert_contains "$out" "holds other content"
[[ ! -e $BQ_TMP/spool2/$seg.error && ! -e $BQ_TMP/spool2/$seg.ok ]] || fail "the spool kept a marker of $seg: $(ls "$BQ_TMP/spool2")"
out=$("$BQ_STORE_WAL_GET" "$STORE" "$KEY" db1 "$seg" "$BQ_TMP/$seg.again") || fail "store_wal_get: $out"
cmp "$BQ_TMP/$seg.again" "$BQ_TMP/$seg.got" || fail "the stored $seg changed"
PUSHER=$(head -n 1 "$BQ_TMP/spool2/.pusher.lock" 2>/dev/null) || true
if bq_pid_alive "$PUSHER"; then
    bq__register "$PUSHER" proc
    bq_kill "$PUSHER"
fi

# ---- 6. a gap on purpose ------------------------------------------------------------------------
bid=$(backup_take db1) || fail "backup: $(cat "$BQ_TMP/backup-last.err")"
pg_psql main -c "INSERT INTO t (v) VALUES ('after the backup')" >/dev/null
L_ok=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
s_ok=$(pg_psql main -c "SELECT pg_walfile_name(pg_switch_wal())")
bq_wait_for "the server to archive $s_ok" 30 last_archived "$s_ok"
failed0=$(pg_psql main -c "SELECT failed_count FROM pg_stat_archiver")
pg_psql main -c "ALTER SYSTEM SET archive_command = '/bin/false'" -c "SELECT pg_reload_conf()" >/dev/null
G=$(switch_one)
bq_wait_for "the archiver to fail on $G" 30 failing
pg_psql main -c "INSERT INTO t (v) VALUES ('beyond the gap')" >/dev/null
L_bad=$(pg_psql main -c "SELECT pg_current_wal_lsn()")
switch_one >/dev/null
s_end=$(switch_one)
# the old command can only fail, so there is no race with the reload: $G is never pushed
pg_psql main -c "ALTER SYSTEM SET archive_command = 'test %f = $G || $pushcmd %p'" -c "SELECT pg_reload_conf()" >/dev/null
bq_wait_for "the server to archive up to $s_end (skipping $G)" 60 last_archived "$s_end"
[[ ! -e $STORE/wal/db1/${G:0:8}/$G ]] || fail "$G was archived: no gap"
rc=0; out=$(fleet_cli check db1 2>&1) || rc=$?
assert_eq 1 "$rc" "check with a gap: $out"
assert_contains "$out" "CRITICAL: WAL missing from the archive"
assert_contains "$out" "$G"
out=$(fleet_cli status)
assert_contains "$out" "WAL archive, last archived"
assert_contains "$out" "CRITICAL: 1 gap in the archive"
rc=0; out=$(fleet_cli recover db1 auto "$BQ_TMP/gap.parent/data" --worker east-1 --target-lsn "$L_bad" 2>&1) || rc=$?
assert_eq 1 "$rc" "recover beyond the gap: $out"
assert_contains "$out" "WAL segment $G of cluster db1 is missing from the archive"
pg_dir "$BQ_TMP/gap.parent"
recover_json db1 auto "$BQ_TMP/gap.parent/data" --worker east-1 --target-lsn "$L_ok" >/dev/null ||
    fail "recover before the gap: $(cat "$BQ_TMP/recover-last.err")"
grep -q "recovery_target_lsn = '$L_ok'" "$BQ_TMP/gap.parent/data/postgresql.auto.conf" ||
    fail "no recovery_target_lsn in the restore before the gap"

# ---- 5. no worker: not "absent" ----------------------------------------------------------------
bq_kill "$FLEET_PID_east_1"
bq_wait_for "east-1 offline" 15 fleet_worker_offline east-1
rc=0; out=$(as_pg $getcmd "$seg" "$BQ_TMP/get/RECOVERYXLOG" 2>&1) || rc=$?
assert_eq 2 "$rc" "wal-get with no worker online: $out"
assert_contains "$out" "no worker of site east is online"
echo "wal_archive: OK"
