#!/usr/bin/env bash
# Install the build dependencies, build qatplan, and plan QAT for a 2.2B-parameter model
# with a 1e22-FLOP budget on the built-in law. Extra arguments replace the plan's options.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target qatplan >/dev/null
if [ $# -eq 0 ]; then set -- --params 2.2B --budget 1e22; fi
exec ./build/cli/qatplan "$@"
