#!/usr/bin/env bash
# The comparison bench: is_prime 2M on 1 driver + 2 workers against the
# local Pool with 2 workers; per-chunk overhead over shared memory and TCP
# against MPI's own ping-pong; Pod chunks in place against as messages.
# Usage: bash crates/shmproc-mpi/benches/run.sh [runs]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-15}"
cargo build --release --bin shmproc-mpi-bench
bin=../../target/mpi/release/shmproc-mpi-bench
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { timeout -k 10 600 mpirun --oversubscribe "$@"; }
echo "# load: $(uptime)"
"$bin" local-isprime "$runs"
mpi -np 3 --mca btl vader,self "$bin" isprime "$runs"
"$bin" local-isprime "$runs"
mpi -np 3 --mca btl vader,self "$bin" isprime "$runs"
echo "# shared memory (vader)"
mpi -np 2 --mca btl vader,self "$bin" overhead
echo "# TCP only (loopback: the stand-in for a second machine)"
mpi -np 2 --mca btl tcp,self "$bin" overhead
mpi -np 3 --mca btl vader,self "$bin" pod 5
echo "# load: $(uptime)"
