#!/usr/bin/env bash
# shellcheck disable=SC2154  # pg_start exports PG_PORT_<name>, PG_CONNINFO_<name>, PG_DATA_<name>
# integration.harness: the harness itself. Starts a PostgreSQL 15, queries it, runs
# pg_check_test against it (BQ_PG_CHECK_TEST), stops it, and checks that the EXIT cleanup of a
# test stops what it left running and removes its scratch dir.
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

bq_tmpdir
echo "scratch dir: $BQ_TMP"

# --- assertions report what they expected and what they saw
out=$( (assert_eq a b "answer") 2>&1) && fail "assert_eq a b passed"
assert_contains "$out" "answer: expected 'a', got 'b'"
assert_contains "$out" "harness_test.sh:"
out=$( (assert_contains "hello world" "bye") 2>&1) && fail "assert_contains passed"
assert_contains "$out" "expected to contain 'bye'"
out=$( (assert_not_contains "hello world" "world") 2>&1) && fail "assert_not_contains passed"
assert_contains "$out" "expected not to contain 'world'"
assert_eq x x
assert_contains "hello world" "lo wo"
assert_not_contains "hello world" "bye"

# --- PostgreSQL: started directly (variables exported) ...
pg_start main >/dev/null
[[ -n ${PG_PORT_main:-} ]] || fail "PG_PORT_main is not set"
assert_eq "host=127.0.0.1 port=$PG_PORT_main user=postgres dbname=postgres" "$PG_CONNINFO_main" \
    "conninfo"
assert_eq "$PG_CONNINFO_main" "$(pg_conninfo main)" "recorded conninfo"
assert_eq 1 "$(psql -X -A -t -c 'SELECT 1' "$PG_CONNINFO_main")" "SELECT 1"
assert_eq "on" "$(pg_psql main -c 'SHOW data_checksums')" "data_checksums"
assert_eq "replica" "$(pg_psql main -c 'SHOW wal_level')" "wal_level"
assert_eq "10" "$(pg_psql main -c 'SHOW max_wal_senders')" "max_wal_senders"
assert_eq "$BQ_TMP/main" "$(pg_psql main -c 'SHOW unix_socket_directories')" "socket dir"
assert_contains "$(pg_psql main -c 'SELECT version()')" "PostgreSQL 15"
# A replication connection is accepted too (pg_hba from initdb --auth=trust).
pg_psql main -c 'SELECT 1' >/dev/null
psql -X -A -t -c 'IDENTIFY_SYSTEM' "$PG_CONNINFO_main replication=true" >/dev/null \
    || fail "replication connection refused"

# ... and from inside $(...), where only the files under $BQ_TMP survive.
conn_b=$(pg_start second)
assert_eq "$conn_b" "$(pg_conninfo second)" "conninfo of second"
[[ $(pg_port second) != "$PG_PORT_main" ]] || fail "two clusters got the same port"
assert_eq 1 "$(psql -X -A -t -c 'SELECT 1' "$conn_b")" "SELECT 1 on second"

# --- pg_check against the live server
if [[ -n ${BQ_PG_CHECK_TEST:-} ]]; then
    BQ_TEST_CONNINFO=$PG_CONNINFO_main "$BQ_PG_CHECK_TEST" >"$BQ_TMP/pg_check_test.log" 2>&1 || {
        cat "$BQ_TMP/pg_check_test.log" >&2
        fail "pg_check_test failed against cluster main"
    }
    out=$(cat "$BQ_TMP/pg_check_test.log")
    assert_contains "$out" "[       OK ] test_live_server"
    assert_not_contains "$out" "SKIPPED"
else
    echo "BQ_PG_CHECK_TEST is not set (ctest sets it): skipping pg_check_test"
fi

# --- stop: the postmaster and all its children are gone
pm=$(pg_pid main)
bq_pid_alive "$pm" || fail "postmaster $pm of main is not running"
children=$(pgrep -P "$pm" || true)
[[ -n $children ]] || fail "postmaster $pm has no children"
pg_stop main
bq_pid_alive "$pm" && fail "postmaster $pm still running after pg_stop"
for c in $children; do
    bq_wait_for "backend $c of main to exit" 10 bq__pid_gone "$c"
done
psql -X -A -t -c 'SELECT 1' "$PG_CONNINFO_main" >/dev/null 2>&1 && fail "main still answers"
pg_stop second

# --- bq_spawn, bq_wait_log, bq_wait_for, bq_kill
pid=$(bq_spawn ticker bash -c 'sleep 0.3; echo "ready on 42"; exec sleep 300')
bq_pid_alive "$pid" || fail "spawned process $pid is not running"
bq_wait_log "$BQ_TMP/ticker.log" '^ready on [0-9]+$' 10
out=$( (bq_wait_log "$BQ_TMP/ticker.log" 'never printed' 0.5) 2>&1) && fail "bq_wait_log matched"
assert_contains "$out" "waiting for /never printed/"
assert_contains "$out" "ready on 42"
out=$( (bq_wait_for "the impossible" 1 false) 2>&1) && fail "bq_wait_for false succeeded"
assert_contains "$out" "timed out after 1 s waiting for the impossible"
bq_kill "$pid"
bq_pid_alive "$pid" && fail "process $pid survived bq_kill"
port=$(bq_free_port)
[[ $port =~ ^[0-9]+$ ]] || fail "bq_free_port printed '$port'"
[[ $(bq_free_port) != "$port" ]] || fail "bq_free_port handed out $port twice"

# --- cleanup of a test that exits leaving things running (here: one that fails)
inner=$(BQ_KEEP=0 bash -c '
    source "$1/lib.sh"
    bq_tmpdir
    pg_start left >/dev/null
    s=$(bq_spawn sleeper sleep 300)
    echo "$BQ_TMP $(pg_pid left) $s"
    exit 3
' inner "$HERE" 2>"$BQ_TMP/inner.err") && fail "inner test exited 0"
rc=$?
assert_eq 3 "$rc" "exit status of the inner test"
read -r inner_tmp inner_pm inner_sleep <<<"$inner"
[[ -n $inner_sleep ]] || fail "inner test printed '$inner'"
bq_pid_alive "$inner_pm" && fail "cleanup left postmaster $inner_pm running"
bq_pid_alive "$inner_sleep" && fail "cleanup left process $inner_sleep running"
[[ ! -e $inner_tmp ]] || fail "cleanup left $inner_tmp behind"
assert_contains "$(cat "$BQ_TMP/inner.err")" "last lines of"

echo "harness: all checks passed"
