#!/usr/bin/python3
"""The numbers behind docs/own-law.md, from a sweep's run records and its fitted law.

usage: scripts/own_law_report.py RUNS.jsonl LAW.json [--qatplan build/cli/qatplan]
                                 [--plots DIR] [--work DIR]

Prints markdown: per (N, D_total, bits) group the best observed QAT fraction beside the
paper's closed form and the law's optimum; whether the best fraction grows with S_total;
the fitted fraction constant a against the paper's 6.7297; fused against classic per bit
width; and leave-one-size-out prediction (refits with `qatplan fit` without each size).
With --plots, renders the figures with `qatplan plot`. Standard library only.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

COEFS = "E A B alpha beta theta kappa phi chi psi omega lambda mu xi nu rho".split()


def law_loss(c, n, d_fp, d_qat, bits):
    """The qat law of docs/law.md (the same formula as fitter/law.c, in linear space)."""
    d = d_fp + d_qat
    loss = c["E"] + c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"]
    if bits < 16:
        byts = n * bits / 8.0
        s_qat, s_fp = d_qat / byts, d_fp / byts
        loss += c["theta"] * 2 ** (-c["kappa"] * bits)
        loss += c["phi"] * 2 ** (-c["chi"] * bits) / (n ** c["psi"] * (1 + s_qat) ** c["omega"])
        loss += (c["lambda"] * 2 ** (-c["mu"] * bits) * (1 + s_fp) ** c["xi"]
                 / (n ** c["nu"] * (1 + s_qat) ** c["rho"]))
    return loss


def law_f_opt(c, n, d, bits, grid=2001):
    best = min(range(grid), key=lambda i: law_loss(c, n, d * (1 - i / (grid - 1)), d * i / (grid - 1), bits))
    return best / (grid - 1)


def read_runs(path):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("status") == "ok" and isinstance(r.get("loss"), (int, float)):
                r["d_total"] = r["d_fp"] + r["d_qat"]
                r["f"] = r["d_qat"] / r["d_total"]
                runs.append(r)
    return runs


def spearman(x, y):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx > 0 and vy > 0 else float("nan")


def fmt_n(n):
    return "%.1fK" % (n / 1e3) if n < 1e6 else "%.2fM" % (n / 1e6)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write("%s failed (%d): %s\n" % (" ".join(cmd), p.returncode, p.stderr.strip()))
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("law")
    ap.add_argument("--qatplan", default="build/cli/qatplan")
    ap.add_argument("--plots")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="own-law-")
    os.makedirs(work, exist_ok=True)
    runs = read_runs(a.runs)
    law = json.load(open(a.law))
    c = {k: float(law["coefficients"][k]) for k in COEFS}
    out = print

    sizes = sorted({r["n_params"] for r in runs})
    out("Runs: %d ok; sizes %s parameters (%.1fx); bit widths %s." % (
        len(runs), ", ".join(fmt_n(n) for n in sizes), sizes[-1] / sizes[0],
        ", ".join(str(b) for b in sorted({r["bits"] for r in runs}))))

    # Fit quality of the law on every run (checks this script's formula against the file's).
    res = [math.log(r["loss"]) - math.log(law_loss(c, r["n_params"], r["d_fp"], r["d_qat"], r["bits"])) for r in runs]
    rmse = math.sqrt(sum(x * x for x in res) / len(res))
    q = law.get("provenance", {}).get("quality", {})
    out("\nLaw on all runs: RMSE(log L) %.4f (the law file says %s), R^2 %s, leave-one-size-out RMSE %s." % (
        rmse, q.get("rmse_log"), q.get("r2"), q.get("loo_rmse_log")))

    # Groups (N, D_total, bits) of quantized runs.
    groups = {}
    for r in runs:
        if r["bits"] < 16:
            groups.setdefault((r["n_params"], r["d_total"], r["bits"]), []).append(r)
    rows = []
    out("\n| N | D_total | bits | S_total | best f (observed) | schedule | f_hat (a = 6.73) | law f_opt | best loss |")
    out("|---|---|---|---|---|---|---|---|---|")
    for (n, d, b), g in sorted(groups.items()):
        best = min(g, key=lambda r: r["loss"])
        s = d / (n * b / 8.0)
        fh = math.exp(-6.7297 / math.log(s)) if s > 1 else float("nan")
        fo = law_f_opt(c, n, d, b)
        rows.append((n, d, b, s, best["f"], fh, fo))
        out("| %s | %.2fM | %d | %.0f | %.2f | %s | %.2f | %.2f | %.4f |" % (
            fmt_n(n), d / 1e6, b, s, best["f"], best["schedule"], fh, fo, best["loss"]))

    ss = [r[3] for r in rows]
    out("\nBest observed fraction against S_total: Spearman rank correlation %.2f over %d groups;"
        " law optimum against S_total: %.2f." % (spearman(ss, [r[4] for r in rows]), len(rows),
                                                  spearman(ss, [r[6] for r in rows])))
    order = sorted(rows, key=lambda r: r[3])
    third = max(1, len(order) // 3)
    lo, hi = order[:third], order[-third:]
    out("Mean best fraction in the lowest third of S_total (S %.0f-%.0f): %.2f; in the highest third (S %.0f-%.0f): %.2f." % (
        lo[0][3], lo[-1][3], sum(r[4] for r in lo) / len(lo), hi[0][3], hi[-1][3], sum(r[4] for r in hi) / len(hi)))
    mae_hat = sum(abs(r[4] - r[5]) for r in rows if not math.isnan(r[5])) / len(rows)
    mae_law = sum(abs(r[4] - r[6]) for r in rows) / len(rows)
    out("MAE against the best observed fraction: paper's f_hat %.3f, the fitted law's optimum %.3f." % (mae_hat, mae_law))

    # The fraction constant a, fitted to our best fractions.
    frac_law = os.path.join(work, "fraction.law.json")
    p = run([a.qatplan, "fit", a.runs, "--form", "fraction", "--bootstrap", "200", "-q", "-o", frac_law])
    if p.returncode == 0:
        fl = json.load(open(frac_law))
        av = fl["coefficients"]["a"]
        iv = fl.get("intervals", {}).get("a")
        out("\nFraction form fitted to these runs: a = %.3f%s (paper 6.7297)." % (
            av, " (95%% bootstrap interval %.3f-%.3f)" % tuple(iv) if iv else ""))

    # Fused against classic at equal fractions (interior fractions: both schedules ran).
    out("\n| bits | pairs | fused lower | mean loss fused - classic | best-of-group fused - classic |")
    out("|---|---|---|---|---|")
    for b in sorted({k[2] for k in groups}):
        diffs, bests = [], []
        for (n, d, bb), g in groups.items():
            if bb != b:
                continue
            by = {}
            for r in g:
                by.setdefault(r["f"], {})[r["schedule"]] = r["loss"]
            for f, m in by.items():
                if "classic" in m and "fused" in m:
                    diffs.append(m["fused"] - m["classic"])
            shared = [r["loss"] for r in g if r["schedule"] in ("fp-only", "qat-only")]
            fu = [r["loss"] for r in g if r["schedule"] == "fused"] + shared
            cl = [r["loss"] for r in g if r["schedule"] == "classic"] + shared
            if fu and cl:
                bests.append(min(fu) - min(cl))
        if diffs:
            out("| %d | %d | %d | %+.4f | %+.4f |" % (b, len(diffs), sum(x < 0 for x in diffs),
                                                      sum(diffs) / len(diffs), sum(bests) / len(bests)))

    # Leave one size out: refit without it, predict its runs.
    out("\n| size left out | runs | RMSE(log L) predicted | mean log residual | best f: observed vs law (MAE) |")
    out("|---|---|---|---|---|")
    for n_out in sizes:
        train = os.path.join(work, "train-%d.jsonl" % n_out)
        with open(a.runs) as src, open(train, "w") as dst:
            for line in src:
                try:
                    if json.loads(line).get("n_params") != n_out:
                        dst.write(line)
                except ValueError:
                    pass
        lo_law = os.path.join(work, "loso-%d.law.json" % n_out)
        p = run([a.qatplan, "fit", train, "--form", "qat", "-q", "-o", lo_law])
        if p.returncode != 0:
            out("| %s | - | fit failed: %s | | |" % (fmt_n(n_out), (p.stderr.strip().splitlines() or [""])[-1]))
            continue
        cl = {k: float(json.load(open(lo_law))["coefficients"][k]) for k in COEFS}
        held = [r for r in runs if r["n_params"] == n_out]
        rr = [math.log(r["loss"]) - math.log(law_loss(cl, r["n_params"], r["d_fp"], r["d_qat"], r["bits"])) for r in held]
        fe = [abs(r[4] - law_f_opt(cl, r[0], r[1], r[2])) for r in rows if r[0] == n_out]
        out("| %s | %d | %.4f | %+.4f | %.3f |" % (fmt_n(n_out), len(held), math.sqrt(sum(x * x for x in rr) / len(rr)),
                                                 sum(rr) / len(rr), sum(fe) / len(fe) if fe else float("nan")))

    if a.plots:
        os.makedirs(a.plots, exist_ok=True)
        frac_args = ["--law", frac_law] if os.path.exists(frac_law) else []
        big = max(groups, key=lambda k: (k[0], k[1]))
        for name, args in [
            ("loss-fraction", ["loss-fraction", "--runs", a.runs, "--law", a.law, "--params", str(big[0]),
                               "--tokens", str(int(big[1]))]),
            # without 1 bit, whose f = 0 point (about 4 nats) squeezes the other curves flat
            ("loss-fraction-246", ["loss-fraction", "--runs", a.runs, "--law", a.law, "--params", str(big[0]),
                                   "--tokens", str(int(big[1])), "--bits", "2,4,6"]),
            ("optimal-fraction", ["optimal-fraction", "--runs", a.runs, "--law", a.law] + frac_args),
            ("residuals", ["residuals", "--runs", a.runs, "--law", a.law]),
        ]:
            run([a.qatplan, "plot"] + args + ["-o", os.path.join(a.plots, "own-law-%s.svg" % name)])
        out("\nPlots written to %s." % a.plots)


if __name__ == "__main__":
    main()
