#!/usr/bin/python3
"""Tables of the seed-method experiments (docs/seed-methods.md) from their run records.

  /usr/bin/python3 scripts/seed_methods_report.py [DIR]     (default data/sweeps/seed-methods)

Reads DIR/e3-runs.jsonl, e4-runs.jsonl, e6-runs.jsonl, the second shape's e3-L4d128-runs.jsonl,
e4-L4d128-runs.jsonl and e6-L4d128-runs.jsonl (qatplan-run-v1 records of the grids
beside them; the method entry's name is in the run id) and prints markdown: per bit width and
configuration the mean loss over seeds with its standard error, the recovered share of the
PTQ-to-QAT gap R = (L_ptq - L) / (L_ptq - L_qat) computed per seed (paired: every method of a
seed starts from that seed's FP model) and its standard error, counted FLOPs per QAT token,
and the paired differences the verdicts rest on. Standard library and numpy only.
"""
import json
import math
import os
import re
import sys

import numpy as np

ID = re.compile(r"-f1-qat-(?P<name>.+)-s(?P<seed>\d+)-[0-9a-f]{12}$")


def load(path):
    runs = []
    if not os.path.exists(path):
        return runs
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            m = ID.search(r.get("run_id", ""))
            if not m or r.get("status", "ok") != "ok" or not isinstance(r.get("loss"), (int, float)):
                continue
            r["_name"], r["_seed"] = m.group("name"), int(m.group("seed"))
            runs.append(r)
    return runs


def mean_se(x):
    x = np.asarray(x, float)
    if len(x) == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def fmt(m, se, d=4):
    if not math.isfinite(m):
        return "-"
    return ("%.*f" % (d, m)) + ((" ± %.*f" % (d, se)) if math.isfinite(se) else "")


def table(runs, key):
    """{(bits, key(run)): {seed: run}}"""
    t = {}
    for r in runs:
        t.setdefault((r["bits"], key(r)), {})[r["_seed"]] = r
    return t


def best_lr(t, bits, prefix):
    """The configuration name among prefix-lr* with the lowest mean loss at these bits."""
    cands = [(np.mean([r["loss"] for r in v.values()]), n) for (b, n), v in t.items()
             if b == bits and n.startswith(prefix + "-lr")]
    return min(cands)[1] if cands else None


def recovery(t, bits, name, ref):
    """Per-seed R of configuration `name` against full QAT `ref`, paired by seed."""
    out = []
    for s, r in t.get((bits, name), {}).items():
        q = t.get((bits, ref), {}).get(s)
        if q is None:
            continue
        gap = r["loss_ptq"] - q["loss"]
        if gap > 0:
            out.append((r["loss_ptq"] - r["loss"]) / gap)
    return out


def e3(runs, shape="L2-D64 (117K)"):
    t = table(runs, lambda r: r["_name"])
    dq = sorted({r["d_qat"] for r in runs})
    print("### E3, %s: recovery with the same QAT tokens (%s), CWPL\n" % (shape, ", ".join("{:,}".format(d) for d in dq)))
    print("Loss in nats/byte, mean ± standard error over seeds; R = share of the PTQ-to-QAT gap "
          "recovered, per seed against full QAT at its best learning rate, then averaged.\n")
    for bits in sorted({b for b, _ in t}):
        ref = best_lr(t, bits, "qat")
        print("**%d bits** (full QAT's best QAT-phase LR: %s)\n" % (bits, ref.split("-", 1)[1] if ref else "-"))
        print("| configuration | seeds | L_ptq | loss | R | FLOPs/token (QAT) | unfrozen (eff.) |")
        print("|---|---|---|---|---|---|---|")
        for (b, n), v in sorted(t.items(), key=lambda kv: (kv[0][1])):
            if b != bits:
                continue
            ptq = mean_se([r["loss_ptq"] for r in v.values()])
            loss = mean_se([r["loss"] for r in v.values()])
            rec = mean_se(recovery(t, bits, n, ref)) if ref else (float("nan"), float("nan"))
            fl = np.mean([r.get("flops_qat", float("nan")) / max(r.get("d_qat", 1), 1) for r in v.values()])
            eff = np.mean([r.get("unfrozen_ratio_eff", 1.0) for r in v.values()])
            print("| %s | %d | %s | %s | %s | %.4g | %.3f |" % (n, len(v), fmt(*ptq), fmt(*loss), fmt(*rec, d=3), fl, eff))
        print()
        for tag in ("ef25", "ef05", "ef00"):
            best = best_lr(t, bits, tag)
            if best and ref:
                r = mean_se(recovery(t, bits, best, ref))
                d = [t[(bits, best)][s]["loss"] - t[(bits, ref)][s]["loss"] for s in t[(bits, best)] if s in t[(bits, ref)]]
                dm = mean_se(d)
                print("- %s at its best LR (%s): R = %s; loss - full QAT = %s (paired, %d seeds)" %
                      (tag, best.split("-", 1)[1], fmt(*r, d=3), fmt(*dm), len(d)))
        print()
    return t


