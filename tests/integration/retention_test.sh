# Retention, keep, check and metrics through the fleet (issue 6):
#   - REDUNDANCY 2, minimum_redundancy 1, retention = auto: a third backup makes the oldest
#     OBSOLETE; the coordinator deletes it (catalog and store) and then the WAL before the
#     oldest backup that stays, from the store's WAL area and the WAL index;
#   - keep --target standalone keeps an old backup (never deleted, it still counts) with only
#     its own WAL: the WAL between it and the next backup kept is pruned, check sees no gap;
#     every backup that stays restores (pg_verifybackup); --status and --release;
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

# ---- two backups, the first kept standalone ------------------------------------------------------
take() { # take a backup and close its last segment, so each backup's WAL is archived apart
    local id rc=0
    id=$(backup_take db1) || rc=$?
    ((rc == 0)) || fail "backup: $(cat "$BQ_TMP/backup-last.err")"
    fleet_cli switch-wal db1 --archive --wait-timeout 60 >/dev/null || fail "switch-wal after $id"
    echo "$id"
}
statuses() { local i; for i in "$@"; do backup_field db1 "$i" retention; done | tr '\n' ' ' | sed 's/ $//'; }
id1=$(take)
id2=$(take)

list=$(fleet_cli list-backups db1)
assert_contains "$list" "RETENTION" "list-backups header"
assert_eq "VALID VALID" "$(statuses "$id1" "$id2")" "two backups under REDUNDANCY 2"

assert_eq nokeep "$(fleet_cli keep db1 "$id1" --status)" "keep --status before"
fleet_cli keep db1 "$id1" --target standalone >/dev/null || fail "keep --target standalone"
assert_eq standalone "$(fleet_cli keep db1 "$id1" --status)" "keep --status after"
rc=0; out=$(fleet_cli keep db1 "$id1" 2>&1) || rc=$?
assert_eq 2 "$rc" "keep without a mode"
rc=0; out=$(fleet_cli keep db1 "$id1" --target forever 2>&1) || rc=$?
assert_eq 2 "$rc" "keep --target forever"
assert_contains "$out" "full or standalone"

# ---- a third backup: the kept one counts, nothing is OBSOLETE -----------------------------------
id3=$(take)
assert_eq "KEEP:STANDALONE VALID VALID" "$(statuses "$id1" "$id2" "$id3")" "three backups, the first kept"

# ---- a fourth: id2 is OBSOLETE and goes; the kept id1 stays, with its own WAL only --------------
id4=$(take)
b1=$(backup_field db1 "$id1" wal_begin); e1=$(backup_field db1 "$id1" wal_end)
b3=$(backup_field db1 "$id3" wal_begin)
segs() { ls "$STORE/wal/db1/00000001" | grep -E '^[0-9A-F]{24}$' | sort; }
# between A B [STRICT]: the names of segs on stdin from A to B (strictly between when STRICT),
# compared as strings: awk would compare all-digit names as numbers, and doubles cannot tell
# 000000010000000000000002 from ...03
between() { awk -v a="$1" -v b="$2" -v s="${3:-}" '{ n = $0 "" } s ? (n > a "" && n < b "") : (n >= a "" && n <= b "")'; }
gone2() { ! fleet_cli show-backup db1 "$id2" >/dev/null 2>&1; }
bq_wait_for "retention to delete the OBSOLETE $id2" 60 gone2
assert_eq "KEEP:STANDALONE VALID VALID" "$(statuses "$id1" "$id3" "$id4")" "after retention"
assert_not_contains "$(fleet_cli store ls "$STORE" --key "$FLEET/keys/east-1.storekey" 2>&1)" "$id2" \
    "the deleted backup in the store"
out=$("$BQ_BIN_CLI" store verify "$STORE" --key "$FLEET/keys/east-1.storekey" 2>&1) ||
    fail "store verify after retention's delete: $out"
pruned_between() { (($(segs | between "$e1" "$b3" strict | wc -l) == 0)); }
bq_wait_for "retention to prune the WAL between $e1 and $b3" 60 pruned_between
removed=$(fleet_cli jobs --all --json | python3 -c '
import json, sys
print(sum(j.get("prune", {}).get("files_removed", 0) for j in json.load(sys.stdin) if j["type"] == "wal-prune"))')
((removed >= $((16#${b3:16:8} - 16#${e1:16:8} - 1)))) ||
    fail "wal-prune jobs removed $removed files, fewer than the segments between $e1 and $b3"
kept1=$(segs | between "$b1" "$e1" | wc -l)
assert_eq "$((16#${e1:16:8} - 16#${b1:16:8} + 1))" "$kept1" "the standalone backup's own WAL ($b1..$e1) in the store"
index_has() { fleet_cli list-wal db1 --json | python3 -c '
import json, sys
t = json.load(sys.stdin)[0]
print(t["first"], t["segments"])'; }
read -r ifirst _ < <(index_has)
assert_eq "$b1" "$ifirst" "the WAL index starts at the standalone backup's WAL"
# the pruned stretch is no gap for check: no kept backup needs it
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_contains "$out" "WAL archive          OK" "check after pruning around a standalone backup"

# every kept backup still restores
for id in "$id1" "$id3" "$id4"; do
    pg_dir "$BQ_TMP/r-$id"
    rc=0; recover_json db1 "$id" "$BQ_TMP/r-$id/data" --worker east-1 >/dev/null || rc=$?
    assert_eq 0 "$rc" "restore of $id after retention: $(cat "$BQ_TMP/recover-last.err")"
    as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r-$id/data" >"$BQ_TMP/verify.log" 2>&1 \
        || fail "pg_verifybackup of $id: $(cat "$BQ_TMP/verify.log")"
done

# ---- release it: it becomes OBSOLETE, and it and its WAL go ----------------------------------
fleet_cli keep db1 "$id1" --release >/dev/null || fail "keep --release"
gone1() { ! fleet_cli show-backup db1 "$id1" >/dev/null 2>&1; }
bq_wait_for "retention to delete the released $id1" 60 gone1
pruned_all() { (($(segs | between "" "$b3" strict | wc -l) == 0)); }
bq_wait_for "retention to prune the WAL before $b3" 60 pruned_all
index_pruned() { read -r f _ < <(index_has); [[ ! $f < $b3 ]]; }
bq_wait_for "the WAL index to drop the pruned WAL" 30 index_pruned
assert_eq "VALID VALID" "$(statuses "$id3" "$id4")" "statuses after the release"
assert_not_contains "$(fleet_cli list-wal db1)" "missing" "list-wal after pruning"

# ---- check ---------------------------------------------------------------------------------------
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 0 "$rc" "check of a healthy cluster: $out"
for item in "backup age" "minimum redundancy" "failed jobs" "store east-1" "workers east" "catalog" "retention            OK      REDUNDANCY 2, minimum_redundancy 1: 2 VALID, 0 OBSOLETE, 0 kept"; do
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
