#!/usr/bin/python3
"""Paired statistics of a trunk-and-branch own-law sweep (docs/own-law.md, issue 18).

usage: scripts/own_law_paired.py RUNS.jsonl [--qatplan build/cli/qatplan] [--work DIR]
                                 [--bootstrap 2000]

Every (size, seed) of the sweep branches all its fractions, schedules and budgets from one FP
trunk, so a difference between two points of the same seed is paired: the seed's common offset
(initialisation, data order) cancels. Each statistic below is computed per seed and reported as
the mean over seeds with its standard error (sd / sqrt(seeds), seeds - 1 degrees of freedom),
or with a bootstrap over seeds. Prints markdown. Needs numpy and scipy (/usr/bin/python3).
"""
import argparse
import collections
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import stats

FRACS = (0.1, 0.25, 0.45, 0.7)


def read_runs(path):
    runs = []
    try:
        f = open(path)
    except OSError as e:
        sys.exit(f"{path}: cannot read the run records: {e.strerror}; give the sweep's RUNS.jsonl")
    with f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("status") != "ok" or not isinstance(r.get("loss"), (int, float)):
                continue
            r["d_total"] = r["d_fp"] + r["d_qat"]
            # the grid's fraction: the trainer rounds D_qat to whole steps (0.25 of 438 steps is 110)
            f = r["d_qat"] / r["d_total"]
            r["f"] = min((0.0,) + FRACS + (1.0,), key=lambda x: abs(x - f))
            r["seed"] = int(r["seed"])
            r["D"] = round(r["d_total"], -3)  # group budgets: the sweep rounds D to whole steps
            runs.append(r)
    return runs


def s_total(r):
    return r["d_total"] / (r["n_params"] * r["bits"] / 8.0)


