# integration.replicate_netns: a geo copy (issue 8) over a link that is really cut. Each site
# runs in its own network namespace, joined by a veth pair (with `tc netem` delay and loss
# when the kernel has netem; skipped, and said so, when it does not):
#   east (10.77.X.1): PostgreSQL, the coordinator, worker east-1 (data port), the CLI and this
#                     shell (the test re-executes itself inside east's namespace);
#   west (10.77.X.2): worker west-1 (its own store, data port), reaching the coordinator over
#                     the veth.
# A backup at east is copied to west by itself (replicate_to = west, at most BANDWIDTH into
# west so the copy lasts). Once some of its chunks are at west the link is cut (west's end of
# the veth down) for longer than the data-port client waits for an answer, so the attempt
# fails; then it heals, and the coordinator's retry (pinned to west-1) resumes:
#   - the copy is DONE after more than one attempt;
#   - no chunk travelled twice: what every attempt fetched (west-1's log) adds up to the
#     backup's distinct chunks, the retry found the first attempt's chunks there, and the
#     copy's figures agree (chunks_fetched = chunks_total - chunks_present);
#   - no chunk is stored twice in west-1's store (pack records = index entries), which
#     verifies clean, and the copy is recovered by west-1 from its own store and passes
#     pg_verifybackup.
# Needs root (ip netns); fails, saying why, when network namespaces cannot be made.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
source "$(dirname "${BASH_SOURCE[0]}")/backup.sh"
bq_require_bins

BANDWIDTH=${BQ_NETNS_BANDWIDTH:-1MiB} # copies into west: ~16 MB of chunks take ~16 s
PEER_TIMEOUT_S=8                      # west-1's [worker] peer_timeout (default 30 s)
CUT_MIN_S=12                          # longer than that

# ---- outside: make the namespaces and the veth, then run the rest inside east --------------
if [[ -z ${BQ_NETNS_EAST:-} ]]; then
    NS_E=bqe-$$ NS_W=bqw-$$
    VETH_E=bqe$$ VETH_W=bqw$$ # interface names: at most 15 characters
    NET=10.77.$(($$ % 250))
    ns_remove() {
        ip netns del "$NS_W" 2>/dev/null || true
        ip netns del "$NS_E" 2>/dev/null || true
    }
    if ! out=$(ip netns add "$NS_E" 2>&1); then
        fail "this test needs network namespaces (run as root, with ip netns): 'ip netns add $NS_E' said: $out"
    fi
    trap ns_remove EXIT # until the exec below (kept if it fails); inside, bq_on_cleanup
    ip netns add "$NS_W"
    ip link add "$VETH_E" type veth peer name "$VETH_W"
    ip link set "$VETH_E" netns "$NS_E"
    ip link set "$VETH_W" netns "$NS_W"
    ip -n "$NS_E" addr add "$NET.1/24" dev "$VETH_E"
    ip -n "$NS_W" addr add "$NET.2/24" dev "$VETH_W"
    for ns in "$NS_E" "$NS_W"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_E" link set "$VETH_E" up
    ip -n "$NS_W" link set "$VETH_W" up
    echo "namespaces $NS_E ($NET.1 on $VETH_E) and $NS_W ($NET.2 on $VETH_W)"
    export BQ_NETNS_EAST=$NS_E BQ_NETNS_WEST=$NS_W BQ_NETNS_VETH_E=$VETH_E \
        BQ_NETNS_VETH_W=$VETH_W BQ_NETNS_NET=$NET
    # nsenter changes the network namespace only (same mounts, same PID: ctest's process)
    exec nsenter --net="/run/netns/$NS_E" -- bash "${BASH_SOURCE[0]}" "$@"
fi

# ---- inside east's namespace ---------------------------------------------------------------
NS_E=$BQ_NETNS_EAST NS_W=$BQ_NETNS_WEST VETH_E=$BQ_NETNS_VETH_E VETH_W=$BQ_NETNS_VETH_W
A_EAST=$BQ_NETNS_NET.1 A_WEST=$BQ_NETNS_NET.2
bq_tmpdir
bq_on_cleanup "ip netns del '$NS_W' 2>/dev/null; ip netns del '$NS_E' 2>/dev/null"
ip link show "$VETH_E" >/dev/null 2>&1 || fail "this shell is not in namespace $NS_E (no $VETH_E)"

