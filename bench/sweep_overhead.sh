#!/usr/bin/env bash
# bench/sweep_overhead.sh - how much of a large sweep's time goes to anything
# but evaluating: a sweep of 10,000 jobs (100 BER points x 100 chips of the
# uniform device on the shipped FC model, IMAGES test images per job) on all
# cores, then the time split apxsim sweep prints (inference, fault maps, cost
# model, other = planning, store and scheduling). Issue 8 asks for other
# < 5 % with fault maps excepted.
#
#   bench/sweep_overhead.sh [BUILD_DIR] [IMAGES] [CHIPS]
#
# Defaults: build, 1000 images per job, 100 chips (10,000 jobs; about 3 min
# on 2 cores with the AVX-512 kernel). Run from the repository root.
set -euo pipefail
build=${1:-build}
images=${2:-1000}
chips=${3:-100}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bers=$(python3 -c 'print(", ".join("%.6g" % (10 ** (-5 + 4 * i / 99)) for i in range(100)))')
cat >"$tmp/sweep.yaml" <<YAML
name: overhead
seed: 1
chips: $chips
output: $tmp/overhead.db
workload:
  model: workloads/zoo/fmnist-fc.bnn
  limit: $images
device:
  kind: uniform
operating_points:
  ber: [$bers]
YAML
"$build/apxsim" check "$tmp/sweep.yaml" | grep -E "plan|estimate"
"$build/apxsim" sweep "$tmp/sweep.yaml" | sed -n '1,2p'
echo "database: $(du -h "$tmp/overhead.db" | cut -f1), $(sqlite3 "$tmp/overhead.db" 'SELECT count(*) FROM evaluations') evaluations"
