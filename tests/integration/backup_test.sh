# Base backups and restores of a real PostgreSQL 15 through the fleet (issue 4):
#   - a backup taken while pgbench writes (data checksums on, a second tablespace) is DONE,
#     and `recover` (relocating the tablespace) gives a directory pg_verifybackup accepts,
#     that starts, where pg_amcheck is clean and the marker row committed before the backup is;
#   - a backup taken with writes paused restores to the same table contents (a hash of every
#     table's ordered rows);
#   - a delta restore onto a changed copy rewrites only the changed files (counted), removes
#     the extra one, and gives the same bytes as a fresh restore;
#   - a worker killed mid-backup leaves that backup FAILED, and the retry is DONE;
#   - bad input: unknown cluster and backup, non-empty and unusable DEST, an unreachable
#     server, a role without REPLICATION: each a clear error, nothing written.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"
pg_dir "$BQ_TMP/ts1"
pg_psql main -c "CREATE TABLESPACE ts1 LOCATION '$BQ_TMP/ts1'"
"$BQ_PGBIN/pgbench" -i -s 5 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1 # accounts: 1,200 chunks, restored in pieces
pg_psql main -c "CREATE TABLE marker (note text) TABLESPACE ts1;
                 INSERT INTO marker VALUES ('committed before the backup');
                 CREATE ROLE norepl LOGIN"

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
fleet_cluster db1 east "$C"
port_closed=$(bq_free_port)
fleet_cluster down east "host=127.0.0.1 port=$port_closed user=postgres dbname=postgres connect_timeout=3"
fleet_cluster norepl east "$C user=norepl"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store
KEY=$FLEET/keys/east-1.storekey

# ---- 1. a backup while pgbench writes --------------------------------------------------------
load=$(bq_spawn pgbench "$BQ_PGBIN/pgbench" -c 2 -T 20 -n "$C")
sleep 1 # (pgbench connected and writing; the backup does not depend on it)
rc=0; id1=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup --wait of db1 while pgbench writes: $(cat "$BQ_TMP/backup-last.err")"
assert_eq DONE "$(backup_field db1 "$id1" state)"
assert_eq east-1 "$(backup_field db1 "$id1" stores | tr -d "[]'\" ")"
assert_eq 0 "$(backup_field db1 "$id1" checksum_failures)"
[[ -n $(backup_field db1 "$id1" wal_begin) ]] || fail "backup $id1 has no WAL range"
files=$(backup_field db1 "$id1" files)
((files > 900)) || fail "backup $id1 has only $files files"
assert_contains "$(fleet_cli list-backups db1)" "$id1"
assert_contains "$(fleet_cli show-backup db1 latest)" "$id1"

