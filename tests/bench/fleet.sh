#!/usr/bin/env bash
# Fleet benchmark of barque-coordinator's control plane (see README.md in this folder).
#
#   tests/bench/fleet.sh [bench_fleet options...]      e.g. --workers 100 --clusters 1000 --jobs 2000
#
# Makes a scratch dir, writes keys and a coordinator config with `bench_fleet --setup`, starts
# ONE real barque-coordinator, runs `bench_fleet --run` against it (simulated workers and one
# operator), then stops the coordinator. Every option is given to both steps; each step uses
# its own (see bench_fleet --help). The exit status is bench_fleet's (with --check: 1 when a
# job was not dispatched or completed).
#
# Environment:
#   BQ_BIN_COORDINATOR  barque-coordinator (default: $BQ_BUILD/coordinator/barque-coordinator)
#   BQ_BENCH_FLEET      bench_fleet (default: $BQ_BUILD/tests/bench/bench_fleet)
#   BQ_BUILD            the CMake build dir, used only for the defaults above
#   BQ_TMPROOT          where the scratch dir is made (default /tmp)
#   BQ_KEEP=1           keep the scratch dir (keys, config, catalog, coordinator.log)
set -euo pipefail

if [[ -n ${BQ_BUILD:-} ]]; then
    BQ_BIN_COORDINATOR=${BQ_BIN_COORDINATOR:-$BQ_BUILD/coordinator/barque-coordinator}
    BQ_BENCH_FLEET=${BQ_BENCH_FLEET:-$BQ_BUILD/tests/bench/bench_fleet}
fi
for bin in "${BQ_BIN_COORDINATOR:-}" "${BQ_BENCH_FLEET:-}"; do
    if [[ -z $bin || ! -x $bin ]]; then
        echo "fleet.sh: set BQ_BIN_COORDINATOR and BQ_BENCH_FLEET (or BQ_BUILD) to built binaries" >&2
        exit 2
    fi
done

tmp=$(mktemp -d "${BQ_TMPROOT:-/tmp}/bq-fleet.XXXXXX")
dir=$tmp/fleet
coord_pid=

cleanup() {
    local rc=$?
    if [[ -n $coord_pid ]] && kill -0 "$coord_pid" 2>/dev/null; then
        kill -TERM "$coord_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$coord_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$coord_pid" 2>/dev/null; then
            echo "fleet.sh: coordinator $coord_pid did not stop within 10 s of SIGTERM; killing it" >&2
            kill -KILL "$coord_pid" 2>/dev/null || true
        fi
        wait "$coord_pid" 2>/dev/null || true
    fi
    if [[ ${BQ_KEEP:-0} == 1 ]]; then
        echo "fleet.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BQ_BENCH_FLEET" --setup "$dir" "$@"
conf=$dir/coordinator.conf
port=$(sed -n 's|^listen = tcp://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$conf")
if [[ -z $port ]]; then
    echo "fleet.sh: no listen port in $conf" >&2
    exit 2
fi

# One descriptor per connection on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

t0=$(date +%s.%N)
"$BQ_BIN_COORDINATOR" -c "$conf" 2>"$dir/coordinator.log" &
coord_pid=$!
# Wait until it listens (it loads the config and records every cluster first).
for _ in $(seq 1 600); do
    if ! kill -0 "$coord_pid" 2>/dev/null; then
        echo "fleet.sh: barque-coordinator exited at start; its log:" >&2
        cat "$dir/coordinator.log" >&2
        coord_pid=
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    sleep 0.1
done
echo "# coordinator pid $coord_pid listening on port $port after" \
    "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"

set +e
"$BQ_BENCH_FLEET" --run "$dir" --coordinator-pid "$coord_pid" \
    --coordinator-log "$dir/coordinator.log" "$@"
rc=$?
set -e

# Stop the coordinator here (not only in the trap) to report how it stopped.
if kill -0 "$coord_pid" 2>/dev/null; then
    kill -TERM "$coord_pid"
    t1=$(date +%s.%N)
    for _ in $(seq 1 100); do
        kill -0 "$coord_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$coord_pid" 2>/dev/null; then
        echo "coordinator_stop: did not stop within 10 s of SIGTERM"
    else
        set +e
        wait "$coord_pid"
        crc=$?
        set -e
        echo "coordinator_stop: exit status $crc after" \
            "$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s"
    fi
    coord_pid=
else
    echo "coordinator_stop: it was not running any more at the end (see its log)"
    coord_pid=
    [[ $rc -eq 0 ]] && rc=1
fi
exit "$rc"
