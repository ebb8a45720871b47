#!/usr/bin/env bash
# Build Barque twice and run the suite: the -Werror build (RelWithDebInfo, what ships) runs
# the unit tests, the fuzz replays and the bench smoke tests; the AddressSanitizer +
# UndefinedBehaviorSanitizer build runs the unit, integration (real PostgreSQL 15, real
# daemons on loopback) and fuzz replay tests; then a short libFuzzer run of every fuzz
# target. Each test runs where it tells most: integration tests under the sanitizers (they
# once ran in both builds: 9 minutes more for nothing the sanitizers miss), benchmarks where
# the timing means something. Ends with one line "N passed, N failed".
#
#   BQ_JOBS=2           parallel ctest jobs (default 2)
#   BQ_FUZZ_SECONDS=10  libFuzzer time per target (0 skips the libFuzzer build)
#   BQ_SKIP_ASAN=1      skip the sanitizer build, and run the integration tests in the -Werror
#                       build instead (quicker local runs)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${BQ_JOBS:-2}
fuzz_seconds=${BQ_FUZZ_SECONDS:-10}
passed=0
failed=0
status=0

# run_ctest NAME BUILD_DIR LABEL_EXCLUDE CMAKE_ARGS...: configure, build, ctest without the
# tests whose label matches the regex LABEL_EXCLUDE ("" = all); add up the counts.
run_ctest() {
    local name=$1 dir=$2 exclude=$3 t0=$SECONDS
    shift 3
    echo "=== $name: configure and build in $dir"
    if ! cmake -S "$root" -B "$dir" "$@" >"$dir.cmake.log" 2>&1; then
        cat "$dir.cmake.log"
        echo "=== $name: configure FAILED"
        failed=$((failed + 1)); status=1; return
    fi
    if ! cmake --build "$dir" -j2 >"$dir.build.log" 2>&1; then
        grep -E "error|warning" "$dir.build.log" | head -50
        echo "=== $name: build FAILED (full log: $dir.build.log)"
        failed=$((failed + 1)); status=1; return
    fi
    echo "=== $name: ctest (built in $((SECONDS - t0)) s)"
    local out
    local filter=()
    [[ -z $exclude ]] || filter=(-LE "$exclude")
    out=$(cd "$dir" && ctest -j"$jobs" --output-on-failure --timeout 600 "${filter[@]}" 2>&1)
    local rc=$?
    echo "$out"
    local line p t
    line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" <<<"$out" | tail -1)
    if [[ $line =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
        t=${BASH_REMATCH[2]}
        p=$((t - BASH_REMATCH[1]))
        passed=$((passed + p))
        failed=$((failed + BASH_REMATCH[1]))
    else
        failed=$((failed + 1))
    fi
    ((rc == 0)) || status=1
    echo "=== $name: $((SECONDS - t0)) s in all"
}

mkdir -p build
if [[ ${BQ_SKIP_ASAN:-0} != 1 ]]; then
    run_ctest "werror" build/ci "^integration$" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBQ_WERROR=ON
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_ctest "asan+ubsan" build/asan "^bench$" -DCMAKE_BUILD_TYPE=Debug -DBQ_SANITIZE=ON
else
    run_ctest "werror" build/ci "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBQ_WERROR=ON
fi

if ((fuzz_seconds > 0)); then
    t0=$SECONDS
    echo "=== libFuzzer: build in build/fuzz"
    if CC=clang cmake -S "$root" -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DBQ_FUZZ=ON \
        >build/fuzz.cmake.log 2>&1 && cmake --build build/fuzz -j2 >build/fuzz.build.log 2>&1; then
        # $jobs targets at a time (each is one process on one core); results in target order
        fuzz_one() { # fuzz_one TARGET: runs it on a copy of its corpus; rc = libFuzzer's
            local f=$1 name work rc
            name=$(basename "$f")
            work=$(mktemp -d)
            cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
            "$f" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 "$work" \
                >"build/fuzz-$name.log" 2>&1
            rc=$?
            rm -rf "$work"
            echo "$rc" >"build/fuzz-$name.rc"
        }
        targets=()
        for f in build/fuzz/tests/fuzz/fuzz_*; do
            [[ -x $f ]] && targets+=("$f")
        done
        for ((i = 0; i < ${#targets[@]}; i += jobs)); do
            for f in "${targets[@]:i:jobs}"; do
                rm -f "build/fuzz-$(basename "$f").rc"
                fuzz_one "$f" &
            done
            wait
        done
        for f in "${targets[@]}"; do
            name=$(basename "$f")
            if [[ $(cat "build/fuzz-$name.rc" 2>/dev/null) == 0 ]]; then
                echo "libFuzzer $name: $(grep -Eo 'Done [0-9]+ runs' "build/fuzz-$name.log" | tail -1) in ${fuzz_seconds} s, no crash"
                passed=$((passed + 1))
            else
                tail -40 "build/fuzz-$name.log"
                echo "libFuzzer $name: FAILED (log build/fuzz-$name.log)"
                failed=$((failed + 1)); status=1
            fi
        done
    else
        tail -30 build/fuzz.build.log
        echo "libFuzzer build FAILED"
        failed=$((failed + 1)); status=1
    fi
    echo "=== libFuzzer: $((SECONDS - t0)) s in all"
fi

echo
echo "suite: $SECONDS s"
echo "${passed} passed, ${failed} failed"
exit $status
