# A full catalog (RELIABILITY 8): a write that does not fit is refused with an error the
# operator can act on; nothing committed before is lost; the coordinator keeps serving
# reads and heartbeats; after catalog_max_size is raised and the coordinator restarted,
# writes work again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

fleet_init
fleet_coord_key catalog_max_size 1MiB
fleet_site east
fleet_worker_conf east-1 east 1
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

# a first batch that fits, then one that cannot
fleet_cli job sleep east 1h --count 100 >/dev/null
rc=0
out=$(fleet_cli job sleep east 1h --count 20000 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of a write into a full catalog"
assert_contains "$out" "is full"
assert_contains "$out" "raise catalog_max_size"
bq_wait_log "$BQ_TMP/coordinator.log" "catalog .* is full .* raise catalog_max_size" 10

# reads still work and show exactly the first 100 jobs; the worker is still online
n=$(fleet_cli jobs --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq 100 "$n" "jobs in the catalog after the refused write"
fleet_worker_online east-1 || fail "the worker went offline while the catalog was full"
bq_pid_alive "$FLEET_COORD_PID" || fail "the coordinator died on a full catalog"
# the running job keeps its worker: results still need writes, and there is room for small ones
fleet_cli job cancel 1 >/dev/null
bq_wait_for "job 1 CANCELLED" 15 fleet_job_state_is 1 CANCELLED

# raise the limit, restart: the same request now succeeds
bq_kill "$FLEET_COORD_PID" TERM
sed -i 's/^catalog_max_size = 1MiB$/catalog_max_size = 256MiB/' "$FLEET/coordinator.conf"
fleet_coord_start
fleet_cli job sleep east 1h --count 20000 >/dev/null || fail "write after raising catalog_max_size"
n=$(fleet_cli jobs --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
assert_eq 1000 "$n" "jobs listed (the newest 1,000 of 20,100)"
last=$(fleet_cli jobs --all --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j[0]["id"], j[-1]["id"])')
assert_eq "19101 20100" "$last" "ids of the oldest and newest job listed"
assert_contains "$(fleet_cli status)" "Jobs: 20098 queued, 1 running"
echo "mapfull_test: OK"