pg_dir "$BQ_TMP/r1"
rc=0; counts=$(recover_json db1 "$id1" "$BQ_TMP/r1/data" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r1/ts1") || rc=$?
assert_eq 0 "$rc" "recover of $id1: $(cat "$BQ_TMP/recover-last.err")"
read -r written unchanged removed _ <<<"$counts"
((written >= files - 200)) || fail "recover wrote $written files of $files"
assert_eq "$BQ_TMP/r1/ts1" "$(readlink "$BQ_TMP/r1/data/pg_tblspc/"*)" "the tablespace link"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r1/data" 2>&1) || fail "pg_verifybackup: $out"
assert_contains "$out" "backup successfully verified"
pg_start_dir r1 "$BQ_TMP/r1/data"
assert_eq "committed before the backup" "$(pg_psql r1 -c 'SELECT note FROM marker')"
out=$("$BQ_PGBIN/pg_amcheck" --all --install-missing -h 127.0.0.1 -p "$(pg_port r1)" -U postgres 2>&1) ||
    fail "pg_amcheck on the restored cluster: $out"
((${#out} == 0)) || fail "pg_amcheck reported: $out"
pg_stop r1
bq_wait_for "pgbench to finish" 40 bq__pid_gone "$load"

# ---- 2. writes paused: the same table contents ------------------------------------------------
want=$(tables_hash main)
rc=0; id2=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "second backup: $(cat "$BQ_TMP/backup-last.err")"
[[ $id2 > $id1 ]] || fail "backup ids do not sort by time: $id1 then $id2"
# pgbench wrote since the first backup: the chunks it changed are stored as deltas against
# the first backup's (docs/store.md, "Deltas"); the restore below reads them.
assert_eq "$id1" "$(backup_field db1 "$id2" delta_from)" "the base of backup $id2's deltas"
delta2=$(backup_field db1 "$id2" delta_chunks)
((delta2 > 0)) || fail "backup $id2 stored no chunk as a delta"
# With nothing written since, a third backup finds most of its data already stored.
rc=0; id3=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "third backup: $(cat "$BQ_TMP/backup-last.err")"
dedup3=$(backup_field db1 "$id3" dedup_bytes)
data3=$(backup_field db1 "$id3" data_bytes)
((dedup3 * 10 > data3 * 7)) || fail "backup $id3 found only $dedup3 of $data3 bytes already stored"
pg_dir "$BQ_TMP/r2"
rc=0; recover_json db1 "$id2" "$BQ_TMP/r2/data" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r2/ts1" >/dev/null || rc=$?
assert_eq 0 "$rc" "recover latest: $(cat "$BQ_TMP/recover-last.err")"
cp -a "$BQ_TMP/r2" "$BQ_TMP/r2.pristine" # before any server touches it
pg_start_dir r2 "$BQ_TMP/r2/data"
assert_eq "$want" "$(tables_hash r2)" "table contents of the restore of $id2"
pg_stop r2

# ---- 3. delta restore onto a changed copy -----------------------------------------------------
pg_dir "$BQ_TMP/r3"
rc=0; recover_json db1 "$id2" "$BQ_TMP/r3/data" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r3/ts1" >/dev/null || rc=$?
assert_eq 0 "$rc" "recover into r3"
delta_damage main "$BQ_TMP/r3/data"
rc=0; counts=$(recover_json db1 "$id2" "$BQ_TMP/r3/data" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r3/ts1" --delta) || rc=$?
assert_eq 0 "$rc" "delta recover: $(cat "$BQ_TMP/recover-last.err")"
read -r written unchanged removed _ <<<"$counts"
assert_eq 2 "$written" "files a delta restore rewrote (one changed, one deleted)"
assert_eq 1 "$removed" "files a delta restore removed"
((unchanged > 900)) || fail "delta restore left only $unchanged files unchanged"
assert_eq "$BQ_TMP/r3/ts1" "$(readlink "$BQ_TMP/r3/data/pg_tblspc/"*)" "r3's tablespace link"
diff -r --no-dereference -x pg_tblspc "$BQ_TMP/r2.pristine/data" "$BQ_TMP/r3/data" >"$BQ_TMP/delta.diff" ||
    fail "delta restore differs from a fresh one: $(head -5 "$BQ_TMP/delta.diff")"
diff -r "$BQ_TMP/r2.pristine/ts1" "$BQ_TMP/r3/ts1" >/dev/null || fail "delta tablespace differs"

# ---- 4. a worker killed mid-backup ------------------------------------------------------------
# The source's checkpointer is stopped, so BASE_BACKUP waits at its start with the job running.
ckpt=$(ps -o pid=,args= --ppid "$(pg_pid main)" | awk '/checkpointer/ {print $1}')
[[ -n $ckpt ]] || fail "no checkpointer process under postmaster $(pg_pid main)"
kill -STOP "$ckpt"
job=$(fleet_cli backup db1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
bq_wait_for "backup job $job running" 15 fleet_job_state_is "$job" RUNNING
lost=$(fleet_job_field "$job" backup_id)
bq_kill "$FLEET_PID_east_1" KILL
kill -CONT "$ckpt"
bq_wait_for "backup $lost FAILED" 20 backup_state_is db1 "$lost" FAILED
assert_contains "$(backup_field db1 "$lost" error)" "east-1 was lost"
fleet_worker_start east-1
bq_wait_for "backup job $job to succeed" 60 fleet_job_state_is "$job" SUCCEEDED
retry=$(fleet_job_field "$job" backup_id)
[[ $retry != "$lost" ]] || fail "the retry reused backup id $lost"
# DONE once the WAL it needs is archived (the restarted worker's wal-stream job archives it)
bq_wait_for "backup $retry DONE" 60 backup_state_is db1 "$retry" DONE

# ---- 5. bad input -----------------------------------------------------------------------------
expect_fail() { # DESCRIPTION EXPECTED-TEXT COMMAND...
    local what=$1 text=$2 rc=0 out
    shift 2
    out=$("$@" 2>&1) || rc=$?
    ((rc != 0)) || fail "$what: exit 0"
    assert_contains "$out" "$text" "$what"
}
pg_dir "$BQ_TMP/r4"
r1_before=$(find "$BQ_TMP/r1" -printf '%p %s %T@\n' | sort | md5sum)
expect_fail "recover of an unknown cluster" "no cluster nosuch" \
    fleet_cli recover nosuch latest "$BQ_TMP/r4/data" --worker east-1
expect_fail "recover of an unknown backup" "no backup 20200101T000000 of cluster db1" \
    fleet_cli recover db1 20200101T000000 "$BQ_TMP/r4/data" --worker east-1
expect_fail "recover without --worker" "--worker" fleet_cli recover db1 latest "$BQ_TMP/r4/data"
expect_fail "recover to a relative DEST" "absolute" fleet_cli recover db1 latest r4 --worker east-1
expect_fail "recover into a non-empty DEST" "is not empty" \
    fleet_cli recover db1 latest "$BQ_TMP/r1/data" --worker east-1 --tablespace "ts1:$BQ_TMP/r4/ts" --wait
expect_fail "recover under a file" "is not a directory" \
    fleet_cli recover db1 latest "$BQ_TMP/pgbench-init.log/data" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r4/ts" --wait
expect_fail "recover where it may not write" "could not create destination /sys/barque-test-$$" \
    fleet_cli recover db1 latest "/sys/barque-test-$$" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r4/ts" --wait
expect_fail "recover to the tablespace's own place" "is not empty" \
    fleet_cli recover db1 latest "$BQ_TMP/r4/data" --worker east-1 --wait
expect_fail "recover relocating an unknown tablespace" "tablespace nots is not in backup" \
    fleet_cli recover db1 latest "$BQ_TMP/r4/data" --worker east-1 --tablespace "nots:/tmp/x" --wait
[[ ! -e $BQ_TMP/r4/data && ! -e $BQ_TMP/r4/ts ]] || fail "a refused restore wrote something"
assert_eq "$r1_before" "$(find "$BQ_TMP/r1" -printf '%p %s %T@\n' | sort | md5sum)" \
    "the non-empty DEST a restore refused"

rc=0; backup_take down >/dev/null || rc=$?
assert_eq 1 "$rc" "backup of an unreachable server"
assert_contains "$(cat "$BQ_TMP/backup-last.err")" "127.0.0.1"
rc=0; backup_take norepl >/dev/null || rc=$?
assert_eq 1 "$rc" "backup with a role without REPLICATION"
assert_contains "$(cat "$BQ_TMP/backup-last.err")" "REPLICATION"

# ---- a restore whose worker dies: the retry goes on from what the first attempt wrote -----------
bq_kill "$FLEET_PID_east_1" TERM
BARQUE_TEST_RESTORE_FILE_DELAY_MS=20 fleet_worker_start east-1
bq_wait_for "east-1 online (slow restores)" 15 fleet_worker_online east-1

# ---- a restore cancelled mid-way stops there; what it wrote stays, with its marker ------------
pg_dir "$BQ_TMP/r6"
rjob=$(fleet_cli recover db1 "$id2" "$BQ_TMP/r6/data" --worker east-1 \
    --tablespace "ts1:$BQ_TMP/r6/ts1" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
r6_files() { find "$BQ_TMP/r6/data" -type f | wc -l; }
r6_some() { [[ -f $BQ_TMP/r6/data/.barque-restore-in-progress ]] && (($(r6_files) > 50)); }
bq_wait_for "the restore into r6 to be under way" 60 r6_some
fleet_cli job cancel "$rjob" >/dev/null || fail "cancel of restore job $rjob"
bq_wait_for "restore job $rjob cancelled" 30 fleet_job_state_is "$rjob" CANCELLED
n6=$(r6_files)
# at 20 ms a file the rest would take seconds more: a restore that ignored the cancel wrote all
((n6 < files)) || fail "the cancelled restore went on to write $n6 files (the backup has $files)"
assert_contains "$(fleet_job_field "$rjob" error)" "cancelled after" "the cancelled restore's error"
[[ -f $BQ_TMP/r6/data/.barque-restore-in-progress ]] || fail "the cancelled restore removed its marker"
pg_dir "$BQ_TMP/r5"
fleet_cli recover db1 "$id2" "$BQ_TMP/r5/data" --worker east-1 --tablespace "ts1:$BQ_TMP/r5/ts1" \
    --wait --json >"$BQ_TMP/r5.jsonl" 2>"$BQ_TMP/r5.err" &
r5=$!
some_written() { [[ -f $BQ_TMP/r5/data/.barque-restore-in-progress ]] && (($(find "$BQ_TMP/r5/data" -type f | wc -l) > 100)); }
bq_wait_for "the restore into r5 to be under way" 60 some_written
bq_kill "$FLEET_PID_east_1" KILL
fleet_worker_start east-1
rc=0; wait "$r5" || rc=$?
assert_eq 0 "$rc" "recover whose worker was killed mid-way: $(cat "$BQ_TMP/r5.err")"
grep -q "continuing what an earlier attempt of this job wrote" "$BQ_TMP/worker-east-1.log" ||
    fail "the retry did not continue the first attempt's work"
[[ ! -e $BQ_TMP/r5/data/.barque-restore-in-progress ]] || fail "the restore left its marker in DEST"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r5/data" 2>&1) || fail "pg_verifybackup r5: $out"
pg_start_dir r5 "$BQ_TMP/r5/data"
assert_eq "$want" "$(tables_hash r5)" "table contents of the restore resumed after its worker died"
pg_stop r5

# ---- the store is sound after all this --------------------------------------------------------
out=$("$BQ_BIN_CLI" store verify "$STORE" --key "$KEY" 2>&1) || fail "store verify: $out"
echo "backup test: $id1 ($files files), $id2, delta wrote $written kept $unchanged removed $removed"
