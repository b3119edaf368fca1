#!/usr/bin/python3
"""Write data/laws/reference/calibration.csv, the penalty observations the reference QAT
law is fitted to (docs/reference-law.md), from the published material:

- QuEST (Panferov et al. 2025, arXiv 2502.05003): measured final C4 validation losses of
  weight-only QAT from scratch (W1-W4, activations in BF16) and the BF16 run of the same
  N and D; data/laws/reference/quest-runs-weight-only.csv holds the authors' released runs
  (IST-DASLab/QuEST, for_plots/runs_for_scaling.json). Penalty = W_b loss - BF16 loss.
- Chen et al. 2025 (arXiv 2505.14302), Table 1, W4A16: delta = k D^gD (log2 G)^gG / N^gN,
  evaluated on their data range (N 74M-595M, D 10B-100B) with G = hidden width (per-row
  scales), hidden width = 2.1 N^(1/3) (the QuEST shapes' rule). Weight 0.5: a fitted law's
  values, not measurements.

N is entered as the sources give it (non-embedding parameters): see docs/reference-law.md.
Deterministic; standard library only. Usage: scripts/make_reference_calibration.py [OUT]
"""
import csv
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "data", "laws", "reference")

CHEN_W4A16 = dict(k=0.2522, gN=0.3589, gD=0.1610, gG=0.3533)
CHEN_SIZES = [74e6, 145e6, 297e6, 595e6]
CHEN_TOKENS = [10e9, 30e9, 100e9]


def quest_points():
    rows = list(csv.DictReader(open(os.path.join(REF, "quest-runs-weight-only.csv"))))
    bf16 = {(r["non_embedding_params"], r["tokens"]): float(r["final_val_loss"])
            for r in rows if r["w_bits"] == "16"}
    out = []
    for r in rows:
        if r["w_bits"] == "16":
            continue
        key = (r["non_embedding_params"], r["tokens"])
        pen = float(r["final_val_loss"]) - bf16[key]
        out.append(("QuEST W%sA16 (%s)" % (r["w_bits"], r["w_quant"]), float(key[0]), 0.0,
                    float(key[1]), int(r["w_bits"]), pen, 1.0,
                    "measured; BF16 loss %.4f" % bf16[key]))
    return out


def chen_points():
    c = CHEN_W4A16
    out = []
    for n in CHEN_SIZES:
        g = 2.1 * n ** (1.0 / 3.0)
        for d in CHEN_TOKENS:
            pen = c["k"] * d ** c["gD"] * math.log2(g) ** c["gG"] / n ** c["gN"]
            out.append(("Chen W4A16 law", n, 0.0, d, 4, pen, 0.5,
                        "Table 1 law at G = %.0f" % g))
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REF, "calibration.csv")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        f.write("# QAT penalty observations for the reference law; made by "
                "scripts/make_reference_calibration.py\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["source", "n_params", "d_fp", "d_qat", "bits", "penalty", "weight", "note"])
        for p in quest_points() + chen_points():
            w.writerow([p[0], "%.10g" % p[1], "%.10g" % p[2], "%.10g" % p[3], p[4],
                        "%.6g" % p[5], "%g" % p[6], p[7]])
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
