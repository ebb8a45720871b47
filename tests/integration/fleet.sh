# Fleet helpers for integration tests: keys, configs, a coordinator and workers on loopback.
# Source after lib.sh and bq_tmpdir:
#
#     fleet_init                      # keys + coordinator config in $BQ_TMP/fleet
#     fleet_site east; fleet_worker_conf w1 east; fleet_cluster db1 east "$(pg_conninfo main)"
#     fleet_coord_start; fleet_worker_start w1
#     fleet_cli status                # the barque CLI as operator "ops"
#
# Timings are short so failover shows within seconds: heartbeat 200 ms, worker timeout 2 s.

FLEET=""

fleet_init() {
    FLEET=$BQ_TMP/fleet
    mkdir -p "$FLEET/keys"
    chmod 700 "$FLEET/keys"
    FLEET_PORT=$(bq_free_port)
    "$BQ_BIN_CLI" keygen coordinator --dir "$FLEET/keys" >/dev/null
    "$BQ_BIN_CLI" keygen ops --dir "$FLEET/keys" >/dev/null
    cat >"$FLEET/coordinator.conf" <<CONF
[coordinator]
listen = tcp://127.0.0.1:$FLEET_PORT
catalog = $FLEET/catalog
secret_key_file = keys/coordinator.key
log_level = ${FLEET_LOG_LEVEL:-info}
heartbeat_interval = 200ms
worker_timeout = 2s
job_lease = ${FLEET_JOB_LEASE:-10s}
job_max_attempts = 3
job_retry_backoff = 500ms
wal_restart_interval = ${FLEET_WAL_RESTART:-3s}

[operator ops]
public_key_file = keys/ops.pub
CONF
    cat >"$FLEET/cli.conf" <<CONF
[cli]
coordinator = tcp://127.0.0.1:$FLEET_PORT
coordinator_public_key_file = keys/coordinator.pub
secret_key_file = keys/ops.key
timeout = 5s
CONF
}

# fleet_coord_key KEY VALUE: add KEY = VALUE to [coordinator] (call right after fleet_init:
# keys appended later would land in the file's last section).
fleet_coord_key() {
    sed -i "s|^job_max_attempts = 3\$|&\n$1 = $2|" "$FLEET/coordinator.conf"
    grep -qx "$1 = $2" "$FLEET/coordinator.conf" || fail "could not set $1 in $FLEET/coordinator.conf"
}

fleet_site() {
    printf '\n[site %s]\n' "$1" >>"$FLEET/coordinator.conf"
}

# fleet_cluster NAME SITE CONNINFO
fleet_cluster() {
    printf '\n[cluster %s]\nconninfo = %s\nsite = %s\n' "$1" "$3" "$2" >>"$FLEET/coordinator.conf"
}

# fleet_worker_conf NAME SITE [MAX_JOBS]: key pair, coordinator entry, worker config.
fleet_worker_conf() {
    local name=$1 site=$2 max=${3:-4}
    "$BQ_BIN_CLI" keygen "$name" --dir "$FLEET/keys" >/dev/null
    printf '\n[worker %s]\npublic_key_file = keys/%s.pub\nsite = %s\n' "$name" "$name" "$site" \
        >>"$FLEET/coordinator.conf"
    mkdir -p "$FLEET/$name"
    cat >"$FLEET/$name.conf" <<CONF
[worker]
name = $name
site = $site
coordinator = tcp://127.0.0.1:$FLEET_PORT
coordinator_public_key_file = keys/coordinator.pub
secret_key_file = keys/$name.key
store = $FLEET/$name/store
scratch = $FLEET/$name/scratch
log_level = ${FLEET_LOG_LEVEL:-info}
max_jobs = $max
heartbeat_interval = 200ms
CONF
}

# fleet_worker_store_key NAME: a store master key for worker NAME (keys/NAME.storekey), named
# by store_key_file in its config, so it can take backups. Call after fleet_worker_conf.
fleet_worker_store_key() {
    "$BQ_BIN_CLI" keygen "$1" --store-key --dir "$FLEET/keys" >/dev/null
    printf 'store_key_file = keys/%s.storekey\n' "$1" >>"$FLEET/$1.conf"
}

# fleet_coord_start: start the coordinator, wait until it listens; sets FLEET_COORD_PID.
fleet_coord_start() {
    FLEET_COORD_PID=$(bq_spawn coordinator "$BQ_BIN_COORDINATOR" -c "$FLEET/coordinator.conf")
    bq_wait_for "the coordinator to listen on $FLEET_PORT" 15 \
        bash -c "ss -Htln 'sport = :$FLEET_PORT' | grep -q ."
}

# fleet_worker_start NAME: start a worker; the PID goes to FLEET_PID_<NAME> (dashes -> _).
fleet_worker_start() {
    local pid var=FLEET_PID_${1//-/_}
    pid=$(bq_spawn "worker-$1" "$BQ_BIN_WORKER" -c "$FLEET/$1.conf")
    printf -v "$var" '%s' "$pid"
}

# fleet_cli ARGS...: run the CLI as operator ops.
fleet_cli() {
    "$BQ_BIN_CLI" -c "$FLEET/cli.conf" "$@"
}

# fleet_worker_online NAME: succeeds when `barque workers --json` shows NAME online.
fleet_worker_online() {
    fleet_cli workers --json | python3 -c '
import json, sys
ws = {w["name"]: w for w in json.load(sys.stdin)}
sys.exit(0 if sys.argv[1] in ws and ws[sys.argv[1]]["online"] else 1)' "$1"
}

# fleet_worker_offline NAME: the coordinator answers, and says NAME is offline (a CLI that
# failed to ask is no answer)
fleet_worker_offline() {
    fleet_cli workers --json | python3 -c '
import json, sys
ws = {w["name"]: w for w in json.load(sys.stdin)}
sys.exit(0 if sys.argv[1] in ws and not ws[sys.argv[1]]["online"] else 1)' "$1"
}

# fleet_job_field ID FIELD: print one field of `barque job show ID --json`.
fleet_job_field() {
    fleet_cli job show "$1" --json | python3 -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$2"
}

# fleet_job_state_is ID STATE
fleet_job_state_is() {
    [[ $(fleet_job_field "$1" state) == "$2" ]]
}

# fleet_cli_for_pg DIR: a copy of the operator's CLI config and keys in DIR owned by the
# postgres OS user (archive_command and restore_command run as that user, and key files must
# be its own, mode 0600). Prints the config's path.
fleet_cli_for_pg() {
    local dir=$1
    mkdir -p "$dir/keys"
    cp "$FLEET/keys/coordinator.pub" "$FLEET/keys/ops.key" "$FLEET/keys/ops.pub" "$dir/keys/"
    cp "$FLEET/cli.conf" "$dir/cli.conf"
    chmod 700 "$dir" "$dir/keys"
    chmod 600 "$dir/keys/ops.key"
    ((EUID != 0)) || chown -R postgres:postgres "$dir"
    echo "$dir/cli.conf"
}
