# The backup catalog through the fleet, whatever the worker does with the job: the CLI's
# backup verbs (usage, --help, --json), a backup whose job fails ends FAILED in the catalog
# with the worker's reason, `backup --wait` exits 1 naming cluster and backup id, `latest`
# means a DONE backup, every attempt gets its own id, and an attempt whose worker is lost
# leaves its backup FAILED ("worker W was lost") while the retry takes a new id.
#
# The worker here has no store key file, so a backup job fails at once and is not retried
# (a worker without backups answers "does not know job type 3", one with them "no store").
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

pg_start main
fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_cluster db1 east "$(pg_conninfo main)"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

id_re='^[0-9]{8}T[0-9]{6}$'

# ---- the CLI surface
for verb in backup list-backups show-backup; do
    help=$("$BQ_BIN_CLI" $verb --help) || fail "barque $verb --help failed"
    assert_contains "$help" "usage: barque"
    assert_contains "$help" "$verb CLUSTER"
    assert_contains "$("$BQ_BIN_CLI" --help)" "barque $verb CLUSTER"
done
rc=0; fleet_cli backup >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "backup without a cluster"
rc=0; fleet_cli backup db1 --bogus >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "backup --bogus"
rc=0; fleet_cli backup 'no/such' >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "backup of a bad name"
rc=0; fleet_cli list-backups db1 --wait >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "list-backups --wait"
rc=0; out=$(fleet_cli show-backup db1 yesterday 2>&1) || rc=$?
assert_eq 2 "$rc" "show-backup with a bad id"
assert_contains "$out" "yesterday is not a backup id"

# unknown cluster: exit 1, named
rc=0; out=$(fleet_cli backup nosuch 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of a backup of an unknown cluster"
assert_contains "$out" "could not back up cluster nosuch: no cluster nosuch"
rc=0; out=$(fleet_cli list-backups nosuch 2>&1) || rc=$?
assert_eq 1 "$rc" "list-backups of an unknown cluster"
assert_contains "$out" "no cluster nosuch"

# nothing yet
assert_contains "$(fleet_cli list-backups db1)" "(no backups of cluster db1)"
assert_eq "[]" "$(fleet_cli list-backups db1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin))')"
rc=0; out=$(fleet_cli show-backup db1 latest 2>&1) || rc=$?
assert_eq 1 "$rc" "show-backup latest with no backup"
assert_contains "$out" "cluster db1 has no DONE backup"

# ---- a backup whose job fails: FAILED, exit 1, named
rc=0
id1=$(backup_take db1) || rc=$?
assert_eq 1 "$rc" "exit status of backup --wait when the backup fails"
[[ $id1 =~ $id_re ]] || fail "backup id '$id1' is not YYYYMMDDTHHMMSS"
err=$(cat "$BQ_TMP/backup-last.err")
assert_contains "$err" "backup $id1 of cluster db1 FAILED: "
events=$(backup_events)
assert_eq "queued started done" "${events// progress/}" "events of backup --wait --json (progress aside)"
python3 - "$BQ_TMP/backup-last.jsonl" "$id1" <<'PY' || fail "backup --wait --json events are wrong"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
q, s, d = [e for e in ev if e["event"] != "progress"]
assert q["cluster"] == "db1" and q["job_id"] >= 1, q
assert s["backup_id"] == sys.argv[2] and s["worker"] == "east-1" and s["attempt"] == 1, s
assert d["ok"] is False and d["job_id"] == q["job_id"], d
b = d["backup"]
assert b["id"] == sys.argv[2] and b["state"] == "FAILED" and b["cluster"] == "db1", b
assert b["error"] and b["worker"] == "east-1" and b["site"] == "east", b
assert sys.argv[2] in d["error"] and "db1" in d["error"], d
PY
job1=$(backup_job_of db1 "$id1")
error1=$(backup_field db1 "$id1" error)
[[ -n $error1 ]] || fail "FAILED backup $id1 has no error"
assert_contains "$(fleet_job_field "$job1" error)" "$error1" "job $job1 error"
assert_eq "$id1" "$(fleet_job_field "$job1" backup_id)" "job show's backup_id"
assert_eq backup "$(fleet_job_field "$job1" type)"
assert_eq fast "$(fleet_job_field "$job1" checkpoint)"
assert_contains "$(fleet_cli job show "$job1")" "backup:       $id1 (fast checkpoint)"

list=$(fleet_cli list-backups db1)
assert_contains "$list" "$id1"
assert_contains "$list" "FAILED"
assert_contains "$list" "$error1"
show=$(fleet_cli show-backup db1 "$id1")
assert_contains "$show" "Backup $id1 of cluster db1"
assert_contains "$show" "state:              FAILED"
assert_contains "$show" "error:              $error1"
assert_contains "$show" "taken by:           worker east-1 at site east"
fleet_cli show-backup db1 "$id1" --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
assert b["state"] == "FAILED" and b["attempt"] == 1 and b["stores"] == [], b
assert b["start_time"] and b["stop_time"] and b["start_lsn"] is None, b
' || fail "show-backup --json is wrong"
rc=0; out=$(fleet_cli show-backup db1 latest 2>&1) || rc=$?
assert_eq 1 "$rc" "show-backup latest with only a FAILED backup"
assert_contains "$out" "cluster db1 has no DONE backup"
rc=0; out=$(fleet_cli show-backup db1 oldest --json 2>&1) || rc=$?
assert_eq 1 "$rc" "show-backup oldest with only a FAILED backup"
rc=0; out=$(fleet_cli show-backup db1 20000101T000000 2>&1) || rc=$?
assert_eq 1 "$rc" "show-backup of an unknown id"
assert_contains "$out" "no backup 20000101T000000 of cluster db1"

# ---- without --wait: job id and backup id; ids are unique and ascending; --spread
out=$(fleet_cli backup db1 --spread) || fail "barque backup db1 --spread failed: $out"
[[ $out =~ backup\ job\ ([0-9]+)\ of\ cluster\ db1:\ backup\ ([0-9T]+)\ on\ worker\ east-1 ]] ||
    fail "backup without --wait did not print its job and backup id: $out"
job2=${BASH_REMATCH[1]} id2=${BASH_REMATCH[2]}
[[ $id2 > $id1 ]] || fail "second backup id $id2 is not after $id1"
bq_wait_for "backup $id2 FAILED" 15 backup_state_is db1 "$id2" FAILED
assert_eq spread "$(fleet_job_field "$job2" checkpoint)"
out=$(fleet_cli backup db1 --json)
echo "$out" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["cluster"] == "db1" and r["job_id"] >= 1 and r["backup_id"], r
' || fail "backup --json: $out"
id3=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["backup_id"])')
bq_wait_for "backup $id3 FAILED" 15 backup_state_is db1 "$id3" FAILED
assert_eq "$id3 $id2 $id1" "$(backup_ids db1 | tr '\n' ' ' | sed 's/ $//')" "list-backups order (newest first)"

