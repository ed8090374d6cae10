#!/bin/bash
# Pilot of issue 16: train models side by side with `biasprobe train` on one GPU for MINUTES and
# measure the gap of every checkpoint as it is written (pilot_gap.py).
#   reports/zoo/pilot/pilot.sh OUT GPU MINUTES EVERY SPEC...    SPEC = family:preset:N[:compile]
# Needs the Fashion-MNIST IDX files where biasprobe finds them ($BIASPROBE_DATA_DIR).
set -u
out=$1; gpu=$2; minutes=$3; every=$4; shift 4
work=${PILOT_WORK:-/tmp/pilot}; mkdir -p "$work" "$out"
pids=(); checkpoints=()
for spec in "$@"; do
  IFS=: read -r family preset n compile <<< "$spec"
  name=$family-$preset-n$n
  CUDA_VISIBLE_DEVICES=$gpu python3 -m biasprobe_cli train "$family" --preset "$preset" --data fashion-mnist \
    --n-train "$n" -o "$work/$name.safetensors" --steps 1000000 --checkpoint-every "$every" \
    --max-minutes "$minutes" --device cuda --batch 64 ${compile:+--compile} > "$out/train-$name.log" 2>&1 &
  pids+=($!); checkpoints+=("$work/$name.safetensors")
done
CUDA_VISIBLE_DEVICES=$gpu python3 reports/zoo/pilot/pilot_gap.py "$out/pilot-gap-gpu$gpu.jsonl" --device cuda \
  --pids "$(IFS=,; echo "${pids[*]}")" "${checkpoints[@]}" > "$out/pilot-gap-gpu$gpu.log" 2>&1
wait
