# shellcheck disable=SC2012
# integration.wal_fleet: the wal-stream job through the fleet (issue 5, item 1).
#   1. A cluster with wal = stream (the default) gets one wal-stream job at its site as soon as
#      a worker with a store is online; it creates slot barque_db1 and streams as
#      application_name barque_db1.
#   2. Completed segments land in the worker's store (wal/db1/TTTTTTTT/NAME), byte-identical to
#      the server's pg_wal file, and `barque store verify` authenticates them.
#   3. With synchronous = on and synchronous_standby_names = 'barque_db1' it is the synchronous
#      standby (commits return).
#   5. A backup is DONE once every segment from its start to its stop is archived; with the
#      receiver stopped it is WAITING_FOR_WALS, then DONE when a new receiver archives them.
#   6. switch-wal closes the current segment (--force: after a CHECKPOINT, on an idle server) and
#      --archive returns once the WAL index has it.
#   4. The worker SIGKILLed mid-stream: the job is requeued, runs again from the slot, and the
#      store's WAL of the cluster has no gap from the first segment to the last one switched.
#   5. The coordinator's WAL index (issue 5, item 5): `barque list-wal db1 --json` shows
#      timeline 1 with the store's first and last segment, their count and bytes, no gap; the
#      text form names the last segment; a cluster with no WAL and an unknown one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
[[ -x ${BQ_STORE_WAL_GET:-} ]] || fail "BQ_STORE_WAL_GET is not set (ctest sets it)"
bq_tmpdir

C=$(pg_start main)
pg_psql main -c "CREATE TABLE t (id serial PRIMARY KEY, v text)"
fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_worker_store_key east-1
fleet_cluster db1 east "$C"
printf 'synchronous = on\n' >>"$FLEET/coordinator.conf"
fleet_cluster db2 east "$C" # archive only: no wal-stream job, so nothing in the WAL index
printf 'wal = archive\n' >>"$FLEET/coordinator.conf"
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
STORE=$FLEET/east-1/store
KEY=$FLEET/keys/east-1.storekey