# west CMD...: CMD in west's namespace (ip netns exec execs it: the PID stays).
west() { ip netns exec "$NS_W" "$@"; }
# west_reaches HOST PORT: a TCP connection from west to HOST:PORT opens within 2 s.
west_reaches() {
    west timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# Delay and loss on both ends of the link, where the kernel has netem.
netem=on
for d in "east $VETH_E" "west $VETH_W"; do
    read -r side dev <<<"$d"
    run=()
    [[ $side == west ]] && run=(ip netns exec "$NS_W")
    if ! out=$("${run[@]}" tc qdisc add dev "$dev" root netem delay 20ms loss 0.5% 2>&1); then
        echo "netem on $dev skipped: tc said: $out"
        netem=off
    fi
done
echo "netem (delay 20ms, loss 0.5% each way): $netem"

C=$(pg_start main)
t0=$(bq__now_ms)
"$BQ_PGBIN/pgbench" -i -s 20 -q "$C" >"$BQ_TMP/pgbench-init.log" 2>&1
echo "pgbench -i -s 20: $(($(bq__now_ms) - t0)) ms"
# The WAL of the load is not kept (the WAL copies to west, at the same limit, start after it).
pg_psql main -c "CHECKPOINT" -c "SELECT pg_switch_wal()" -c "CHECKPOINT" >/dev/null

fleet_init
fleet_site east
fleet_site west
printf 'bandwidth_limit = %s\n' "$BANDWIDTH" >>"$FLEET/coordinator.conf"
"$BQ_BIN_CLI" keygen deploy --store-key --dir "$FLEET/keys" >/dev/null
P_EAST=$(bq_free_port)
P_WEST=$(bq_free_port)
fleet_worker_conf east-1 east
printf 'store_key_file = keys/deploy.storekey\ndata_listen = tcp://%s:%s\n' "$A_EAST" "$P_EAST" \
    >>"$FLEET/east-1.conf"
fleet_worker_conf west-1 west
printf 'store_key_file = keys/deploy.storekey\ndata_listen = tcp://%s:%s\npeer_timeout = %ss\n' \
    "$A_WEST" "$P_WEST" "$PEER_TIMEOUT_S" >>"$FLEET/west-1.conf"
fleet_cluster db1 east "$C"
printf 'replicate_to = west\n' >>"$FLEET/coordinator.conf"
# The coordinator listens on east's veth address, which the CLI and both workers dial.
sed -i "s#tcp://127.0.0.1:$FLEET_PORT#tcp://$A_EAST:$FLEET_PORT#" "$FLEET/coordinator.conf" \
    "$FLEET/cli.conf" "$FLEET/east-1.conf" "$FLEET/west-1.conf"
grep -q "listen = tcp://$A_EAST:$FLEET_PORT" "$FLEET/coordinator.conf" ||
    fail "the coordinator's listen endpoint was not rewritten"

fleet_coord_start
west_reaches "$A_EAST" "$FLEET_PORT" || fail "west cannot reach the coordinator at $A_EAST:$FLEET_PORT"
fleet_worker_start east-1
FLEET_PID_west_1=$(bq_spawn worker-west-1 ip netns exec "$NS_W" "$BQ_BIN_WORKER" -c "$FLEET/west-1.conf")
for w in east-1 west-1; do bq_wait_for "$w online" 20 fleet_worker_online $w; done
[[ $(readlink "/proc/$FLEET_PID_west_1/ns/net") == "$(west readlink /proc/self/ns/net)" ]] ||
    fail "west-1 (pid $FLEET_PID_west_1) is not in namespace $NS_W"
# shellcheck disable=SC2154 # FLEET_PID_east_1: set by fleet_worker_start
[[ $(readlink "/proc/$FLEET_PID_east_1/ns/net") == "$(readlink /proc/self/ns/net)" ]] ||
    fail "east-1 (pid $FLEET_PID_east_1) is not in namespace $NS_E"
streaming() { [[ $(pg_psql main -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'barque_db1'") == 1 ]]; }
bq_wait_for "the wal-stream job of db1 to stream" 30 streaming

# copy_field ID FIELD: a field of backup ID's copy at west (show-backup --json)
copy_field() {
    fleet_cli show-backup db1 "$1" --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
c = [c for c in b["copies"] if c["site"] == "west"]
v = c[0].get(sys.argv[1]) if c else None
print("" if v is None else v)' "$2"
}
copy_done() { [[ $(copy_field "$1" state) == DONE ]]; }
copy_copying() { [[ $(copy_field "$1" state) == COPYING && -n $(copy_field "$1" job_id) ]]; }
# job_fetched JOB: the chunks fetched so far by the running attempt (its progress message:
# "copying from east-1: ... N chunks fetched (M MB)"); fails while there is none.
job_fetched() {
    fleet_job_field "$1" progress_message | sed -nE 's/.* ([0-9]+) chunks fetched .*/\1/p' | grep .
}
# fetched_some JOB MIN: the running attempt has fetched at least MIN chunks
fetched_some() {
    local n
    n=$(job_fetched "$1") && ((n >= $2))
}

# ---- 1. a backup at east; its copy to west starts ---------------------------------------------
rc=0; id=$(backup_take db1) || rc=$?
assert_eq 0 "$rc" "backup: $(cat "$BQ_TMP/backup-last.err")"
t_backup=$(bq__now_ms)
stored=$(backup_field db1 "$id" stored_bytes)
echo "backup $id: stored $stored bytes; copies into west at most $BANDWIDTH/s"
bq_wait_for "the copy of $id at west to be COPYING" 60 copy_copying "$id"
job=$(copy_field "$id" job_id)
bq_wait_for "the copy job $job to report its progress" 30 job_fetched "$job"
total_refs=$(fleet_job_field "$job" progress_total)
# Cut once a fifth or so of the chunks are at west (the progress comes once a second).
want=$(( ${total_refs:-0} / 5 ))
((want > 0)) || want=1
bq_wait_for "copy job $job to fetch $want chunks" 60 fetched_some "$job" "$want"
before_cut=$(job_fetched "$job")
assert_eq COPYING "$(copy_field "$id" state)" "the copy's state before the cut"

# ---- 2. the link is cut mid-transfer, longer than the data port's timeout ---------------------
west ip link set "$VETH_W" down
t_cut=$(bq__now_ms)
echo "link cut at $before_cut chunks fetched (of about $total_refs chunk references)"
west_reaches "$A_EAST" "$FLEET_PORT" && fail "west still reaches the coordinator with the link cut"
bq_wait_for "west-1 offline at the coordinator" 20 fleet_worker_offline west-1
# The attempt at west gives up (its data-port client hears nothing for peer_timeout).
bq_wait_log "$BQ_TMP/worker-west-1.log" "job=$job: could not copy backup $id" 75
t_failed=$(bq__now_ms)
while (($(bq__now_ms) - t_cut < CUT_MIN_S * 1000)); do sleep 0.5; done
west ip link set "$VETH_W" up
t_heal=$(bq__now_ms)
echo "link cut for $((t_heal - t_cut)) ms (the attempt failed after $((t_failed - t_cut)) ms)"
bq_wait_for "west to reach the coordinator again" 20 west_reaches "$A_EAST" "$FLEET_PORT"

# ---- 3. the retry resumes; the copy is DONE ----------------------------------------------------
bq_wait_for "the copy of $id at west to be DONE after the link healed" 240 copy_done "$id"
t_done=$(bq__now_ms)
attempts=$(copy_field "$id" attempts)
c_total=$(copy_field "$id" chunks_total)
c_present=$(copy_field "$id" chunks_present)
c_fetched=$(copy_field "$id" chunks_fetched)
c_bytes=$(copy_field "$id" bytes_fetched)
c_refetched=$(copy_field "$id" chunks_refetched)
echo "copy DONE $((t_done - t_heal)) ms after the heal ($((t_done - t_backup)) ms after the backup):" \
    "$attempts attempts; copy figures: $c_fetched chunks fetched of $c_total ($c_present present)," \
    "$c_bytes bytes, $c_refetched fetched again"

# What each attempt at west-1 did, from its log: failed ones say "(N chunks fetched before)",
# the one that succeeded "T chunks, P already here, F fetched (B bytes, R again), D ms".
read -r n_failed sum_failed n_ok ok_total ok_present ok_fetched ok_bytes ok_again ok_ms < <(
    python3 - "$BQ_TMP/worker-west-1.log" "$job" "$id" <<'PY'
import re, sys
log, job, bid = sys.argv[1:]
fails, ok = [], []
for line in open(log, errors="replace"):
    if f" job={job}: " not in line:
        continue
    m = re.search(r"could not copy backup %s .*\((\d+) chunks fetched before\)" % bid, line)
    if m:
        fails.append(int(m.group(1)))
    m = re.search(r"backup %s copied from worker \S+: (\d+) chunks, (\d+) already here, (\d+) "
                  r"fetched \((\d+) bytes, (\d+) again\), (\d+) ms" % bid, line)
    if m:
        ok.append([int(x) for x in m.groups()])
last = ok[-1] if ok else [-1] * 6
print(len(fails), sum(fails), len(ok), *last)
PY
)
echo "west-1's log: $n_failed failed attempts fetched $sum_failed chunks; the last attempt:" \
    "$ok_total chunks, $ok_present already there, $ok_fetched fetched ($ok_bytes bytes) in $ok_ms ms"
((attempts > 1)) || fail "the copy took $attempts attempt(s): the cut did not interrupt it"
((n_failed >= 1)) || fail "west-1's log shows no failed attempt of job $job"
assert_eq 1 "$n_ok" "attempts of job $job that succeeded in west-1's log"
((sum_failed > 0)) || fail "the interrupted attempt fetched no chunk before the cut"
((ok_fetched > 0)) || fail "the retry fetched nothing: the cut came after the transfer"
# West's store held nothing of the cluster before: every distinct chunk is fetched once,
# over all attempts, and the retry finds the chunks the cut one fetched.
assert_eq "$ok_total" "$((sum_failed + ok_fetched))" \
    "chunks fetched over all attempts (${sum_failed} before the cut + ${ok_fetched} after) vs the backup's distinct chunks"
assert_eq "$sum_failed" "$ok_present" "chunks the retry found at west (those fetched before the cut)"
assert_eq "$((c_total - c_present))" "$c_fetched" \
    "the copy's chunks_fetched vs chunks_total - chunks_present"
# The attempt lost with its worker (offline during the cut) is requeued without a result; its
# late result is refused as superseded, but its figures still count in the copy's.
assert_eq "$((sum_failed + ok_fetched))" "$c_fetched" "the copy's chunks_fetched over all attempts"
assert_eq 0 "$c_present" "the copy's chunks found at west before the first attempt"
assert_eq 0 "$c_refetched" "chunks fetched again (none was damaged)"
assert_eq 0 "$ok_again" "chunks the retry fetched again"
assert_eq west-1 "$(copy_field "$id" worker)"
assert_eq east-1 "$(copy_field "$id" source)"
[[ -f $FLEET/west-1/store/backups/$id.manifest ]] || fail "west-1's store has no manifest of $id"
assert_contains "$(backup_field db1 "$id" stores)" "west-1"

# ---- 4. the copy is recovered by west-1 from its own store -------------------------------------
pg_dir "$BQ_TMP/r"
rc=0; out=$(recover_json db1 "$id" "$BQ_TMP/r/data" --worker west-1) || rc=$?
assert_eq 0 "$rc" "recover of $id by west-1: $(cat "$BQ_TMP/recover-last.err")"
read -r written _ _ from peer_bytes <<<"$out"
assert_eq west-1 "$from" "the worker the restore read from"
assert_eq 0 "$peer_bytes" "bytes the restore read from another worker's data port"
out=$(as_pg "$BQ_PGBIN/pg_verifybackup" "$BQ_TMP/r/data" 2>&1) || fail "pg_verifybackup: $out"
assert_contains "$out" "backup successfully verified"
echo "recovered by west-1 from its own store: $written files written; pg_verifybackup passed"

# ---- 5. west-1's store, offline: nothing stored twice, verifies clean ---------------------------
bq_kill "$FLEET_PID_west_1"
out=$("$BQ_BIN_CLI" store verify "$FLEET/west-1/store" --key "$FLEET/keys/deploy.storekey" \
    --json 2>&1) || fail "verify of west-1's store: $out"
read -r v_ok v_records v_chunks v_problems < <(python3 -c '
import json, sys
v = json.loads(sys.argv[1])
print(int(v["ok"]), v["records"], v["chunks"], v["problems"])' "$out")
echo "west-1's store: $v_records pack records, $v_chunks indexed chunks, $v_problems problems"
assert_eq 1 "$v_ok" "west-1's store verifies clean"
assert_eq "$v_chunks" "$v_records" "pack records vs indexed chunks in west-1's store (a chunk stored twice)"
assert_eq "$ok_total" "$v_chunks" "chunks in west-1's store vs the backup's distinct chunks"
echo "ok: the copy resumed after a $((t_heal - t_cut)) ms cut and fetched no chunk twice"
