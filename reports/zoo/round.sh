#!/bin/bash
# One GPU round of the paper zoo (docs/zoo.md): train the named models of paper-zoo.toml with
# `biasprobe sweep train` (PER_GPU worker processes per GPU, each model capped at MINUTES), while
# pilot/pilot_gap.py measures the gap of every checkpoint as it is written.
#   reports/zoo/round.sh OUT MINUTES PER_GPU NAME...
# Checkpoints go to $ZOO_WORK (default /tmp/zoo); logs and the gap rows (gap.jsonl) to OUT. ZOO_COMPILE
# (e.g. reduce-overhead: CUDA graphs) replaces the recipe's compile setting for this round.
set -u
out=$1; minutes=$2; per_gpu=$3; shift 3
work=${ZOO_WORK:-/tmp/zoo}; device=${ZOO_DEVICE:-cuda}
mkdir -p "$work" "$out"
# Start from what has landed: each model's bf16 weights and record (never its lost optimizer state);
# `sweep train` continues an unfinished model by a warm restart and leaves a finished one alone.
for name in "$@"; do
  for file in data/zoo/"$name".safetensors data/zoo/"$name".shard-* data/zoo/"$name".train.json; do
    [ -e "$file" ] && [ ! -e "$work/$(basename "$file")" ] && cp "$file" "$work/"
  done
done
python3 -m biasprobe_cli sweep train reports/zoo/paper-zoo.toml --only "$(IFS=,; echo "$*")" --output "$work" \
  --per-gpu "$per_gpu" --max-minutes "$minutes" ${ZOO_COMPILE:+--compile-mode "$ZOO_COMPILE"} > "$out/sweep.log" 2>&1 &
pid=$!
checkpoints=(); for name in "$@"; do checkpoints+=("$work/$name.safetensors"); done
python3 reports/zoo/pilot/pilot_gap.py "$out/gap.jsonl" --device "$device" --pids "$pid" "${checkpoints[@]}" \
  > "$out/gap.log" 2>&1
wait "$pid"
