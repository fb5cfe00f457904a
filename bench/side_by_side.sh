#!/usr/bin/env bash
# impasto's engine next to PyTorch's on the same work, in one run: for each size, `impasto bench`
# and then bench/pytorch_baseline.py, each in its own process (so each peak RSS is its own), on
# the same number of threads. Machines are noisy: compare numbers from one run only.
#
# usage: PYTHON=/path/to/venv/bin/python bench/side_by_side.sh [SIZE...]   (default 256 512 1024)
# The venv needs torch (CPU); impasto must be built: cargo build --release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
impasto=${IMPASTO:-$here/../target/release/impasto}
threads=${THREADS:-2}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(256 512 1024)
for size in "${sizes[@]}"; do
    echo "== ${size}x${size}, ${threads} threads"
    "$impasto" bench --size "$size" --threads "$threads" | grep -E "^(forward|peak)"
    "$python" "$here/pytorch_baseline.py" --size "$size" --threads "$threads" | grep -vE "^#"
done
