#!/bin/sh
# replay_10m.sh - peak memory and time of replaying a 10-million-fault map.
#
#   bench/replay_10m.sh [BUILD_DIR] [FAULTS]     (defaults: build, 10000000)
#
# Run from the repository root after `ninja -C BUILD_DIR` (a release build:
# meson's default here). It compiles bench/make_fmap.c against the build's
# core library, writes a map of FAULTS faults spread evenly over the default
# DDR4 8 GiB geometry (all five kinds, one in seven with a time window;
# 44 MB), then measures with /usr/bin/time -v:
#   1. apxsim fmap inspect of the map (streams: one frame at a time);
#   2. apxsim replay of the map on workloads/zoo/fmnist-fc.bnn, 1000 test
#      images: the device reads the map once at create (checks it, hashes its
#      faults) and once at prepare, keeping only the faults that land in the
#      model's weights (730 of 10 M at base 0), so its peak memory does
#      not grow with the map (about 10 MB of it is the model, the images
#      and SQLite; the map adds one frame, about 3 MB).
# Prints wall time and maximum resident set size of each. Needs the
# Fashion-MNIST test set (Debian's dataset-fashion-mnist or
# APXSIM_FASHION_MNIST) and /usr/bin/time (Debian package `time`).
# Files go to a temporary folder that is removed at the end.
#
# Measured on the 2-core development machine (release build, 10 M faults):
#
#   step                            wall     peak RSS
#   write the map (make_fmap)       0.18 s     1.9 MB
#   apxsim fmap inspect             0.6 s      7.2 MB
#   apxsim replay, 1000 images      0.5-0.7 s 13.0 MB
#   apxsim replay, 1 image          0.5 s     12.1 MB
#   replay before prepare existed   1.4 s    334 MB   (every fault loaded at create)
set -eu
build=${1:-build}
faults=${2:-10000000}
apxsim=$build/apxsim
[ -x "$apxsim" ] || { echo "no $apxsim: build first (ninja -C $build)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

libs=$(pkg-config --libs sqlite3 yaml-0.1 zlib openblas)
cc -std=c17 -O2 -D_DEFAULT_SOURCE -I. -I"$build" bench/make_fmap.c \
   "$build/libapxsim_core.a" $libs -lm -lpthread -o "$tmp/make_fmap"

measure() {  # label, command...
    label=$1
    shift
    /usr/bin/time -v "$@" >"$tmp/out" 2>"$tmp/time" || {
        cat "$tmp/out" "$tmp/time" >&2
        exit 1
    }
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tmp/time")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tmp/time")
    user=$(sed -n 's/.*User time (seconds): //p' "$tmp/time")
    printf '%-28s wall %8s  user %6ss  peak RSS %7.1f MB\n' "$label" "$wall" "$user" \
           "$(echo "$rss / 1024" | bc -l)"
}

measure "write $faults faults" "$tmp/make_fmap" "$tmp/big.fmap" "$faults"
ls -l "$tmp/big.fmap" | awk '{ printf "map size                     %.1f MB\n", $5 / 1e6 }'
measure "fmap inspect" "$apxsim" fmap inspect "$tmp/big.fmap"
measure "replay, 1000 images" "$apxsim" replay "$tmp/big.fmap" \
        --model workloads/zoo/fmnist-fc.bnn --limit 1000 --threads 2 -q -o "$tmp/x.db"
sqlite3 -separator ' ' "$tmp/x.db" "SELECT 'faults in the weights       ', faults_injected,
    ' accuracy', printf('%.3f', 1.0 * n_correct / n_samples) FROM evaluations" || true
measure "replay, weights only" "$apxsim" replay "$tmp/big.fmap" \
        --model workloads/zoo/fmnist-fc.bnn --limit 1 --threads 1 -q -o "$tmp/y.db"
