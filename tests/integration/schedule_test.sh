# The coordinator's scheduler through the fleet (issue 6), on the real clock with short slots:
#   - backup_schedule = 10s (no jitter) on two clusters of one site with
#     max_concurrent_backups = 1: both are backed up on schedule, and no two backups of the
#     site ever run at once (their start/stop intervals in the catalog do not overlap);
#   - `barque schedule` shows each cluster's schedule, last slot and next run;
#   - a coordinator outage of 3+ slots runs the missed backup once per cluster, not once per
#     missed slot, and says so in its log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir

C=$(pg_start main)
chmod 755 "$BQ_TMP"

fleet_init
fleet_site east
printf 'max_concurrent_backups = 1\n' >>"$FLEET/coordinator.conf"
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
for cl in db2 db3; do
    fleet_cluster "$cl" east "$C"
    printf 'wal = archive\nbackup_schedule = 10s\nbackup_jitter = 0\n' >>"$FLEET/coordinator.conf"
done
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1

done_count() { # CLUSTER: its DONE backups
    fleet_cli list-backups "$1" --json | python3 -c '
import json, sys
print(sum(1 for b in json.load(sys.stdin) if b["state"] == "DONE"))'
}
two_each() { (($(done_count db2) >= 2 && $(done_count db3) >= 2)); }
bq_wait_for "two scheduled backups of each cluster" 120 two_each

sched=$(fleet_cli schedule)
assert_contains "$sched" "every 10s" "schedule shows the period"
assert_contains "$(fleet_cli schedule db2 --json)" '"cluster": "db2"' "schedule db2 --json"
rc=0; out=$(fleet_cli schedule nosuch 2>&1) || rc=$?
assert_eq 1 "$rc" "schedule of an unknown cluster"
assert_contains "$out" "no cluster nosuch"

# max_concurrent_backups = 1 at east: no two backups' runs overlap
overlaps() {
    { fleet_cli list-backups db2 --json; fleet_cli list-backups db3 --json; } | python3 -c '
import json, sys
from datetime import datetime
text = sys.stdin.read()
dec, rows, i = json.JSONDecoder(), [], 0
while i < len(text):
    if text[i].isspace():
        i += 1; continue
    obj, i = dec.raw_decode(text, i)
    rows += obj
runs = sorted((b["start_time"], b["stop_time"], b["cluster"], b["id"]) for b in rows
              if b["state"] == "DONE")
bad = [(a, b) for a, b in zip(runs, runs[1:]) if b[0] < a[1]]
print(len(runs), len(bad), bad[:2])'
}
read -r nruns nbad rest < <(overlaps)
((nruns >= 4)) || fail "expected at least 4 DONE backups, got $nruns"
assert_eq 0 "$nbad" "overlapping backups at a site with max_concurrent_backups = 1: $rest"

# ---- an outage of more than 3 slots ---------------------------------------------------------------
bq_kill "$FLEET_COORD_PID" TERM
sleep 35 # the outage itself: 3 slots pass with no coordinator
lines_before=$(wc -l <"$BQ_TMP/coordinator.log")
fleet_coord_start
after_restart() { tail -n +"$((lines_before + 1))" "$BQ_TMP/coordinator.log"; }
both_queued() { [[ $(after_restart | grep -c "scheduled backup of cluster db[23] queued") -ge 2 ]]; }
bq_wait_for "the missed backups to be queued after the restart" 30 both_queued
for cl in db2 db3; do
    first=$(after_restart | grep "scheduled backup of cluster $cl queued" | head -1)
    assert_contains "$first" "missed" "the first scheduled backup of $cl after the outage"
done
# within the slot after the restart, each cluster was queued once (not once per missed slot)
sleep 3
for cl in db2 db3; do
    n=$(after_restart | grep "scheduled backup of cluster $cl queued" | grep -c "missed")
    assert_eq 1 "$n" "backups of $cl queued for the missed slots"
done
echo "PASS schedule"
