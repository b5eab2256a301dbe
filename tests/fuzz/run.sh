#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer harnesses with clang and run each
# for a bounded time from the seed corpus in tests/fuzz/corpus/.
#
#   tests/fuzz/run.sh [SECONDS]     (default 30 per harness; FUZZ_SECONDS too)
#
# Harnesses: fmap (the .fmap reader and inspect), csv (the CSV importer,
# sorter and writer), diva (the DIVA raw-record importer). Needs clang with
# libFuzzer (Debian: clang libclang-rt-14-dev). New inputs found during a
# run go to a scratch directory, not into the committed corpus; a crash
# leaves its input in build-fuzz/ and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-${FUZZ_SECONDS:-30}}
out=build-fuzz
CC=${CC_FUZZ:-clang}

if ! command -v "$CC" >/dev/null; then
    echo "fuzz: $CC not found; install it: apt-get install clang libclang-rt-14-dev" >&2
    exit 2
fi
mkdir -p "$out"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    > "$probe/p.c"
if ! "$CC" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>/dev/null; then
    echo "fuzz: $CC cannot link -fsanitize=fuzzer; install libclang-rt-14-dev" >&2
    exit 2
fi

lib=(faultmaps/fmap.c faultmaps/fmap_file.c faultmaps/fmap_csv.c faultmaps/fmap_diva.c
     models/geometry.c sim/config.c sim/error.c)
flags=(-std=c17 -D_DEFAULT_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Wall -Wextra -Werror)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
for h in fmap csv diva; do
    echo "== fuzz $h: building"
    "$CC" "${flags[@]}" "tests/fuzz/fuzz_$h.c" "${lib[@]}" -lz -lyaml -lm -o "$out/fuzz_$h"
    scratch="$probe/corpus-$h"
    mkdir -p "$scratch" "$probe/tmp-$h"
    dict=()
    [ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")
    echo "== fuzz $h: ${seconds}s"
    if ! FUZZ_TMPDIR="$probe/tmp-$h" "$out/fuzz_$h" "${dict[@]}" -max_total_time="$seconds" \
            -max_len=4096 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
            -artifact_prefix="$out/crash-$h-" "$scratch" "tests/fuzz/corpus/$h" \
            > "$out/fuzz_$h.log" 2>&1; then
        echo "fuzz $h: FAILED (log: $out/fuzz_$h.log)" >&2
        tail -40 "$out/fuzz_$h.log" >&2
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/fuzz_$h.log" | tr '\n' ' '
        echo
    fi
done
exit $status
