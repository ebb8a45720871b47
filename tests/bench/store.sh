#!/usr/bin/env bash
# Store benchmark (see README.md in this folder): bench_store against a pgbench cluster, with
# the tools a DBA would otherwise use (tar | zstd -1, cp -a + sync) alongside.
#
#   tests/bench/store.sh [--scale N] [--runs N] [--chunk-sizes LIST|none] [--touch-pct P]
#                        [--seed S] [--pgdata DIR] [--threads N] [--check] [--json FILE]
#
#   --scale N          pgbench -i -s N (default 125: a data directory of about 2 GiB)
#   --runs N           timed runs of each measurement; figures are medians (default 2)
#   --chunk-sizes L    comma-separated KiB for the sweep (default 8,16,32,64,128,256; none: skip)
#   --touch-pct P      % of relation pages changed before the second backup (default 1)
#   --seed S           seed of the page changes (default 1): every chunk size sees the same ones
#   --pgdata DIR       use this (stopped) data directory instead of making a cluster; it is
#                      only read
#   --threads N        bench_store --threads N (store_set_threads; default: the store's own)
#   --check            also assert outcomes (ctest bench.store_smoke): every backup committed,
#                      verify clean, the read-backs equal the source, the second backup added
#                      fewer bytes than the first, the summary complete. Never a speed.
#   --json FILE        also write the summary as one JSON object to FILE
#
# Steps: (a) a PostgreSQL 15 cluster from the integration harness, pgbench -i, CHECKPOINT,
# clean stop; (b) with the tree in the page cache: tar -cf - | zstd -1 -T1 (and -3, the store's
# default level), cp -a + sync (the copy becomes the tree whose pages are changed); (c)
# bench_store into fresh stores at the default level and at --level 1; (d) --touch-pages on the
# copy, then a second backup into the level-3 store, with verify and a read-back; (e) the chunk
# size sweep: per size a fresh store, the first backup of the original tree, the second of the
# changed copy. A benchmark, not a timed test: a goal that is missed prints MISS, never fails.
#
# Environment:
#   BQ_BENCH_STORE  bench_store (default: $BQ_BUILD/tests/bench/bench_store)
#   BQ_BUILD        the CMake build dir, used only for the default above
#   BQ_TMPROOT      where the scratch dir is made (default /tmp); it needs about 2.6 times the
#                   data directory free (the data, a copy, tar files, two stores)
#   BQ_KEEP=1       keep the scratch dir
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../integration/lib.sh
source "$root/tests/integration/lib.sh"

scale=125
runs=2
sizes=8,16,32,64,128,256
touch_pct=1
seed=1
pgdata=
check=0
json_out=
threads=()
while (($#)); do
    case $1 in
    --scale) scale=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --chunk-sizes) sizes=$2; shift 2 ;;
    --touch-pct) touch_pct=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --pgdata) pgdata=$2; shift 2 ;;
    --threads) threads=(--threads "$2"); shift 2 ;;
    --check) check=1; shift ;;
    --json) json_out=$2; shift 2 ;;
    -h | --help) sed -n '2,/^here=/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "store.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $scale =~ ^[0-9]+$ && $scale -ge 1 ]] || { echo "store.sh: --scale $scale: a positive integer" >&2; exit 2; }
