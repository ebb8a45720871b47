# barque-coordinator --rebuild-catalog (issue 6, item 6): the stores are the source of truth.
#   - two backups and streamed WAL; the catalog directory deleted; --rebuild-catalog asks the
#     worker for its store's inventory and exits 0 naming what it found;
#   - list-backups --json and list-wal --json after the rebuild are the same as before, field
#     for field (ids, states, LSNs, times, sizes, the job that took each, stores, keep);
#   - a coordinator on the rebuilt catalog serves them, and a rebuilt backup restores;
#   - with a configured worker that never comes, the rebuild ends at --rebuild-timeout with
#     exit 1 naming it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"
"$BQ_PGBIN/pgbench" -i -s 1 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
fleet_cluster db1 east "$C"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

rc=0; id1=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "first backup: $(cat "$BQ_TMP/backup-last.err")"
pg_psql main -c "CREATE TABLE marker AS SELECT 42 AS x" >/dev/null
rc=0; id2=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "second backup: $(cat "$BQ_TMP/backup-last.err")"
fleet_cli switch-wal db1 --archive --wait-timeout 60 >/dev/null || fail "switch-wal"
done2() { [[ $(backup_field db1 "$id2" state) == DONE ]]; }
bq_wait_for "backup $id2 DONE" 60 done2
# a keep mark goes to the store too (a keep job), so the rebuilt catalog keeps it
fleet_cli keep db1 "$id1" --target full >/dev/null || fail "keep --target full"
keep_done() { fleet_cli jobs --all --json | python3 -c '
import json, sys
sys.exit(0 if any(j["type"] == "keep" and j["state"] == "SUCCEEDED" for j in json.load(sys.stdin)) else 1)'; }
bq_wait_for "the keep mark in the store" 30 keep_done
[[ -f $FLEET/east-1/store/backups/$id1.keep ]] || fail "no keep mark beside $id1 in the store"
# no more WAL from here: the server stops, so the index and the store stay as they are
pg_stop main

fleet_cli list-backups db1 --json >"$BQ_TMP/backups.before" || fail "list-backups before"
fleet_cli list-wal db1 --json >"$BQ_TMP/wal.before" || fail "list-wal before"
nwal=$(python3 -c 'import json,sys; print(sum(t["segments"] for t in json.load(open(sys.argv[1]))))' "$BQ_TMP/wal.before")
((nwal >= 3)) || fail "expected at least 3 archived segments, got $nwal"

# ---- lose the catalog ---------------------------------------------------------------------------
bq_kill "$FLEET_COORD_PID" TERM
rm -rf "$FLEET/catalog"
rc=0
timeout 120 "$BQ_BIN_COORDINATOR" -c "$FLEET/coordinator.conf" --rebuild-catalog --rebuild-timeout 60 \
    >"$BQ_TMP/rebuild.out" 2>"$BQ_TMP/rebuild.log" || rc=$?
assert_eq 0 "$rc" "--rebuild-catalog: $(cat "$BQ_TMP/rebuild.out") $(tail -5 "$BQ_TMP/rebuild.log")"
assert_contains "$(cat "$BQ_TMP/rebuild.out")" "worker east-1 (site east): listed: 2 backups" "rebuild report"

fleet_coord_start
fleet_cli list-backups db1 --json >"$BQ_TMP/backups.after" || fail "list-backups after"
fleet_cli list-wal db1 --json >"$BQ_TMP/wal.after" || fail "list-wal after"
diff -u "$BQ_TMP/backups.before" "$BQ_TMP/backups.after" >"$BQ_TMP/backups.diff" ||
    fail "list-backups --json differs after the rebuild: $(cat "$BQ_TMP/backups.diff")"
diff -u "$BQ_TMP/wal.before" "$BQ_TMP/wal.after" >"$BQ_TMP/wal.diff" ||
    fail "list-wal --json differs after the rebuild: $(cat "$BQ_TMP/wal.diff")"

# a rebuilt backup restores
bq_wait_for "east-1 online again" 30 fleet_worker_online east-1
pg_dir "$BQ_TMP/r"
rc=0; recover_json db1 "$id2" "$BQ_TMP/r/data" --worker east-1 >/dev/null || rc=$?
assert_eq 0 "$rc" "restore of $id2 from the rebuilt catalog: $(cat "$BQ_TMP/recover-last.err")"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r/data" 2>&1) || fail "pg_verifybackup: $out"

# ---- a worker that never answers -----------------------------------------------------------------
bq_kill "$FLEET_COORD_PID" TERM
"$BQ_BIN_CLI" keygen ghost --dir "$FLEET/keys" >/dev/null
printf '\n[worker ghost]\npublic_key_file = keys/ghost.pub\nsite = east\n' >>"$FLEET/coordinator.conf"
rc=0
timeout 60 "$BQ_BIN_COORDINATOR" -c "$FLEET/coordinator.conf" --rebuild-catalog --rebuild-timeout 5 \
    >"$BQ_TMP/rebuild2.out" 2>"$BQ_TMP/rebuild2.log" || rc=$?
assert_eq 1 "$rc" "--rebuild-catalog with a worker missing: $(cat "$BQ_TMP/rebuild2.out")"
assert_contains "$(cat "$BQ_TMP/rebuild2.out")" "worker ghost (site east): did not answer" "the missing worker"
assert_contains "$(cat "$BQ_TMP/rebuild2.out")" "worker east-1 (site east): listed: 2 backups" "the other"
assert_contains "$(cat "$BQ_TMP/rebuild2.out")" "0 backup records and 0 WAL records added" "nothing new twice"
rc=0; "$BQ_BIN_COORDINATOR" -c "$FLEET/coordinator.conf" --rebuild-timeout 0 >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "--rebuild-timeout 0"
echo "PASS rebuild"
