# Backup helpers for integration tests. Source after lib.sh and fleet.sh, once the fleet
# runs (fleet_coord_start, fleet_worker_start):
#
#     rc=0; id=$(backup_take db1) || rc=$?     # barque backup db1 --wait --json
#     assert_eq DONE "$(backup_field db1 "$id" state)"
#     backup_ids db1                           # every id, newest first
#
# backup_take keeps what the CLI said in $BQ_TMP/backup-last.{jsonl,err} (events on stdout,
# errors on stderr), for assertions after it returned.

# as_pg COMMAND...: run it as the postgres user (when root).
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
# pg_dir DIR: a directory the postgres user owns (restored files take DEST's parent's owner).
pg_dir() { mkdir -p "$1"; ((EUID != 0)) || chown postgres:postgres "$1"; }

# backup_take CLUSTER [ARGS...]: run `barque backup CLUSTER --wait --json ARGS...`, print the
# id of the backup its last attempt wrote (empty when no worker took the job) and return the
# CLI's exit status (0 DONE, 1 FAILED, 2 usage).
backup_take() {
    local cluster=$1 rc=0
    shift
    fleet_cli backup "$cluster" --wait --json "$@" >"$BQ_TMP/backup-last.jsonl" \
        2>"$BQ_TMP/backup-last.err" || rc=$?
    python3 - "$BQ_TMP/backup-last.jsonl" <<'PY' || return 3
import json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
done = [e for e in events if e.get("event") == "done"]
if done and done[-1].get("backup"):
    print(done[-1]["backup"]["id"])
PY
    return "$rc"
}

# backup_events: the "event" of each line backup_take's CLI printed, space-separated.
backup_events() {
    python3 -c '
import json, sys
print(" ".join(json.loads(l)["event"] for l in open(sys.argv[1]) if l.strip()))' \
        "$BQ_TMP/backup-last.jsonl"
}

# backup_field CLUSTER ID|latest|oldest FIELD: one field of `show-backup --json` ("" for null).
backup_field() {
    fleet_cli show-backup "$1" "$2" --json | python3 -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$3"
}

# backup_ids CLUSTER: the ids of CLUSTER's backups, newest first, one a line.
backup_ids() {
    fleet_cli list-backups "$1" --json | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    print(b["id"])'
}

# backup_newest CLUSTER: the id of CLUSTER's newest backup, whatever its state ("" if none).
backup_newest() {
    fleet_cli list-backups "$1" --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
print(b[0]["id"] if b else "")'
}

# backup_state_is CLUSTER ID STATE (for bq_wait_for)
backup_state_is() {
    [[ $(backup_field "$1" "$2" state) == "$3" ]]
}

# backup_job_of CLUSTER ID: the job that took the backup.
backup_job_of() {
    backup_field "$1" "$2" job_id
}

# tables_hash NAME: every table's rows (pgbench's and marker), ordered, hashed, of server NAME
# (the comparison of contents).
tables_hash() {
    local name=$1 t out=""
    for t in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history marker; do
        out+="$t $(pg_psql "$name" -c "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))
                                       FROM $t x")"$'\n'
    done
    printf '%s' "$out"
}

# recover_json ARGS...: barque recover ARGS --wait --json; prints the done event's restore
# figures as "written unchanged removed read_from peer_bytes", returns the CLI's exit status
# (its output in $BQ_TMP/recover-last.jsonl and .err).
recover_json() {
    local rc=0
    fleet_cli recover "$@" --wait --json >"$BQ_TMP/recover-last.jsonl" \
        2>"$BQ_TMP/recover-last.err" || rc=$?
    python3 - "$BQ_TMP/recover-last.jsonl" <<'PY' || return 3
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
done = [e for e in ev if e.get("event") == "done"]
r = done[-1].get("restore") if done else None
if r:
    print(r["files_written"], r["files_unchanged"], r["files_removed"], r["read_from"], r["peer_bytes"])
PY
    return "$rc"
}

# delta_damage SERVER DIR: change a restored copy DIR of SERVER's data directory the way the
# delta tests expect: one file changed (pgbench_accounts, 6 bytes at offset 100), one deleted
# (PG_VERSION), one added (not-in-the-backup). A delta restore must rewrite 2 and remove 1.
delta_damage() {
    local rel
    rel=$(pg_psql "$1" -c "SELECT pg_relation_filepath('pgbench_accounts')")
    printf 'damage' | dd of="$2/$rel" bs=1 seek=100 conv=notrunc status=none
    rm "$2/PG_VERSION"
    echo junk >"$2/not-in-the-backup"
}
