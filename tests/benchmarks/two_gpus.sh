#!/bin/bash
# Issue 14's two-GPU measurement (docs/benchmarks.md, "Two GPUs"), in about 8 minutes on a machine with
# two GPUs, Fashion-MNIST (BIASPROBE_DATA_DIR or the Debian package) and biasprobe importable:
#   1. a zoo recipe (four zoo DiTs of reports/zoo/paper-zoo.toml, trained from scratch in a scratch folder)
#      for MINUTES on one GPU (four workers) and on two (two workers each): steps done in all;
#   2. one model (DiT zoo, N = 1000, global batch 128, eager) for SECONDS on one GPU and under torchrun
#      (NCCL) on two: steps/s from the checkpoints' steps_done.
#   tests/benchmarks/two_gpus.sh OUT [MINUTES=2.5] [SECONDS=60]        → OUT/two_gpus.json and logs
set -u
out=$1; minutes=${2:-2.5}; seconds=${3:-60}
mkdir -p "$out"; work=$(mktemp -d)
names=dit-n1000,dit-local-n1000,dit-n10000,dit-local-n10000
cli="python3 -m biasprobe_cli"
CUDA_VISIBLE_DEVICES=0 $cli sweep train reports/zoo/paper-zoo.toml --only $names --output "$work/zoo-1gpu" \
  --per-gpu 4 --max-minutes "$minutes" > "$out/zoo-1gpu.log" 2>&1
$cli sweep train reports/zoo/paper-zoo.toml --only $names --output "$work/zoo-2gpu" \
  --per-gpu 2 --max-minutes "$minutes" > "$out/zoo-2gpu.log" 2>&1
one=(train dit --preset zoo --data fashion-mnist --n-train 1000 --steps 1000000 --batch 128 --device cuda
     --max-minutes "$(python3 -c "print($seconds / 60)")")
CUDA_VISIBLE_DEVICES=0 $cli "${one[@]}" -o "$work/one.safetensors" > "$out/one-gpu.log" 2>&1
torchrun --standalone --nproc_per_node 2 -m biasprobe_cli "${one[@]}" -o "$work/two.safetensors" \
  > "$out/two-gpus.log" 2>&1
python3 - "$work" "$out" "$minutes" "$seconds" <<'PY'
import json, sys
from pathlib import Path
from biasprobe.checkpoints import read_checkpoint
work, out, minutes, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
result = {"recipe_minutes_per_model": minutes, "model_seconds": seconds}
for run in ("zoo-1gpu", "zoo-2gpu"):
    manifest = work / run / "manifest.json"
    entries = json.loads(manifest.read_text())["checkpoints"] if manifest.exists() else []
    result[run] = {"steps_done": sum(e["steps_done"] for e in entries), "models": len(entries)}
for run in ("one", "two"):
    path = work / f"{run}.safetensors"
    result[f"model-{run}-gpu"] = {"steps_done": read_checkpoint(path).training.get("steps_done") if path.exists() else None}
if result["zoo-1gpu"]["steps_done"]:
    result["zoo_speedup"] = result["zoo-2gpu"]["steps_done"] / result["zoo-1gpu"]["steps_done"]
one, two = (result[f"model-{r}-gpu"]["steps_done"] for r in ("one", "two"))
if one and two:
    result["model_speedup"] = two / one
(out / "two_gpus.json").write_text(json.dumps(result, indent=1))
print(json.dumps(result, indent=1))
PY
rm -rf "$work"
