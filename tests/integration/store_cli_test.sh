# The offline store verbs (barque store init|ls|show|stats) on a real store directory, with no
# daemon running: backups are written by the store_fill helper (the store_backup_* writer), the
# CLI reads them back. Text and JSON (parsed with python3), refusals with their messages and
# exit status 1, bad arguments with exit status 2, --help for each verb.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bq_require_bins
bq_tmpdir
[[ -x ${BQ_STORE_FILL:-} ]] || fail "BQ_STORE_FILL is not set to the store_fill helper"

cd "$BQ_TMP"
B=$BQ_BIN_CLI
n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }

# json FILTER: python3 expression over the JSON on stdin, bound to j
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

# tree_sum DIR: names, sizes and contents of everything under DIR (to prove nothing changed)
tree_sum() { (cd "$1" && find . -printf '%p %s %m\n' | sort && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum); }

# ---- init -------------------------------------------------------------------------------------
"$B" keygen site --store-key --dir keys >/dev/null
"$B" keygen other --store-key --dir keys >/dev/null
K=keys/site.storekey
out=$("$B" store init st --key $K)
assert_contains "$out" "created store st"
[[ -f st/store.conf && -d st/backups && -d st/keys ]] || fail "store init made no store: $(ls -la st)"
assert_eq 700 "$(stat -c %a st)" "mode of the store directory"
ok "store init creates a store"

before=$(tree_sum st)
rc=0
out=$("$B" store init st --key $K 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of a second init"
assert_contains "$out" "store init: could not create store st: it already has store.conf"
assert_eq "$before" "$(tree_sum st)" "store after a refused init"
ok "store init twice is refused, nothing changed"

out=$("$B" store init st2 --key $K --compression lz4 --level 2 --chunk-size 128K --json)
assert_eq "st2 lz4 2 131072" "$(json '" ".join(str(x) for x in (j["store"], j["compression"], j["level"], j["chunk_size"]))' <<<"$out")" "init --json"
grep -q '^chunk_size=131072$' st2/store.conf || fail "st2/store.conf: $(cat st2/store.conf)"
grep -q '^compression=lz4$' st2/store.conf || fail "st2/store.conf: $(cat st2/store.conf)"
ok "store init --compression --level --chunk-size --json"

# ---- an empty store -----------------------------------------------------------------------------
assert_eq "no backups in store st" "$("$B" store ls st --key $K)" "ls of an empty store"
assert_eq 0 "$("$B" store ls st --key $K --json | json 'len(j)')" "ls --json of an empty store"
assert_eq "0 0" "$("$B" store stats st --key $K --json | json '" ".join(str(j[k]) for k in ("backups", "logical_bytes"))')" "stats of an empty store"
ok "an empty store lists no backups"

# ---- backups ------------------------------------------------------------------------------------
mkdir -p src/base/1 src/global
head -c 300000 /dev/urandom >src/base/1/16384      # 5 chunks of 64 KiB (the last partial)
head -c 65536 /dev/urandom >src/base/1/16385       # exactly 1 chunk
printf 'pg_control' >src/global/pg_control         # 1 chunk
: >src/empty                                        # 0 chunks
chmod 600 src/global/pg_control
"$BQ_STORE_FILL" st $K b1 src >/dev/null
"$BQ_STORE_FILL" st $K b2 src >/dev/null
LOGICAL=$((300000 + 65536 + 10))

out=$("$B" store ls st --key $K)
assert_contains "$out" "BACKUP"
[[ $out =~ b1\ +[0-9T:-]+Z\ +4\ +357\.[0-9]\ KiB ]] || fail "ls text: $out"
[[ $out =~ b2\ +[0-9T:-]+Z\ +4\ + ]] || fail "ls text: $out"
out=$("$B" store ls st --key $K --json)
assert_eq "b1:4:$LOGICAL:7 b2:4:$LOGICAL:7" \
    "$(json '" ".join(":".join(str(b[k]) for k in ("id", "files", "logical_bytes", "chunks")) for b in j)' <<<"$out")" "ls --json"
json 'all(b["created"].endswith("Z") and b["created_ms"] > 0 for b in j)' <<<"$out" | grep -qx True ||
    fail "ls --json created: $out"
ok "store ls: text and JSON"

out=$("$B" store show st b1 --key $K)
assert_contains "$out" "backup       b1"
assert_contains "$out" "files        4"
assert_contains "$out" "logical size 357.0 KiB ($LOGICAL bytes)"
assert_contains "$out" "chunks       7"
[[ $out =~ source\ +3\ bytes ]] || fail "show text meta: $out"
[[ $out =~ -rw-r--r--\ +300000\ +5\ +base/1/16384 ]] || fail "show text file: $out"
[[ $out =~ -rw-------\ +10\ +1\ +global/pg_control ]] || fail "show text file: $out"
[[ $out =~ -rw-r--r--\ +0\ +0\ +empty ]] || fail "show text file: $out"
out=$("$B" store show st b1 --key $K --json)
assert_eq "b1 4 $LOGICAL 7 65536" \
    "$(json '" ".join(str(j["backup"][k]) for k in ("id", "files", "logical_bytes", "chunks", "chunk_size"))' <<<"$out")" "show --json backup"
assert_eq "source:3" "$(json '" ".join(":".join(str(m[k]) for k in ("key", "size")) for m in j["meta"])' <<<"$out")" "show --json meta"
assert_eq "base/1/16384:100644:300000:5 base/1/16385:100644:65536:1 empty:100644:0:0 global/pg_control:100600:10:1" \
    "$(json '" ".join(":".join(str(f[k]) for k in ("path", "mode_octal", "size", "chunks")) for f in j["files"])' <<<"$out")" "show --json files"
ok "store show: text and JSON"

out=$("$B" store stats st --key $K)
assert_contains "$out" "backups       2"
assert_contains "$out" "chunks        7"
assert_contains "$out" "logical bytes 714.0 KiB ($((2 * LOGICAL)))"
out=$("$B" store stats st --key $K --json)
assert_eq "2 7 $((2 * LOGICAL))" "$(json '" ".join(str(j[k]) for k in ("backups", "chunks", "logical_bytes"))' <<<"$out")" "stats --json"
json 'j["dedup_ratio"] > 1.9 and j["stored_bytes"] < 1.1 * '"$LOGICAL"' and abs(j["dedup_ratio"] - j["logical_bytes"] / j["stored_bytes"]) < 1e-9' <<<"$out" |
    grep -qx True || fail "stats --json: two identical backups should dedup (ratio > 1.9): $out"
ok "store stats: two identical backups dedup (ratio > 1.9)"

# ---- verify: clean, then a flipped byte in a pack names the backups and files --------------------
out=$("$B" store verify st --key $K) || fail "store verify of a clean store: $out"
assert_contains "$out" ": OK"
assert_contains "$out" "0 problems"
cp -a st stbad
pack=$(find stbad/packs -name '*.pack' | head -1)
size=$(stat -c %s "$pack")
python3 - "$pack" $((size / 2)) <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x40]))
PY
rc=0
out=$("$B" store verify stbad --key $K) || rc=$?
assert_eq 1 "$rc" "exit status of store verify on a damaged store"
assert_contains "$out" "DAMAGED"
assert_contains "$out" "backup b1 file"
assert_contains "$out" "backup b2 file"
rc=0
out=$("$B" store verify stbad --key $K --json) || rc=$?
assert_eq 1 "$rc" "exit status of store verify --json on a damaged store"
json 'j["ok"] is False and j["problems"] > 0 and {"b1", "b2"} <= {e.get("backup") for e in j["events"]}' <<<"$out" |
    grep -qx True || fail "store verify --json does not name both backups: $out"
