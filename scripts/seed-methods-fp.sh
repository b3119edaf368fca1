#!/bin/sh
# seed-methods-fp.sh: the full-precision models the seed-method experiments (docs/seed-methods.md)
# start from, one per (shape, seed): trained once, shared by every QAT method through --init, so
# that the methods are compared from the same weights and data order (paired).
#
#   scripts/seed-methods-fp.sh [--shape L2d64|L4d128] [SEEDS...]     (default: L2d64, seeds 1 2 3)
#
# Writes data/sweeps/seed-methods/fp/SHAPE-sS.safetensors (git-ignored: deterministic on the CPU,
# rebuilt by this script) and appends each run's record to data/sweeps/seed-methods/fp.jsonl.
# Resumable: a model whose checkpoint exists is kept. Needs build/cli/qatplan and the default
# corpus (scripts/prepare-corpus.sh).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
Q=${QATPLAN:-$root/build/cli/qatplan}
out=$root/data/sweeps/seed-methods
shape=L2d64
if [ "${1:-}" = "--shape" ]; then
  shape=${2:?"--shape needs L2d64 or L4d128"}
  shift 2
fi
# the spec's two models (seed-methods-spec.md §5): context 64, batch 16, classic decay, peak LR
# 3e-3; about 17 (117K) and 10 (0.82M) FP tokens per parameter
case $shape in
  L2d64) dims="--layers 2 --width 64 --heads 2" tokens=2M ;;
  L4d128) dims="--layers 4 --width 128 --heads 4" tokens=8M ;;
  *) echo "seed-methods-fp.sh: unknown shape '$shape'; use L2d64 or L4d128" >&2; exit 2 ;;
esac
mkdir -p "$out/fp"
seeds=${*:-1 2 3}
for s in $seeds; do
  ck=$out/fp/$shape-s$s.safetensors
  [ -f "$ck" ] && continue
  # shellcheck disable=SC2086 # dims is a word list
  "$Q" train --data "$root/data/corpus/default" $dims --context 64 --batch 16 \
    --tokens "$tokens" --bits 16 --lr 3e-3 --seed "$s" --threads 1 --quiet --run-id "fp-$shape-s$s" \
    --runs-out "$out/fp.jsonl" --checkpoint "$ck"   # written to a temporary file and renamed
done
