# Barque integration-test harness. Source it from a test script:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     bq_tmpdir                        # scratch dir in $BQ_TMP, cleaned up on exit
#     pg_start main                    # PostgreSQL 15; sets PG_PORT_main, PG_CONNINFO_main
#     psql -XAtc 'SELECT 1' "$PG_CONNINFO_main"
#     pid=$(bq_spawn worker "$BQ_BIN_WORKER" -c "$BQ_TMP/worker.ini")
#     bq_wait_log "$BQ_TMP/worker.log" 'registered' 10
#
# It turns on `set -euo pipefail` and an ERR trap that names the failing command.
#
# Environment it reads:
#   BQ_BIN_COORDINATOR, BQ_BIN_WORKER, BQ_BIN_CLI  paths of the built binaries (ctest sets
#                  them; when unset they are derived from BQ_BUILD); check with bq_require_bins
#   BQ_BUILD       the CMake build directory
#   BQ_PGBIN       PostgreSQL's bin directory (default /usr/lib/postgresql/15/bin)
#   BQ_TMPROOT     where scratch dirs are made (default /tmp; never under the repository:
#                  PostgreSQL runs as the `postgres` OS user, which cannot enter /root)
#   BQ_KEEP=1      keep the scratch dir after the test (processes are still stopped)
#
# Run as root, PostgreSQL runs as `postgres` via runuser (initdb refuses root); run as
# another user, it runs as that user.
#
# State lives in files under $BQ_TMP (not only in shell variables), so the functions also
# work inside $(...): what a subshell starts is still stopped by the cleanup. Only bq_tmpdir
# must be called directly, since it installs the EXIT trap.
#
# A SIGKILL of the test shell (e.g. some ctest timeouts) skips the cleanup; the scratch dir
# and any PostgreSQL it started are then left behind.

set -euo pipefail
set -E
trap 'bq__on_err "$?" "$BASH_COMMAND"' ERR

BQ_PGBIN=${BQ_PGBIN:-/usr/lib/postgresql/15/bin}
if [[ -n ${BQ_BUILD:-} ]]; then
    BQ_BIN_COORDINATOR=${BQ_BIN_COORDINATOR:-$BQ_BUILD/coordinator/barque-coordinator}
    BQ_BIN_WORKER=${BQ_BIN_WORKER:-$BQ_BUILD/worker/barque-worker}
    BQ_BIN_CLI=${BQ_BIN_CLI:-$BQ_BUILD/cli/barque}
fi
export BQ_PGBIN
BQ_TMP=${BQ_TMP:-}

bq__on_err() {
    # Failures inside `if`, `||` and `&&` do not reach here; only a test aborting does.
    local i where=""
    for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
        where+="${where:+ <- }${BASH_SOURCE[i]}:${BASH_LINENO[i - 1]}"
        [[ ${FUNCNAME[i]} == main || ${FUNCNAME[i]} == source ]] || where+=" (${FUNCNAME[i]})"
    done
    echo "FAIL: command exited with status $1 at $where: $2" >&2
}

# ---------------------------------------------------------------------------------------------
# Assertions

# fail MSG: print MSG with the caller's location and end the test (or the subshell it runs in).
fail() {
    local where="${BASH_SOURCE[1]:-?}:${BASH_LINENO[0]:-?}"
    local i
    for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
        # Report the first caller outside this library.
        if [[ ${BASH_SOURCE[i]} != "${BASH_SOURCE[0]}" ]]; then
            where="${BASH_SOURCE[i]}:${BASH_LINENO[i - 1]}"
            break
        fi
    done
    echo "FAIL: $where: $*" >&2
    exit 1
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
    local what=${3:-value}
    if [[ "$1" != "$2" ]]; then
        fail "$what: expected '$1', got '$2'"
    fi
}

# assert_contains TEXT SUBSTR [WHAT]
assert_contains() {
    local what=${3:-text}
    if [[ "$1" != *"$2"* ]]; then
        fail "$what: expected to contain '$2', got:
$1"
    fi
}

# assert_not_contains TEXT SUBSTR [WHAT]
assert_not_contains() {
    local what=${3:-text}
    if [[ "$1" == *"$2"* ]]; then
        fail "$what: expected not to contain '$2', got:
$1"
    fi
}

# bq_require_bins: fail unless the three Barque binaries are there.
bq_require_bins() {
    local v
    for v in BQ_BIN_COORDINATOR BQ_BIN_WORKER BQ_BIN_CLI; do
        [[ -n ${!v:-} ]] || fail "$v is not set (ctest sets it; by hand, set BQ_BUILD)"
        [[ -x ${!v} ]] || fail "$v=${!v} is not an executable (build all targets first)"
    done
}

# ---------------------------------------------------------------------------------------------
# Scratch directory and cleanup

