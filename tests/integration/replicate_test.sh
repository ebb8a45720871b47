# integration.replicate: geo copies (issue 8). Two sites as separate sets of processes with
# separate stores (east-1 and west-1, each its own store and data port; one coordinator):
#   - a backup taken at east is copied to west (replicate_to = west): the copy is DONE at west,
#     list-backups shows both sites, west-1's store holds it; one chunk body is damaged on the
#     way (BARQUE_TEST_DAMAGE_CHUNK at east-1's data port): rejected and fetched again;
#   - a second backup after light writes moves only a small fraction of the first one's bytes;
#   - WAL flows to west continuously (status shows no WAL missing there);
#   - a worker key the coordinator does not vouch for cannot fetch chunks from east-1;
#   - east-1's store damaged (a byte flipped every 64 KiB of its packs): a restore at east-1
#     fails reading its own store, and the retry reads the copy at west-1's store instead;
#   - with every east process killed (PostgreSQL, east-1) and east-1's store deleted, the
#     cluster is recovered at west to a point in time after the last east backup, with the
#     right rows (restore_command's wal-get reads west-1's store).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir
[[ -x ${BQ_DATA_PROBE:-} ]] || fail "BQ_DATA_PROBE is not set to the data_probe binary"

C=$(pg_start main)
"$BQ_PGBIN/pgbench" -i -s 10 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1
pg_psql main -c "CREATE TABLE marker (id int PRIMARY KEY, note text)"

fleet_init
fleet_site east
fleet_site west
"$BQ_BIN_CLI" keygen deploy --store-key --dir "$FLEET/keys" >/dev/null
"$BQ_BIN_CLI" keygen rogue --dir "$FLEET/keys" >/dev/null # in no config
P_EAST=$(bq_free_port)
P_WEST=$(bq_free_port)
PGCLI=$(fleet_cli_for_pg "$BQ_TMP/pgcli")
for w in east-1:east:$P_EAST west-1:west:$P_WEST; do
    IFS=: read -r name site port <<<"$w"
    fleet_worker_conf "$name" "$site"
    printf 'store_key_file = keys/deploy.storekey\ndata_listen = tcp://127.0.0.1:%s\ncli_command = %s -c %s\n' \
        "$port" "$BQ_BIN_CLI" "$PGCLI" >>"$FLEET/$name.conf"