def e4(runs, t3, shape="L2-D64 (117K)", e3_tokens=499712, eq_tokens=342016, ef_name=None):
    """E4 (small budgets) and E5 (EfQAT r = 0.05 with E3's tokens against full QAT with
    eq_tokens, about the same counted FLOPs); ef_name(bits): EfQAT's E3 configuration (default
    its best LR there)."""
    ef_name = ef_name or (lambda bits: best_lr(t3, bits, "ef05"))
    t = table(runs, lambda r: (r["_name"], r["d_qat"]))
    print("### E4/E5, %s: small QAT budgets and equal FLOPs\n" % shape)
    print("| bits | configuration | QAT tokens | seeds | L_ptq | loss | L_ptq - loss | flops_qat |")
    print("|---|---|---|---|---|---|---|---|")
    for (bits, (n, dq)), v in sorted(t.items(), key=lambda kv: (kv[0][0], kv[0][1][1], kv[0][1][0])):
        ptq = mean_se([r["loss_ptq"] for r in v.values()])
        loss = mean_se([r["loss"] for r in v.values()])
        gain = mean_se([r["loss_ptq"] - r["loss"] for r in v.values()])
        fq = np.mean([r.get("flops_qat", float("nan")) for r in v.values()])
        print("| %d | %s | %d | %d | %s | %s | %s | %.4g |" % (bits, n, dq, len(v), fmt(*ptq), fmt(*loss), fmt(*gain), fq))
    print()
    for bits in sorted({b for b, _ in t}):
        name = ef_name(bits)
        ef = t3.get((bits, name), {})
        q = {s: r for (b, (n, dq)), v in t.items() if b == bits and n.startswith("qat") and dq == eq_tokens
             for s, r in v.items()}
        d = [ef[s]["loss"] - q[s]["loss"] for s in ef if s in q]
        if d:
            fl = (np.mean([r["flops_qat"] for r in ef.values()]), np.mean([r["flops_qat"] for r in q.values()]))
            print("- E5, %d bits: EfQAT r = 0.05 (%s) with %s tokens (%.3g FLOPs) minus full QAT with %s "
                  "tokens (%.3g FLOPs): %s nats/byte (paired, %d seeds)" % (bits, name, "{:,}".format(e3_tokens), fl[0],
                                                                            "{:,}".format(eq_tokens), fl[1], fmt(*mean_se(d)), len(d)))
        etas = token_efficiency(t, t3, bits, name, e3_tokens)
        if etas:
            print("- token efficiency of EfQAT r = 0.05 at %d bits: the full-QAT tokens (LR 3e-4) that reach its loss "
                  "with %s tokens, over that, per seed by log-linear interpolation between full QAT's budgets: "
                  "eta = %s (%s)" % (bits, "{:,}".format(e3_tokens), fmt(*mean_se(etas), d=3), ", ".join("%.3f" % e for e in etas)))
    print()


def token_efficiency(t, t3, bits, ef_name, e3_tokens):
    """Per seed: tokens full QAT needs for EfQAT r = 0.05's loss at e3_tokens, over e3_tokens."""
    out = []
    for s, ef in t3.get((bits, ef_name), {}).items():
        pts = sorted((dq, v[s]["loss"]) for (b, (n, dq)), v in t.items() if b == bits and n == "qat-lr3e-4" and s in v)
        q5 = t3.get((bits, "qat-lr3e-4"), {}).get(s)
        if q5:
            pts.append((e3_tokens, q5["loss"]))
        pts.sort()
        for (d0, l0), (d1, l1) in zip(pts, pts[1:]):
            if l0 >= ef["loss"] >= l1 and l0 > l1:
                x = math.log(d0) + (l0 - ef["loss"]) / (l0 - l1) * (math.log(d1) - math.log(d0))
                out.append(math.exp(x) / e3_tokens)
                break
    return out


