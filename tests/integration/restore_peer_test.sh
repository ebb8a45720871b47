# Restores by a worker whose store lacks the backup (issue 4): it reads the backup from the
# worker that holds it, over that worker's data port (CURVE; the coordinator names the holder,
# its endpoint and key, and sends every data port the worker keys it admits).
#   - a backup taken at east-1 is recovered by west-1 (another site, its own store): the
#     result passes pg_verifybackup, starts, and has the same table contents; the chunks came
#     from east-1 (bytes received reported) and west-1's store is unchanged;
#   - a delta restore through the peer rewrites only the changed files;
#   - a worker with another store master key is refused, naming both workers, nothing written;
#   - the data port: a key the coordinator does not vouch for gets no answer, a vouched one
#     does, and hostile requests get error replies naming the problem;
#   - a store view left by a killed worker is removed when it starts again;
#   - the holder offline: recover is refused at once, naming it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins
bq_tmpdir
[[ -x ${BQ_DATA_PROBE:-} ]] || fail "BQ_DATA_PROBE is not set to the data_probe binary"

C=$(pg_start main)
chmod 755 "$BQ_TMP"
pg_dir "$BQ_TMP/ts1"
pg_psql main -c "CREATE TABLESPACE ts1 LOCATION '$BQ_TMP/ts1'"
"$BQ_PGBIN/pgbench" -i -s 3 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1
pg_psql main -c "CREATE TABLE marker (note text) TABLESPACE ts1;
                 INSERT INTO marker VALUES ('committed before the backup')"

fleet_init
fleet_site east
fleet_site west
"$BQ_BIN_CLI" keygen deploy --store-key --dir "$FLEET/keys" >/dev/null
P_EAST=$(bq_free_port)
P_WEST=$(bq_free_port)
P_WEST2=$(bq_free_port)
fleet_worker_conf east-1 east
printf 'store_key_file = keys/deploy.storekey\ndata_listen = tcp://127.0.0.1:%s\n' "$P_EAST" >>"$FLEET/east-1.conf"
fleet_worker_conf west-1 west
printf 'store_key_file = keys/deploy.storekey\ndata_listen = tcp://127.0.0.1:%s\n' "$P_WEST" >>"$FLEET/west-1.conf"
fleet_worker_conf west-2 west # a store of its own master key
fleet_worker_store_key west-2
printf 'data_listen = tcp://127.0.0.1:%s\n' "$P_WEST2" >>"$FLEET/west-2.conf"
"$BQ_BIN_CLI" keygen rogue --dir "$FLEET/keys" >/dev/null # in no config
fleet_cluster db1 east "$C"
fleet_coord_start
for w in east-1 west-1 west-2; do fleet_worker_start $w; done
for w in east-1 west-1 west-2; do bq_wait_for "$w online" 15 fleet_worker_online $w; done

store_listing() { find "$FLEET/$1/store" -path '*/views' -prune -o -printf '%P %s\n' | sort | md5sum; }

# ---- 1. a backup at east, recovered by west-1 through east-1's data port ------------------------
want=$(tables_hash main)
rc=0; id=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup of db1: $(cat "$BQ_TMP/backup-last.err")"
assert_eq east-1 "$(backup_field db1 "$id" stores | tr -d "[]'\" ")"
data_bytes=$(backup_field db1 "$id" data_bytes)
west_before=$(store_listing west-1)

pg_dir "$BQ_TMP/r1"
rc=0; out=$(recover_json db1 "$id" "$BQ_TMP/r1/data" --worker west-1 \
    --tablespace "ts1:$BQ_TMP/r1/ts1") || rc=$?
assert_eq 0 "$rc" "recover of $id by west-1: $(cat "$BQ_TMP/recover-last.err")"
read -r written unchanged removed from peer_bytes <<<"$out"
assert_eq east-1 "$from" "the worker the restore read from"
# Chunks travel compressed: fewer bytes than the data, but some.
((peer_bytes > 0 && peer_bytes < data_bytes)) ||
    fail "west-1 received $peer_bytes bytes for a backup of $data_bytes"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r1/data" 2>&1) || fail "pg_verifybackup: $out"
assert_contains "$out" "backup successfully verified"
cp -a "$BQ_TMP/r1" "$BQ_TMP/r1.pristine"
pg_start_dir r1 "$BQ_TMP/r1/data"
assert_eq "$want" "$(tables_hash r1)" "table contents of the restore by west-1"
pg_stop r1
assert_eq "$west_before" "$(store_listing west-1)" "west-1's own store after reading east-1's"
[[ -z $(ls -A "$FLEET/west-1/store/views" 2>/dev/null) ]] || fail "a store view was left behind"
pg_dir "$BQ_TMP/r1b"
text=$(fleet_cli recover db1 "$id" "$BQ_TMP/r1b/data" --worker west-1 \
    --tablespace "ts1:$BQ_TMP/r1b/ts1" --wait 2>&1) || fail "recover (text): $text"
assert_contains "$text" "read from the store of worker east-1 over its data port"

# ---- 2. a delta restore through the peer -------------------------------------------------------
rm -rf "$BQ_TMP/r1"
cp -a "$BQ_TMP/r1.pristine" "$BQ_TMP/r1"
delta_damage main "$BQ_TMP/r1/data"
rc=0; out=$(recover_json db1 "$id" "$BQ_TMP/r1/data" --worker west-1 \
    --tablespace "ts1:$BQ_TMP/r1/ts1" --delta) || rc=$?
