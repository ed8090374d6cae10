#!/bin/bash
# Issue 11's open GPU measurements, on one GPU, as two calls of about 9 minutes each (docs/benchmarks.md,
# "Prepared for the next device time"). From the repository root, on a machine with torch and a GPU:
#
#   tests/benchmarks/training_gpu.sh unets OUT   # bias-free and DDPM UNets: CUDA graphs, the whole step compiled,
#                                                # channels-last; where the DDPM UNet's step time goes
#   tests/benchmarks/training_gpu.sh dits OUT    # DiT-XS with padded products and at width 256, DiT-S and the zoo
#                                                # DiT with the whole step compiled; DiT-XS's profile; several
#                                                # CUDA-graph processes per GPU, with and without MPS
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
  timeout "$seconds" python "$B" --device cuda --seconds 3 --warmup 3 --budget $((seconds - 90)) \
    --tag "$tag" --out "$out" "$@" >"$out/$tag.log" 2>&1
  echo "== $tag (exit $?)"
  tail -n 25 "$out/$tag.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
case $call in
unets)
  stage unets 330 --models unet-bf-default,unet-ddpm-default \
    --paths new,compiled-reduce-overhead,compiled-reduce-overhead+step,compiled-reduce-overhead+cl \
    --cl-models unet-ddpm-default --profile unet-ddpm-default:compiled-reduce-overhead
  stage unets-zoo 180 --models unet-ddpm-zoo,unet-bf-small --paths new,compiled-reduce-overhead
  ;;
dits)
  stage dits 330 --models dit-xs,dit-xs-w256,dit-s,dit-zoo \
    --paths compiled-reduce-overhead,compiled-reduce-overhead+pad,compiled-reduce-overhead+step \
    --compile-models dit-xs,dit-xs-w256,dit-s,dit-zoo --profile dit-xs:compiled-reduce-overhead
  TORCHINDUCTOR_COMPILE_THREADS=4 stage procs-graphs 210 --procs dit-zoo:1,4,8 \
    --procs-path compiled-reduce-overhead --mps --procs-timeout 120
  ;;
*)
  echo "unknown call $call: unets or dits" >&2
  exit 2
  ;;
esac
