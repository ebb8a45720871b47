# Hostile input from an authenticated peer: wrong version, unknown type, garbage, truncated
# body, unexpected type, an operator posing as a worker, an oversized message. Each gets an
# ERROR reply (or, oversized, a dropped connection); the coordinator keeps serving.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
"$BQ_WIRE_PROBE" "$FLEET/cli.conf" || fail "wire probe failed"
bq_pid_alive "$FLEET_COORD_PID" || fail "the coordinator died"
fleet_worker_online east-1 || fail "the worker lost its registration"
grep -q "bad message from operator:ops" "$BQ_TMP/coordinator.log" ||
    fail "bad messages were not logged with their sender"
echo "wire_test: OK"
