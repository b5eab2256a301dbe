#!/bin/sh
# dram_fmap.sh - time of drawing the DDR4 fault map of the FC model's weights.
#
#   bench/dram_fmap.sh [BUILD_DIR] [CHIPS]     (defaults: build, 200)
#
# Run from the repository root after `ninja -C BUILD_DIR` (a release build:
# meson's default here). Compiles bench/dram_fmap.c against the build's core
# library and times, on workloads/zoo/fmnist-fc.bnn (784-2048-2048-10,
# 5.82 M weight bits):
#   1. configs/devices/ddr4-2400-8gb-x8.yaml at tRCD 10.1 ns (other knobs
#      nominal), where the median chip fails ~1e-3 of the weight bits;
#   2. the same at tRCD 10.4 ns (~2e-4);
#   3. the uniform device at ber 1e-3, the floor of any nested draw.
# docs/dram-errors.md records what it printed.
set -eu
build=${1:-build}
chips=${2:-200}
[ -f "$build/libapxsim_core.a" ] || { echo "no $build/libapxsim_core.a: build first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
libs=$(pkg-config --libs sqlite3 yaml-0.1 zlib openblas)
cc -std=c17 -O2 -D_DEFAULT_SOURCE -I. -I"$build" bench/dram_fmap.c \
   "$build/libapxsim_core.a" $libs -lm -lpthread -o "$tmp/dram_fmap"
model=workloads/zoo/fmnist-fc.bnn
"$tmp/dram_fmap" configs/devices/ddr4-2400-8gb-x8.yaml $model trcd=10.1 "$chips"
echo
"$tmp/dram_fmap" configs/devices/ddr4-2400-8gb-x8.yaml $model trcd=10.4 "$chips"
echo
"$tmp/dram_fmap" configs/devices/uniform.yaml $model ber=1e-3 "$chips"