def mean_se(x):
    x = np.asarray(x, float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def fmt(m, se, digits=4):
    return f"{m:+.{digits}f} ± {se:.{digits}f}"


def best_fraction(fs, losses):
    """The sweep's estimator (data_best_fraction): vertex of the parabola in (sqrt f, log L)
    through the argmin and its neighbours, clamped to their range; else the argmin."""
    order = np.argsort(fs)
    fs, ll = np.asarray(fs, float)[order], np.log(np.asarray(losses, float)[order])
    k = int(np.argmin(ll))
    if len(fs) < 3:
        return float(fs[k])
    lo = min(max(k - 1, 0), len(fs) - 3)
    x, y = np.sqrt(fs[lo:lo + 3]), ll[lo:lo + 3]
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(fs[k])
    v = min(max(-b / (2 * a), x[0]), x[2])
    return float(v * v)


def index(runs):
    """(N, D, bits, schedule, f, seed) -> loss; f = 0 and f = 1 are shared by both schedules."""
    t = {}
    for r in runs:
        if r["bits"] >= 16:
            t[(r["n_params"], r["D"], 16, "fp", 0.0, r["seed"])] = r["loss"]
            continue
        scheds = ("classic", "fused") if r["f"] in (0.0, 1.0) else (r["schedule"],)
        for s in scheds:
            t[(r["n_params"], r["D"], r["bits"], s, r["f"], r["seed"])] = r["loss"]
    return t


def groups(runs):
    g = sorted({(r["n_params"], r["D"], r["bits"]) for r in runs if r["bits"] < 16})
    seeds = sorted({r["seed"] for r in runs})
    return g, seeds


def noise(t, runs):
    """Seed-to-seed sd of one configuration against the sd of paired differences."""
    raw, paired = [], []
    g, seeds = groups(runs)
    for n, d, b in g:
        for s in ("classic", "fused"):
            for f in FRACS:
                ls = [t.get((n, d, b, s, f, k)) for k in seeds]
                if None in ls:
                    continue
                raw.append(np.std(ls, ddof=1))
                ref = [t.get((n, d, b, s, 0.25, k)) for k in seeds]
                if f != 0.25 and None not in ref:
                    paired.append(np.std(np.subtract(ls, ref), ddof=1))
    print("## Noise\n")
    print(f"- configurations with all {len(seeds)} seeds: {len(raw)}; seed-to-seed sd of the loss, "
          f"mean over configurations: {np.mean(raw):.4f} nats (median {np.median(raw):.4f})")
    if paired:
        print(f"- sd over seeds of a paired difference (L(f) - L(0.25), same trunk): "
              f"{np.mean(paired):.4f} nats (median {np.median(paired):.4f})")
    print()


def fraction_table(t, runs):
    """Per bit width: L(f) - L(f') paired within trunks, averaged over (N, D), mean ± SE over seeds."""
    g, seeds = groups(runs)
    print("## Loss against the QAT fraction, paired within trunks\n")
    print("Loss at each fraction minus the loss at f = 0.25 of the same trunk (nats per byte), "
          "averaged over sizes and budgets per seed; mean ± SE over seeds.\n")
    print("| bits | schedule | " + " | ".join(f"f={f}" for f in (0.0,) + FRACS + (1.0,)) + " |")
    print("|---|---|" + "---:|" * (len(FRACS) + 2))
    for b in sorted({x[2] for x in g}):
        for s in ("classic", "fused"):
            cells = []
            for f in (0.0,) + FRACS + (1.0,):
                per_seed = []
                for k in seeds:
                    diffs = [t[(n, d, b, s, f, k)] - t[(n, d, b, s, 0.25, k)] for n, d, bb in g
                             if bb == b and (n, d, b, s, f, k) in t and (n, d, b, s, 0.25, k) in t]
                    if diffs:
                        per_seed.append(np.mean(diffs))
                m, se = mean_se(per_seed)
                cells.append("0" if f == 0.25 else fmt(m, se, 3))
            print(f"| {b} | {s} | " + " | ".join(cells) + " |")
    print()


def best_fractions(t, g, seeds, sched, seed_set):
    """Best fraction of each group from the seed-mean log loss over seed_set (a list, may repeat)."""
    out = []
    for n, d, b in g:
        fs, ls = [], []
        for f in (0.0,) + FRACS + (1.0,):
            vals = []
            for k in seed_set:
                if sched == "best":
                    c = [t.get((n, d, b, s, f, k)) for s in ("classic", "fused")]
                    c = [x for x in c if x is not None]
                    v = min(c) if c else None
                else:
                    v = t.get((n, d, b, sched, f, k))
                if v is None:
                    break
                vals.append(math.log(v))
            if len(vals) == len(seed_set):
                fs.append(f)
                ls.append(math.exp(np.mean(vals)))
        if len(fs) >= 3:
            out.append((n * b / 8.0, d, b, n, best_fraction(fs, ls)))
    return out


def trend_row(t, g, seeds, sched, nboot, rng):
    """Spearman(S_total, best fraction) on the seed means, its bootstrap SE over seeds, the
    per-seed correlations, and the mean best fraction in the lowest and highest third of S."""
    bf = best_fractions(t, g, seeds, sched, seeds)
    if len(bf) < 4:
        return None

    def rho(b):
        return stats.spearmanr([d / y for y, d, _, _, _ in b], [x[4] for x in b]).correlation

    boots = []
    for _ in range(nboot):
        bb = best_fractions(t, g, seeds, sched, list(rng.choice(seeds, size=len(seeds), replace=True)))
        if len(bb) >= 4 and not np.isnan(rho(bb)):
            boots.append(rho(bb))
    per = [rho(bb) for bb in (best_fractions(t, g, seeds, sched, [k]) for k in seeds) if len(bb) >= 4]
    s_tot = np.array([d / y for y, d, _, _, _ in bf])
    order = np.argsort(s_tot)
    third = max(1, len(order) // 3)
    lo = np.mean([bf[i][4] for i in order[:third]])
    hi = np.mean([bf[i][4] for i in order[-third:]])
    return len(bf), rho(bf), np.std(boots, ddof=1), mean_se([x for x in per if not np.isnan(x)]), lo, hi


def fraction_trend(t, runs, nboot, rng):
    g, seeds = groups(runs)
    print("## Does the best fraction grow with S_total?\n")
    print("Best fraction per (N, D_total, bits) group from the seed-mean log loss (the fitter's "
          "parabola in sqrt f); Spearman correlation with S_total. SE: bootstrap over seeds "
          f"({nboot} resamples of the seeds, with replacement, all groups together); per seed: "
          "the correlation within each seed, mean ± SE. 'best': the lower of the two schedules "
          "at each fraction.\n")
    print("| bits | schedule | groups | Spearman (seed means) | bootstrap SE | per seed, mean ± SE | best f, lowest / highest third of S |")
    print("|---|---|---:|---:|---:|---:|---|")
    all_bits = sorted({x[2] for x in g})
    for bits in [tuple(all_bits), (1, 2), (4, 6)] + [(b,) for b in all_bits]:
        gg = [x for x in g if x[2] in bits]
        for sched in ("classic", "fused", "best"):
            r = trend_row(t, gg, seeds, sched, nboot, rng)
            if r is None:
                continue
            n, rho, se, (pm, pse), lo, hi = r
            label = "all" if len(bits) == len(all_bits) else ",".join(map(str, bits))
            print(f"| {label} | {sched} | {n} | {rho:+.2f} | {se:.2f} | {fmt(pm, pse, 2)} | {lo:.2f} / {hi:.2f} |")
    print()


def fused_vs_classic(t, runs):
    g, seeds = groups(runs)
    print("## Fused against classic, per bit width\n")
    print("Loss fused - classic at the same N, D_total, bits, fraction and seed (one trunk), "
          "nats per byte. Per seed the mean over (N, D_total) and fractions 0.1-0.7; mean ± SE over "
          "seeds. 'configs fused lower by > 2 SE': configurations whose seed-mean difference is "
          "below zero by more than twice its own SE (and above, for classic).\n")
    print("| bits | configs | mean fused - classic | f=0.1 | f=0.25 | f=0.45 | f=0.7 | fused lower > 2 SE | classic lower > 2 SE |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in sorted({x[2] for x in g}):
        per_seed = collections.defaultdict(list)
        per_f = collections.defaultdict(lambda: collections.defaultdict(list))
        n_cfg = lo = hi = 0
        for n, d, bb in g:
            if bb != b:
                continue
            for f in FRACS:
                diffs = [t[(n, d, b, "fused", f, k)] - t[(n, d, b, "classic", f, k)] for k in seeds
                         if (n, d, b, "fused", f, k) in t and (n, d, b, "classic", f, k) in t]
                if len(diffs) != len(seeds):
                    continue
                n_cfg += 1
                m, se = mean_se(diffs)
                lo += m < -2 * se
                hi += m > 2 * se
                for k, x in zip(seeds, diffs):
                    per_seed[k].append(x)
                    per_f[f][k].append(x)
        if not n_cfg:
            continue
        m, se = mean_se([np.mean(v) for v in per_seed.values()])
        cols = []
        for f in FRACS:
            mf, sf = mean_se([np.mean(v) for v in per_f[f].values()])
            cols.append(fmt(mf, sf, 3))
        print(f"| {b} | {n_cfg} | {fmt(m, se, 3)} | " + " | ".join(cols) + f" | {lo} | {hi} |")
    print()


def fit_a(runs_path, runs, qatplan, work, nboot):
    """The fraction constant a per schedule: `qatplan fit --form fraction` on the records of one
    schedule (f = 0 and f = 1 runs belong to both)."""
    print("## The fraction constant a\n")
    print("`qatplan fit --form fraction --bootstrap` on the records of each schedule (groups "
          "resampled; repeated seeds averaged in log loss); the paper's a = 6.7297.\n")
    print("| schedule | a | 95% interval | f_hat against the groups' best fractions |")
    print("|---|---:|---|---:|")
    with open(runs_path) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    for sched in ("classic", "fused"):
        sub = os.path.join(work, f"runs-{sched}.jsonl")
        with open(sub, "w") as f:
            for r in lines:
                if r.get("bits", 16) < 16 and r.get("schedule") in (sched, "fp-only", "qat-only"):
                    f.write(json.dumps(r) + "\n")
        law = os.path.join(work, f"fraction-{sched}.law.json")
        p = subprocess.run([qatplan, "fit", sub, "--form", "fraction", "--bootstrap", str(nboot), "-o", law,
                            "--quiet"], capture_output=True, text=True)
        if p.returncode:
            print(f"| {sched} | fit failed: {p.stderr.strip()[:200]} | | |")
            continue
        j = json.load(open(law))
        val = j["coefficients"]["a"]
        ci = j.get("intervals", {}).get("a")
        method = j["provenance"]["method"]
        rm = method[method.find("RMSE"):] if "RMSE" in method else ""
        print(f"| {sched} | {val:.2f} | {('%.2f-%.2f' % tuple(ci)) if ci else 'n/a'} | {rm} |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs")
    ap.add_argument("--qatplan", default="build/cli/qatplan")
    ap.add_argument("--work", default=None)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--fit-bootstrap", type=int, default=200)
    a = ap.parse_args()
    runs = read_runs(a.runs)
    if not runs:
        sys.exit(f"{a.runs}: no ok run records")
    rng = np.random.default_rng(1)
    t = index(runs)
    g, seeds = groups(runs)
    print(f"{len(runs)} ok records, {len(g)} (N, D_total, bits) groups, seeds {seeds}\n")
    noise(t, runs)
    fraction_table(t, runs)
    fraction_trend(t, runs, a.bootstrap, rng)
    fused_vs_classic(t, runs)
    work = a.work or tempfile.mkdtemp(prefix="own-law-paired-")
    os.makedirs(work, exist_ok=True)
    fit_a(a.runs, runs, a.qatplan, work, a.fit_bootstrap)


if __name__ == "__main__":
    main()
