#!/bin/bash
# A zoo v2 round held over several calls of one lent machine (docs/zoo.md, "The next GPU call"): `start` sets up,
# starts remote_round.sh in its own process session from a copy of the tree in /tmp/repo (it outlives the call
# while the machine stays warm) and collects; `collect`, in each later call issued at once, waits up to WAIT
# seconds (or until the round ends) and puts every model's current bf16 weights, record and NAME.gaps.json into
# $OUT (xz tars, two models each), with the logs, printing each model's gap rows.
#   reports/zoo/remote_held.sh start TAG MINUTES PER_GPU WAIT NAME...      (from the repository's root, .gpu carried)
#   reports/zoo/remote_held.sh collect TAG WAIT
set -u
mode=$1; shift
if [ "$mode" = start ]; then
  tag=$1; minutes=$2; per_gpu=$3; wait_s=$4; shift 4
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
  rm -rf /tmp/repo && mkdir -p /tmp/repo/reports/zoo /tmp/repo/data/zoo/v2 &&
    cp -r biasprobe cli pyproject.toml .gpu /tmp/repo/ &&
    cp reports/zoo/round.sh reports/zoo/remote_held.sh reports/zoo/paper-zoo-v2.toml /tmp/repo/reports/zoo/ || exit 1
  mkdir -p /tmp/pp && ln -sfn /tmp/repo/cli /tmp/pp/biasprobe_cli
  echo "export PYTHONPATH=/tmp/site:/tmp/pp:/tmp/repo PYTHONUNBUFFERED=1 BIASPROBE_DATA_DIR=/tmp/fmnist" > /tmp/env.sh
  . /tmp/env.sh
  nvidia-smi --query-gpu=name,memory.used --format=csv
  mkdir -p /tmp/final; echo "$@" > /tmp/names
  (cd /tmp/repo && setsid nohup env OUT=/tmp/final ZOO_RECIPE=reports/zoo/paper-zoo-v2.toml ZOO_LANDED=data/zoo/v2 \
    .gpu/remote_round.sh "$tag" "$minutes" "$per_gpu" "$@" > /tmp/round.out 2>&1 < /dev/null &)
  echo "started $(date +%T)"
  cd /tmp/repo && exec reports/zoo/remote_held.sh collect "$tag" "$wait_s"
fi
[ "$mode" = collect ] || { echo "usage: remote_held.sh start TAG MINUTES PER_GPU WAIT NAME... | collect TAG WAIT"; exit 1; }
tag=$1; wait_s=$2; t0=$(date +%s)
. /tmp/env.sh
while [ $(( $(date +%s) - t0 )) -lt "$wait_s" ] && pgrep -f remote_round.sh > /dev/null; do sleep 5; done
pgrep -f remote_round.sh > /dev/null && echo "round still running at $(date +%T)" || echo "round ended"
tail -5 /tmp/round.out; grep -v '^W[0-9]' /tmp/log-"$tag"/sweep.log 2>/dev/null | tail -8
cd /tmp/zoo 2>/dev/null || { echo "no /tmp/zoo"; exit 1; }
python3 - <<'EOP'
import glob, json
for f in sorted(glob.glob("*.train.json")) + sorted(glob.glob("*.gaps.json")):
    r = json.load(open(f))
    rows = r.get("gaps", []) if isinstance(r, dict) else r
    print(f, "steps_done", r.get("steps_done") if isinstance(r, dict) else "-",
          [(g["steps"], g["average_gap"], g["average_gap_sem"]) for g in rows])
EOP
names=($(cat /tmp/names)); part=0
for ((i = 0; i < ${#names[@]}; i += 2)); do
  files=()
  for n in "${names[@]:i:2}"; do
    for f in "$n.safetensors" "$n.train.json" "$n.gaps.json" "$n.safetensors.diverged.json"; do [ -e "$f" ] && files+=("$f"); done
  done
  [ ${#files[@]} -gt 0 ] && tar -cf - "${files[@]}" | xz -6 -T0 > "$OUT/$tag-$part.tar.xz"; part=$((part + 1))
done
tar -czf "$OUT/$tag-logs.tgz" -C /tmp log-"$tag" round.out 2>/dev/null
ls -la "$OUT"
