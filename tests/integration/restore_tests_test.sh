# integration.restore_tests: backups proven by restoring them (issue 7).
#   1. restore_test_schedule (added by a reload): a scheduled test of the newest backup runs,
#      restores into the worker's scratch, replays to the end of the archive (40+ MB of WAL
#      written after the backup), starts, checks (system identifier, every database,
#      pg_amcheck, restore_test_sql true) and records every figure; scratch is empty after it
#      and no server runs there; show-backup, status, check and metrics show it.
#   2. The predicted recovery time (status, after 40+ MB more WAL) is within 50% of the measured
#      time of the next test (restore-test --wait).
#   3. restore_test_sql returning false fails the test, naming it; check is CRITICAL.
#   4. drill: a random point inside the recovery window, recorded as a drill.
#   5. A WAL gap (a segment after the backup removed from the store): the test fails naming the
#      missing segment.
#   6. The worker SIGKILLed while the test's server runs (a test of B2 --target-immediate,
#      which the gap does not touch): the server goes (parent-death signal), the retry passes,
#      and no server and no scratch data is left behind.
#   7. Scratch too small (a 16 MiB tmpfs): a clear error before any byte is written.
#   8. A damaged pack byte in the store: the test fails naming the damage.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
ok() { echo "ok - $*"; }
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"
fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
printf 'data_listen = tcp://127.0.0.1:%s\n' "$(bq_free_port)" >>"$FLEET/east-1.conf"
SCRATCH=$FLEET/east-1/scratch
STORE=$FLEET/east-1/store
chmod 755 "$FLEET" "$FLEET/east-1"
fleet_cluster db1 east "$C"
SQL=$BQ_TMP/rt.sql
echo "SELECT count(*) = 150000 FROM t" >"$SQL"
printf 'restore_test_amcheck = on\nrestore_test_sql = %s\nrestore_test_max_age = 1h\n' "$SQL" \
    >>"$FLEET/coordinator.conf"
