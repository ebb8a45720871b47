# list-files and delete of backups through the fleet (issue 4, item 5):
#   - list-files of a DONE backup shows every file where the restore writes it (PG_VERSION with
#     the source's size, a base/ relation file, a pg_wal/ segment), as text and as JSON, and
#     counts as many files as the backup's `files` figure;
#   - delete of a backup: gone from list-backups and show-backup, gone from the worker's store
#     (store ls), the store verifies clean after the GC the delete ran, and the other backup
#     still restores to a directory pg_verifybackup accepts;
#   - refusals, each with a clear error and nothing removed: unknown cluster and backup id,
#     a backup that is not DONE, no online worker holding it, a delete while a restore of the
#     backup is queued or running (its worker stopped with SIGSTOP).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"
"$BQ_PGBIN/pgbench" -i -s 1 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1
DATA=$(pg_psql main -c "SHOW data_directory")
REL=$(pg_psql main -c "SELECT pg_relation_filepath('pgbench_accounts')")

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
fleet_cluster db1 east "$C"
fleet_cluster db1b east "$C" # the same server under a second name: two clusters, one worker
port_closed=$(bq_free_port)
fleet_cluster down east "host=127.0.0.1 port=$port_closed user=postgres dbname=postgres connect_timeout=3"
fleet_coord_start
# pages of 300 files (5,000 in production), so list-files of a backup takes several
BARQUE_TEST_FILES_PAGE=300 fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store
KEY=$FLEET/keys/east-1.storekey

expect_fail() { # DESCRIPTION EXPECTED-TEXT COMMAND...
    local what=$1 text=$2 rc=0 out
    shift 2
    out=$("$@" 2>&1) || rc=$?
    assert_eq 1 "$rc" "$what: exit status ($out)"
    assert_contains "$out" "$text" "$what"
}

# ---- two backups -------------------------------------------------------------------------------
rc=0; id1=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "first backup: $(cat "$BQ_TMP/backup-last.err")"
pg_psql main -c "CREATE TABLE after_first AS SELECT 1 AS x" >/dev/null
rc=0; id2=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "second backup: $(cat "$BQ_TMP/backup-last.err")"
[[ $id2 > $id1 ]] || fail "backup ids do not sort: $id1 then $id2"
files1=$(backup_field db1 "$id1" files)

