# integration.job_history: a finished job's record leaves the catalog job_history after it
# ended, so the catalog does not grow without end (a replicate-wal job per WAL batch and
# site, checks, switch-wal). A queued or running job stays however old; `job show` of a
# removed job says why it is gone; ids are never handed out again, across a restart.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

fleet_init
fleet_coord_key job_history 2s
fleet_site east
fleet_worker_conf east-1 east 2
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

job_id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])'; }
all_ids() { fleet_cli jobs --all --json | python3 -c 'import json,sys; print(" ".join(str(j["id"]) for j in sorted(json.load(sys.stdin), key=lambda j: j["id"])))'; }

# five short jobs that finish, then one that runs for a long time
fleet_cli job sleep east 100ms --count 5 >/dev/null || fail "five short jobs"
states() { fleet_cli jobs --all --json | python3 -c 'import json,sys; print(" ".join("%d:%s" % (j["id"], j["state"]) for j in sorted(json.load(sys.stdin), key=lambda j: j["id"])))'; }
five_done() { [[ $(states) == "1:SUCCEEDED 2:SUCCEEDED 3:SUCCEEDED 4:SUCCEEDED 5:SUCCEEDED" ]]; }
bq_wait_for "the five short jobs to succeed (all still listed)" 15 five_done
long=$(fleet_cli job sleep east 1h --json | job_id_of)
assert_eq 6 "$long" "id of the long job"
bq_wait_for "job 6 RUNNING" 15 fleet_job_state_is 6 RUNNING

# the finished ones go; the running one stays, although it is older than job_history
gone() { ! fleet_cli job show "$1" >/dev/null 2>&1; }
bq_wait_for "the five finished jobs to leave the catalog" 30 gone 5
assert_eq 6 "$(all_ids)" "jobs left in the catalog"
sleep_past=$(( $(date +%s) + 3 ))
rc=0; out=$(fleet_cli job show 1 2>&1) || rc=$?
[[ $rc != 0 ]] || fail "job show of a removed job succeeded: $out"
assert_contains "$out" "no job 1: it ended more than job_history 2"
rc=0; out=$(fleet_cli job show 999 2>&1) || rc=$?
[[ $rc != 0 ]] || fail "job show 999 succeeded: $out"
assert_contains "$out" "no job 999"
[[ $out != *job_history* ]] || fail "a job never handed out is called removed: $out"
bq_wait_log "$BQ_TMP/coordinator.log" "removed [0-9]+ finished jobs? \(ids 1 to [0-9]+\) that ended more than job_history" 5
# job 6 has run longer than job_history and is still RUNNING after more passes
while (( $(date +%s) < sleep_past )); do fleet_job_state_is 6 RUNNING || fail "job 6 left RUNNING"; sleep 0.5; done
assert_eq 6 "$(all_ids)" "jobs left after more passes"

# cancelled, it finishes and goes too
fleet_cli job cancel 6 >/dev/null || fail "job cancel 6"
bq_wait_for "job 6 to leave the catalog" 30 gone 6
assert_eq "" "$(all_ids)" "jobs left after job 6 ended"

# ids are not handed out again, also after a restart with an empty jobs table
bq_kill "$FLEET_COORD_PID" TERM
fleet_coord_start
bq_wait_for "east-1 online again" 15 fleet_worker_online east-1
id=$(fleet_cli job sleep east 100ms --json | job_id_of)
assert_eq 7 "$id" "the id after every job was removed and the coordinator restarted"
bq_wait_for "job 7 SUCCEEDED" 15 fleet_job_state_is 7 SUCCEEDED
echo "job_history_test: OK"