# ---- 1. the job and the slot ---------------------------------------------------------------------
wal_job() {
    fleet_cli jobs --json | python3 -c '
import json, sys
js = [j for j in json.load(sys.stdin) if j["type"] == "wal-stream" and j["cluster"] == "db1"
      and j["state"] == sys.argv[1]]
print(js[-1]["id"]) if js else sys.exit(1)' "$1"
}
bq_wait_for "a running wal-stream job of db1" 20 wal_job RUNNING
job1=$(wal_job RUNNING)
streaming() { fleet_cli check db1 >"$BQ_TMP/check.out" 2>&1; }
bq_wait_for "check db1 to pass with the receiver streaming" 20 streaming
assert_contains "$(cat "$BQ_TMP/check.out")" "barque_db1 is active"
assert_contains "$(cat "$BQ_TMP/check.out")" "barque_db1 streaming"
slot_active() { [[ $(pg_psql main -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'barque_db1'") == t ]]; }
bq_wait_for "slot barque_db1 active" 20 slot_active
assert_eq barque_db1 "$(pg_psql main -c "SELECT application_name FROM pg_stat_replication")"

# ---- 2. segments into the store -----------------------------------------------------------------
switch_one() { # write a little, switch, print the segment that was closed
    pg_psql main -c "INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 2000) g" >/dev/null
    pg_psql main -c "SELECT pg_walfile_name(pg_switch_wal())"
}
archived() { [[ -f $STORE/wal/db1/${1:0:8}/$1 ]]; }
seg=$(switch_one)
bq_wait_for "segment $seg archived" 30 archived "$seg"
out=$("$BQ_STORE_WAL_GET" "$STORE" "$KEY" db1 "$seg" "$BQ_TMP/$seg.got") || fail "store_wal_get: $out"
cmp "$BQ_TMP/$seg.got" "$BQ_TMP/main/data/pg_wal/$seg" || fail "archived $seg differs from the server's"
out=$("$BQ_BIN_CLI" store verify "$STORE" --key "$KEY" 2>&1) || fail "store verify: $out"
rc=0; "$BQ_STORE_WAL_GET" "$STORE" "$KEY" db2 "$seg" "$BQ_TMP/x" >/dev/null || rc=$?
assert_eq 3 "$rc" "another cluster's WAL area does not have db1's segment"
indexed_last() { # timeline 1's last segment in the coordinator's WAL index is $1
    [[ $(fleet_cli list-wal db1 --json | python3 -c '
import json, sys
tl = [t for t in json.load(sys.stdin) if t["timeline"] == 1]
print(tl[0]["last"] if tl else "")') == "$1" ]]
}
bq_wait_for "segment $seg in the WAL index" 15 indexed_last "$seg"

# ---- 3. the synchronous standby --------------------------------------------------------------------
pg_psql main -c "ALTER SYSTEM SET synchronous_standby_names = 'barque_db1'" -c "SELECT pg_reload_conf()" >/dev/null
is_sync() { [[ $(pg_psql main -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'barque_db1'") == sync ]]; }
bq_wait_for "barque_db1 synchronous" 15 is_sync
timeout 30 psql -X -q -d "$C" -c "INSERT INTO t (v) VALUES ('sync commit')" ||
    fail "a commit with barque_db1 as the synchronous standby did not return"
pg_psql main -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null

# ---- 4. the worker killed mid-stream: requeued, no gap ---------------------------------------------
bq_kill "$FLEET_PID_east_1" KILL
for i in 1 2; do last=$(switch_one); done
fleet_worker_start east-1
bq_wait_for "east-1 online again" 15 fleet_worker_online east-1
bq_wait_for "segment $last archived after the restart" 60 archived "$last"
job2=$(wal_job RUNNING) || fail "no running wal-stream job after the restart"
python3 - "$STORE/wal/db1/00000001" "$last" <<'PY' || fail "a gap in db1's archived WAL: $(ls "$STORE/wal/db1/00000001" | tr '\n' ' ')"
import os, sys
d, last = sys.argv[1], sys.argv[2]
seg = lambda n: int(n[8:16], 16) * 256 + int(n[16:24], 16)
have = {seg(n) for n in os.listdir(d) if len(n) == 24}
missing = [s for s in range(min(have), seg(last) + 1) if s not in have]
sys.exit(1 if missing else 0)
PY
out=$("$BQ_BIN_CLI" store verify "$STORE" --key "$KEY" 2>&1) || fail "store verify after the restart: $out"

# ---- 5. list-wal: the WAL index is what the store holds ------------------------------------------
bq_wait_for "segment $last in the WAL index" 30 indexed_last "$last"
seg_size=$(pg_psql main -c "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")
json=$(fleet_cli list-wal db1 --json) || fail "list-wal db1 --json: $json"
python3 - "$STORE/wal/db1" "$seg_size" "$json" <<'PY' || fail "list-wal db1 --json does not match the store: $json"
import json, os, sys
d, seg_size, tl = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
segs = sorted(n for n in os.listdir(d + "/00000001") if len(n) == 24)
ok = (len(tl) == 1 and tl[0]["timeline"] == 1 and tl[0]["first"] == segs[0] and
      tl[0]["last"] == segs[-1] and tl[0]["segments"] == len(segs) and
      tl[0]["bytes"] == len(segs) * seg_size and tl[0]["gaps"] == [] and
      tl[0]["history"] is False and tl[0]["partials"] == [])
if not ok:
    print("store: %d segments %s..%s" % (len(segs), segs[0], segs[-1]), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
text=$(fleet_cli list-wal db1) || fail "list-wal db1: $text"
assert_contains "$text" "TIMELINE  FIRST" "list-wal's table"
assert_contains "$text" "$last" "list-wal names the last segment"
assert_not_contains "$text" "missing" "list-wal of db1"
assert_eq "(no WAL archived for cluster db2)" "$(fleet_cli list-wal db2)" "list-wal of a cluster with wal = archive"
assert_eq "[]" "$(fleet_cli list-wal db2 --json)" "list-wal --json of a cluster with no WAL"
rc=0; out=$(fleet_cli list-wal nosuch 2>&1) || rc=$?
assert_eq 1 "$rc" "list-wal of an unknown cluster"
assert_contains "$out" "no cluster nosuch in the coordinator's config"
rc=0; out=$(fleet_cli list-wal 2>&1) || rc=$?
assert_eq 2 "$rc" "list-wal without a cluster"
# ---- 5. backups wait for their WAL in the archive --------------------------------------------------
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
rc=0; bid=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup --wait of a streamed cluster: $(cat "$BQ_TMP/backup-last.err")"
assert_eq DONE "$(backup_field db1 "$bid" state)" "state of $bid once its WAL is archived"
wend=$(backup_field db1 "$bid" wal_end)
archived "$wend" || fail "backup $bid is DONE but its last WAL segment $wend is not archived"
# with the receiver stopped, the next backup waits for its WAL, and is DONE once it streams again
jid=$(wal_job RUNNING)
fleet_cli job cancel "$jid" >/dev/null
stopped() { [[ $(pg_psql main -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'barque_db1'") == f ]]; }
bq_wait_for "the wal-stream job to stop" 20 stopped
rc=0; out=$(fleet_cli check db1 2>&1) || rc=$?
assert_eq 1 "$rc" "check of db1 with its receiver stopped"
assert_contains "$out" "WAL slot"
assert_contains "$out" "barque_db1 is inactive"
bjob=$(fleet_cli backup db1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
bq_wait_for "backup job $bjob to succeed" 60 fleet_job_state_is "$bjob" SUCCEEDED
bid2=$(fleet_job_field "$bjob" backup_id)
# state and error from one read (the receiver may come back between two)
read -r state2 err2 < <(fleet_cli show-backup db1 "$bid2" --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
print(b["state"], b.get("error") or "-")')
if [[ $state2 == WAITING_FOR_WALS ]]; then
    assert_contains "$err2" "waiting"
else # the replacement receiver was already back and archived it
    assert_eq DONE "$state2" "state of $bid2"
fi
# the backup's last segment completes with the next WAL: a switch (a no-op while nothing new
# was written) rather than waiting for a checkpoint_timeout to close it
done_again() {
    [[ $(backup_field db1 "$bid2" state) == DONE ]] && return 0
    pg_psql main -c "SELECT pg_switch_wal()" >/dev/null
    return 1
}
bq_wait_for "backup $bid2 DONE once the WAL streams again" 180 done_again

# ---- 6. switch-wal ---------------------------------------------------------------------------------
bq_wait_for "a running wal-stream job again" 60 wal_job RUNNING
pg_psql main -c "INSERT INTO t (v) VALUES ('before switch-wal')" >/dev/null
out=$(fleet_cli switch-wal db1 --archive --wait-timeout 60) || fail "switch-wal --archive: $out"
sw=$(sed -n 's/^switched WAL of cluster db1: \([0-9A-F]\{24\}\) closed, archived after .*/\1/p' <<<"$out")
[[ -n $sw ]] || fail "switch-wal printed: $out"
archived "$sw" || fail "switch-wal --archive said $sw is archived, but the store lacks it"
# idle server: --force makes a segment to close; --json
json=$(fleet_cli switch-wal db1 --force --archive --wait-timeout 60 --json) || fail "switch-wal --force: $json"
python3 -c '
import json, sys
o = json.loads(sys.argv[1])
assert o["cluster"] == "db1" and o["archived"] is True and len(o["wal_file"]) == 24, o
assert o["wal_file"] > sys.argv[2], (o, sys.argv[2])' "$json" "$sw" || fail "switch-wal --force --json: $json"
rc=0; out=$(fleet_cli switch-wal nosuch 2>&1) || rc=$?
assert_eq 1 "$rc" "switch-wal of an unknown cluster"
assert_contains "$out" "no cluster nosuch"
rc=0; fleet_cli switch-wal >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "switch-wal without a cluster"
assert_contains "$(fleet_cli switch-wal --help)" "switch-wal CLUSTER [--force] [--archive]"

echo "wal_fleet test: switch-wal closed $sw; backup $bid2 was $state2 with the receiver stopped, then DONE; job $job1 then $job2 streamed db1; $(ls "$STORE/wal/db1/00000001" | wc -l) segments archived through $last, no gap, and list-wal shows them"
