#!/bin/sh
# seed-methods-fp.sh: the full-precision models the seed-method experiments (docs/seed-methods.md)
# start from, one per (shape, seed): trained once, shared by every QAT method through --init, so
# that the methods are compared from the same weights and data order (paired).
#
#   scripts/seed-methods-fp.sh [SEEDS...]        (default: 1 2 3)
#
# Writes data/sweeps/seed-methods/fp/L2d64-sS.safetensors (git-ignored: deterministic on the CPU,
# rebuilt by this script) and appends each run's record to data/sweeps/seed-methods/fp.jsonl.
# Resumable: a model whose checkpoint exists is kept. Needs build/cli/qatplan and the default
# corpus (scripts/prepare-corpus.sh).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
Q=${QATPLAN:-$root/build/cli/qatplan}
out=$root/data/sweeps/seed-methods
mkdir -p "$out/fp"
seeds=${*:-1 2 3}
for s in $seeds; do
  ck=$out/fp/L2d64-s$s.safetensors
  [ -f "$ck" ] && continue
  # the model of the spec's measurements (117K parameters, context 64, batch 16, 2M FP tokens
  # with the classic decay, peak LR 3e-3)
  "$Q" train --data "$root/data/corpus/default" --layers 2 --width 64 --heads 2 --context 64 --batch 16 \
    --tokens 2M --bits 16 --lr 3e-3 --seed "$s" --threads 1 --quiet --run-id "fp-L2d64-s$s" \
    --runs-out "$out/fp.jsonl" --checkpoint "$ck"   # written to a temporary file and renamed
done