done
fleet_cluster db1 east "$C"
# east keeps one backup, west (no policy of its own) keeps every copy
printf 'replicate_to = west\nretention_policy@east = REDUNDANCY 1\n' >>"$FLEET/coordinator.conf"
sed -i 's/^\[coordinator\]$/[coordinator]\nretention_interval = 2s/' "$FLEET/coordinator.conf"
fleet_coord_start
BARQUE_TEST_DAMAGE_CHUNK=7 fleet_worker_start east-1
fleet_worker_start west-1
for w in east-1 west-1; do bq_wait_for "$w online" 15 fleet_worker_online $w; done
streaming() { [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'barque_db1'") == 1 ]]; }
bq_wait_for "the wal-stream job of db1 to stream" 30 streaming

# copy_field ID SITE FIELD: a field of the backup's copy at SITE (show-backup --json)
copy_field() {
    fleet_cli show-backup db1 "$1" --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
c = [c for c in b["copies"] if c["site"] == sys.argv[1]]
v = c[0].get(sys.argv[2]) if c else None
print("" if v is None else v)' "$2" "$3"
}
copy_done() { [[ $(copy_field "$1" west state) == DONE ]]; }

# ---- 1. a backup at east, copied to west -------------------------------------------------------
rc=0; id1=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup 1: $(cat "$BQ_TMP/backup-last.err")"
bq_wait_for "the copy of $id1 at west to be DONE" 120 copy_done "$id1"
stored1=$(backup_field db1 "$id1" stored_bytes)
fetched1=$(copy_field "$id1" west bytes_fetched)
chunks1=$(copy_field "$id1" west chunks_fetched)
total1=$(copy_field "$id1" west chunks_total)
refetched1=$(copy_field "$id1" west chunks_refetched)
echo "copy 1: $chunks1 of $total1 chunks fetched, $fetched1 bytes (backup stored $stored1), $refetched1 fetched again"
assert_eq west-1 "$(copy_field "$id1" west worker)"
assert_eq east-1 "$(copy_field "$id1" west source)"
assert_eq 1 "$refetched1" "chunks damaged on the way (injected once) and fetched again"
((chunks1 > 0 && chunks1 <= total1)) || fail "copy 1 fetched $chunks1 of $total1 chunks"
[[ -f $FLEET/west-1/store/backups/$id1.manifest ]] || fail "west-1's store has no manifest of $id1"
assert_contains "$(backup_field db1 "$id1" stores)" "west-1"
assert_contains "$(backup_field db1 "$id1" sites)" "west"
grep -rqs "served damaged" "$BQ_TMP" --include='*.log' || fail "east-1 did not damage a chunk body"
out=$(fleet_cli list-backups db1)
assert_contains "$out" "east,west"
# west-1's store checks out whole (every chunk opened, re-hashed)
out=$("$BQ_BIN_CLI" store verify "$FLEET/west-1/store" --key "$FLEET/keys/deploy.storekey" 2>&1) ||
    fail "verify of west-1's store: $out"

# ---- 2. light writes, a second backup: a small fraction travels ---------------------------------
pg_psql main -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 1000 = 0" >/dev/null
pg_psql main -c "INSERT INTO marker VALUES (1, 'before backup 2')" >/dev/null
rc=0; id2=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup 2: $(cat "$BQ_TMP/backup-last.err")"
bq_wait_for "the copy of $id2 at west to be DONE" 120 copy_done "$id2"
fetched2=$(copy_field "$id2" west bytes_fetched)
present2=$(copy_field "$id2" west chunks_present)
total2=$(copy_field "$id2" west chunks_total)
echo "copy 2: $fetched2 bytes fetched ($present2 of $total2 chunks already at west); copy 1: $fetched1 bytes"
((fetched2 * 10 < fetched1)) || fail "the second copy moved $fetched2 bytes, not under a tenth of the first's $fetched1"
((present2 * 2 > total2)) || fail "only $present2 of $total2 chunks of backup 2 were at west already"

rc=0; out=$(fleet_cli replicate db1 "$id2" --to west 2>&1) || rc=$?
assert_eq 1 "$rc" "replicate of a backup west holds: $out"
assert_contains "$out" "is at west already"
rc=0; out=$(fleet_cli replicate db1 latest --to nowhere 2>&1) || rc=$?
((rc != 0)) || fail "replicate to an unknown site: $out"
assert_contains "$out" "no site nowhere"

# ---- 2b. east's retention (REDUNDANCY 1 at east) removes backup 1 there only ----------------
east_gone() { [[ $(backup_field db1 "$id1" stores | tr -d "[]'\" ") == west-1 ]]; }
bq_wait_for "backup $id1 to be deleted at east only" 90 east_gone
assert_eq DONE "$(backup_field db1 "$id1" state)" "backup 1 after east's retention"
assert_eq "['west']" "$(backup_field db1 "$id1" sites | tr -d ' ')" "sites of backup 1"
[[ ! -f $FLEET/east-1/store/backups/$id1.manifest ]] || fail "east-1 still has backup $id1"
[[ -f $FLEET/west-1/store/backups/$id1.manifest ]] || fail "west-1 lost backup $id1"
assert_eq DELETED "$(copy_field "$id1" east state)" "the record of backup 1 at east"

# ---- 3. WAL at west, and writes after the last backup -----------------------------------------
pg_psql main -c "INSERT INTO marker SELECT g, 'after backup 2' FROM generate_series(2, 101) g" >/dev/null
sleep 1.1
T=$(pg_psql main -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
sleep 1.1
pg_psql main -c "INSERT INTO marker VALUES (1000, 'after the target')" >/dev/null
out=$(fleet_cli switch-wal db1 --archive --json 2>&1) || fail "switch-wal --archive: $out"
seg=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["wal_file"])' "$out")
at_west() { [[ -n $(find "$FLEET/west-1/store/wal/db1" -name "$seg" 2>/dev/null) ]]; }
bq_wait_for "WAL segment $seg at west" 60 at_west
wal_caught_up() {
    fleet_cli status --json | python3 -c '
import json, sys
st = json.load(sys.stdin)
c = [c for c in st["clusters"] if c["name"] == "db1"][0]
r = [r for r in c["replicas"] if r["site"] == "west"][0]
sys.exit(0 if r["wal_missing"] == 0 else 1)'
}
bq_wait_for "no WAL of db1 missing at west" 60 wal_caught_up
out=$(fleet_cli status)
assert_contains "$out" "copies at west"
# WAL travels packed: fewer bytes over the wire than the files hold
read -r wal_raw wal_wire < <(sed -n 's/.*copied [0-9]* WAL files of cluster db1 from worker east-1: \([0-9]*\) bytes, \([0-9]*\) over the wire.*/\1 \2/p' \
    "$BQ_TMP/worker-west-1.log" | awk '{r += $1; w += $2} END {print r, w}')
echo "WAL copied to west: $wal_raw bytes, $wal_wire over the wire"
((wal_raw > 0 && wal_wire * 2 < wal_raw)) || fail "WAL to west: $wal_wire bytes over the wire for $wal_raw"

# ---- 4. a key the coordinator does not vouch for gets no chunks -----------------------------
out=$("$BQ_DATA_PROBE" "tcp://127.0.0.1:$P_EAST" "$FLEET/keys/east-1.pub" "$FLEET/keys/rogue.key" chunks) &&
    fail "a key the coordinator does not vouch for fetched chunks from east-1: $out"
assert_contains "$out" "no answer"

# ---- 4b. east-1's store damaged: a restore at east-1 reads west-1's copy instead ---------------
for pack in $(find "$FLEET/east-1/store/packs" -name '*.pack'); do
    python3 - "$pack" <<'PY'
import os, sys
p = sys.argv[1]
with open(p, "r+b") as f:
    for off in range(4096, os.path.getsize(p), 65536):
        f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x40]))