fleet_coord_start
PGCLI=$(fleet_cli_for_pg "$BQ_TMP/pgcli")
printf 'cli_command = %s -c %s\n' "$BQ_BIN_CLI" "$PGCLI" >>"$FLEET/east-1.conf"
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
streaming() { [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'barque_db1'") == 1 ]]; }
bq_wait_for "the wal-stream job of db1 to stream" 30 streaming

# rt_field JOB FIELD: one field of JOB's record in `restore-tests db1 --json` ("" if none).
rt_field() {
    fleet_cli restore-tests db1 --json | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t["job_id"] == int(sys.argv[1]):
        v = t.get(sys.argv[2])
        print("" if v is None else v)' "$1" "$2"
}
rt_count() { fleet_cli restore-tests db1 --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
# scratch_clean: no rt-* directory in scratch and no postmaster whose cwd is under it.
scratch_clean() {
    local left
    left=$(find "$SCRATCH" -mindepth 1 -maxdepth 1 2>/dev/null)
    [[ -z $left ]] || { echo "left in scratch: $left"; return 1; }
    local p
    for p in $(pgrep -x postgres); do
        [[ $(readlink "/proc/$p/cwd" 2>/dev/null) != "$SCRATCH"/* ]] || { echo "postgres $p runs in scratch"; return 1; }
    done
}
# rt_run ARGS...: barque restore-test db1 ARGS --wait --json; its job id in RT_JOB, exit in RT_RC.
rt_run() {
    RT_RC=0
    fleet_cli restore-test db1 "$@" --wait --json >"$BQ_TMP/rt-last.json" 2>"$BQ_TMP/rt-last.err" || RT_RC=$?
    RT_JOB=$(python3 -c '
import json, sys
text = open(sys.argv[1]).read().strip()
try:
    v = json.loads(text.splitlines()[-1])
except Exception:
    v = json.loads(text)
print(v.get("job_id", ""))' "$BQ_TMP/rt-last.json" 2>/dev/null || true)
}

pg_psql main -c "CREATE TABLE t (id bigint, pad text)"
pg_psql main -c "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 150000) g"
B1=$(backup_take db1) || fail "backup: $(cat "$BQ_TMP/backup-last.err")"
pg_psql main -c "CREATE TABLE w (id bigint, pad text)"
pg_psql main -c "INSERT INTO w SELECT g, repeat('y', 200) FROM generate_series(1, 150000) g"
fleet_cli switch-wal db1 --archive >/dev/null || fail "switch-wal --archive"

# ---- 1. the schedule's test -------------------------------------------------------------------
[[ $(rt_count) == 0 ]] || fail "a restore test ran before any was asked for"
printf 'restore_test_schedule = 1d\n' >>"$FLEET/coordinator.conf"
bq_kill "$FLEET_COORD_PID" HUP
has_test() { [[ $(rt_count) -ge 1 ]]; }
bq_wait_for "the scheduled restore test to be recorded" 180 has_test
T1=$(fleet_cli restore-tests db1 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["job_id"])')
python3 - "$B1" "$(fleet_cli restore-tests db1 --json)" <<'PY' || fail "scheduled test record: $(fleet_cli restore-tests db1 --json)"
import json, sys
t = json.loads(sys.argv[2])[0]
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)
need(t["ok"] is True, "passed: " + str(t.get("error")))
need(t["kind"] == "scheduled", "kind scheduled")
need(t["backup_id"] == sys.argv[1], "backup B1")
need(t["worker"] == "east-1", "worker")
for f in ("fetch_ms", "start_ms", "replay_ms", "rto_ms", "bytes", "wal_bytes", "reached_ms"):
    need(isinstance(t.get(f), int) and t[f] > 0, f + " > 0")
need(t["wal_bytes"] >= 20_000_000, "20+ MB of WAL replayed after the backup")
need(t["wal_segments"] >= 2, "2+ segments replayed")
need(t["rto_ms"] >= t["fetch_ms"] + t["start_ms"] + t["replay_ms"], "RTO covers its parts")
need(t.get("reached_lsn"), "reached LSN")
names = {c["name"]: c for c in t["checks"]}
for n in ("WAL replay", "system identifier", "databases", "pg_amcheck", "restore_test_sql"):
    need(n in names and names[n]["ok"], "check " + n)
if bad:
    sys.exit("missing: " + "; ".join(bad))
print("T1 figures: " + ", ".join(f"{k}={t[k]}" for k in ("fetch_ms", "start_ms", "replay_ms", "rto_ms", "bytes", "wal_bytes", "wal_segments")))
PY
bq_wait_for "scratch to be clean after the test" 10 scratch_clean
out=$(fleet_cli show-backup db1 "$B1") || fail "show-backup: $out"
assert_contains "$out" "PASSED"
out=$(fleet_cli check db1 --wait-timeout 60) || fail "check after a passed test: $out"
assert_contains "$out" "restore test"
out=$(fleet_cli status --json) || fail "status --json"
P=$(python3 -c '
import json, sys
for c in json.loads(sys.argv[1])["clusters"]:
    if c["name"] == "db1":
        print(c["restore_test"]["predicted_ms"])' "$out")
[[ $P -gt 0 ]] || fail "no predicted recovery time in status: $out"
fleet_cli metrics >"$BQ_TMP/metrics.txt" || fail "metrics"
grep -q '^barque_restore_test_rto_seconds{cluster="db1"}' "$BQ_TMP/metrics.txt" || fail "no RTO metric: $(grep restore "$BQ_TMP/metrics.txt")"
if command -v promtool >/dev/null; then
    promtool check metrics <"$BQ_TMP/metrics.txt" || fail "promtool check metrics"
fi
ok "scheduled restore test of $B1 passed with every figure; scratch clean; show-backup, check, status, metrics"

# refusals: a site holding no copy, a target the archive cannot reach, an unknown backup
rc=0; out=$(fleet_cli restore-test db1 --from-site west 2>&1) || rc=$?
assert_eq 1 "$rc" "restore-test --from-site west: $out"
assert_contains "$out" "west"
rc=0; out=$(fleet_cli restore-test db1 --target-time "2000-01-01 00:00:00" 2>&1) || rc=$?
[[ $rc != 0 ]] || fail "a restore test to 2000-01-01 was queued: $out"
rc=0; out=$(fleet_cli restore-test db1 20000101T000000 2>&1) || rc=$?
assert_eq 1 "$rc" "restore-test of an unknown backup: $out"
assert_contains "$out" "no backup 20000101T000000"
ok "refused: --from-site without a copy there, a target before the backup, an unknown backup"

# ---- 2. the prediction against the next test ----------------------------------------------------
pg_psql main -c "INSERT INTO w SELECT g, repeat('z', 200) FROM generate_series(1, 150000) g"
fleet_cli switch-wal db1 --archive >/dev/null || fail "switch-wal --archive"
out=$(fleet_cli status --json) || fail "status --json"
read -r P PD < <(python3 -c '
import json, sys
for c in json.loads(sys.argv[1])["clusters"]:
    if c["name"] == "db1":
        r = c["restore_test"]
        print(r["predicted_ms"], r.get("predicted_detail", ""))' "$out")
rt_run
assert_eq 0 "$RT_RC" "restore-test --wait: $(cat "$BQ_TMP/rt-last.err")"
M=$(rt_field "$RT_JOB" rto_ms)
echo "prediction: predicted ${P} ms ($PD), measured ${M} ms (job $RT_JOB)"
python3 -c 'import sys; p, m = int(sys.argv[1]), int(sys.argv[2]); sys.exit(0 if abs(p - m) <= 0.5 * m else 1)' "$P" "$M" ||
    fail "predicted $P ms is not within 50% of the measured $M ms"
[[ $(rt_field "$RT_JOB" predicted_ms) == "$P" || $(rt_field "$RT_JOB" predicted_ms) -gt 0 ]] ||
    fail "the test did not record the prediction made for it"
ok "predicted $P ms, measured $M ms: within 50%"

# a newer backup, so the tests below replay less
B2=$(backup_take db1) || fail "backup 2: $(cat "$BQ_TMP/backup-last.err")"

# ---- 3. restore_test_sql false ----------------------------------------------------------------
echo "SELECT count(*) = 1 FROM t" >"$SQL"
rt_run
assert_eq 1 "$RT_RC" "restore-test with a false restore_test_sql"
assert_contains "$(cat "$BQ_TMP/rt-last.err") $(rt_field "$RT_JOB" error)" "restore_test_sql"
[[ $(rt_field "$RT_JOB" ok) == False ]] || fail "the test is not recorded as failed"
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 1 "$rc" "check after a failed restore test: $out"
assert_contains "$out" "last restore test FAILED"
bq_wait_for "scratch to be clean after the failed test" 10 scratch_clean
echo "SELECT count(*) = 150000 FROM t" >"$SQL"
ok "restore_test_sql returning false fails the test and check"

# ---- 4. drill --------------------------------------------------------------------------------
pg_psql main -c "INSERT INTO w VALUES (-1, 'before the switch')"
fleet_cli switch-wal db1 --archive >/dev/null || fail "switch-wal --archive"
pg_psql main -c "INSERT INTO w VALUES (-2, 'after the switch: streamed')"
rc=0; fleet_cli drill db1 --wait --json >"$BQ_TMP/drill.json" 2>"$BQ_TMP/drill.err" || rc=$?
assert_eq 0 "$rc" "drill: $(cat "$BQ_TMP/drill.err") $(cat "$BQ_TMP/drill.json")"
out=$(fleet_cli restore-tests db1 --json)
python3 -c '
import json, sys
t = json.loads(sys.argv[1])[-1]
assert t["kind"] == "drill" and t["ok"] and t["target"].startswith("time "), t' "$out" ||
    fail "the drill is not in the history as a passed drill: $out"
out=$(fleet_cli restore-tests db1)
assert_contains "$out" "drill"
ok "drill to a random point of the recovery window passed and is in the history"

# ---- 5. a WAL gap -----------------------------------------------------------------------------
pg_psql main -c "INSERT INTO w SELECT g, repeat('g', 200) FROM generate_series(1, 150000) g" >/dev/null
fleet_cli switch-wal db1 --archive >/dev/null || fail "switch-wal --archive"
G=$(python3 - "$(fleet_cli show-backup db1 latest --json)" "$(fleet_cli list-wal db1 --json)" <<'PY'
import json, sys
b = json.loads(sys.argv[1])
tls = json.loads(sys.argv[2])
tls = tls.get("timelines", tls) if isinstance(tls, dict) else tls
def segno(n):
    return int(n[8:16], 16) * 256 + int(n[16:24], 16)  # 16 MiB segments
tli = b["wal_end"][:8]
tl = [t for t in tls if t["timeline"] == int(tli, 16)][0]
end, last = segno(b["wal_end"]), segno(tl["last"])
assert last - end >= 3, (b["wal_end"], tl["last"])
g = end + 2
print("%s%08X%08X" % (tli, g // 256, g % 256))
PY
) || fail "no room for a gap after the backup"
f=$STORE/wal/db1/${G:0:8}/$G
[[ -e $f ]] || fail "segment $G is not in the store ($f)"
rm -f "$f"
rt_run
assert_eq 1 "$RT_RC" "restore-test across a WAL gap"
err="$(cat "$BQ_TMP/rt-last.err") $(rt_field "$RT_JOB" error)"
assert_contains "$err" "$G"
bq_wait_for "scratch to be clean after the gap test" 10 scratch_clean
ok "a WAL gap fails the test naming segment $G"

# ---- 6. the worker SIGKILLed while the test's server runs ----------------------------------------
echo "SELECT true FROM pg_sleep(60)" >"$SQL"
out=$(fleet_cli restore-test db1 "$B2" --target-immediate --json) || fail "restore-test: $out"
J=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["job_id"])' "$out")
# the test's server is up and runs the sleeping restore_test_sql (postmaster.pid: PID, data
# directory, start time, port, socket directory)
server_up() {
    local pf
    pf=$(find "$SCRATCH" -maxdepth 3 -name postmaster.pid 2>/dev/null | head -1)
    [[ -n $pf ]] || return 1
    [[ $(psql -X -A -t -h "$(sed -n 5p "$pf")" -p "$(sed -n 4p "$pf")" -U postgres -d postgres \
        -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()") -ge 1 ]]
}
bq_wait_for "the test's server to run its checks" 120 server_up
pidfile=$(find "$SCRATCH" -maxdepth 3 -name postmaster.pid | head -1)
PM=$(head -n 1 "$pidfile")
bq_pid_alive "$PM" || fail "no postmaster $PM"
bq_kill "$FLEET_PID_east_1" KILL
echo "SELECT count(*) = 150000 FROM t" >"$SQL"
bq_wait_for "the orphaned postmaster $PM to exit (parent-death signal)" 30 bq__pid_gone "$PM"
bq_wait_for "the coordinator to see east-1 gone" 15 fleet_worker_offline east-1
fleet_worker_start east-1
# The restarted worker must register; when it does not, say where it is (seen twice in CI: a
# restarted east-1 that wrote no log line for 240 s)
restarted_online() { fleet_worker_online east-1; }
if ! (bq_wait_for "the restarted east-1 to come online" 60 restarted_online) 2>/dev/null; then
    p=$FLEET_PID_east_1
    echo "restarted east-1 (pid $p) is not online after 60 s:"
    ps -o pid,stat,wchan:32,etime,cmd -p "$p" || true
    grep -E "^(State|Threads)" "/proc/$p/status" 2>/dev/null || true
    cat "/proc/$p/stack" 2>/dev/null || true
    timeout 30 gdb -p "$p" -batch -ex "thread apply all bt 12" 2>/dev/null | grep -E "^#|^Thread" | head -60 || true
    tail -n 5 "$BQ_TMP/worker-east-1.log"
    fail "the restarted east-1 did not come online within 60 s (see above)"
fi
bq_wait_for "the killed test to pass on its retry" 240 fleet_job_state_is "$J" SUCCEEDED
[[ $(fleet_job_field "$J" attempt) -ge 2 ]] || fail "job $J passed without a retry"
bq_wait_for "scratch to be clean after the retry" 10 scratch_clean
ok "worker SIGKILLed during the test: its server exited, the retry passed, scratch is clean"

# ---- 7. scratch too small ----------------------------------------------------------------------
SMALL=$FLEET/east-1/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=16m,mode=755 tmpfs "$SMALL" || fail "could not mount a 16 MiB tmpfs"
bq_on_cleanup "umount '$SMALL' 2>/dev/null || umount -l '$SMALL' 2>/dev/null || true"
bq_kill "$FLEET_PID_east_1" TERM
sed -i "s|^scratch = .*|scratch = $SMALL|" "$FLEET/east-1.conf"
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
rt_run
assert_eq 1 "$RT_RC" "restore-test into a 16 MiB scratch"
err="$(cat "$BQ_TMP/rt-last.err") $(rt_field "$RT_JOB" error)"
assert_contains "$err" "free"
assert_contains "$err" "nothing was written"
[[ -z $(find "$SMALL" -mindepth 1) ]] || fail "something was written to the small scratch: $(find "$SMALL")"
bq_kill "$FLEET_PID_east_1" TERM
sed -i "s|^scratch = .*|scratch = $SCRATCH|" "$FLEET/east-1.conf"
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
ok "scratch too small: refused before any byte was written ($err)"

# ---- 8. a damaged chunk -------------------------------------------------------------------------
for pack in $(find "$STORE/packs" -name '*.pack'); do
    size=$(stat -c %s "$pack")
    python3 - "$pack" $((size / 2)) <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x40]))
PY
done
rt_run "$B2"
assert_eq 1 "$RT_RC" "restore-test of a damaged backup"
err="$(cat "$BQ_TMP/rt-last.err") $(rt_field "$RT_JOB" error)"
assert_contains "$err" "chunk"
bq_wait_for "scratch to be clean after the damaged test" 10 scratch_clean
ok "a damaged pack byte fails the test: $err"
