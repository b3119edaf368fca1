#!/usr/bin/env bash
# Build the libFuzzer targets of fuzz/ with clang (ASan+UBSan; build dir build-fuzz) and run each
# for SECONDS (default 10). Extra arguments go to every libFuzzer run (e.g. -fork=4, -dict=F).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [LIBFUZZER_ARGS...]
#   QP_FUZZ_TARGETS="law grid" scripts/fuzz.sh 600     # some targets only
# Exits non-zero when a target finds a crash, leak, undefined behaviour, timeout or broken
# invariant; the input that did it is kept in build-fuzz/fuzz-artifacts/TARGET/.
# Corpora grow in build-fuzz/fuzz-corpus/TARGET/ across runs. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
[ $# -gt 0 ] && shift
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET '$secs' is not a whole number" >&2; exit 2;; esac
targets=${QP_FUZZ_TARGETS:-"units law runs_jsonl runs_csv grid tokens results state"}
B=${QP_FUZZ_BUILD:-build-fuzz}
jobs=$(nproc)

command -v clang >/dev/null || { echo "fuzz.sh: clang not found: run scripts/install-deps.sh --all" >&2; exit 2; }
echo "== build the fuzz targets (clang, libFuzzer, ASan+UBSan) in $B =="
cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQATPLAN_FUZZ=ON \
  -DQATPLAN_CUDA=OFF >/dev/null
cmake --build "$B" -j"$jobs" --target fuzz

# Seeds, from the repository's own files and from qatplan itself (remade each run, so they
# follow the current formats); fuzz/corpus/TARGET/ holds hand-written inputs and past findings.
S=$B/fuzz-seeds
rm -rf "$S"
mkdir -p "$S"/{units,law,runs_jsonl,runs_csv,grid,results}
"$B"/fuzz/fuzz_make_seeds "$S" >/dev/null   # token files in $S/tokens, trainer states in $S/state
cp data/laws/*.json data/sweeps/own-law/*.law.json "$S"/law/
for g in data/sweeps/*/*grid.json examples/*/grid.json; do cp "$g" "$S/grid/$(echo "$g" | tr / _)"; done
# run records: the sweep results in chunks of 6 lines; the results reader also gets torn copies
for f in data/sweeps/*/*.jsonl; do
  split -l 6 -d -a 3 "$f" "$S/runs_jsonl/$(basename "$f" .jsonl)-"
done
cp "$S"/runs_jsonl/* "$S"/results/
for f in "$S"/results/runs-00[0-4]; do head -c "$(($(wc -c <"$f") - 100))" "$f" >"$f.torn"; done

# the targets' temporary files (removed at exit): in memory where possible, since the readers
# under test take paths and the trainer fsyncs the states it saves
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; else export TMPDIR="$B/fuzz-tmp"; fi
mkdir -p "$TMPDIR"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=""
for t in $targets; do
  exe="$B/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz.sh: no target $t (targets: units law runs_jsonl runs_csv grid tokens results state)" >&2; exit 2; }
  corpus="$B/fuzz-corpus/$t"
  art="$B/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$art"
  seeds=()
  [ -d "fuzz/corpus/$t" ] && seeds+=("fuzz/corpus/$t")
  [ -d "$S/$t" ] && seeds+=("$S/$t")
  dict=()
  case $t in law|runs_jsonl|grid|results) dict=(-dict=fuzz/json.dict);; esac
  echo "== fuzz_$t: ${secs}s =="
  # -timeout: an input that takes this long is a finding (a hang); -rss_limit_mb: so is this much memory
  if "$exe" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$art/" "${dict[@]}" "$@" "$corpus" "${seeds[@]}" >"$B/fuzz-$t.log" 2>&1; then
    grep -E "^(stat::number_of_executed_units|Done)" "$B/fuzz-$t.log" | tr '\n' ' '; echo
  else
    echo "fuzz_$t: FINDING (log $B/fuzz-$t.log; input in $art/):"
    grep -E "ERROR|SUMMARY|invariant|Test unit written" "$B/fuzz-$t.log" | head -8
    failed="$failed $t"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz.sh: findings in:$failed (reproduce: $B/fuzz/fuzz_TARGET $B/fuzz-artifacts/TARGET/FILE; docs/fuzzing.md)" >&2
  exit 1
fi
echo "fuzz.sh: no findings in: $targets"