PY
done
pg_dir "$BQ_TMP/fb"
rc=0; read -r _ _ _ fb_from _ < <(recover_json db1 "$id2" "$BQ_TMP/fb/data" --worker east-1) || rc=$?
assert_eq 0 "$rc" "recover at east-1 with its store damaged: $(cat "$BQ_TMP/recover-last.err")"
assert_eq west-1 "$fb_from" "the store the restore that succeeded read"
# the restore succeeded, and still says which store failed it
assert_eq east-1 "$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print([e for e in ev if e.get("event") == "done"][-1]["restore"].get("source_failed"))' "$BQ_TMP/recover-last.jsonl")" \
    "source_failed of the restore that read west-1"
assert_contains "$(cat "$BQ_TMP/recover-last.err")" "warning: the store of worker east-1 failed an earlier attempt"
grep -Eq "attempt 1 finished: failed: restore of backup $id2 .*(damaged|mismatch)" "$BQ_TMP/worker-east-1.log" ||
    fail "the first attempt did not meet the damage: $(grep "restore of backup $id2" "$BQ_TMP/worker-east-1.log")"
grep -Eq "reads backup $id2 from the store of worker west-1: the store of worker east-1 failed the last attempt" \
    "$BQ_TMP/coordinator.log" || fail "the coordinator did not say it moved the restore to west-1"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/fb/data" 2>&1) || fail "pg_verifybackup of the restore: $out"
# check warns about the store that failed, although the restore succeeded
rc=0; out=$(fleet_cli check db1 2>&1) || rc=$?
assert_eq 1 "$rc" "check after a restore that could not read east-1's store: $out"
assert_contains "$out" "store reads          WARNING 1 restore in the last day"
assert_contains "$out" "could not read the store of east-1 and read west-1's instead: verify that store"

# ---- 5. east goes dark: recovered at west --------------------------------------------------------
want=$(pg_psql main -c "SELECT count(*) FROM marker WHERE id < 1000")
bq_kill "$FLEET_PID_east_1" KILL
pg_stop main
rm -rf "$FLEET/east-1/store"
bq_wait_for "east-1 offline" 15 fleet_worker_offline east-1
pg_dir "$BQ_TMP/w"
rc=0; recover_json db1 auto "$BQ_TMP/w/data" --worker west-1 --target-time "$T" \
    --target-action promote >/dev/null || rc=$?
assert_eq 0 "$rc" "recover at west with east dark: $(cat "$BQ_TMP/recover-last.err")"
pg_start_dir w "$BQ_TMP/w/data"
promoted() { [[ $(pg_psql w -c "SELECT pg_is_in_recovery()") == f ]]; }
bq_wait_for "the copy at west to end recovery" 120 promoted
assert_eq "$want" "$(pg_psql w -c "SELECT count(*) FROM marker")" "marker rows at the target"
assert_eq 0 "$(pg_psql w -c "SELECT count(*) FROM marker WHERE id = 1000")" "a row after the target"
assert_eq 1000000 "$(pg_psql w -c "SELECT count(*) FROM pgbench_accounts")" "pgbench_accounts rows"
pg_stop w
echo "ok: recovered at west to $T with east dark"

# ---- 6. with east dark: reading from east is refused, naming why; a restore test at west ---
pg_dir "$BQ_TMP/w2"
rc=0; out=$(fleet_cli recover db1 latest "$BQ_TMP/w2/data" --worker west-1 --from-site east 2>&1) || rc=$?
assert_eq 1 "$rc" "recover --from-site east with east dark: $out"
assert_contains "$out" "east-1: offline"
rc=0; out=$(fleet_cli restore-test db1 latest --from-site west --wait --json 2>&1) || rc=$?
assert_eq 0 "$rc" "restore-test at west with east dark: $(echo "$out" | tail -n 3)"
assert_contains "$out" '"site":"west"'
echo "ok: restore test at west passed with east dark"
