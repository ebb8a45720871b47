# A coordinator killed with SIGKILL and restarted keeps every job and worker record; the
# workers reconnect by themselves and jobs queued before the kill run after it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

pg_start main
fleet_init
fleet_site east
fleet_site west
fleet_worker_conf east-1 east 2
fleet_worker_conf west-1 west 2
fleet_cluster db1 east "$(pg_conninfo main)"
printf 'wal = archive\n' >>"$FLEET/coordinator.conf" # no receiver here: the worker has no store
fleet_coord_start
fleet_worker_start east-1
fleet_worker_start west-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
bq_wait_for "west-1 online" 15 fleet_worker_online west-1

fleet_cli check db1 >/dev/null
done_id=$(fleet_cli jobs --all --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
# a running job and a queued job (no worker at site "west" has a free slot? west has 2 slots:
# fill them) at the moment of the kill
r1=$(fleet_cli job sleep west 6s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
r2=$(fleet_cli job sleep west 6s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
q=$(fleet_cli job sleep west 1s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
bq_wait_for "job $r1 RUNNING" 10 fleet_job_state_is "$r1" RUNNING
bq_wait_for "job $r2 RUNNING" 10 fleet_job_state_is "$r2" RUNNING
assert_eq QUEUED "$(fleet_job_field "$q" state)" "job $q before the kill"
before=$(fleet_cli jobs --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
workers_before=$(fleet_cli workers --json | python3 -c 'import json,sys; print(sorted(w["name"] for w in json.load(sys.stdin)))')

bq_kill "$FLEET_COORD_PID" KILL
sleep 1 # the workers notice nothing answers; this is not a wait for a condition
fleet_coord_start
bq_wait_for "east-1 reconnected" 20 fleet_worker_online east-1
bq_wait_for "west-1 reconnected" 20 fleet_worker_online west-1

after=$(fleet_cli jobs --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq "$before" "$after" "number of jobs across the coordinator restart"
assert_eq "$workers_before" "$(fleet_cli workers --json | python3 -c 'import json,sys; print(sorted(w["name"] for w in json.load(sys.stdin)))')" "worker records across the restart"
assert_eq SUCCEEDED "$(fleet_job_field "$done_id" state)" "finished job across the restart"
# the jobs that were running finish on the same worker (their attempts are still current),
# and the queued one runs
bq_wait_for "job $r1 SUCCEEDED" 30 fleet_job_state_is "$r1" SUCCEEDED
bq_wait_for "job $r2 SUCCEEDED" 30 fleet_job_state_is "$r2" SUCCEEDED
bq_wait_for "job $q SUCCEEDED" 30 fleet_job_state_is "$q" SUCCEEDED
assert_eq 1 "$(fleet_job_field "$r1" attempt)" "attempt of job $r1 (kept its lease across the restart)"
grep -q "catalog .* holds 2 workers and 3 active jobs" "$BQ_TMP/coordinator.log" ||
    fail "the restarted coordinator did not load 2 workers and 3 active jobs"
out=$(fleet_cli check db1) || fail "check after restart: $out"
echo "restart_test: OK"
