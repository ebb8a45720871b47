# Jobs survive their workers: a worker SIGKILLed mid-job has its job re-run by the other
# worker of the site; a worker cut off (SIGSTOP) mid-job loses its lease, the job is re-run
# elsewhere, and the late result of the superseded attempt is refused.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

fleet_init
fleet_site east
fleet_worker_conf east-1 east 1
fleet_worker_conf east-2 east 1
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

# --- SIGKILL mid-job ------------------------------------------------------------------------
# Only east-1 is up, so it takes the job; east-2 starts once the job runs.
id=$(fleet_cli job sleep east 4s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
bq_wait_for "job $id RUNNING" 10 fleet_job_state_is "$id" RUNNING
assert_eq east-1 "$(fleet_job_field "$id" worker)" "first worker of job $id"
fleet_worker_start east-2
bq_wait_for "east-2 online" 15 fleet_worker_online east-2
bq_kill "$FLEET_PID_east_1" KILL
bq_wait_for "east-1 offline" 10 fleet_worker_offline east-1
bq_wait_for "job $id re-run and SUCCEEDED" 20 fleet_job_state_is "$id" SUCCEEDED
assert_eq east-2 "$(fleet_job_field "$id" worker)" "worker that finished job $id"
assert_eq 2 "$(fleet_job_field "$id" attempt)" "attempts of job $id"
grep -Eq "job=$id: attempt 1 lost: worker east-1 went offline" "$BQ_TMP/coordinator.log" ||
    fail "coordinator did not log the lost attempt"

# --- partition: SIGSTOP mid-job, late result refused ------------------------------------------
fleet_worker_start east-1
bq_wait_for "east-1 online again" 15 fleet_worker_online east-1
# occupy east-1's only slot-peer: make east-2 busy so the job lands on east-1
busy=$(fleet_cli job sleep east 30s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
bq_wait_for "job $busy RUNNING" 10 fleet_job_state_is "$busy" RUNNING
id=$(fleet_cli job sleep east 3s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
bq_wait_for "job $id RUNNING" 10 fleet_job_state_is "$id" RUNNING
first=$(fleet_job_field "$id" worker)
other=$(fleet_job_field "$busy" worker)
[[ $first != "$other" ]] || fail "both jobs on $first"
firstpid_var=FLEET_PID_${first//-/_}
bq_kill "${!firstpid_var}" STOP
# the stopped worker misses heartbeats: offline, job queued again; cancel the busy job so
# the other worker has a slot
fleet_cli job cancel "$busy" >/dev/null
bq_wait_for "job $busy CANCELLED" 15 fleet_job_state_is "$busy" CANCELLED
bq_wait_for "job $id re-run on $other and SUCCEEDED" 30 fleet_job_state_is "$id" SUCCEEDED
assert_eq "$other" "$(fleet_job_field "$id" worker)" "worker that finished job $id"
# the stopped worker comes back with the result of attempt 1: refused, job unchanged
bq_kill "${!firstpid_var}" CONT
bq_wait_log "$BQ_TMP/coordinator.log" "job=$id: (result refused: attempt 1 of job $id from worker $first is superseded \\(job is SUCCEEDED at attempt 2 on $other\\)|worker $first runs attempt 1 which is not current)" 20
assert_eq SUCCEEDED "$(fleet_job_field "$id" state)" "state of job $id after the late result"
assert_eq "$other" "$(fleet_job_field "$id" worker)" "worker of job $id after the late result"

# --- cancel of a queued job, and of a finished one --------------------------------------------
rc=0
out=$(fleet_cli job sleep nosite 1s 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of a job for an unknown site"
assert_contains "$out" "no site nosite in the coordinator's config"
echo "failover_test: OK"
