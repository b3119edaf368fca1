#!/usr/bin/env bash
# Rebuild the built-in reference QAT penalty (data/laws/reference.law.json) from its
# calibration inputs, byte for byte (docs/reference-law.md):
#   1. data/laws/reference/calibration.csv from the published measurements and laws
#      (scripts/make_reference_calibration.py; inputs in data/laws/reference/);
#   2. qatplan's own penalty fitter over Epoch AI's Chinchilla law, with the paper's
#      closed-form fraction as the law's optimum, 256 starts and 200 bootstrap resamples.
# Needs a build (bash scripts/quickstart.sh, or cmake --build build). Then rebuild qatplan:
# the law is compiled in. Usage: scripts/build-reference-law.sh [OUTDIR] (default data/laws;
# the test suite rebuilds into a temp folder and compares). $QATPLAN: the binary to use.
set -euo pipefail
cd "$(dirname "$0")/.."
qatplan=${QATPLAN:-build/cli/qatplan}
out=${1:-data/laws}
mkdir -p "$out/reference"
/usr/bin/python3 scripts/make_reference_calibration.py "$out/reference/calibration.csv"
# The source names the committed path, wherever the files are written.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$qatplan" fit --form penalty --points "$out/reference/calibration.csv" \
  --fp-law chinchilla --units nats_per_token --fraction-anchor 6.7297 \
  --starts 256 --bootstrap 200 --seed 1 --reproducible \
  --source "reference calibration data/laws/reference/calibration.csv: QuEST weight-only QAT penalties (Panferov et al. 2025, measured, 30M-103M non-embedding parameters, 3B-10B tokens, 1-4 bits) and Chen et al. 2025's W4A16 penalty law (74M-595M, 10B-100B tokens); optimum at the closed-form f_hat of Dremov et al. 2025 (a = 6.7297); over Epoch AI's Chinchilla law (nats per token)" \
  --report "$out/reference/fit-report.txt" -q -o "$out/reference.law.json"
echo "wrote $out/reference.law.json, $out/reference/calibration.csv and $out/reference/fit-report.txt"
