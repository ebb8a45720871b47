# Two workers register; `barque check` passes against a running PostgreSQL 15 and fails with
# a clear reason against a stopped one; the CLI's verbs answer in text and JSON.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

pg_start main
pg_start gone
fleet_init
fleet_site east
fleet_site west
fleet_worker_conf east-1 east
fleet_worker_conf west-1 west
fleet_cluster db1 east "$(pg_conninfo main)"
printf 'wal = archive\n' >>"$FLEET/coordinator.conf" # no receiver here: the workers have no store
fleet_cluster db2 east "$(pg_conninfo gone)"
pg_stop gone

"$BQ_BIN_COORDINATOR" -c "$FLEET/coordinator.conf" --check-config | grep -q OK ||
    fail "--check-config did not accept a good config"
"$BQ_BIN_WORKER" -c "$FLEET/east-1.conf" --check-config | grep -q OK ||
    fail "worker --check-config did not accept a good config"

fleet_coord_start
fleet_worker_start east-1
fleet_worker_start west-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
bq_wait_for "west-1 online" 15 fleet_worker_online west-1

status=$(fleet_cli status)
assert_contains "$status" "east             workers 1 online, 0 offline; clusters 2"
assert_contains "$status" "west             workers 1 online, 0 offline; clusters 0"
assert_contains "$status" "Jobs: 0 queued, 0 running"
fleet_cli status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
sites = {x["name"]: x for x in s["sites"]}
assert sites["east"]["workers_online"] == 1 and sites["west"]["workers_online"] == 1, s
assert sorted(c["name"] for c in s["clusters"]) == ["db1", "db2"], s
' || fail "status --json does not show both sites online"
workers=$(fleet_cli workers)
assert_contains "$workers" "east-1"
assert_contains "$workers" "online"
assert_contains "$(fleet_cli clusters)" "db2"

# check against the running cluster: every item OK, exit 0
out=$(fleet_cli check db1) || fail "barque check db1 failed: $out"
assert_contains "$out" "connection           OK"
assert_contains "$out" "replication role     OK"
assert_contains "$out" "wal_level            OK"
assert_contains "$out" "server version 15."
assert_contains "$out" "checked by worker east-1"
sysid=$(pg_psql main -XAtc 'SELECT system_identifier FROM pg_control_system()')
assert_contains "$out" "system identifier $sysid"
fleet_cli check db1 --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["ok"] is True, r
c = r["job"]["check"]
assert c["server_version"].startswith("15"), c
assert c["wal_level"] == "replica" and c["max_wal_senders"] == 10, c
assert c["can_replicate"] is True, c
assert r["job"]["state"] == "SUCCEEDED" and r["job"]["worker"] == "east-1", r
' || fail "check --json has the wrong content"

# a replication slot shows up in the check
pg_psql main -XAtc "SELECT pg_create_physical_replication_slot('barque_probe')" >/dev/null
assert_contains "$(fleet_cli check db1)" "replication slots: barque_probe"

# check against the stopped cluster: exit 1, the reason named
rc=0
out=$(fleet_cli check db2 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of check against a stopped cluster"
assert_contains "$out" "connection           FAILED"
assert_contains "$out" "Connection refused"

# unknown cluster: exit 1, named
rc=0
out=$(fleet_cli check nosuch 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of check of an unknown cluster"
assert_contains "$out" "no cluster nosuch"

# jobs: the three checks are finished; --all lists them
assert_contains "$(fleet_cli jobs)" "(no jobs)"
all=$(fleet_cli jobs --all --json)
echo "$all" | python3 -c '
import json, sys
jobs = json.load(sys.stdin)
assert len(jobs) == 4, jobs
assert all(j["state"] == "SUCCEEDED" and j["type"] == "check" for j in jobs), jobs
' || fail "jobs --all --json: $all"
assert_contains "$(fleet_cli job show 1)" "state:        SUCCEEDED"

# usage errors exit 2; every verb has --help
for verb in keygen status workers clusters jobs "job show" "job cancel" "job sleep" check; do
    # shellcheck disable=SC2086
    help=$("$BQ_BIN_CLI" $verb --help) || fail "barque $verb --help failed"
    assert_contains "$help" "usage: barque"
done
rc=0; "$BQ_BIN_CLI" frobnicate >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "unknown verb"
rc=0; "$BQ_BIN_CLI" -c "$FLEET/cli.conf" check db1 db2 >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "check with two clusters"
rc=0; "$BQ_BIN_CLI" -c "$FLEET/cli.conf" status --bogus >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "unknown option"
rc=0; "$BQ_BIN_CLI" -c "$FLEET/cli.conf" job show abc >/dev/null 2>&1 || rc=$?; assert_eq 2 "$rc" "bad job id"

# a coordinator that does not answer is a clear error within the timeout
sed "s/:$FLEET_PORT/:$(bq_free_port)/" "$FLEET/cli.conf" >"$FLEET/cli-nowhere.conf"
t0=$(date +%s)
rc=0
out=$("$BQ_BIN_CLI" -c "$FLEET/cli-nowhere.conf" --timeout 2 status 2>&1) || rc=$?
t1=$(date +%s)
assert_eq 1 "$rc" "exit status when the coordinator does not answer"
assert_contains "$out" "did not answer within 2 s"
((t1 - t0 <= 5)) || fail "the CLI took $((t1 - t0)) s to give up, timeout was 2 s"

# SIGTERM stops both daemons cleanly
bq_kill "$FLEET_PID_east_1" TERM
bq_kill "$FLEET_COORD_PID" TERM
grep -q "stopped" "$BQ_TMP/worker-east-1.log" || fail "worker did not log a clean stop"
echo "fleet_test: OK"