assert_eq 0 "$rc" "delta recover by west-1: $(cat "$BQ_TMP/recover-last.err")"
read -r written unchanged removed from peer_bytes <<<"$out"
assert_eq 2 "$written" "files a delta restore through the peer rewrote"
assert_eq 1 "$removed" "files it removed"
diff -r --no-dereference -x pg_tblspc "$BQ_TMP/r1.pristine/data" "$BQ_TMP/r1/data" >"$BQ_TMP/delta.diff" ||
    fail "delta restore differs from a fresh one: $(head -5 "$BQ_TMP/delta.diff")"

# ---- 3. another master key: refused, nothing written -------------------------------------------
pg_dir "$BQ_TMP/r2"
rc=0; recover_json db1 "$id" "$BQ_TMP/r2/data" --worker west-2 \
    --tablespace "ts1:$BQ_TMP/r2/ts1" >/dev/null || rc=$?
((rc != 0)) || fail "west-2 (another store key) restored east-1's backup"
err=$(cat "$BQ_TMP/recover-last.err" "$BQ_TMP/recover-last.jsonl")
assert_contains "$err" "the store key of worker west-2"
assert_contains "$err" "does not open the store of worker east-1"
[[ ! -e $BQ_TMP/r2/data && ! -e $BQ_TMP/r2/ts1 ]] || fail "a refused restore wrote something"
[[ -z $(ls -A "$FLEET/west-2/store/views" 2>/dev/null) ]] || fail "west-2 left a store view"

# ---- 4. the data port: who it admits, and hostile requests -------------------------------------
out=$("$BQ_DATA_PROBE" "tcp://127.0.0.1:$P_EAST" "$FLEET/keys/east-1.pub" "$FLEET/keys/rogue.key" read) &&
    fail "a key the coordinator does not vouch for read east-1's store: $out"
assert_contains "$out" "no answer"
out=$("$BQ_DATA_PROBE" "tcp://127.0.0.1:$P_EAST" "$FLEET/keys/east-1.pub" "$FLEET/keys/ops.key" read) &&
    fail "an operator key read east-1's store: $out"
out=$("$BQ_DATA_PROBE" "tcp://127.0.0.1:$P_EAST" "$FLEET/keys/east-1.pub" "$FLEET/keys/west-1.key" hostile) ||
    fail "hostile requests to the data port: $out"
assert_contains "$out" "read "
echo "$out"
# east-1 serves on: one more restore by west-1
pg_dir "$BQ_TMP/r3"
rc=0; recover_json db1 "$id" "$BQ_TMP/r3/data" --worker west-1 \
    --tablespace "ts1:$BQ_TMP/r3/ts1" >/dev/null || rc=$?
assert_eq 0 "$rc" "recover after the hostile requests: $(cat "$BQ_TMP/recover-last.err")"

# ---- 4b. a backup of deltas, restored through the peer (each delta's base comes too) -----------
pg_psql main -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 50 = 0" >/dev/null
want2=$(tables_hash main)
rc=0; id2=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "second backup of db1: $(cat "$BQ_TMP/backup-last.err")"
assert_eq "$id" "$(backup_field db1 "$id2" delta_from)" "the base of backup $id2's deltas"
deltas=$(backup_field db1 "$id2" delta_chunks)
((deltas > 0)) || fail "backup $id2 stored no chunk as a delta"
pg_dir "$BQ_TMP/r5"
rc=0; out=$(recover_json db1 "$id2" "$BQ_TMP/r5/data" --worker west-1 \
    --tablespace "ts1:$BQ_TMP/r5/ts1") || rc=$?
assert_eq 0 "$rc" "recover of $id2 by west-1: $(cat "$BQ_TMP/recover-last.err")"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r5/data" 2>&1) || fail "pg_verifybackup r5: $out"
pg_start_dir r5 "$BQ_TMP/r5/data"
assert_eq "$want2" "$(tables_hash r5)" "table contents of the restore of $id2 ($deltas deltas) by west-1"
pg_stop r5

# ---- 5. a view left by a killed worker goes at its next start ------------------------------------
bq_kill "$FLEET_PID_west_1" KILL
mkdir -p "$FLEET/west-1/store/views/restore-99-1/keys"
echo partial >"$FLEET/west-1/store/views/restore-99-1/keys/0000002a.datakey"
fleet_worker_start west-1
bq_wait_for "west-1 online again" 15 fleet_worker_online west-1
[[ -z $(ls -A "$FLEET/west-1/store/views" 2>/dev/null) ]] || fail "west-1 kept a dead job's store view"

# ---- 6. the holder offline: refused at once, naming it -----------------------------------------
bq_kill "$FLEET_PID_east_1" TERM
bq_wait_for "east-1 offline" 15 fleet_worker_offline east-1
pg_dir "$BQ_TMP/r4"
rc=0; out=$(fleet_cli recover db1 "$id" "$BQ_TMP/r4/data" --worker west-1 2>&1) || rc=$?
((rc != 0)) || fail "recover with the only holder offline: exit 0"
assert_contains "$out" "east-1: offline"
[[ ! -e $BQ_TMP/r4/data ]] || fail "a refused restore wrote something"

echo "restore_peer test: backup $id ($data_bytes bytes) restored by west-1 from east-1 ($peer_bytes bytes received in the delta run)"
