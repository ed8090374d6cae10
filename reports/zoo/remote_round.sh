#!/bin/bash
# The GPU side of a carried zoo round (docs/zoo.md): unpack what pack_carry.sh built, run round.sh,
# pack the trained weights and records (xz tars of at most about 13 MB) and the logs into $OUT.
#   CARRY/remote_round.sh TAG MINUTES PER_GPU NAME...   (from the repository's root; $OUT must exist)
# ZOO_RECIPE and ZOO_LANDED as for round.sh (zoo v2: reports/zoo/paper-zoo-v2.toml and data/zoo/v2).
# A second call on a machine still warm finds /tmp/zoo with every model's full training state and
# continues from it (no warm restart); a fresh machine starts from the carried weights.
set -u
carry=$(dirname "$0"); tag=$1; minutes=$2; per_gpu=$3; shift 3
t0=$(date +%s)
if [ ! -s /tmp/fmnist/train-images-idx3-ubyte ]; then  # written whole or not at all
  [ -d "$carry/fm" ] || { echo "no Fashion-MNIST in /tmp/fmnist or $carry/fm: carry the data (pack_carry.sh without NO_DATA)"; exit 1; }
  mkdir -p /tmp/fmnist && cp "$carry"/fm/*.gz /tmp/fmnist/ &&
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    "$carry/fm/train-images-idx3-ubyte.xz" /tmp/fmnist/.train.tmp &&
  mv /tmp/fmnist/.train.tmp /tmp/fmnist/train-images-idx3-ubyte || { echo "could not unpack Fashion-MNIST"; exit 1; }
fi
export BIASPROBE_DATA_DIR=/tmp/fmnist
landed=${ZOO_LANDED:-data/zoo}; mkdir -p "$landed"
if [ -e "$carry/zoo.tar.xz" ]; then tar -xJf "$carry/zoo.tar.xz" -C "$landed" || { echo "could not unpack $carry/zoo.tar.xz"; exit 1; }; fi
[ -d /tmp/zoo ] && echo "warm machine: /tmp/zoo kept ($(ls /tmp/zoo | grep -c train-state) training states)"
log=/tmp/log-$tag; mkdir -p "$log"
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 10 > "$log/smi.csv" 2>&1 &
smi=$!
echo "set-up $(( $(date +%s) - t0 )) s"
ZOO_WORK=/tmp/zoo reports/zoo/round.sh "$log" "$minutes" "$per_gpu" "$@"
kill "$smi" 2>/dev/null
echo "round done at $(( $(date +%s) - t0 )) s"; tail -3 "$log/sweep.log"
# Pack: tars of whole models, each under about 13 MB compressed (a returned file may not exceed 16 MiB;
# at most 8 files come back, so name at most 7 tars' worth of models).
cd /tmp/zoo || exit 1
part=0; batch=(); size=0
flush() {
  [ ${#batch[@]} -eq 0 ] && return
  tar -cf - "${batch[@]}" | xz -6 -T0 > "$OUT/$tag-$part.tar.xz"; part=$((part + 1)); batch=(); size=0
}
for name in "$@"; do
  bytes=$(stat -c %s "$name.safetensors" 2>/dev/null || echo 0)
  [ $(( (size + bytes) * 7 / 10 )) -gt 13000000 ] && flush
  batch+=("$name.safetensors" "$name.train.json" $(ls "$name".shard-* 2>/dev/null)); size=$((size + bytes))
done
flush
cp /tmp/zoo/manifest.json "$log/" 2>/dev/null; tar -czf "$OUT/$tag-logs.tgz" -C "$log" .
ls -la "$OUT"; echo "total $(( $(date +%s) - t0 )) s"
