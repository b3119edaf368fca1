#!/usr/bin/env bash
# Install everything, build, and run every test twice: a normal build and an
# AddressSanitizer+UndefinedBehaviorSanitizer build; then fuzz each parser for a few seconds
# (QP_FUZZ_SECONDS per target, default 10; docs/fuzzing.md). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash scripts/install-deps.sh --all

echo "== build (RelWithDebInfo; CUDA backend built when nvcc is present) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQATPLAN_CUDA=AUTO
cmake --build build -j"$jobs"
echo "== tests =="
ctest --test-dir build --output-on-failure --parallel "$jobs"

echo "== build with ASan+UBSan (CPU only) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQATPLAN_SANITIZE=ON -DQATPLAN_CUDA=OFF
cmake --build build-asan -j"$jobs"
echo "== tests under ASan+UBSan =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure --parallel "$jobs"

echo "== fuzz each parser (clang, libFuzzer, ASan+UBSan) =="
bash scripts/fuzz.sh "${QP_FUZZ_SECONDS:-10}"
