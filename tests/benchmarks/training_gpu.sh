#!/bin/bash
# Issue 11's GPU measurements, on one GPU, as two calls of at most 9 minutes each (docs/benchmarks.md,
# "Issue 11's last readings: one H100"). From the repository root, on a machine with torch and a GPU:
#
#   tests/benchmarks/training_gpu.sh unets OUT   # bias-free and DDPM UNets: CUDA graphs, loss and EMA compiled too,
#                                                # channels-last; where the DDPM UNet's step time goes
#   tests/benchmarks/training_gpu.sh dits OUT    # DiT-XS with padded products and at width 256, DiT-XS's profile;
#                                                # the zoo DiT with the loss and EMA compiled too; 4 and 8 CUDA-graph
#                                                # processes per GPU (add --mps to that stage for MPS: +2.5 min)
#
# Each stage writes its JSON after every case (OUT/training-cuda-TAG.json) and its log (OUT/TAG.log); a stage
# past its time starts no new case (--budget) and is stopped by `timeout`, keeping what it measured.
set -uo pipefail
call=${1:?unets or dits}
out=${2:?output folder}
mkdir -p "$out"
B=tests/benchmarks/bench_training.py
export PYTHONUNBUFFERED=1
stage() {  # stage TAG SECONDS ARGS...: one benchmark process, its log beside its JSON
  local tag=$1 seconds=$2
  shift 2
  timeout -k 10 "$seconds" python "$B" --device cuda --seconds 3 --warmup 3 --budget $((seconds - 60)) \
    --tag "$tag" --out "$out" "$@" >"$out/$tag.log" 2>&1
  echo "== $tag (exit $?)"
  tail -n 25 "$out/$tag.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
case $call in
unets)  # at most 8.5 minutes
  stage bf 165 --models unet-bf-default --paths previous,new,compiled-reduce-overhead,compiled-reduce-overhead+step
  stage ddpm 240 --models unet-ddpm-default \
    --paths new,compiled-reduce-overhead,compiled-reduce-overhead+step,compiled-reduce-overhead+cl \
    --profile unet-ddpm-default:compiled-reduce-overhead
  stage unets-zoo 95 --models unet-ddpm-zoo,unet-bf-small --paths new,compiled-reduce-overhead
  ;;
dits)  # at most 9 minutes
  stage dit-xs 160 --models dit-xs --paths compiled-reduce-overhead,compiled-reduce-overhead+pad \
    --profile dit-xs:compiled-reduce-overhead
  stage dit-xs-w256 80 --models dit-xs-w256 --paths compiled-reduce-overhead
  stage dit-zoo 110 --models dit-zoo --paths compiled-reduce-overhead,compiled-reduce-overhead+step
  # one CUDA-graph process alone is the dit-zoo stage's compiled-reduce-overhead row
  TORCHINDUCTOR_COMPILE_THREADS=4 stage procs-graphs 190 --procs dit-zoo:4,8 \
    --procs-path compiled-reduce-overhead --procs-timeout 100
  ;;
*)
  echo "unknown call $call: unets or dits" >&2
  exit 2
  ;;
esac
