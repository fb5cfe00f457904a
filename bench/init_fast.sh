#!/usr/bin/env bash
# Starting the optimiser from the instant stylisation ("fast": `impasto stylize` at the run's
# size, then `transfer --init` that file; what `transfer --init fast` did before it was removed
# for losing this comparison) against starting from the photo (the default), as README's table
# reports them: for each photo + painting pair, both starts run the same 500 L-BFGS iterations at
# 512 px with a loss log, side by side (one thread each, at the same time, so a noisy machine
# slows both alike). Then, per pair: the loss 500 iterations from the photo reach, the time each
# start needs to reach it (from the start of its first process, so the fast start pays for
# loading the instant models and stylising) and each one's loss at 60 s.
#
# usage: bench/init_fast.sh [OUT_DIR]   (IMPASTO: the binary, default target/release/impasto;
#        SHARED: the shared images, default ../shared/images; THREADS per run, default 1)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
impasto=${IMPASTO:-$here/../target/release/impasto}
images=${SHARED:-$here/../../shared/images}
threads=${THREADS:-1}
out=${1:-init-fast}
mkdir -p "$out"
lscpu | grep -m1 'Model name' || true
pairs=("tubingen starry_night" "golden_gate the_scream")
run() { # photo painting start(content|fast)
    local name="$out/$1-$2-$3"
    rm -f "$name.csv" "$name.png" "$name-instant.png"
    local t0 t1 init=content
    t0=$(date +%s.%N)
    if [ "$3" = fast ]; then
        "$impasto" stylize --content "$images/$1.jpg" --style "$images/$2.jpg" --size 512 \
            --threads "$threads" --output "$name-instant.png" >/dev/null
        init="$name-instant.png"
    fi
    "$impasto" transfer --content "$images/$1.jpg" --style "$images/$2.jpg" \
        --size 512 --iterations 500 --init "$init" --threads "$threads" --quiet \
        --loss-log "$name.csv" --output "$name.png"
    t1=$(date +%s.%N)
    # The loss log's clock starts at the first evaluation; what came before it (loading,
    # targets, and for `fast` the instant stylisation) is the wall time not in the log.
    echo "$t0 $t1" >"$name.wall"
}
for pair in "${pairs[@]}"; do
    read -r photo painting <<<"$pair"
    run "$photo" "$painting" content &
    content=$!
    run "$photo" "$painting" fast &
    fast=$!
    wait "$content"
    wait "$fast"
done
python3 - "$out" "${pairs[@]}" <<'EOF'
import csv, sys
out, pairs = sys.argv[1], [p.split() for p in sys.argv[2:]]
def load(name):
    rows = list(csv.DictReader(open(f"{out}/{name}.csv")))
    t0, t1 = map(float, open(f"{out}/{name}.wall").read().split())
    # Wall time before the first logged evaluation: the process's time not covered by the log.
    lead = (t1 - t0) - float(rows[-1]["elapsed_s"])
    return [(lead + float(r["elapsed_s"]), float(r["total"])) for r in rows], lead
print("| pair | start | time before the first iteration | loss after 500 its | time to the content start's 500-it loss | loss at 60 s |")
print("| --- | --- | --- | --- | --- | --- |")
for photo, painting in pairs:
    runs = {s: load(f"{photo}-{painting}-{s}") for s in ("content", "fast")}
    target = runs["content"][0][-1][1]
    for s, (log, lead) in runs.items():
        reach = next((t for t, l in log if l <= target), None)
        at60 = [l for t, l in log if t <= 60.0]
        print(f"| {photo} + {painting} | {s} | {lead:.1f} s | {log[-1][1]:.4g} | "
              f"{'%.1f s' % reach if reach is not None else 'not reached'} | "
              f"{'%.4g' % at60[-1] if at60 else '-'} |")
EOF
