#!/usr/bin/env bash
# mpi_test.sh APXSIM APXSIM_MPI SOURCE_ROOT WORK_DIR
#
# The MPI front end gives the rows of a single-process sweep: a sweep of the
# shipped model workloads/zoo/fmnist-fc.bnn on 200 synthetic Fashion-MNIST-
# format images (3 bit error rates x 2 chips) run by `mpirun -n 2 apxsim-mpi`
# and by `apxsim sweep` must store identical evaluations. Exits 77 (skipped)
# if mpirun is absent.
set -euo pipefail
apxsim=$1 apxsim_mpi=$2 src=$3 work=$4

if ! command -v mpirun >/dev/null 2>&1; then
    echo "mpirun not found: skipping the MPI test"
    exit 77
fi
# CI containers run as root on few cores (shared facts peers.md 4.2).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Under AddressSanitizer (.ci/run), OpenMPI's own libraries and plugins leak
# at exit in ways LeakSanitizer cannot suppress by name (unloaded modules), so
# leak checking is off for the MPI ranks only; other ASan checks stay on.
mpirun=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
        mpirun --allow-run-as-root --oversubscribe -n 2)

rm -rf "$work"
mkdir -p "$work/data"
python3 - "$work/data" <<'PY'
import gzip, random, struct, sys
rnd = random.Random(7)
for split in ("t10k", "train"):
    n = 200
    with gzip.open(f"{sys.argv[1]}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        f.write(bytes(rnd.randrange(256) for _ in range(n * 784)))
    with gzip.open(f"{sys.argv[1]}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n))
        f.write(bytes(rnd.randrange(10) for _ in range(n)))
PY

cat > "$work/sweep.yaml" <<YAML
name: mpi-test
seed: 3
chips: 2
output: $work/unused.db
workload:
  name: fmnist-fc
  model: $src/workloads/zoo/fmnist-fc.bnn
  data_dir: $work/data
  limit: 200
device:
  kind: uniform
operating_points:
  ber: [0, 0.01, 0.1]
YAML

sql='SELECT eval_key, chip, n_correct, faults_injected, bits_changed FROM evaluations ORDER BY eval_key'

"$apxsim" sweep "$work/sweep.yaml" -o "$work/single.db" --threads 2 -q
"${mpirun[@]}" "$apxsim_mpi" "$work/sweep.yaml" -o "$work/mpi.db" --threads 1

"$apxsim" query "$work/single.db" --sql "$sql" --format csv > "$work/single.csv"
"$apxsim" query "$work/mpi.db" --sql "$sql" --format csv > "$work/mpi.csv"

rows=$(($(wc -l < "$work/single.csv") - 1))
if [ "$rows" -ne 6 ]; then
    echo "FAIL: expected 6 evaluations in the single-process database, got $rows"
    exit 1
fi
for r in 0 1; do
    [ -f "$work/mpi.db.shard-$r-of-2" ] || { echo "FAIL: no shard file of rank $r"; exit 1; }
done
if ! diff -u "$work/single.csv" "$work/mpi.csv"; then
    echo "FAIL: the MPI sweep's rows differ from the single-process sweep's"
    exit 1
fi

# An error on one rank's input (a config that does not exist) fails every rank.
if "${mpirun[@]}" "$apxsim_mpi" "$work/missing.yaml" -o "$work/bad.db" 2>/dev/null; then
    echo "FAIL: apxsim-mpi succeeded on a missing config"
    exit 1
fi
[ ! -e "$work/bad.db" ] || { echo "FAIL: a merged database was written after an error"; exit 1; }

echo "ok: $rows evaluations, 2 ranks = 1 process"
rm -rf "$work"