ok "store verify: clean store OK; one flipped pack byte names the chunk, both backups and the file"

# ---- gc: after retention removed b1 (its chunks are all shared with b2), then b2 too -------------
cp -a st stgc
rm stgc/backups/b1.manifest
out=$("$B" store gc stgc --key $K --json) || fail "store gc: $out"
json 'j["backups"] == 1 and j["chunks_removed"] == 0 and j["packs_deleted"] == 0' <<<"$out" |
    grep -qx True || fail "store gc --json with b1 gone (all its chunks shared with b2): $out"
out=$("$B" store verify stgc --key $K) || fail "store verify after gc: $out"
assert_contains "$out" ": OK"
out=$("$B" store ls stgc --key $K)
assert_contains "$out" "b2"
rm stgc/backups/b2.manifest
out=$("$B" store gc stgc --key $K) || fail "store gc: $out"
assert_contains "$out" "removed 7 chunks"
[[ -z $(find stgc/packs -name '*.pack') ]] || fail "store gc left packs with no backup: $(find stgc/packs)"
out=$("$B" store verify stgc --key $K) || fail "store verify after gc of everything: $out"
assert_contains "$out" ": OK"
ok "store gc: keeps shared chunks, reclaims the rest; verify OK after each run"

# ---- rotate-key: a copy of st moves to a new master key; the old one is refused -----------------
"$B" keygen rotated --store-key --dir keys >/dev/null
cp -a st strot
packs_before=$(cd strot && find packs -type f -printf '%p %s %T@\n' | sort && find packs -type f -exec sha256sum {} + | sort)
out=$("$B" store rotate-key strot --key $K --new-key keys/rotated.storekey --json) ||
    fail "store rotate-key: $out"
