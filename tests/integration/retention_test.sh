# Retention, keep, check and metrics through the fleet (issue 6):
#   - REDUNDANCY 2, minimum_redundancy 1, retention = auto: a third backup makes the oldest
#     OBSOLETE; the coordinator deletes it (catalog and store) and then the WAL before the
#     oldest backup that stays, from the store's WAL area and the WAL index;
#   - keep --target full keeps an old backup (KEEP:FULL, never deleted, it still counts), and
#     it still restores (pg_verifybackup); --status and --release;
#   - list-backups shows each backup's retention status;
#   - check: OK items with the coordinator's own (backup age, redundancy, failed jobs, store,
#     workers, catalog); PostgreSQL stopped -> exit 1, the PostgreSQL item FAILED, and
#     --nagios exits 2 with one status line and perfdata; a worker stopped -> CRITICAL fleet
#     item naming it;
#   - metrics: accepted by promtool check metrics, with the figures of the catalog.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"
"$BQ_PGBIN/pgbench" -i -s 1 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1

fleet_init
sed -i 's/^\[coordinator\]$/[coordinator]\nretention_interval = 1s/' "$FLEET/coordinator.conf"
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
fleet_cluster db1 east "$C"
printf 'retention_policy = REDUNDANCY 2\nminimum_redundancy = 1\nbackup_max_age = 1h\n' \
    >>"$FLEET/coordinator.conf"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store

# ---- two backups, the first kept ---------------------------------------------------------------
rc=0; id1=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "first backup: $(cat "$BQ_TMP/backup-last.err")"
fleet_cli switch-wal db1 --archive --wait-timeout 60 >/dev/null || fail "switch-wal after backup 1"
rc=0; id2=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "second backup: $(cat "$BQ_TMP/backup-last.err")"
fleet_cli switch-wal db1 --archive --wait-timeout 60 >/dev/null || fail "switch-wal after backup 2"

list=$(fleet_cli list-backups db1)
assert_contains "$list" "RETENTION" "list-backups header"
assert_eq VALID "$(backup_field db1 "$id1" retention)" "retention of $id1 with 2 backups"

assert_eq nokeep "$(fleet_cli keep db1 "$id1" --status)" "keep --status before"
fleet_cli keep db1 "$id1" --target full >/dev/null || fail "keep --target full"
assert_eq full "$(fleet_cli keep db1 "$id1" --status)" "keep --status after"
assert_eq KEEP:FULL "$(backup_field db1 "$id1" retention)" "retention of the kept backup"
rc=0; out=$(fleet_cli keep db1 "$id1" 2>&1) || rc=$?
assert_eq 2 "$rc" "keep without a mode"
rc=0; out=$(fleet_cli keep db1 "$id1" --target forever 2>&1) || rc=$?
assert_eq 2 "$rc" "keep --target forever"
assert_contains "$out" "full or standalone"

