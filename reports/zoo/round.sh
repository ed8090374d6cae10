#!/bin/bash
# One GPU round of a zoo recipe (docs/zoo.md): train the named models with `biasprobe sweep train` (PER_GPU
# worker processes per GPU, each model capped at MINUTES).
#   reports/zoo/round.sh OUT MINUTES PER_GPU NAME...
# ZOO_RECIPE: the recipe (default reports/zoo/paper-zoo.toml, zoo v1; zoo v2: reports/zoo/paper-zoo-v2.toml),
# ZOO_LANDED: where its landed weights lie (default data/zoo; v2: data/zoo/v2). Checkpoints go to $ZOO_WORK
# (default /tmp/zoo); logs to OUT. A recipe that measures the gap of its checkpoints itself (gap_images, zoo v2)
# keeps it in each record; for v1, pilot/pilot_gap.py measures every checkpoint beside the run (gap.jsonl in
# OUT; ZOO_GAP_MONITOR=0 turns it off). ZOO_COMPILE (e.g. reduce-overhead: CUDA graphs) replaces the recipe's
# compile setting for this round.
set -u
out=$1; minutes=$2; per_gpu=$3; shift 3
work=${ZOO_WORK:-/tmp/zoo}; device=${ZOO_DEVICE:-cuda}
recipe=${ZOO_RECIPE:-reports/zoo/paper-zoo.toml}; landed=${ZOO_LANDED:-data/zoo}
monitor=${ZOO_GAP_MONITOR:-$(grep -q '^gap_images *= *[1-9]' "$recipe" && echo 0 || echo 1)}
mkdir -p "$work" "$out"
# Start from what has landed: each model's bf16 weights and record (never its lost optimizer state);
# `sweep train` continues an unfinished model by a warm restart and leaves a finished one alone.
for name in "$@"; do
  for file in "$landed/$name".safetensors "$landed/$name".shard-* "$landed/$name".train.json "$landed/$name".gaps.json "$landed/$name".safetensors.diverged.json; do
    [ -e "$file" ] && [ ! -e "$work/$(basename "$file")" ] && cp "$file" "$work/"
  done
done
python3 -m biasprobe_cli sweep train "$recipe" --only "$(IFS=,; echo "$*")" --output "$work" \
  --per-gpu "$per_gpu" --max-minutes "$minutes" ${ZOO_COMPILE:+--compile-mode "$ZOO_COMPILE"} > "$out/sweep.log" 2>&1 &
pid=$!
if [ "$monitor" = 1 ]; then
  checkpoints=(); for name in "$@"; do checkpoints+=("$work/$name.safetensors"); done
  python3 reports/zoo/pilot/pilot_gap.py "$out/gap.jsonl" --device "$device" --pids "$pid" "${checkpoints[@]}" \
    > "$out/gap.log" 2>&1
fi
wait "$pid"