json 'j["data_keys"] == j["data_keys_rewrapped"] and j["data_keys"] >= 2 and j["id_key_rewrapped"] is True' <<<"$out" |
    grep -qx True || fail "store rotate-key --json: $out"
out=$("$B" store ls strot --key keys/rotated.storekey) || fail "store ls with the new key: $out"
assert_contains "$out" "b1"
assert_contains "$out" "b2"
"$B" store verify strot --key keys/rotated.storekey >/dev/null || fail "store verify with the new key"
rc=0
out=$("$B" store ls strot --key $K 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of store ls with the old key after rotate-key"
assert_contains "$out" "wrong store key"
packs_after=$(cd strot && find packs -type f -printf '%p %s %T@\n' | sort && find packs -type f -exec sha256sum {} + | sort)
assert_eq "$packs_before" "$packs_after" "packs after rotate-key"
out=$("$B" store rotate-key strot --key $K --new-key keys/rotated.storekey) ||
    fail "store rotate-key run again: $out"
assert_contains "$out" "0 of"
rc=0
out=$("$B" store rotate-key strot --key keys/other.storekey --new-key $K 2>&1) || rc=$?
assert_eq 1 "$rc" "exit status of store rotate-key with a wrong old key"
assert_contains "$out" "nothing was changed"
out=$("$B" store rotate-key --help)
assert_contains "$out" "usage: barque store rotate-key PATH --key OLD_FILE --new-key NEW_FILE"
rc=0
out=$("$B" store rotate-key strot --key $K 2>&1) || rc=$?
assert_eq 2 "$rc" "exit status of store rotate-key without --new-key"
assert_contains "$out" "--new-key FILE is required"
ok "store rotate-key: the new key opens the store, the old one is refused, packs untouched"

# ---- refusals -----------------------------------------------------------------------------------
before=$(tree_sum st)
for verb in "ls st" "stats st" "show st b1"; do
    rc=0
    out=$("$B" store $verb --key keys/other.storekey 2>&1) || rc=$?
    assert_eq 1 "$rc" "exit status of store $verb with a wrong key"
    assert_contains "$out" "wrong store key for st (the key in keys/other.storekey does not open the id key in store.conf)"
done
assert_eq "$before" "$(tree_sum st)" "store after a wrong key"
ok "a wrong key is refused with the reason, nothing changed"

# check WANT_RC SUBSTRING ARGS...: the CLI exits WANT_RC and says SUBSTRING
check() {
    local want=$1 msg=$2 rc=0 out
    shift 2
    out=$("$B" "$@" 2>&1) || rc=$?
    assert_eq "$want" "$rc" "exit status of barque $*"
    assert_contains "$out" "$msg" "barque $*"
    echo "ok - barque $*: $rc"
}
check 1 "backup nope does not exist in store st" store show st nope --key $K
check 1 "nowhere" store ls nowhere --key $K
check 1 "keys/none.storekey" store ls st --key keys/none.storekey
check 2 "--key FILE is required" store ls st
check 2 "--key FILE is required" store init st9
check 2 "is not a backup id" store show st ../b1 --key $K
check 2 "--compression gzip: not one of zstd, lz4, none" store init st9 --key $K --compression gzip
check 2 "--chunk-size 5K" store init st9 --key $K --chunk-size 5K
check 2 "--chunk-size lots" store init st9 --key $K --chunk-size lots
check 2 "--level x: not a number" store init st9 --key $K --level x
check 2 "zstd level 99" store init st9 --key $K --level 99
check 2 "option --key needs a value" store ls st --key
check 2 "usage: barque store ls PATH" store ls st --key $K --level 3
check 2 "usage: barque store ls PATH" store ls --key $K
check 2 "usage: barque store show PATH BACKUP_ID" store show st --key $K
check 2 "usage: barque store init" store
[[ ! -e st9 ]] || fail "a refused init left st9 behind"
ok "bad arguments exit 2 and make nothing"

for verb in init ls show stats verify gc; do
    out=$("$B" store $verb --help)
    assert_contains "$out" "usage: barque store $verb PATH"
    assert_contains "$out" "--key FILE"
done
out=$("$B" --help)
assert_contains "$out" "barque store stats PATH --key FILE"
ok "--help for each store verb"

echo "store_cli_test: OK ($n groups)"
