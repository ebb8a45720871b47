# check items that fail for real, and hook scripts (issue 6, items 3 and 5):
#   - the slot dropped (the wal-stream job cancelled, barque_db1 dropped on the server):
#     "WAL slot ... is missing" and "WAL receiver ... is not connected", exit 1, Nagios 2;
#   - a small store filled up (a 256 MiB tmpfs as the worker's store, filled to < 5% free):
#     the "store east-1" item FAILED "below store_free_critical", Nagios 2;
#   - failed jobs in the last day: a WARNING naming the job;
#   - a cluster never backed up with backup_max_age and minimum_redundancy 1: both FAILED;
#   - the receiver stopped (SIGSTOP) while the server writes 20+ MB: "WAL lag" over
#     wal_max_lag FAILED (checked by a second worker);
#   - hooks: pre_backup_script exiting 63 stops the backup (FAILED, the hook's message);
#     after a reload, pre_backup_script and post_backup_script run with BARQUE_* (the backup
#     id, status DONE), pre/post_recover_script around a restore (BARQUE_DEST, status OK) and
#     post_wal_script runs for an archived segment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"
HOOKS=$BQ_TMP/hooks
mkdir -p "$HOOKS"
cat >"$HOOKS/stop.sh" <<'SH'
#!/bin/sh
echo "maintenance window: no backups now" >&2
exit 63
SH
cat >"$HOOKS/env.sh" <<'SH'
#!/bin/sh
env | grep '^BARQUE_' | sort >"$1/$BARQUE_HOOK.env"
SH
cat >"$HOOKS/wal.sh" <<'SH'
#!/bin/sh
echo "$BARQUE_WAL_NAME $BARQUE_WAL_SIZE" >>"$1/post_wal.list"
SH
chmod 755 "$HOOKS"/*.sh

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
STORE=$FLEET/east-1/store
mkdir -p "$STORE"
mount -t tmpfs -o size=256m tmpfs "$STORE" || fail "could not mount a 256 MiB tmpfs for the store"
bq_on_cleanup "umount '$STORE' 2>/dev/null || umount -l '$STORE' 2>/dev/null || true"
fleet_cluster never east "$C" # never backed up, with a limit on backup age and a redundancy
printf 'wal = archive\nbackup_max_age = 1h\nminimum_redundancy = 1\n' >>"$FLEET/coordinator.conf"
fleet_cluster db1 east "$C"
printf 'pre_backup_script = %s\nhook_retries = 0\nwal_max_lag = 1MiB\n' "$HOOKS/stop.sh" >>"$FLEET/coordinator.conf"
fleet_worker_conf east-2 east # started only for the lag check, while east-1 is stopped
fleet_worker_store_key east-2
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

# ---- no backup within backup_max_age, minimum_redundancy not met ----------------------------------
rc=0; out=$(fleet_cli check never --wait-timeout 60) || rc=$?
assert_eq 1 "$rc" "check of a cluster never backed up: $out"
assert_contains "$out" "backup age           FAILED  no DONE backup of cluster never" "the backup age item"
assert_contains "$out" "minimum redundancy   FAILED  0 DONE backups, minimum_redundancy 1" "the redundancy item"

# ---- hooks: a pre_backup_script that says stop -----------------------------------------------------
rc=0; fleet_cli backup db1 --wait >"$BQ_TMP/b1.out" 2>&1 || rc=$?
assert_eq 1 "$rc" "backup stopped by its pre hook: $(cat "$BQ_TMP/b1.out")"
bid=$(backup_newest db1)
assert_eq FAILED "$(backup_field db1 "$bid" state)" "the stopped backup"
assert_contains "$(backup_field db1 "$bid" error)" "pre_backup hook exited 63 (ABORT_STOP): maintenance window" \
    "the hook's reason in the backup's error"

# ---- hooks that run: reload with pre/post_backup and post_wal scripts ------------------------------
sed -i "s|^pre_backup_script = .*|pre_backup_script = $HOOKS/env.sh $HOOKS\npost_backup_script = $HOOKS/env.sh $HOOKS\npost_wal_script = $HOOKS/wal.sh $HOOKS\npre_recover_script = $HOOKS/env.sh $HOOKS\npost_recover_script = $HOOKS/env.sh $HOOKS|" \
    "$FLEET/coordinator.conf"
kill -HUP "$FLEET_COORD_PID"
bq_wait_log "$BQ_TMP/coordinator.log" "config reloaded" 10
rc=0; id=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup with hooks: $(cat "$BQ_TMP/backup-last.err")"
[[ -f $HOOKS/pre_backup.env && -f $HOOKS/post_backup.env ]] || fail "the hooks did not run: $(ls "$HOOKS")"
assert_contains "$(cat "$HOOKS/pre_backup.env")" "BARQUE_PHASE=pre" "pre hook env"
assert_contains "$(cat "$HOOKS/pre_backup.env")" "BARQUE_RETRY=1"
assert_contains "$(cat "$HOOKS/post_backup.env")" "BARQUE_BACKUP_ID=$id" "post hook env"
assert_contains "$(cat "$HOOKS/post_backup.env")" "BARQUE_STATUS=DONE"
assert_contains "$(cat "$HOOKS/post_backup.env")" "BARQUE_CLUSTER=db1"
assert_contains "$(cat "$HOOKS/post_backup.env")" "BARQUE_WORKER=east-1"
# pre/post_recover around a restore
pg_dir "$BQ_TMP/r"
rc=0; recover_json db1 "$id" "$BQ_TMP/r/data" --worker east-1 >/dev/null || rc=$?
assert_eq 0 "$rc" "restore with hooks: $(cat "$BQ_TMP/recover-last.err")"
assert_contains "$(cat "$HOOKS/pre_recover.env")" "BARQUE_DEST=$BQ_TMP/r/data" "pre_recover env"
assert_contains "$(cat "$HOOKS/post_recover.env")" "BARQUE_STATUS=OK" "post_recover env"
assert_contains "$(cat "$HOOKS/post_recover.env")" "BARQUE_BACKUP_ID=$id"
# post_wal: the wal-stream job was (re)offered after the reload? Cancel it so the next offer
# carries the script, then archive a segment.
wal_job() { fleet_cli jobs --json | python3 -c '
import json, sys
j = [x for x in json.load(sys.stdin) if x["type"] == "wal-stream" and x["state"] in ("QUEUED", "ASSIGNED", "RUNNING")]
print(j[0]["id"] if j else "")'; }
wj=$(wal_job)
[[ -n $wj ]] || fail "no wal-stream job"
fleet_cli job cancel "$wj" >/dev/null
new_wal_job() { local j; j=$(wal_job); [[ -n $j && $j != "$wj" && $(fleet_job_field "$j" state) == RUNNING ]]; }
bq_wait_for "a new wal-stream job" 60 new_wal_job
seg=$(fleet_cli switch-wal db1 --force --archive --wait-timeout 60 --json | python3 -c '
import json, sys
print(json.load(sys.stdin).get("wal_file") or "")')
has_wal_hook() { grep -q "^$seg 16777216$" "$HOOKS/post_wal.list" 2>/dev/null; }
bq_wait_for "post_wal_script for $seg" 30 has_wal_hook

# ---- the receiver falls behind: WAL lag over wal_max_lag --------------------------------------
kill -STOP "$FLEET_PID_east_1" # its receiver stops reading; the server goes on writing
pg_psql main -c "CREATE TABLE lagfill AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g" >/dev/null
bq_wait_for "east-1 offline" 15 fleet_worker_offline east-1
fleet_worker_start east-2
bq_wait_for "east-2 online" 15 fleet_worker_online east-2
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 1 "$rc" "check with the receiver behind: $out"
assert_contains "$out" "WAL lag              FAILED  the receiver's flush is" "the lag item"
assert_contains "$out" "(wal_max_lag 1048576)"
bq_kill "$FLEET_PID_east_2" TERM
kill -CONT "$FLEET_PID_east_1"
bq_wait_for "east-1 online again" 30 fleet_worker_online east-1
stream_again() { [[ -n $(wal_job) ]]; }
bq_wait_for "a wal-stream job again" 60 stream_again

# ---- the slot dropped ---------------------------------------------------------------------------
wj=$(wal_job)
fleet_cli job cancel "$wj" >/dev/null
drop_slot() { pg_psql main -c "SELECT pg_drop_replication_slot('barque_db1')" >/dev/null 2>&1; }
bq_wait_for "the slot to be dropped (its receiver gone)" 20 drop_slot
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 1 "$rc" "check with the slot dropped: $out"
assert_contains "$out" "WAL slot             FAILED  barque_db1 is missing" "the slot item"
rc=0; nag=$(fleet_cli check db1 --nagios --wait-timeout 60) || rc=$?
assert_eq 2 "$rc" "nagios with the slot dropped: $nag"
assert_contains "$nag" "db1 WAL slot: barque_db1 is missing"

# ---- failed jobs in the last day: a warning -----------------------------------------------------
assert_contains "$out" "failed jobs          WARNING" "the failed-jobs item"
assert_contains "$out" "backup job" "the failed backup named"

# ---- a full store ------------------------------------------------------------------------------
free_kb=$(df -k --output=avail "$STORE" | tail -1)
dd if=/dev/zero of="$STORE/filler" bs=1k count=$((free_kb - 512)) status=none 2>/dev/null || true
sync
low() { fleet_cli workers --json | python3 -c '
import json, sys
w = {x["name"]: x for x in json.load(sys.stdin)}["east-1"]
sys.exit(0 if w["store_total_bytes"] and w["store_free_bytes"] * 100 < 5 * w["store_total_bytes"] else 1)'; }
bq_wait_for "the worker to report its store nearly full" 20 low
rc=0; out=$(fleet_cli check db1 --wait-timeout 60) || rc=$?
assert_eq 1 "$rc" "check with a full store: $out"
assert_contains "$out" "below store_free_critical" "the store item"
rc=0; nag=$(fleet_cli check db1 --nagios --wait-timeout 60) || rc=$?
assert_eq 2 "$rc" "nagios with a full store: $nag"
assert_contains "$nag" "db1 store east-1: "
rm -f "$STORE/filler"
echo "PASS checks"