[[ $runs =~ ^[0-9]+$ && $runs -ge 1 && $runs -le 20 ]] || { echo "store.sh: --runs $runs: 1..20" >&2; exit 2; }
[[ $sizes == none || $sizes =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "store.sh: --chunk-sizes $sizes: e.g. 8,64,256 or none" >&2; exit 2; }
[[ $seed =~ ^[0-9]+$ ]] || { echo "store.sh: --seed $seed: a number" >&2; exit 2; }

if [[ -n ${BQ_BUILD:-} ]]; then
    BQ_BENCH_STORE=${BQ_BENCH_STORE:-$BQ_BUILD/tests/bench/bench_store}
fi
bench=${BQ_BENCH_STORE:-}
if [[ -z $bench || ! -x $bench ]]; then
    echo "store.sh: set BQ_BENCH_STORE (or BQ_BUILD) to a built bench_store" >&2
    exit 2
fi
for tool in tar zstd cp sync find awk df; do
    command -v "$tool" >/dev/null || { echo "store.sh: $tool is not installed" >&2; exit 2; }
done
if [[ -z $pgdata ]]; then
    command -v pgbench >/dev/null || { echo "store.sh: pgbench is not installed (postgresql-client-15)" >&2; exit 2; }
elif [[ ! -f $pgdata/PG_VERSION ]]; then
    echo "store.sh: --pgdata $pgdata: no PG_VERSION there (not a PostgreSQL data directory)" >&2
    exit 2
elif [[ -f $pgdata/postmaster.pid ]]; then
    echo "store.sh: --pgdata $pgdata: postmaster.pid exists (stop the server first)" >&2
    exit 2
fi

# ---- helpers ----------------------------------------------------------------------------------

now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# calc EXPR: awk arithmetic, printed with %.Nf given as the second argument (default 2).
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
# get KEY FILE: the value of "KEY: value" in a bench_store output file.
get() {
    local v
    v=$(awk -v k="$1" 'index($0, k ": ") == 1 { print substr($0, length(k) + 3); exit }' "$2")
    [[ -n $v ]] || fail "no '$1' in $2"
    echo "$v"
}
# median N...: the median of the numbers (mean of the middle two when even).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }
mb() { calc "$1 / 1e6" 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
gitstate() {
    local h d
    h=$(git -C "$root" log -1 --format=%h 2>/dev/null || echo "?")
    d=$(git -C "$root" diff --stat -- store/ 2>/dev/null | awk '/\|/ { printf "%s%s", n++ ? ", " : "", $1 } END { if (!n) printf "unmodified" }')
    echo "commit $h; modified in store/: $d"
}
# (%.0f: mawk's %d stops at 2^31 - 1)
bytes_of_tree() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }

summary=()   # "key: value" lines, printed together at the end
sum() { summary+=("$1: $2"); }

check_eq() { ((check)) || return 0; [[ $2 == "$3" ]] || fail "check: $1: expected '$2', got '$3'"; }

bq_tmpdir
work=$BQ_TMP
key=$work/bench.storekey
key_opt=(--new-key)          # the first bench_store run makes the key
# run_bench OUT ARGS...: bench_store ARGS > OUT (stderr shown); fail naming OUT when it fails.
run_bench() {
    local out=$1
    shift
    if ! "$bench" --key "$key" "${key_opt[@]}" "${threads[@]}" "$@" >"$out"; then
        cat "$out" >&2
        fail "bench_store $* failed (output in $out)"
    fi
    key_opt=()
}

echo "# store.sh: $(date -u +%FT%TZ), $(nproc) CPUs, load $(load)"
echo "# $(gitstate)"
newer=$(find "$root/store" -name '*.[ch]' -newer "$bench" -printf '%f ' 2>/dev/null || true)
if [[ -n $newer ]]; then
    echo "# note: changed since $bench was built: ${newer% } (rebuild it to measure the current code)"
fi
sum git_at_start "$(gitstate)"
sum bench_store_binary "$bench (built $(date -u -r "$bench" +%FT%TZ)${newer:+; store/ files changed since: ${newer% }})"

# ---- free space -------------------------------------------------------------------------------

tmproot=${BQ_TMPROOT:-/tmp}
avail=$(df -B1 --output=avail "$tmproot" | tail -n 1 | tr -d ' ')
if [[ -n $pgdata ]]; then
    est=$(bytes_of_tree "$pgdata")
else
    est=$((scale * 17000000 + 1100000000)) # tables and indexes, plus up to max_wal_size of WAL
fi
need=$((est * 26 / 10 + 500000000))
echo "# free space in $tmproot: $(calc "$avail / 1e9" 1) GB; this run needs about $(calc "$need / 1e9" 1) GB"
if ((avail < need)); then
    fail "not enough free space in $tmproot: $(calc "$avail / 1e9" 1) GB free, about $(calc "$need / 1e9" 1) GB needed (data, a copy, tar files, two stores); set BQ_TMPROOT or lower --scale"
fi

# ---- (a) the data set -------------------------------------------------------------------------

if [[ -z $pgdata ]]; then
    t0=$(now)
    pg_start main >/dev/null
    conn=$(pg_conninfo main)
    # Keep pg_wal/ to about min_wal_size (80 MB) of recycled segments, so that the tree is the
    # relations (about 16 MB per scale unit) and not also max_wal_size (1 GB) of old WAL.
    pg_psql main -c "ALTER SYSTEM SET max_wal_size = '128MB'" -c "SELECT pg_reload_conf()" >/dev/null
    if ! pgbench -i -q -s "$scale" "$conn" >"$work/pgbench.log" 2>&1; then
        tail -n 20 "$work/pgbench.log" >&2
        fail "pgbench -i -s $scale failed (log $work/pgbench.log)"
    fi
    pg_psql main -c CHECKPOINT
    pg_stop main
    data=$PG_DATA_main
    echo "# pgbench -i -s $scale, CHECKPOINT and stop: $(elapsed "$t0" "$(now)") s"
    sum data_set "pgbench -i -s $scale (PostgreSQL $(cat "$data/PG_VERSION"), max_wal_size 128MB), checkpointed, stopped cleanly"
else
    data=$pgdata
    sum data_set "given data directory $pgdata"
fi
data_bytes=$(bytes_of_tree "$data")
data_files=$(find "$data" -type f | wc -l)
wal_bytes=$(bytes_of_tree "$data/pg_wal")
rel_bytes=$(($(bytes_of_tree "$data/base") + $(bytes_of_tree "$data/global")))
sum data_bytes "$data_bytes ($(mb "$data_bytes") MB in $data_files files; base/+global/ $(mb "$rel_bytes") MB, pg_wal/ $(mb "$wal_bytes") MB)"
echo "# data directory: $(mb "$data_bytes") MB in $data_files files"

# ---- (b) the tools a DBA would use ------------------------------------------------------------

find "$data" -type f -exec cat {} + >/dev/null # warm the page cache
sync
tar_t=()
for ((r = 1; r <= runs; r++)); do
    rm -f "$work/data.tar.zst"
    t0=$(now)
    tar -cf - -C "$data" . | zstd -1 -T1 -q >"$work/data.tar.zst"
    tar_t+=("$(elapsed "$t0" "$(now)")")
done
zstd1_bytes=$(stat -c %s "$work/data.tar.zst")
rm -f "$work/data.tar.zst"
tar_s=$(median "${tar_t[@]}")
tar_mbs=$(calc "$data_bytes / 1e6 / $tar_s" 1)
t0=$(now)
tar -cf - -C "$data" . | zstd -3 -T1 -q >"$work/data.tar.zst"
zstd3_s=$(elapsed "$t0" "$(now)")
zstd3_bytes=$(stat -c %s "$work/data.tar.zst")
rm -f "$work/data.tar.zst"
sum tar_zstd1 "$(calc "$data_bytes / 1e6 / $tar_s" 1) MB/s (median of ${tar_t[*]} s), $(mb "$zstd1_bytes") MB, ratio $(calc "$data_bytes / $zstd1_bytes" 2) [load $(load)]"
sum tar_zstd3 "$(calc "$data_bytes / 1e6 / $zstd3_s" 1) MB/s ($zstd3_s s, one run), $(mb "$zstd3_bytes") MB, ratio $(calc "$data_bytes / $zstd3_bytes" 2)"

touched=$work/touched
cp_t=()
for ((r = 1; r <= runs; r++)); do
    rm -rf "$touched"
    sync
    t0=$(now)
    cp -a "$data" "$touched" && sync
    cp_t+=("$(elapsed "$t0" "$(now)")")
done
cp_s=$(median "${cp_t[@]}")
sum cp_sync "$(calc "$data_bytes / 1e6 / $cp_s" 1) MB/s (cp -a + sync, median of ${cp_t[*]} s) [load $(load)]"

# ---- (d, first half) the same page changes for every run --------------------------------------

run_touch() {
    if ! "$bench" --touch-pages "$touch_pct" --seed "$seed" "$touched" >"$work/touch.out"; then
        fail "bench_store --touch-pages $touch_pct $touched failed"
    fi
}
run_touch
pages_changed=$(get pages_changed "$work/touch.out")
sum touch_pages "$pages_changed of $(get relation_pages "$work/touch.out") relation pages changed ($touch_pct%, seed $seed, 16 bytes each, in $(get files_changed "$work/touch.out") of $(get relation_files "$work/touch.out") files)"
if ((check)) && ((pages_changed < 1)); then fail "check: --touch-pages changed no page"; fi

# ---- (c) ingest -------------------------------------------------------------------------------

stores=$work/stores
mkdir -p "$stores"
declare -A mbs
for ((r = 1; r <= runs; r++)); do
    for lvl in 3 1; do
        st=$stores/level$lvl
        rm -rf "$st"
        sync
        extra=()
        if ((check && r == runs && lvl == 3)); then extra=(--verify --compare); fi
        run_bench "$work/ingest-l$lvl-r$r.out" --store "$st" --level "$lvl" --backup-id first \
            "${extra[@]}" "$data"
        out=$work/ingest-l$lvl-r$r.out
        mbs[$lvl]+=" $(get mb_per_s "$out")"
        check_eq "first backup (level $lvl) backups in store" 1 "$(get store_backups "$out")"
        if ((${#extra[@]})); then
            check_eq "verify after the first backup" clean "$(get verify "$out")"
            check_eq "read-back of the first backup" same "$(get compare "$out")"
        fi
        echo "# ingest level $lvl run $r: $(get mb_per_s "$out") MB/s, $(mb "$(get new_bytes "$out")") MB stored [load $(load)]"
        if [[ $lvl == 1 && $r -lt $runs ]]; then rm -rf "$st"; fi
    done
done
rm -rf "$stores/level1"
sum threads "$(get threads "$work/ingest-l3-r1.out") (bench_store --threads; default: the store's own)"
first3=$work/ingest-l3-r$runs.out
first1=$work/ingest-l1-r$runs.out
# shellcheck disable=SC2086
ingest3=$(median ${mbs[3]})
# shellcheck disable=SC2086
ingest1=$(median ${mbs[1]})
ratio3=$(calc "$ingest3 / $tar_mbs" 3) # the goals are judged on these, not on a rounder figure
ratio1=$(calc "$ingest1 / $tar_mbs" 3)
goal() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN { ok = (op == ">=") ? v >= g : v <= g; print ok ? "PASS" : "MISS" }'; }
sum store_ingest_level3 "$ingest3 MB/s (median of$(printf ' %s' ${mbs[3]}) MB/s), $(mb "$(get new_bytes "$first3")") MB of packs, $(mb "$(get store_bytes_after "$first3")") MB store dir, ratio $(get ratio_logical_per_new "$first3"), chunk $(($(get chunk_size_bytes "$first3") / 1024)) KiB, cpu/wall $(get cpu_per_wall "$first3")"
sum store_ingest_level1 "$ingest1 MB/s (median of$(printf ' %s' ${mbs[1]}) MB/s), $(mb "$(get new_bytes "$first1")") MB of packs, $(mb "$(get store_bytes_after "$first1")") MB store dir, ratio $(get ratio_logical_per_new "$first1")"
sum goal_ingest_vs_tar_zstd1_level3 "$ratio3 of tar|zstd -1 (goal >= 0.80, encryption on): $(goal "$ratio3" 0.80 '>=')"
sum goal_ingest_vs_tar_zstd1_level1 "$ratio1 of tar|zstd -1 (goal >= 0.80, encryption on): $(goal "$ratio1" 0.80 '>=')"
sum stored_vs_zstd1 "level 3: $(mb "$(get store_bytes_after "$first3")") MB against tar|zstd -1 $(mb "$zstd1_bytes") MB ($(calc "$(get store_bytes_after "$first3") / $zstd1_bytes" 2)x); level 1: $(mb "$(get store_bytes_after "$first1")") MB ($(calc "$(get store_bytes_after "$first1") / $zstd1_bytes" 2)x)"

# ---- (d) second backup after page changes -----------------------------------------------------

second=$work/second.out
run_bench "$second" --store "$stores/level3" --backup-id second --verify --compare "$touched"
added=$(get store_bytes_added "$second")
first_stored=$(get store_bytes_added "$first3")
pct2=$(calc "100 * $added / $first_stored" 3)
sum second_backup "$(mb "$added") MB added to the store dir ($(mb "$(get new_bytes "$second")") MB of packs, $(get new_chunks "$second") new chunks of $(get chunks "$second")) = $pct2% of the first backup's $(mb "$first_stored") MB; $(get mb_per_s "$second") MB/s"
sum goal_second_backup_added "$pct2% of the first (goal <= 10%): $(goal "$pct2" 10 '<=')"
sum verify_after_second "$(get verify "$second") ($(get verify_records "$second") records, $(get verify_chunk_refs "$second") chunk refs, $(get verify_s "$second") s); read-back of the second backup: $(get compare "$second") ($(get compare_mb_per_s "$second") MB/s)"
check_eq "backups in store after the second" 2 "$(get store_backups "$second")"
check_eq "verify after the second backup" clean "$(get verify "$second")"
check_eq "read-back of the second backup" same "$(get compare "$second")"
if ((check)) && ((added >= first_stored)); then
    fail "check: the second backup added $added bytes, not fewer than the first's $first_stored"
fi
rm -rf "$stores/level3"

# ---- (e) chunk size sweep ---------------------------------------------------------------------

table=()
if [[ $sizes != none ]]; then
    IFS=, read -r -a size_list <<<"$sizes"
    declare -A sw_mbs sw_mbs2
    for ((r = 1; r <= runs; r++)); do
        order=("${size_list[@]}")
        if ((r % 2 == 0)); then # every other run largest first, to spread drift over the sizes
            mapfile -t order < <(printf '%s\n' "${size_list[@]}" | tac)
        fi
        for kib in "${order[@]}"; do
            st=$stores/sweep-$kib
            rm -rf "$st"
            sync
            run_bench "$work/sweep-$kib-r$r-a.out" --store "$st" --chunk-size "$kib" --backup-id first "$data"
            run_bench "$work/sweep-$kib-r$r-b.out" --store "$st" --backup-id second "$touched"
            sw_mbs[$kib]+=" $(get mb_per_s "$work/sweep-$kib-r$r-a.out")"
            sw_mbs2[$kib]+=" $(get mb_per_s "$work/sweep-$kib-r$r-b.out")"
            check_eq "sweep $kib KiB: backups" 2 "$(get store_backups "$work/sweep-$kib-r$r-b.out")"
            echo "# sweep $kib KiB run $r: $(get mb_per_s "$work/sweep-$kib-r$r-a.out") MB/s, second added $(mb "$(get store_bytes_added "$work/sweep-$kib-r$r-b.out")") MB [load $(load)]"
            rm -rf "$st"
        done
    done
    table+=("| chunk KiB | 1st: packs MB | 1st: store dir MB | 1st: manifest MB | index entries | index data.mdb MB | 2nd: added MB | 2nd: added % of 1st | 2nd: packs MB | 2nd: manifest MB | 2nd: index growth MB | 2nd: new chunks | ingest MB/s (median, range) | 2nd backup MB/s |")
    table+=("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kib in "${size_list[@]}"; do
        a=$work/sweep-$kib-r$runs-a.out
        b=$work/sweep-$kib-r$runs-b.out
        a_added=$(get store_bytes_added "$a")
        b_added=$(get store_bytes_added "$b")
        # shellcheck disable=SC2086
        table+=("| $kib | $(mb "$(get new_bytes "$a")") | $(mb "$a_added") | $(calc "$(get manifest_bytes "$a") / 1e6" 2) | $(get index_entries "$a") | $(calc "$(get index_data_mdb_bytes "$a") / 1e6" 2) | $(mb "$b_added") | $(calc "100 * $b_added / $a_added" 2) | $(mb "$(get new_bytes "$b")") | $(calc "$(get manifest_bytes "$b") / 1e6" 2) | $(calc "$(get index_data_mdb_bytes_added "$b") / 1e6" 2) | $(get new_chunks "$b") | $(median ${sw_mbs[$kib]}) ($(minmax ${sw_mbs[$kib]})) | $(median ${sw_mbs2[$kib]}) |")
        if ((check)) && ((b_added >= a_added)); then
            fail "check: sweep $kib KiB: the second backup added $b_added bytes, not fewer than the first's $a_added"
        fi
    done
    sum sweep "$((${#size_list[@]})) chunk sizes x $runs runs, zstd level 3, the table below (sizes in 10^6 bytes; index figures after the first backup)"
fi

sum git_at_end "$(gitstate)"
sum load_at_end "$(load)"

# ---- summary ----------------------------------------------------------------------------------

{
    echo "---- summary ----"
    printf '%s\n' "${summary[@]}"
    if ((${#table[@]})); then printf "%s\n" "${table[@]}"; fi
    echo "---- end ----"
} | tee "$work/summary.txt"

if [[ -n $json_out ]]; then
    {
        echo "{"
        sep=" "
        for line in "${summary[@]}"; do
            k=${line%%: *}
            v=${line#*: }
            v=${v//\\/\\\\}
            v=${v//\"/\\\"}
            printf '%s "%s": "%s"\n' "$sep" "$k" "$v"
            sep=","
        done
        if ((${#table[@]})); then
            echo ", \"sweep_table\": ["
            sep=" "
            for kib in "${size_list[@]}"; do
                a=$work/sweep-$kib-r$runs-a.out
                b=$work/sweep-$kib-r$runs-b.out
                # shellcheck disable=SC2086
                printf '%s    {"chunk_kib": %s, "first_pack_bytes": %s, "first_store_bytes": %s, "index_entries": %s, "index_data_mdb_bytes": %s, "second_added_bytes": %s, "second_pack_bytes": %s, "second_manifest_bytes": %s, "second_index_growth_bytes": %s, "ingest_mb_per_s_median": %s, "second_mb_per_s_median": %s}\n' \
                    "$sep" "$kib" "$(get new_bytes "$a")" "$(get store_bytes_added "$a")" \
                    "$(get index_entries "$a")" "$(get index_data_mdb_bytes "$a")" \
                    "$(get store_bytes_added "$b")" "$(get new_bytes "$b")" \
                    "$(get manifest_bytes "$b")" "$(get index_data_mdb_bytes_added "$b")" \
                    "$(median ${sw_mbs[$kib]})" "$(median ${sw_mbs2[$kib]})"
                sep=","
            done
            echo "  ]"
        fi
        echo "}"
    } >"$json_out"
fi

if ((check)); then
    for k in git_at_start data_bytes tar_zstd1 cp_sync touch_pages store_ingest_level3 \
        store_ingest_level1 goal_ingest_vs_tar_zstd1_level3 stored_vs_zstd1 second_backup \
        goal_second_backup_added verify_after_second; do
        grep -q "^$k: " "$work/summary.txt" || fail "check: the summary has no $k line"
    done
    if [[ $sizes != none ]]; then
        [[ $(grep -c '^| [0-9]' "$work/summary.txt") -eq ${#size_list[@]} ]] ||
            fail "check: the summary's table does not have one row per chunk size"
    fi
    echo "store.sh: check passed"
fi