bq__need_tmp() {
    [[ -n $BQ_TMP && -d $BQ_TMP ]] || fail "call bq_tmpdir first"
}

# bq_tmpdir: make the test's scratch dir ($BQ_TMP, mode 755) and stop/remove all on exit.
bq_tmpdir() {
    if [[ $BASHPID != "$$" ]]; then
        fail "bq_tmpdir must be called directly, not in \$(...) or a pipeline"
    fi
    local root=${BQ_TMPROOT:-/tmp}
    BQ_TMP=$(mktemp -d "$root/barque-test.XXXXXX")
    chmod 755 "$BQ_TMP"
    : >"$BQ_TMP/.pids"      # "PID KIND" per line; KIND is pg or proc
    : >"$BQ_TMP/.ports"     # ports handed out by bq_free_port
    export BQ_TMP
    # archive_command and restore_command run the CLI as postgres, which cannot enter a
    # clone under /root (or a mktemp -d): then it runs a copy in the scratch dir (the
    # project's libraries are linked in; the system's are readable by all)
    if ((EUID == 0)) && [[ -n ${BQ_BIN_CLI:-} && -x $BQ_BIN_CLI ]] &&
        ! runuser -u postgres -- test -x "$BQ_BIN_CLI" 2>/dev/null; then
        mkdir -p "$BQ_TMP/bin"
        install -m 755 "$BQ_BIN_CLI" "$BQ_TMP/bin/barque"
        BQ_BIN_CLI=$BQ_TMP/bin/barque
        export BQ_BIN_CLI
    fi
    trap bq__cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# bq_pid_alive PID: true while PID runs (a zombie counts as gone).
# A killed multi-threaded process shows its main thread as a zombie while its other threads
# still exit, holding its files and sockets: alive until every thread is gone.
bq_pid_alive() {
    local t stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    for t in /proc/"$1"/task/*/stat; do
        stat=$(cat "$t" 2>/dev/null) || continue
        stat=${stat##*) }
        [[ ${stat:0:1} == [ZX] ]] || return 0
    done
    return 1
}

# bq__stop_pid PID KIND: ask politely, then insist; bounded.
bq__stop_pid() {
    local pid=$1 kind=$2 i
    bq_pid_alive "$pid" || return 0
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) would wait for clients.
    if [[ $kind == pg ]]; then kill -INT "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    for ((i = 0; i < 50; i++)); do
        bq_pid_alive "$pid" || break
        sleep 0.1
    done
    if bq_pid_alive "$pid"; then
        echo "harness: $kind process $pid still running after 5 s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            bq_pid_alive "$pid" || break
            sleep 0.1
        done
    fi
    wait "$pid" 2>/dev/null || true
}

# bq_on_cleanup COMMAND...: run COMMAND (a shell line) at cleanup, after the processes the test
# started are stopped and before the scratch dir goes (e.g. an umount).
BQ__CLEANUPS=()
bq_on_cleanup() { BQ__CLEANUPS+=("$*"); }

bq__cleanup() {
    local rc=$? pid kind f c
    trap - EXIT INT TERM ERR
    set +e
    if [[ -z $BQ_TMP || ! -d $BQ_TMP ]]; then
        exit "$rc"
    fi
    # Newest first: daemons before the PostgreSQL they talk to.
    if [[ -s $BQ_TMP/.pids ]]; then
        while read -r pid kind; do
            bq__stop_pid "$pid" "$kind"
        done < <(tac "$BQ_TMP/.pids")
    fi
    for c in "${BQ__CLEANUPS[@]}"; do
        eval "$c"
    done
    # A sanitizer report in any daemon's log fails the test, whatever the test saw.
    for f in "$BQ_TMP"/*.log; do
        [[ -s $f ]] || continue
        if grep -Eq "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$f"; then
            echo "FAIL: sanitizer report in $f:" >&2
            grep -EA30 "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$f" | head -60 >&2
            ((rc != 0)) || rc=1
        fi
    done
    if ((rc != 0)); then
        for f in "$BQ_TMP"/*.log "$BQ_TMP"/*/postgres.log; do
            [[ -s $f ]] || continue
            echo "---- last lines of $f" >&2
            tail -n 30 "$f" >&2
        done
    fi
    if [[ ${BQ_KEEP:-0} == 1 ]]; then
        echo "harness: keeping $BQ_TMP (BQ_KEEP=1)" >&2
    else
        rm -rf "$BQ_TMP"
    fi
    exit "$rc"
}

bq__register() {   # PID KIND
    echo "$1 $2" >>"$BQ_TMP/.pids"
}

# ---------------------------------------------------------------------------------------------
# Processes

# bq_free_port: print a TCP port on 127.0.0.1 that nothing listens on and that this test has
# not handed out before (ports below the kernel's ephemeral range).
bq_free_port() {
    local i port
    for ((i = 0; i < 500; i++)); do
        port=$((10000 + RANDOM % 22000))
        if [[ -n $BQ_TMP && -f $BQ_TMP/.ports ]] && grep -qx "$port" "$BQ_TMP/.ports"; then
            continue
        fi
        if [[ -n $(ss -Htln "sport = :$port" 2>/dev/null) ]]; then
            continue
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue
        fi
        if [[ -n $BQ_TMP && -f $BQ_TMP/.ports ]]; then
            echo "$port" >>"$BQ_TMP/.ports"
        fi
        echo "$port"
        return 0
    done
    fail "no free TCP port found on 127.0.0.1"
}

# bq_spawn NAME CMD...: run CMD in the background, stdout and stderr to $BQ_TMP/NAME.log,
# stdin from /dev/null; print its PID. The cleanup stops it (SIGTERM, then SIGKILL).
bq_spawn() {
    bq__need_tmp
    local name=$1
    shift
    [[ $# -gt 0 ]] || fail "bq_spawn $name: no command"
    "$@" </dev/null >>"$BQ_TMP/$name.log" 2>&1 &
    local pid=$!
    bq__register "$pid" proc
    echo "$pid"
}

# bq_kill PID [SIG]: send SIG (default TERM). For TERM, INT, QUIT and KILL, wait up to 10 s
# for PID to exit and fail if it does not; other signals (HUP, STOP, CONT, USR1...) return at
# once.
bq_kill() {
    local pid=$1 sig=${2:-TERM} i
    sig=${sig#SIG}
    kill -"$sig" "$pid" 2>/dev/null || true
    case $sig in
    TERM | INT | QUIT | KILL | 15 | 2 | 3 | 9) ;;
    *) return 0 ;;
    esac
    for ((i = 0; i < 100; i++)); do
        bq_pid_alive "$pid" || break
        sleep 0.1
    done
    bq_pid_alive "$pid" && fail "process $pid still running 10 s after SIG$sig"
    wait "$pid" 2>/dev/null || true
}

bq__now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

# bq_wait_for DESCRIPTION TIMEOUT_S CMD...: run CMD every 0.2 s until it succeeds; after
# TIMEOUT_S seconds fail with DESCRIPTION and CMD's last output.
bq_wait_for() {
    local what=$1 timeout=$2
    shift 2
    local deadline out t0
    t0=$(bq__now_ms)
    deadline=$((t0 + ${timeout%.*} * 1000))
    while :; do
        if out=$("$@" 2>&1); then
            t0=$(($(bq__now_ms) - t0))
            # where a test spends its time (ctest -V shows it)
            ((t0 < 3000)) || echo "[waited $((t0 / 1000)).$((t0 % 1000 / 100)) s for $what]" >&2
            return 0
        fi
        if (($(bq__now_ms) >= deadline)); then
            fail "timed out after ${timeout} s waiting for $what; last output of '$*':
$out"
        fi
        sleep 0.2
    done
}

# bq_wait_log FILE REGEX TIMEOUT_S: wait until a line of FILE matches the extended REGEX.
bq_wait_log() {
    local file=$1 re=$2 timeout=$3 deadline
    deadline=$(($(bq__now_ms) + ${timeout%.*} * 1000))
    while :; do
        if [[ -f $file ]] && grep -Eq -- "$re" "$file"; then
            return 0
        fi
        if (($(bq__now_ms) >= deadline)); then
            local tail_text="(no such file)"
            [[ -f $file ]] && tail_text=$(tail -n 20 "$file")
            fail "timed out after ${timeout} s waiting for /$re/ in $file; its last lines:
$tail_text"
        fi
        sleep 0.2
    done
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

bq__as_pg() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

bq__pg_name() {
    [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail "cluster name '$1' must be a shell identifier"
}

# pg_start NAME: initdb a PostgreSQL 15 cluster in $BQ_TMP/NAME/data and start it on a free
# 127.0.0.1 port (socket in $BQ_TMP/NAME), trust auth, user postgres, data checksums,
# wal_level=replica, 10 WAL senders and slots, fsync off. Sets and exports PG_PORT_NAME,
# PG_CONNINFO_NAME and PG_DATA_NAME; prints the conninfo. Its log: $BQ_TMP/NAME/postgres.log.
pg_start() {
    bq__need_tmp
    local name=$1
    bq__pg_name "$name"
    local dir=$BQ_TMP/$name
    local data=$dir/data
    [[ ! -e $data ]] || fail "pg_start $name: $data already exists"
    mkdir -p "$dir"
    chmod 700 "$dir"
    ((EUID != 0)) || chown postgres:postgres "$dir"

    if ! (cd "$dir" && bq__as_pg "$BQ_PGBIN/initdb" -D "$data" --auth=trust \
        --username=postgres --data-checksums --encoding=UTF8 --locale=C --no-sync \
        --no-instructions) >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        fail "initdb of cluster $name failed"
    fi

    local attempt port started=0
    cp "$data/postgresql.conf" "$dir/postgresql.conf.orig"
    for ((attempt = 1; attempt <= 5; attempt++)); do
        port=$(bq_free_port)
        cat "$dir/postgresql.conf.orig" - >"$data/postgresql.conf" <<EOF

# barque integration harness
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
fsync = off
log_line_prefix = '%m [%p] %q%a '
EOF
        if (cd "$dir" && bq__as_pg "$BQ_PGBIN/pg_ctl" -D "$data" -l "$dir/postgres.log" \
            -w -t 60 start) >>"$dir/pg_ctl.log" 2>&1; then
            started=1
            break
        fi
        # Someone took the port between the check and the bind: try another one.
        if grep -q 'could not bind\|Address already in use' "$dir/postgres.log" 2>/dev/null; then
            echo "harness: port $port of cluster $name was taken, retrying" >&2
            continue
        fi
        break
    done
    if ((!started)); then
        cat "$dir/pg_ctl.log" >&2
        [[ -f $dir/postgres.log ]] && tail -n 30 "$dir/postgres.log" >&2
        fail "could not start PostgreSQL cluster $name"
    fi

    local pid
    pid=$(head -n 1 "$data/postmaster.pid")
    bq__register "$pid" pg
    echo "$port" >"$dir/port"
    echo "$pid" >"$dir/pid"
    local conninfo="host=127.0.0.1 port=$port user=postgres dbname=postgres"
    echo "$conninfo" >"$dir/conninfo"
    export "PG_PORT_$name=$port" "PG_CONNINFO_$name=$conninfo" "PG_DATA_$name=$data"
    echo "$conninfo"
}

# pg_stop NAME: fast shutdown; fails if the postmaster is still there after 60 s.
pg_stop() {
    bq__need_tmp
    local name=$1
    bq__pg_name "$name"
    local dir=$BQ_TMP/$name
    [[ -f $dir/pid ]] || fail "pg_stop $name: no such cluster was started"
    local data=$dir/data
    [[ ! -f $dir/datadir ]] || data=$(cat "$dir/datadir")
    if ! (cd "$dir" && bq__as_pg "$BQ_PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop) \
        >>"$dir/pg_ctl.log" 2>&1; then
        tail -n 5 "$dir/pg_ctl.log" >&2
        fail "could not stop PostgreSQL cluster $name"
    fi
    local pid
    pid=$(cat "$dir/pid")
    bq_wait_for "postmaster $pid of cluster $name to exit" 10 bq__pid_gone "$pid"
}

bq__pid_gone() { ! bq_pid_alive "$1"; }

# pg_start_dir NAME DATA: start PostgreSQL on an existing data directory DATA (a restore), on
# a free 127.0.0.1 port with its socket in $BQ_TMP/NAME, registered for cleanup like pg_start;
# pg_psql, pg_conninfo and pg_stop then work on NAME. DATA must belong to the postgres user
# when run as root. Fails (showing the log) when the server does not start within 120 s.
pg_start_dir() {
    bq__need_tmp
    local name=$1 data=$2
    bq__pg_name "$name"
    local dir=$BQ_TMP/$name
    mkdir -p "$dir"
    chmod 700 "$dir"
    ((EUID != 0)) || chown postgres:postgres "$dir"
    local port
    port=$(bq_free_port)
    if ! (cd "$dir" && bq__as_pg "$BQ_PGBIN/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 120 \
        -o "-c port=$port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir" \
        start) >>"$dir/pg_ctl.log" 2>&1; then
        cat "$dir/pg_ctl.log" >&2
        [[ -f $dir/postgres.log ]] && tail -n 30 "$dir/postgres.log" >&2
        fail "could not start PostgreSQL $name on $data"
    fi
    local pid
    pid=$(head -n 1 "$data/postmaster.pid")
    bq__register "$pid" pg
    echo "$data" >"$dir/datadir"
    echo "$port" >"$dir/port"
    echo "$pid" >"$dir/pid"
    echo "host=127.0.0.1 port=$port user=postgres dbname=postgres" >"$dir/conninfo"
}

# pg_conninfo NAME, pg_port NAME, pg_pid NAME: what pg_start recorded (usable anywhere).
pg_conninfo() { cat "$BQ_TMP/$1/conninfo"; }
pg_port() { cat "$BQ_TMP/$1/port"; }
pg_pid() { cat "$BQ_TMP/$1/pid"; }

# pg_psql NAME ARGS...: psql on cluster NAME, unaligned tuples only, stop on error.
pg_psql() {
    local name=$1
    shift
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$(pg_conninfo "$name")" "$@"
}