def e6(runs, t3, shape="L2-D64 (117K)"):
    t = table(runs, lambda r: r["_name"])
    print("### E6, %s: selection modes (QAT-phase LR 3e-3)\n" % shape)
    print("| bits | configuration | seeds | loss | minus CWPL (paired) | unfrozen (eff.) |")
    print("|---|---|---|---|---|---|")
    for (bits, n), v in sorted(t.items()):
        base = t3.get((bits, n.split("-")[0] + "-lr3e-3"), {})
        d = [v[s]["loss"] - base[s]["loss"] for s in v if s in base]
        eff = np.mean([r.get("unfrozen_ratio_eff", float("nan")) for r in v.values()])
        print("| %d | %s | %d | %s | %s | %.3f |" % (bits, n, len(v), fmt(*mean_se([r["loss"] for r in v.values()])),
                                                   fmt(*mean_se(d)) if d else "-", eff))
    print()


def q2(runs):
    t = table(runs, lambda r: r["_name"])
    print("### Q2-Q5: Block-AP, E2E-QP and both against RTN and full QAT (asym, 499,712 token passes)\n")
    print("| bits | configuration | loss | minus full QAT, same groups (paired) | L_ptq (RTN) | storage b/w | "
          "FLOPs per token pass | train_state_bytes | block MSE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (bits, n), v in sorted(t.items()):
        g = n.split("-")[1]
        ref = t.get((bits, "qat-" + g), {})
        d = [v[s]["loss"] - ref[s]["loss"] for s in v if s in ref]
        ex = next(iter(v.values()))
        bits_w = ex.get("storage_bits_per_weight")
        print("| %d | %s | %s | %s | %s | %s | %.3g | %.3g MB | %s |" % (
            bits, n, fmt(*mean_se([r["loss"] for r in v.values()])), fmt(*mean_se(d)) if d and n != "qat-" + g else "-",
            fmt(*mean_se([r["loss_ptq"] for r in v.values()])), "%.3f" % bits_w if bits_w else "-",
            ex.get("flops_qat", float("nan")) / max(ex.get("d_qat", 1), 1), ex.get("train_state_bytes", float("nan")) / 1e6,
            "%.3f" % np.mean([r["blockap_mse"] for r in v.values()]) if "blockap_mse" in ex else "-"))
    print()
    for bits in sorted({b for b, _ in t}):
        for lr in ("lr1e-3", "eqlr"):
            for g in ("g16", "row"):
                both = t.get((bits, "eqat-%s-%s" % (g, lr)), {})
                for other in ("bap", "e2e"):
                    o = t.get((bits, "%s-%s-%s" % (other, g, lr)), {})
                    d = [both[s]["loss"] - o[s]["loss"] for s in both if s in o]
                    if d:
                        print("- %d bits, %s, %s: efficientqat minus %s alone %s" % (bits, g, lr, other, fmt(*mean_se(d))))
    print()


def q6(runs):
    t = table(runs, lambda r: (r["_name"], r["d_qat"]))
    print("### Q6: EfficientQAT and full QAT at small QAT budgets (2 bits, asym g16)\n")
    print("| configuration | QAT token passes | loss | FLOPs | EfficientQAT minus full QAT (paired, same tokens) |")
    print("|---|---|---|---|---|")
    for (bits, (n, dq)), v in sorted(t.items(), key=lambda kv: (kv[0][1][1], kv[0][1][0])):
        q = t.get((bits, ("qat-g16", dq)), {})
        d = [v[s]["loss"] - q[s]["loss"] for s in v if s in q] if n != "qat-g16" else []
        print("| %s | %d | %s | %.3g | %s |" % (n, dq, fmt(*mean_se([r["loss"] for r in v.values()])),
                                             np.mean([r["flops_qat"] for r in v.values()]), fmt(*mean_se(d)) if d else "-"))
    print()


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "data/sweeps/seed-methods"
    r3 = load(os.path.join(d, "e3-runs.jsonl"))
    t3 = e3(r3) if r3 else {}
    r3b = load(os.path.join(d, "e3-L4d128-runs.jsonl"))
    t3b = e3(r3b, "L4-D128 (0.82M)") if r3b else {}
    r4 = load(os.path.join(d, "e4-runs.jsonl"))
    if r4:
        e4(r4, t3, ef_name=lambda bits: "ef05-lr3e-3")
    r4b = load(os.path.join(d, "e4-L4d128-runs.jsonl"))
    if r4b and r3b:
        e4(r4b, t3b, "L4-D128 (0.82M)", 999424, 698368)
    r6 = load(os.path.join(d, "e6-runs.jsonl"))
    if r6:
        e6(r6, t3)
    r6b = load(os.path.join(d, "e6-L4d128-runs.jsonl"))
    if r6b and r3b:
        e6(r6b, t3b, "L4-D128 (0.82M)")
    rq = load(os.path.join(d, "q2-runs.jsonl"))
    if rq:
        q2(rq)
    rq6 = load(os.path.join(d, "q6-runs.jsonl"))
    if rq6:
        q6(rq6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
