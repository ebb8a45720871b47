# A table of bad configs, each given to the real program (barque-coordinator --check-config,
# barque-worker --check-config, barque status) with the error text it must print: the file,
# the line, the section, the key and the reason. Nothing starts; exit status 2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
EXAMPLES=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/examples" && pwd)
bq_require_bins
bq_tmpdir

cd "$BQ_TMP"
mkdir -m 700 keys
for k in coordinator w1 ops; do "$BQ_BIN_CLI" keygen "$k" --dir keys >/dev/null; done
cp keys/w1.key keys/loose.key
chmod 644 keys/loose.key
echo "not a key" >keys/garbage.pub

COORD_HEAD='[coordinator]
listen = tcp://127.0.0.1:7433
catalog = catalog
secret_key_file = keys/coordinator.key'
WORKER_HEAD='[worker]
name = w1
site = east
coordinator = tcp://127.0.0.1:7433
coordinator_public_key_file = keys/coordinator.pub
secret_key_file = keys/w1.key'

# check KIND NAME EXPECTED_SUBSTRING CONFIG_TEXT
n=0
check() {
    local kind=$1 name=$2 want=$3 text=$4 out rc=0
    n=$((n + 1))
    printf '%s\n' "$text" >"bad$n.conf"
    case $kind in
    coordinator) out=$("$BQ_BIN_COORDINATOR" -c "bad$n.conf" --check-config 2>&1) || rc=$? ;;
    worker) out=$("$BQ_BIN_WORKER" -c "bad$n.conf" --check-config 2>&1) || rc=$? ;;
    cli) out=$("$BQ_BIN_CLI" -c "bad$n.conf" status 2>&1) || rc=$? ;;
    esac
    ((rc != 0)) || fail "$name: $kind accepted bad$n.conf"
    [[ $out == *"bad$n.conf$want"* ]] || fail "$name: expected '$want' after the file name, got: $out"
    echo "ok $n - $name: $out"
}

check coordinator "unknown key" ":3: [coordinator] lisen: unknown key" \
"[coordinator]
catalog = catalog
lisen = tcp://127.0.0.1:1
secret_key_file = keys/coordinator.key"
check coordinator "unknown section" ":5: [bogus x]: unknown section" "$COORD_HEAD
[bogus x]"
check coordinator "missing required key" ":1: [coordinator] catalog: required key is missing" \
"[coordinator]
listen = tcp://127.0.0.1:7433
secret_key_file = keys/coordinator.key"
check coordinator "missing [coordinator]" ": [coordinator]: required section is missing" "[site east]"
check coordinator "worker at an unknown site" ":8: [worker w1] site: no [site west] section" "$COORD_HEAD
[site east]
[worker w1]
public_key_file = keys/w1.pub
site = west"
check coordinator "bad endpoint" ":2: [coordinator] listen:" \
"[coordinator]
listen = 127.0.0.1:7433
catalog = catalog
secret_key_file = keys/coordinator.key"
check coordinator "bad duration" ":5: [coordinator] worker_timeout:" "$COORD_HEAD
worker_timeout = soon"
check coordinator "bad integer" ":5: [coordinator] job_max_attempts:" "$COORD_HEAD
job_max_attempts = lots"
check coordinator "bad log level" ":5: [coordinator] log_level:" "$COORD_HEAD
log_level = chatty"
check coordinator "garbage public key" ":6: [operator ops] public_key_file:" "$COORD_HEAD
[operator ops]
public_key_file = keys/garbage.pub"
check coordinator "missing public key file" ":6: [operator ops] public_key_file:" "$COORD_HEAD
[operator ops]
public_key_file = keys/nosuch.pub"
check coordinator "loose secret key" ":4: [coordinator] secret_key_file: secret key file" \
"[coordinator]
listen = tcp://127.0.0.1:7433
catalog = catalog
secret_key_file = keys/loose.key"
check coordinator "bad cluster name" ":5: [cluster db/1]:" "$COORD_HEAD
[cluster db/1]
conninfo = host=x
site = east"
check coordinator "duplicate key" ":5: [coordinator] catalog:" "$COORD_HEAD
catalog = other"
check worker "worker: unknown key" ":7: [worker] stroe: unknown key" "$WORKER_HEAD
stroe = /srv/store"
check worker "worker: missing store" ":1: [worker] store: required key is missing" "$WORKER_HEAD"
check worker "worker: bad max_jobs" ":8: [worker] max_jobs:" "$WORKER_HEAD
store = store
max_jobs = 0"
check cli "cli: missing secret key" ":1: [cli] secret_key_file: required key is missing" \
"[cli]
coordinator = tcp://127.0.0.1:7433
coordinator_public_key_file = keys/coordinator.pub"
check cli "cli: syntax error" ":2:" "[cli]
this line has no equals sign"

# the loose key's message says what to do and never shows the key
out=$("$BQ_BIN_COORDINATOR" -c bad12.conf --check-config 2>&1) || true
assert_contains "$out" "has mode 0644"
assert_contains "$out" "chmod 600"
assert_not_contains "$out" "$(cat keys/loose.key)"
# keygen --store-key: a 0600 master key file, never overwritten
"$BQ_BIN_CLI" keygen prod --store-key --dir skeys >/dev/null
assert_eq 600 "$(stat -c %a skeys/prod.storekey)" "mode of the store key file"
grep -Eq '^barque-store-key-1:.{40}$' skeys/prod.storekey || fail "store key file format"
before=$(cat skeys/prod.storekey)
rc=0
out=$("$BQ_BIN_CLI" keygen prod --store-key --dir skeys 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of keygen over an existing store key"
assert_contains "$out" "already exists"
assert_eq "$before" "$(cat skeys/prod.storekey)" "store key after a refused keygen"
# The example configs of deploy/examples (a two-site fleet) load as they are, with their keys.
ex=$BQ_TMP/examples
mkdir -p "$ex/keys"
chmod 700 "$ex/keys"
cp "$EXAMPLES/"*.conf "$ex/"
for k in coordinator ops pg-east east-1 east-2 west-1; do "$BQ_BIN_CLI" keygen "$k" --dir "$ex/keys" >/dev/null; done
"$BQ_BIN_CLI" keygen fleet --store-key --dir "$ex/keys" >/dev/null
out=$("$BQ_BIN_COORDINATOR" -c "$ex/coordinator.conf" --check-config 2>&1) || fail "example coordinator.conf: $out"
assert_contains "$out" "OK (2 sites, 3 workers, 2 operators, 3 clusters)" "example coordinator.conf"
for w in east-1 west-1; do
    out=$("$BQ_BIN_WORKER" -c "$ex/worker-$w.conf" --check-config 2>&1) || fail "example worker-$w.conf: $out"
    assert_contains "$out" "OK (worker $w" "example worker-$w.conf"
done
echo "config_test: OK ($n bad configs, the example configs)"
