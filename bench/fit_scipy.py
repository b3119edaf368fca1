#!/usr/bin/python3
"""Reference for bench/bench_fit.c: the chinchilla-form fit with scipy's L-BFGS-B.

Same data (the CSV the C benchmark writes: N, D, loss), same objective as qatplan's fitter
(summed Huber, delta 1e-3, on log L_hat - log L with log L_hat = LSE(e, a - alpha ln N,
b - beta ln D), plus the quadratic bound penalty 1e4 * violation^2 for e > ln(min loss) and
alpha, beta outside [0, 2.5]), analytic gradient, the same 4,500 starts (Epoch AI's grid),
scipy's default tolerances. Prints one line: seconds, best objective (Huber without the
penalty at the best start), starts, evaluations. Run with Debian's /usr/bin/python3.
"""
import sys
import time

import numpy as np
from scipy.optimize import minimize

DELTA = 1e-3
BOUND_W = 1e4


def main():
    data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
    ln_n, ln_d, y = np.log(data[:, 0]), np.log(data[:, 1]), np.log(data[:, 2])
    e_max = np.log(data[:, 2].min())
    lo = np.array([-np.inf, -np.inf, -np.inf, 0.0, 0.0])
    hi = np.array([e_max, np.inf, np.inf, 2.5, 2.5])
    evals = [0]

    def huber_and_grad(p):
        e, a, b, al, be = p
        t0 = np.full_like(y, e)
        t1 = a - al * ln_n
        t2 = b - be * ln_d
        m = np.maximum(np.maximum(t0, t1), t2)
        x0, x1, x2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(t2 - m)
        s = x0 + x1 + x2
        r = m + np.log(s) - y
        ar = np.abs(r)
        f = np.where(ar <= DELTA, 0.5 * r * r, DELTA * (ar - 0.5 * DELTA)).sum()
        psi = np.clip(r, -DELTA, DELTA) / s
        w1, w2 = psi * x1, psi * x2
        g = np.array([(psi * x0).sum(), w1.sum(), w2.sum(), -(w1 * ln_n).sum(), -(w2 * ln_d).sum()])
        return f, g

    def objective(p):
        evals[0] += 1
        f, g = huber_and_grad(p)
        v = np.where(p > hi, p - hi, np.where(p < lo, p - lo, 0.0))
        return f + BOUND_W * (v * v).sum(), g + 2 * BOUND_W * v

    # Epoch AI's grid, in the order qatplan's fit_chinchilla_grid uses: (e, a, b, alpha, beta)
    starts = [(e, a, b, al, be)
              for al in np.arange(0, 2.01, 0.5) for be in np.arange(0, 2.01, 0.5)
              for e in np.arange(-1, 1.01, 0.5) for a in np.arange(0, 25.1, 5) for b in np.arange(0, 25.1, 5)]
    t0 = time.perf_counter()
    best_f, best_x = np.inf, None
    for s in starts:
        res = minimize(objective, np.array(s, dtype=float), jac=True, method="L-BFGS-B")
        if np.isfinite(res.fun) and res.fun < best_f:
            best_f, best_x = res.fun, res.x
    secs = time.perf_counter() - t0
    huber = huber_and_grad(best_x)[0]
    print(f"scipy seconds {secs:.3f} best_objective {huber:.12g} starts {len(starts)} evals {evals[0]} "
          f"alpha {best_x[3]:.6f} beta {best_x[4]:.6f}")


if __name__ == "__main__":
    main()