# ---- a third backup: the kept one counts but stays; nothing is OBSOLETE yet ----------------------
rc=0; id3=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "third backup: $(cat "$BQ_TMP/backup-last.err")"
# REDUNDANCY 2: newest two (id3, id2) are VALID, id1 kept: nothing to delete
sleep_until_retention() { [[ $(fleet_cli jobs --all --json | python3 -c '
import json, sys
print(sum(1 for j in json.load(sys.stdin) if j["type"] in ("delete", "wal-prune")))') -ge "$1" ]]; }
assert_eq "KEEP:FULL VALID VALID" "$(for i in $id1 $id2 $id3; do backup_field db1 "$i" retention; done | tr '\n' ' ' | sed 's/ $//')" \
    "statuses with the first kept"

# ---- release it: it becomes OBSOLETE and retention deletes it and its WAL ----------------------
wal_begin2=$(backup_field db1 "$id2" wal_begin)
wal_first_before=$(ls "$STORE/wal/db1/00000001" | sort | head -1)
[[ $wal_first_before < $wal_begin2 ]] || fail "no WAL before $wal_begin2 to prune (first: $wal_first_before)"
fleet_cli keep db1 "$id1" --release >/dev/null || fail "keep --release"
gone() { ! fleet_cli show-backup db1 "$id1" >/dev/null 2>&1; }
bq_wait_for "retention to delete $id1" 60 gone
assert_not_contains "$(fleet_cli store ls "$STORE" --key "$FLEET/keys/east-1.storekey" 2>&1)" "$id1" \
    "the deleted backup in the store"
out=$("$BQ_BIN_CLI" store verify "$STORE" --key "$FLEET/keys/east-1.storekey" 2>&1) ||
    fail "store verify after retention's delete: $out"
pruned() { local f; f=$(ls "$STORE/wal/db1/00000001" | grep -v '\.backup$' | sort | head -1); [[ ! $f < $wal_begin2 ]]; }
bq_wait_for "retention to prune the WAL before $wal_begin2" 60 pruned
index_first() { fleet_cli list-wal db1 --json | python3 -c '
import json, sys
t = json.load(sys.stdin)
print(t[0]["first"] if t else "")'; }
index_pruned() { [[ ! $(index_first) < $wal_begin2 ]]; }
bq_wait_for "the WAL index to drop the pruned WAL" 30 index_pruned
assert_eq "VALID VALID" "$(for i in $id2 $id3; do backup_field db1 "$i" retention; done | tr '\n' ' ' | sed 's/ $//')" \
    "statuses after retention"
# the backups that stay still restore
pg_dir "$BQ_TMP/r2"
DEST=$BQ_TMP/r2/data
rc=0; recover_json db1 "$id2" "$DEST" --worker east-1 >/dev/null || rc=$?
assert_eq 0 "$rc" "restore of $id2 after retention: $(cat "$BQ_TMP/recover-last.err")"
as_pg "$BQ_PGBIN/pg_verifybackup" "$DEST" >"$BQ_TMP/verify2.log" 2>&1 \
    || fail "pg_verifybackup of $id2: $(cat "$BQ_TMP/verify2.log")"
# no WAL gap after pruning: the archive is whole from the oldest backup on
assert_not_contains "$(fleet_cli list-wal db1)" "missing" "list-wal after pruning"

# ---- check ---------------------------------------------------------------------------------------
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 0 "$rc" "check of a healthy cluster: $out"
for item in "backup age" "minimum redundancy" "failed jobs" "store east-1" "workers east" "catalog"; do
    assert_contains "$out" "$item" "check item $item"
done
rc=0; nag=$(fleet_cli check all --nagios --wait-timeout 60) || rc=$?
assert_eq 0 "$rc" "check all --nagios when healthy: $nag"
assert_contains "$nag" "BARQUE OK - " "nagios status line"
assert_contains "$nag" "| clusters=1 ok=1" "nagios perfdata"

# ---- metrics -------------------------------------------------------------------------------------
fleet_cli metrics >"$BQ_TMP/metrics.prom" || fail "barque metrics"
promtool check metrics <"$BQ_TMP/metrics.prom" >"$BQ_TMP/promtool.out" 2>&1 \
    || fail "promtool check metrics: $(cat "$BQ_TMP/promtool.out")"
assert_contains "$(cat "$BQ_TMP/metrics.prom")" 'barque_backups{cluster="db1",state="done"} 2' "metrics: DONE backups"
assert_contains "$(cat "$BQ_TMP/metrics.prom")" 'barque_worker_online{worker="east-1",site="east"} 1' "metrics: worker online"

# ---- checks that fail for real ---------------------------------------------------------------
pg_stop main
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 1 "$rc" "check with PostgreSQL stopped: $out"
assert_contains "$out" "connection           FAILED" "the connection item"
rc=0; nag=$(fleet_cli check db1 --nagios --wait-timeout 60) || rc=$?
assert_eq 2 "$rc" "check --nagios with PostgreSQL stopped: $nag"
assert_contains "$nag" "BARQUE CRITICAL - db1 connection: connection to server at" "nagios line names the item"

bq_kill "$FLEET_PID_east_1" TERM
bq_wait_for "east-1 offline" 15 fleet_worker_offline east-1
rc=0; nag=$(fleet_cli check all --nagios --wait-timeout 3) || rc=$?
assert_eq 2 "$rc" "check --nagios with the worker stopped: $nag"
assert_contains "$nag" "fleet workers east: 0 of 1 online at site east; offline: east-1" "the fleet item"
echo "PASS retention"
