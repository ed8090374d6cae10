#!/bin/bash
# Build the folder a GPU call carries for a zoo round when only a small upload travels (docs/zoo.md,
# "Carrying a round to a lent GPU machine"): Fashion-MNIST (train images recompressed with xz), the
# landed bf16 weights and records of the named models (one xz tar), and remote_round.sh beside them.
#   reports/zoo/pack_carry.sh CARRY NAME...        # e.g. CARRY=.gpu; prints the folder's size
# ZOO_LANDED: where the landed weights lie (default data/zoo; zoo v2: data/zoo/v2).
set -euo pipefail
carry=$1; shift
fm=${BIASPROBE_DATA_DIR:-/usr/share/datasets/fashion-mnist}
mkdir -p "$carry"
if [ "${NO_DATA:-0}" = 1 ]; then  # a follow-up call on a machine still warm has the data in /tmp/fmnist
  rm -rf "$carry/fm"
else
  [ -f "$fm/train-images-idx3-ubyte.gz" ] || { echo "Fashion-MNIST not found in $fm: apt-get install dataset-fashion-mnist" >&2; exit 1; }
  mkdir -p "$carry/fm"
  if [ ! -s "$carry/fm/train-images-idx3-ubyte.xz" ]; then  # written whole or not at all
    zcat "$fm/train-images-idx3-ubyte.gz" | xz -9 -T0 > "$carry/fm/.train.xz.tmp"
    mv "$carry/fm/.train.xz.tmp" "$carry/fm/train-images-idx3-ubyte.xz"
  fi
  cp "$fm"/train-labels-idx1-ubyte.gz "$fm"/t10k-*-ubyte.gz "$carry/fm/"
fi
landed=${ZOO_LANDED:-data/zoo}
files=()
for name in "$@"; do
  for file in "$landed/$name".safetensors "$landed/$name".shard-* "$landed/$name".train.json "$landed/$name".gaps.json "$landed/$name".safetensors.diverged.json; do
    [ -e "$file" ] && files+=("$(basename "$file")")
  done
done
rm -f "$carry/zoo.tar.xz"
[ ${#files[@]} -gt 0 ] && tar -C "$landed" -cf - "${files[@]}" | xz -9 -T0 > "$carry/zoo.tar.xz"
cp reports/zoo/remote_round.sh "$carry/"
du -sb "$carry"
