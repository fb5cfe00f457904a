#!/usr/bin/env bash
# The GPU backend's speed on a real GPU, in one run, next to PyTorch with cuDNN on the same GPU:
#   1. builds impasto in release;
#   2. `impasto bench --device gpu` at 512 and 1024 px (s/iteration, GFLOP/s, GPU memory);
#   3. a 500-iteration L-BFGS transfer at 512 px on the GPU, timed end to end, and the same on
#      the CPU for 20 iterations (its per-iteration time, for scale);
#   4. the seed's PyTorch loop (bench/pytorch_baseline.py) on CUDA at 512 and 1024, and its
#      500-iteration L-BFGS run at 512, if torch with CUDA is importable.
# Nothing is timed in tests; this is the place. Prepared for a machine with an NVIDIA GPU (or any
# GPU with a Vulkan driver: steps 1-3 run on AMD, Intel or Apple too).
#
# usage: bench/gpu_device.sh [OUTDIR]      (PYTHON=... to choose the Python with torch)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$(mktemp -d)}
mkdir -p "$out"
python=${PYTHON:-python3}
log="$out/gpu_device.log"
exec > >(tee -a "$log") 2>&1

echo "== machine"
date -u
lscpu | grep 'Model name' || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "(no nvidia-smi)"
vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName|apiVersion' || echo "(no vulkaninfo)"

echo "== build (release)"
(cd "$root" && cargo build --release -p impasto-cli) || exit 1
impasto="$root/target/release/impasto"

echo "== impasto bench --device gpu"
for size in 512 1024; do
    "$impasto" bench --device gpu --size "$size" --iterations 10
done

echo "== samples and weights"
"$impasto" samples fetch --dir "$out/samples"
"$impasto" weights fetch

echo "== a 500-iteration transfer at 512 px on the GPU (whole run, with loading)"
start=$(date +%s.%N)
"$impasto" transfer --device gpu --content "$out/samples/quokka.jpg" \
    --style "$out/samples/girl-with-a-pearl-earring.jpg" --output "$out/quokka-gpu-512.png" \
    --size 512 --iterations 500 --loss-log "$out/losses-gpu-512.csv"
end=$(date +%s.%N)
echo "gpu transfer 512 px 500 iterations: $(echo "$end - $start" | bc) s wall"

echo "== the CPU engine for scale: 20 iterations at 512 px"
start=$(date +%s.%N)
"$impasto" transfer --device cpu --content "$out/samples/quokka.jpg" \
    --style "$out/samples/girl-with-a-pearl-earring.jpg" --output "$out/quokka-cpu-512.png" \
    --size 512 --iterations 20
end=$(date +%s.%N)
echo "cpu transfer 512 px 20 iterations: $(echo "$end - $start" | bc) s wall"

echo "== PyTorch on CUDA (the seed's loop)"
if "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for size in 512 1024; do
        "$python" "$here/pytorch_baseline.py" --device cuda --size "$size" --runs 10 \
            $([ "$size" = 512 ] && echo --lbfgs 500)
    done
else
    echo "(torch with CUDA not importable by $python: PyTorch comparison skipped)"
fi
echo "== log: $log"