# ---- a lost attempt: the worker stops answering while the job is offered to it; --wait
# follows the retry and reports both attempts
bq_kill "$FLEET_PID_east_1" STOP
(
    rc=0
    backup_take db1 >"$BQ_TMP/lost.id" || rc=$?
    echo "$rc" >"$BQ_TMP/lost.rc"
) &
waiter=$!
bq__register "$waiter" proc # stopped by the cleanup if the test fails first
newest_is_not() {
    local id
    id=$(backup_newest db1)
    [[ -n $id && $id != "$1" ]]
}
bq_wait_for "the job to be offered to the stopped worker" 10 newest_is_not "$id3"
id4=$(backup_newest db1)
[[ $id4 =~ $id_re ]] || fail "bad backup id $id4"
job4=$(backup_job_of db1 "$id4")
bq_wait_for "backup $id4 FAILED as lost" 15 backup_state_is db1 "$id4" FAILED
assert_contains "$(backup_field db1 "$id4" error)" "worker east-1 was lost (went offline: no heartbeat"
bq_kill "$FLEET_PID_east_1" CONT
bq_wait_for "backup --wait of job $job4 to end" 30 test -s "$BQ_TMP/lost.rc"
wait "$waiter" || true
assert_eq 1 "$(cat "$BQ_TMP/lost.rc")" "exit status of backup --wait whose retry failed"
id5=$(cat "$BQ_TMP/lost.id")
assert_eq "$id5" "$(fleet_job_field "$job4" backup_id)" "the job's last backup id"
[[ $id5 =~ $id_re && $id5 > $id4 ]] || fail "the retry of job $job4 did not take a new backup id ($id5 after $id4)"
assert_eq 2 "$(backup_field db1 "$id5" attempt)" "attempt of the retry's backup"
assert_eq "$job4" "$(backup_job_of db1 "$id5")"
assert_eq FAILED "$(backup_field db1 "$id5" state)"
events=$(backup_events)
assert_eq "queued started attempt_failed started done" "${events// progress/}" "events of a retried backup"
python3 - "$BQ_TMP/backup-last.jsonl" "$id4" "$id5" <<'PY' || fail "events of the retried backup are wrong"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["event"] != "progress"]
assert ev[1]["backup_id"] == sys.argv[2] and ev[1]["attempt"] == 1, ev[1]
assert ev[2]["backup"]["id"] == sys.argv[2] and "was lost" in ev[2]["backup"]["error"], ev[2]
assert ev[3]["backup_id"] == sys.argv[3] and ev[3]["attempt"] == 2, ev[3]
assert ev[4]["backup"]["id"] == sys.argv[3] and ev[4]["ok"] is False, ev[4]
PY
assert_eq 5 "$(backup_ids db1 | wc -l)" "backups in the catalog"

# status still fine, the coordinator logged each backup's end
grep -q "backup $id1 of cluster db1 is FAILED" "$BQ_TMP/coordinator.log" ||
    fail "the coordinator did not log the end of backup $id1"
bq_kill "$FLEET_PID_east_1" TERM
bq_kill "$FLEET_COORD_PID" TERM
echo "backup_catalog_test: OK"
