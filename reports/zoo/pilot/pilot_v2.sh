#!/bin/bash
# Zoo v2 pilot (issue 26; docs/zoo.md "Zoo v2 pilot"): DiTs of several widths trained side by side on one
# GPU by `biasprobe train`'s fastest path (CUDA graphs, loss and EMA compiled: --compile-mode reduce-overhead
# --compile-scope step), while pilot_gap.py measures the paper's gap of every checkpoint as it is written.
# The run is detached (setsid), so it outlives the call that starts it and a second call can collect it:
#
#   reports/zoo/pilot/pilot_v2.sh start WORK MINUTES EVERY SPEC...   # SPEC = preset:N, e.g. zoo256:1000
#   reports/zoo/pilot/pilot_v2.sh collect WORK OUT SECONDS           # wait ≤ SECONDS for the end; copy rows + logs
#
# Needs Fashion-MNIST where biasprobe finds it ($BIASPROBE_DATA_DIR) and `python3 -m biasprobe_cli`.
set -u
verb=$1; work=$2; shift 2
case $verb in
start)
  minutes=$1; every=$2; shift 2
  mkdir -p "$work"
  pids=(); checkpoints=()
  for spec in "$@"; do
    IFS=: read -r preset n <<< "$spec"
    name=dit-$preset-n$n
    TORCHINDUCTOR_COMPILE_THREADS=4 setsid python3 -m biasprobe_cli train dit --preset "$preset" \
      --data fashion-mnist --n-train "$n" -o "$work/$name.safetensors" --steps 1000000 --checkpoint-every "$every" \
      --max-minutes "$minutes" --device cuda --batch 64 --compile-mode reduce-overhead --compile-scope step \
      > "$work/train-$name.log" 2>&1 < /dev/null &
    pids+=($!); checkpoints+=("$work/$name.safetensors")
  done
  echo "${pids[*]}" > "$work/pids"
  setsid python3 "$(dirname "$0")/pilot_gap.py" "$work/gap.jsonl" --device cuda --tf32 \
    --pids "$(IFS=,; echo "${pids[*]}")" "${checkpoints[@]}" > "$work/gap.log" 2>&1 < /dev/null &
  echo $! > "$work/gap.pid"
  setsid nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 > "$work/smi.csv" 2>&1 < /dev/null &
  echo "started ${#pids[@]} models: ${pids[*]}"
  ;;
collect)
  out=$1; seconds=$2
  end=$(( $(date +%s) + seconds ))
  while kill -0 "$(cat "$work/gap.pid")" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
  kill -0 "$(cat "$work/gap.pid")" 2>/dev/null && echo "still running" || echo "finished"
  cp "$work/gap.jsonl" "$out/" 2>/dev/null
  tail -n 400 "$work/gap.log" > "$out/gap.log"
  (cd "$work" && for f in train-*.log; do echo "== $f"; grep -v '^\s*$' "$f" | tail -n 25; done) > "$out/train-logs.txt"
  (cd "$work" && python3 - <<'EOF'
import glob, json
from biasprobe.checkpoints import read_checkpoint
rows = {}
for path in sorted(p for p in glob.glob("*.safetensors") if ".shard-" not in p):
    t = read_checkpoint(path).training
    rows[path] = {k: v if not isinstance(v, list) or len(v) < 20 else v[-20:] for k, v in t.items()}
print(json.dumps(rows, indent=1))
EOF
  ) > "$out/records.json" 2>&1
  cp "$work/smi.csv" "$out/" 2>/dev/null
  cat "$out/gap.log" | tail -n 40
  ;;
*) echo "start or collect" >&2; exit 2 ;;
esac
