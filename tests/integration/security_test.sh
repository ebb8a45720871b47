# CURVE and ZAP: an unlisted key is refused and logged with its public key; the coordinator
# will not listen without its ZAP handler; a key file with loose permissions is refused;
# raw bytes and plaintext ZeroMQ clients on the port do not disturb the coordinator.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/fleet.sh"
bq_require_bins
bq_tmpdir

fleet_init
fleet_site east
fleet_worker_conf east-1 east
fleet_coord_start
fleet_worker_start east-1
bq_wait_for "east-1 online" 15 fleet_worker_online east-1
fleet_cli status >/dev/null || fail "listed operator refused"

# --- an unlisted operator key ----------------------------------------------------------------
"$BQ_BIN_CLI" keygen intruder --dir "$FLEET/keys" >/dev/null
# Z85 keys hold regex metacharacters: escape them for bq_wait_log's grep -E
re_escape() { sed 's/[][\.*^$(){}?+|/]/\\&/g' <<<"$1"; }
intruder_pub=$(re_escape "$(cat "$FLEET/keys/intruder.pub")")
sed 's/ops.key/intruder.key/' "$FLEET/cli.conf" >"$FLEET/intruder.conf"
rc=0
out=$("$BQ_BIN_CLI" -c "$FLEET/intruder.conf" --timeout 3 status 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of the CLI with an unlisted key"
assert_contains "$out" "refused our CURVE key"
bq_wait_log "$BQ_TMP/coordinator.log" "refused CURVE client at 127.0.0.1: public key $intruder_pub is not listed" 5

# --- an unlisted worker key ------------------------------------------------------------------
"$BQ_BIN_CLI" keygen rogue --dir "$FLEET/keys" >/dev/null
sed -e 's/east-1/rogue/g' "$FLEET/east-1.conf" >"$FLEET/rogue.conf"
rogue_pub=$(re_escape "$(cat "$FLEET/keys/rogue.pub")")
pid=$(bq_spawn rogue "$BQ_BIN_WORKER" -c "$FLEET/rogue.conf")
bq_wait_log "$BQ_TMP/coordinator.log" "public key $rogue_pub is not listed" 10
bq_wait_log "$BQ_TMP/rogue.log" "refused our CURVE key" 10
fleet_cli workers | grep -q rogue && fail "an unlisted worker was registered"
bq_kill "$pid" TERM

# --- a listed worker key claiming another worker's name --------------------------------------
sed -e 's/^name = east-1/name = east-9/' "$FLEET/east-1.conf" >"$FLEET/liar.conf"
pid=$(bq_spawn liar "$BQ_BIN_WORKER" -c "$FLEET/liar.conf")
bq_wait_log "$BQ_TMP/coordinator.log" "key of worker east-1 may not register as worker east-9" 10
bq_kill "$pid" TERM
fleet_cli workers | grep -q east-9 && fail "a worker registered under a name its key does not carry"

# --- raw bytes and a plaintext peer on the port ----------------------------------------------
for i in 1 2 3; do
    (exec 3<>"/dev/tcp/127.0.0.1/$FLEET_PORT" && head -c 4096 /dev/urandom >&3 && exec 3>&-) 2>/dev/null || true
done
python3 - "$FLEET_PORT" <<'PY' || true
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
# a ZMTP 3.0 greeting asking for the NULL mechanism (plaintext)
s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16 + b"\x00" + b"\x00" * 31)
try:
    s.recv(64)
except Exception:
    pass
s.close()
PY
bq_pid_alive "$FLEET_COORD_PID" || fail "the coordinator died on raw bytes"
fleet_cli status >/dev/null || fail "the coordinator stopped answering after raw bytes"
fleet_worker_online east-1 || fail "the worker lost its registration after raw bytes"

# --- a secret key file readable by others is refused -----------------------------------------
cp "$FLEET/keys/ops.key" "$FLEET/keys/loose.key"
chmod 644 "$FLEET/keys/loose.key"
sed 's/ops.key/loose.key/' "$FLEET/cli.conf" >"$FLEET/loose.conf"
rc=0
out=$("$BQ_BIN_CLI" -c "$FLEET/loose.conf" status 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status with a loose secret key file"
assert_contains "$out" "loose.key has mode 0644"
assert_contains "$out" "chmod 600"
assert_not_contains "$out" "$(cat "$FLEET/keys/ops.key")"
grep -qF "$(cat "$FLEET/keys/ops.key")" "$BQ_TMP"/*.log && fail "a secret key appears in a log"

# --- SIGHUP: a newly listed operator key is admitted without a restart; a removed one is not --
printf '\n[operator intruder]\npublic_key_file = keys/intruder.pub\n' >>"$FLEET/coordinator.conf"
bq_kill "$FLEET_COORD_PID" HUP
bq_wait_log "$BQ_TMP/coordinator.log" "config reloaded from" 10
"$BQ_BIN_CLI" -c "$FLEET/intruder.conf" --timeout 5 status >/dev/null ||
    fail "a key listed by a reload was not admitted"
bq_pid_alive "$FLEET_COORD_PID" || fail "the coordinator died on SIGHUP"
# a broken config on reload is refused and the running one kept
cp "$FLEET/coordinator.conf" "$FLEET/coordinator.conf.good"
echo "bogus line" >>"$FLEET/coordinator.conf"
bq_kill "$FLEET_COORD_PID" HUP
bq_wait_log "$BQ_TMP/coordinator.log" "reload refused, keeping the running config: .*coordinator.conf:[0-9]+: syntax error" 10
fleet_cli status >/dev/null || fail "the coordinator stopped answering after a bad reload"
cp "$FLEET/coordinator.conf.good" "$FLEET/coordinator.conf"

# --- no ZAP handler: the coordinator refuses to listen ---------------------------------------
bq_kill "$FLEET_COORD_PID" TERM
rc=0
out=$(BARQUE_TEST_SKIP_ZAP=1 timeout 20 "$BQ_BIN_COORDINATOR" -c "$FLEET/coordinator.conf" 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of a coordinator without its ZAP handler"
assert_contains "$out" "refusing to listen, since CURVE without ZAP admits any client"
[[ -z $(ss -Htln "sport = :$FLEET_PORT") ]] || fail "something listens on $FLEET_PORT"
# and with it, it listens again
fleet_coord_start
bq_wait_for "east-1 back" 15 fleet_worker_online east-1
echo "security_test: OK"
