#!/usr/bin/env bash
# A local Barque fleet protecting a demo PostgreSQL 15, on loopback:
# one coordinator, workers east-1 (site east) and west-1 (site west), cluster "demo" at east.
# Builds Barque, starts everything in the background, prints `barque status` and a check.
#
#   bash deploy/demo.sh          start (again: stops a previous demo first)
#   bash deploy/demo.sh stop     stop the demo and remove its directory
#
# State lives in /tmp/barque-demo (PostgreSQL runs as the postgres OS user, which cannot
# enter /root, so nothing the demo runs lives under the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=/tmp/barque-demo
pgbin=/usr/lib/postgresql/15/bin

stop_demo() {
    [[ -d $demo ]] || return 0
    for pidfile in "$demo"/*.pid; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for data in "$demo/pg/data" "$demo/restore/data" "$demo/pitr/data"; do
        if [[ -f $data/postmaster.pid ]]; then
            runuser -u postgres -- "$pgbin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$demo"
}

if [[ ${1:-} == stop ]]; then
    stop_demo
    echo "demo stopped"
    exit 0
fi
stop_demo

echo "== building Barque (build/demo)"
cmake -S "$root" -B build/demo -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBQ_TESTS=OFF >/dev/null
cmake --build build/demo -j2 >/dev/null
bin=$root/build/demo
coord=$bin/coordinator/barque-coordinator
worker=$bin/worker/barque-worker
cli=$bin/cli/barque

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 10000))
        [[ -z $(ss -Htln "sport = :$p") ]] && { echo "$p"; return; }
    done
    echo "no free port" >&2
    exit 1
}

mkdir -p "$demo/pg" "$demo/keys"
chmod 755 "$demo"
chmod 700 "$demo/keys"
chown postgres: "$demo/pg"

echo "== starting PostgreSQL 15 (demo cluster)"
pgport=$(free_port)
runuser -u postgres -- "$pgbin/initdb" -D "$demo/pg/data" --username=postgres --auth=trust \
    --data-checksums >"$demo/pg/initdb.log"
cat >>"$demo/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$demo/pg'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
CONF
runuser -u postgres -- "$pgbin/pg_ctl" -D "$demo/pg/data" -l "$demo/pg/server.log" -w -t 60 start >/dev/null
conninfo="host=127.0.0.1 port=$pgport user=postgres dbname=postgres"
psql -X -q "$conninfo" -c "CREATE TABLE IF NOT EXISTS demo (id int PRIMARY KEY, note text);
    INSERT INTO demo SELECT g, 'row ' || g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;"

echo "== keys and configs in $demo"
for k in coordinator ops east-1 west-1; do "$cli" keygen "$k" --dir "$demo/keys" >/dev/null; done
# One store master key for the deployment: a worker can then read another's store (restores
# at another site, geo copies), the chunks travelling still encrypted.
"$cli" keygen fleet --store-key --dir "$demo/keys" >/dev/null
port=$(free_port)
cat >"$demo/coordinator.conf" <<CONF
[coordinator]
listen = tcp://127.0.0.1:$port
catalog = catalog
secret_key_file = keys/coordinator.key

[site east]
[site west]

[worker east-1]
public_key_file = keys/east-1.pub
site = east

[worker west-1]
public_key_file = keys/west-1.pub
site = west

[operator ops]
public_key_file = keys/ops.pub

[cluster demo]
conninfo = $conninfo
site = east
# the coordinator's scheduler backs it up every 6 hours (a cluster never backed up: at
# once), keeps the newest 3 (Barman's REDUNDANCY), and check fails past 12 h without one
backup_schedule = 6h
retention_policy = REDUNDANCY 3
minimum_redundancy = 1
# and proves its newest backup once a day: restored into a worker's scratch, started, checked,
# the recovery time measured (check fails when no test passed within 2 days)
restore_test_schedule = 1d
restore_test_amcheck = on
# and keeps a copy of every backup and of its WAL at site west (west-1 pulls only the chunks
# its store lacks from east-1, checks each, writes the manifest last)
replicate_to = west
CONF
for w in east-1:east west-1:west; do
    name=${w%%:*} site=${w##*:}
    dport=$(free_port)
    cat >"$demo/$name.conf" <<CONF
[worker]
name = $name
site = $site
coordinator = tcp://127.0.0.1:$port
coordinator_public_key_file = keys/coordinator.pub
secret_key_file = keys/$name.key
store = stores/$name
store_key_file = keys/fleet.storekey
data_listen = tcp://127.0.0.1:$dport
scratch = scratch/$name
# how a server restored here runs barque as restore_command (barque wal-get): as the postgres
# user, with a CLI config and operator key that user can read
cli_command = $cli -c $demo/pgcli/barque.conf
CONF
done
cat >"$demo/barque.conf" <<CONF
[cli]
coordinator = tcp://127.0.0.1:$port
coordinator_public_key_file = keys/coordinator.pub
secret_key_file = keys/ops.key
CONF

# the same CLI config for the postgres OS user (restore_command runs as the server's user,
# and secret key files must be its own, mode 0600)
mkdir -p "$demo/pgcli/keys"
cp "$demo/keys/coordinator.pub" "$demo/keys/ops.key" "$demo/pgcli/keys/"
sed "s|keys/|$demo/pgcli/keys/|" "$demo/barque.conf" >"$demo/pgcli/barque.conf"
chmod 700 "$demo/pgcli" "$demo/pgcli/keys"
chown -R postgres: "$demo/pgcli"

echo "== starting the coordinator and two workers"
setsid "$coord" -c "$demo/coordinator.conf" </dev/null >>"$demo/coordinator.log" 2>&1 &
echo $! >"$demo/coordinator.pid"
for name in east-1 west-1; do
    setsid "$worker" -c "$demo/$name.conf" </dev/null >>"$demo/$name.log" 2>&1 &
    echo $! >"$demo/$name.pid"
done
export BARQUE_CONFIG=$demo/barque.conf
for _ in $(seq 1 100); do
    online=$("$cli" workers --json 2>/dev/null | grep -c '"online": true' || true)
    [[ $online == 2 ]] && break
    sleep 0.2
done
[[ ${online:-0} == 2 ]] || { echo "workers did not come online; see $demo/*.log" >&2; exit 1; }

echo
echo "\$ barque status"
"$cli" status
echo
# the scheduler starts the first backup by itself (backup_schedule = 6h, never backed up)
for _ in $(seq 1 240); do
    "$cli" list-backups demo --json 2>/dev/null | grep -q '"state": "DONE"' && break
    sleep 0.5
done
echo "\$ barque schedule"
"$cli" schedule
echo
echo "\$ barque list-backups demo"
"$cli" list-backups demo
echo
# the cluster streams its WAL (wal = stream): wait for the receiver before checking
for _ in $(seq 1 60); do "$cli" check demo >/dev/null 2>&1 && break; sleep 0.5; done
echo "\$ barque check demo"
"$cli" check demo || true
echo
echo "\$ barque check all --nagios"
"$cli" check all --nagios || true
echo
echo "\$ barque backup demo --wait"
"$cli" backup demo --wait
echo
# The cluster streams its WAL (wal = stream, the default): a wal-stream job on east-1 holds
# slot barque_demo and archives every segment into east-1's store.
echo "\$ barque switch-wal demo --archive"
"$cli" switch-wal demo --archive
echo
echo "\$ barque list-wal demo"
"$cli" list-wal demo
echo
restore=$demo/restore
rm -rf "$restore"
mkdir -p "$restore"
chown postgres: "$restore"
# Geo copy: the coordinator queued a replicate job at west as soon as the backup was DONE.
echo "(waiting for the copy of the backup at west)"
for _ in $(seq 1 240); do
    "$cli" show-backup demo latest --json 2>/dev/null | grep -q '"state": "DONE",' &&
        "$cli" show-backup demo latest --json | python3 -c '
import json, sys
b = json.load(sys.stdin)
sys.exit(0 if any(c["site"] == "west" and c["state"] == "DONE" for c in b["copies"]) else 1)' && break
    sleep 0.5
done
echo "\$ barque list-backups demo      # SITES: where a verified copy is"
"$cli" list-backups demo
echo
echo "\$ barque show-backup demo latest | tail -n 2"
"$cli" show-backup demo latest | tail -n 2
echo
# west-1 (site west) restores the backup from its own store: the copy.
echo "\$ barque recover demo latest $restore/data --worker west-1 --wait"
"$cli" recover demo latest "$restore/data" --worker west-1 --wait
echo
echo "\$ pg_verifybackup $restore/data"
runuser -u postgres -- "$pgbin/pg_verifybackup" "$restore/data"
echo
rport=$(free_port)
runuser -u postgres -- "$pgbin/pg_ctl" -D "$restore/data" -l "$restore/server.log" -w -t 60 \
    -o "-c port=$rport -c unix_socket_directories=$restore" start >/dev/null
echo "\$ psql (the restored copy, port $rport): SELECT count(*) FROM demo"
psql -X -At "host=127.0.0.1 port=$rport user=postgres dbname=postgres" -c "SELECT count(*) FROM demo"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$restore/data" -m fast -w stop >/dev/null
echo
# Point-in-time recovery: 500 rows, a time T, 500 more; recover to T from the archive.
psql -X -q "$conninfo" -c "INSERT INTO demo SELECT g, 'before T' FROM generate_series(1001, 1500) g"
T=$(psql -X -At "$conninfo" -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
sleep 1
psql -X -q "$conninfo" -c "INSERT INTO demo SELECT g, 'after T' FROM generate_series(1501, 2000) g"
"$cli" switch-wal demo --archive >/dev/null
pitr=$demo/pitr
mkdir -p "$pitr"
chown postgres: "$pitr"
echo "\$ barque recover demo auto $pitr/data --worker east-1 --target-time '$T' --target-action promote --wait"
"$cli" recover demo auto "$pitr/data" --worker east-1 --target-time "$T" --target-action promote --wait
echo
echo "\$ tail -n 4 $pitr/data/postgresql.auto.conf"
tail -n 4 "$pitr/data/postgresql.auto.conf"
pport=$(free_port)
runuser -u postgres -- "$pgbin/pg_ctl" -D "$pitr/data" -l "$pitr/server.log" -w -t 60 \
    -o "-c port=$pport -c unix_socket_directories=$pitr" start >/dev/null
for _ in $(seq 1 120); do
    [[ $(psql -X -At "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] && break
    sleep 0.5
done
echo "\$ psql (recovered to $T, port $pport): SELECT count(*) FROM demo   -- 1500: none of the rows after T"
psql -X -At "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT count(*) FROM demo"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$pitr/data" -m fast -w stop >/dev/null
echo
# A restore test: east-1 restores the newest backup into its scratch directory, starts it on a
# free loopback port (archive_mode off), replays the archive to its end through wal-get,
# checks it (system identifier, every database, pg_amcheck), stops it and removes it. The
# measured recovery time is what status predicts from.
echo "\$ barque restore-test demo --wait"
"$cli" restore-test demo --wait
echo
echo "\$ barque restore-tests demo"
"$cli" restore-tests demo
echo
echo "\$ barque status"
"$cli" status
echo
cat <<MSG
The demo fleet keeps running in the background. Try:
    export BARQUE_CONFIG=$demo/barque.conf
    $cli workers
    $cli jobs --all
    $cli check demo --json
    $cli schedule
    $cli drill demo --wait
    $cli metrics
Logs: $demo/*.log.   Stop it: bash deploy/demo.sh stop
MSG