# ---- list-files ----------------------------------------------------------------------------------
fleet_cli list-files db1 "$id1" --json >"$BQ_TMP/files1.json" || fail "list-files --json of $id1"
# one list-files job per page, each pinned to the worker holding the backup
pages=$(fleet_cli jobs --all --json | python3 -c '
import json, sys
print(sum(1 for j in json.load(sys.stdin) if j["type"] == "list-files" and j["state"] == "SUCCEEDED"))')
assert_eq "$(((files1 + 299) / 300))" "$pages" "list-files jobs (pages of 300) for $files1 files"
pgv_size=$(stat -c %s "$DATA/PG_VERSION")
rel_size=$(stat -c %s "$DATA/$REL")
python3 - "$BQ_TMP/files1.json" "$files1" "$pgv_size" "$REL" "$rel_size" <<'PY' || fail "list-files --json of $id1 is wrong"
import json, re, sys
files = json.load(open(sys.argv[1]))
want_count, pgv_size, rel, rel_size = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
by = {f["path"]: f for f in files}
def check(cond, what):
    if not cond:
        print("list-files:", what, file=sys.stderr)
        sys.exit(1)
check(len(files) == want_count, f"{len(files)} files, the backup has {want_count}")
check(len(by) == len(files), "a path is listed twice")
check(all(set(f) >= {"path", "type", "mode", "size", "mtime", "modified"} for f in files), "fields")
f = by.get("PG_VERSION")
check(f and f["type"] == "file" and f["size"] == pgv_size and f["mode"] == "0600",
      f"PG_VERSION: {f} (source: {pgv_size} bytes)")
f = by.get(rel)
check(f and f["type"] == "file" and f["size"] == rel_size and f["size"] % 8192 == 0,
      f"{rel}: {f} (source: {rel_size} bytes)")
check(by.get("base", {}).get("type") == "directory", "base is not a directory")
check(by.get("backup_manifest", {}).get("type") == "file", "no backup_manifest")
wal = [f for p, f in by.items() if re.fullmatch(r"pg_wal/[0-9A-F]{24}", p)]
check(wal and all(w["size"] == 16 << 20 and w["type"] == "file" for w in wal), f"WAL: {wal}")
check(not any(p.startswith(("data/", "wal/", "tablespaces/", "/")) for p in by), "store paths shown")
PY
out=$(fleet_cli list-files db1 "$id1") || fail "list-files of $id1 (text)"
assert_contains "$out" "MODE"
assert_contains "$out" " PG_VERSION"$'\n'
assert_contains "$out" "-rw-------"
assert_eq "$((files1 + 1))" "$(wc -l <<<"$out")" "text lines of list-files (a header and the files)"
latest=$(fleet_cli list-files db1 latest --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq "$(backup_field db1 "$id2" files)" "$latest" "files of list-files latest ($id2)"
help=$("$BQ_BIN_CLI" list-files --help) || fail "list-files --help"
assert_contains "$help" "pg_wal/NAME"

# ---- refusals ------------------------------------------------------------------------------------
expect_fail "list-files of an unknown cluster" "no cluster nosuch" fleet_cli list-files nosuch latest
expect_fail "list-files of an unknown backup" "no backup 20200101T000000 of cluster db1" \
    fleet_cli list-files db1 20200101T000000
rc=0; fleet_cli list-files db1 yesterday >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "list-files with a bad id"
rc=0; failed=$(backup_take down) || rc=$?
assert_eq 1 "$rc" "backup of an unreachable server"
[[ -n $failed ]] || fail "the failed backup of 'down' has no id"
expect_fail "list-files of a FAILED backup" "it is FAILED, not DONE" fleet_cli list-files down "$failed"
expect_fail "delete of an unknown cluster" "no cluster nosuch" fleet_cli delete nosuch 20200101T000000
expect_fail "delete of an unknown backup" "could not delete backup 20200101T000000 of cluster db1: there is no such backup" \
    fleet_cli delete db1 20200101T000000
rc=0; fleet_cli delete db1 latest >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "delete latest (an id is needed)"

# A restore of id1 whose worker is stopped: the job stays ASSIGNED (then QUEUED once the
# worker is seen offline); delete must wait for it.
kill -STOP "$FLEET_PID_east_1"
pg_dir "$BQ_TMP/rstop"
rjob=$(fleet_cli recover db1 "$id1" "$BQ_TMP/rstop/data" --worker east-1 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
state=$(fleet_job_field "$rjob" state)
[[ $state == ASSIGNED || $state == QUEUED ]] || fail "restore job $rjob is $state"
expect_fail "delete while a restore of it runs" \
    "could not delete backup $id1 of cluster db1: a restore of it is running (restore job $rjob is" \
    fleet_cli delete db1 "$id1"
assert_eq DONE "$(backup_field db1 "$id1" state)" "the backup a refused delete named"
bq_wait_for "east-1 offline" 15 fleet_worker_offline east-1
expect_fail "list-files with no online worker holding it" \
    "could not list the files of backup $id1 of cluster db1: no online worker holds it (stores: east-1)" \
    fleet_cli list-files db1 "$id1"
fleet_cli job cancel "$rjob" >/dev/null || fail "cancel of restore job $rjob"
kill -CONT "$FLEET_PID_east_1"
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
bq_wait_for "restore job $rjob cancelled" 15 fleet_job_state_is "$rjob" CANCELLED
# the stopped worker's stale offer: started, then cancelled (it is not the current attempt)
bq_wait_log "$BQ_TMP/worker-east-1.log" "job=$rjob: attempt 1 finished" 30
assert_contains "$("$BQ_BIN_CLI" store ls "$STORE" --key "$KEY")" "$id1"

# A FAILED backup is in no store: its record goes at once.
out=$(fleet_cli delete down "$failed") || fail "delete of FAILED backup $failed: $out"
assert_contains "$out" "no store held it"
expect_fail "show-backup of a deleted FAILED backup" "no backup $failed" fleet_cli show-backup down "$failed"

# ---- delete ----------------------------------------------------------------------------------
before=$(backup_field db1 "$id2" stored_bytes)
rc=0; out=$(fleet_cli delete db1 "$id1" --wait --json 2>"$BQ_TMP/delete.err") || rc=$?
assert_eq 0 "$rc" "delete --wait of $id1: $(cat "$BQ_TMP/delete.err")"
python3 - "$out" <<'PY' || fail "delete --wait --json said: $out"
import json, sys
o = json.loads(sys.argv[1])
assert o["state"] == "DELETED", o
(j,) = o["jobs"]
assert j["type"] == "delete" and j["state"] == "SUCCEEDED", j
assert j["delete"]["was_absent"] is False, j
assert j["delete"]["gc_run"] is True or j["delete"]["gc_note"], j
PY
assert_not_contains "$(backup_ids db1)" "$id1" "list-backups after the delete"
expect_fail "show-backup of a deleted backup" "no backup $id1 of cluster db1" fleet_cli show-backup db1 "$id1"
expect_fail "list-files of a deleted backup" "no backup $id1 of cluster db1" fleet_cli list-files db1 "$id1"
expect_fail "delete of a deleted backup" "there is no such backup" fleet_cli delete db1 "$id1"
ls_out=$("$BQ_BIN_CLI" store ls "$STORE" --key "$KEY") || fail "store ls: $ls_out"
assert_not_contains "$ls_out" "$id1" "store ls after the delete"
assert_contains "$ls_out" "$id2"
out=$("$BQ_BIN_CLI" store verify "$STORE" --key "$KEY" 2>&1) || fail "store verify after the delete: $out"
assert_eq DONE "$(backup_field db1 "$id2" state)"
assert_eq "$before" "$(backup_field db1 "$id2" stored_bytes)"

grep -q "GC of store $STORE: [1-9][0-9]* chunks removed" "$BQ_TMP/worker-east-1.log" ||
    fail "the delete job's GC removed no chunk: $(grep -i gc "$BQ_TMP/worker-east-1.log")"

# The other backup still restores.
pg_dir "$BQ_TMP/r2"
rc=0; fleet_cli recover db1 "$id2" "$BQ_TMP/r2/data" --worker east-1 --wait >"$BQ_TMP/recover.out" 2>&1 || rc=$?
assert_eq 0 "$rc" "recover of $id2 after deleting $id1: $(cat "$BQ_TMP/recover.out")"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r2/data" 2>&1) || fail "pg_verifybackup: $out"
assert_contains "$out" "backup successfully verified"
fleet_cli list-files db1 "$id2" --json | python3 -c 'import json,sys; json.load(sys.stdin)' ||
    fail "list-files of $id2 after the delete"
# Two clusters backed up by one worker at once: their ids differ (a worker's store names a
# backup by its id alone) and both succeed at their first attempt.
rc=0; fleet_cli backup db1 --wait --json >"$BQ_TMP/two-a.jsonl" 2>"$BQ_TMP/two-a.err" & pa=$!
fleet_cli backup db1b --wait --json >"$BQ_TMP/two-b.jsonl" 2>"$BQ_TMP/two-b.err" || rc=$?
wait "$pa" || rc=$?
assert_eq 0 "$rc" "two clusters' backups at once: $(cat "$BQ_TMP/two-a.err" "$BQ_TMP/two-b.err")"
ids=$(backup_ids db1) # newest first (not through head: it would close the pipe early)
ida=${ids%%$'\n'*}
ids=$(backup_ids db1b)
idb=${ids%%$'\n'*}
[[ -n $ida && -n $idb && $ida != "$idb" ]] || fail "two clusters' backups got ids '$ida' and '$idb'"
assert_eq 1 "$(backup_field db1 "$ida" attempt)" "attempt of db1's backup $ida"
assert_eq 1 "$(backup_field db1b "$idb" attempt)" "attempt of db1b's backup $idb"

echo "backup_files test: listed $files1 files of $id1, deleted it, $id2 restores"
