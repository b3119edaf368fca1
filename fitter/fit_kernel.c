/* The chinchilla-form objective as one vectorised loop over the points.
 *
 * Profiling the fit showed 99% of the time in the objective, half of it in glibc's exp and
 * log, which do not vectorise without -ffast-math (banned here). So the loop uses its own
 * exp and log: branch-free, written with IEEE bit operations only, relative error below
 * 3e-16 (exp, degree-12 Taylor after reduction to |r| <= ln2/2) and 2e-16 (log, atanh series
 * to s^21 after reduction to [sqrt(1/2), sqrt(2))), so the objective agrees with a libm
 * evaluation to ~1e-15 relative (tests/test_fit.c checks it and the gradient). The kernel is
 * compiled for AVX-512, AVX2 and baseline x86-64; the loader picks one (target_clones). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fit_internal.h"

static inline double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static inline uint64_t to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

/* exp(x) for x in [-700, 700] (callers keep x there). */
static inline double k_exp(double x)
{
    const double shifter = 0x1.8p52; /* adding it rounds to an integer held in the low bits */
    double kd = x * 0x1.71547652b82fep0 + shifter;
    uint64_t kb = to_bits(kd);
    kd -= shifter;
    /* Cody-Waite: ln2_hi has trailing zero bits, so k * ln2_hi is exact (fdlibm's split) */
    double r = x - kd * 0x1.62e42feep-1;
    r -= kd * 0x1.a39ef35793c76p-33;
    double p = 1.0 / 479001600;
    p = p * r + 1.0 / 39916800;
    p = p * r + 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k: the low 12 bits of kb + 1023 are k + 1023 (|k| <= 1010) */
    return p * from_bits((kb + 1023) << 52);
}

/* log(x) for a positive normal finite x. */
static inline double k_log(double x)
{
    uint64_t b = to_bits(x);
    double m = from_bits((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull); /* [1, 2) */
    double e = from_bits(0x4330000000000000ull | (b >> 52)) - 0x1p52 - 1023;
    int big = m > 0x1.6a09e667f3bcdp0; /* sqrt(2) */
    m = big ? m * 0.5 : m;
    e = big ? e + 1 : e;
    double s = (m - 1) / (m + 1), s2 = s * s;
    double p = 1.0 / 21;
    p = p * s2 + 1.0 / 19;
    p = p * s2 + 1.0 / 17;
    p = p * s2 + 1.0 / 15;
    p = p * s2 + 1.0 / 13;
    p = p * s2 + 1.0 / 11;
    p = p * s2 + 1.0 / 9;
    p = p * s2 + 1.0 / 7;
    p = p * s2 + 1.0 / 5;
    p = p * s2 + 1.0 / 3;
    p = p * s2 + 1.0;
    return e * 0x1.62e42fefa39efp-1 + (e * 0x1.abc9e3b39803fp-56 + 2 * s * p);
}

double fit_kernel_exp(double x) { return k_exp(x); }
double fit_kernel_log(double x) { return k_log(x); }

__attribute__((target_clones("avx512f", "avx2", "default")))
double fit_kernel_chinchilla(size_t n, const double *zn, const double *zd, const double *y,
                             const double *w, const double *u, double delta, double *g)
{
    const double E = k_exp(u[0]), ua = u[1], ub = u[2], al = u[3], be = u[4], d = delta;
    double f = 0, ge = 0, ga = 0, gb = 0, gal = 0, gbe = 0;
#pragma omp simd reduction(+ : f, ge, ga, gb, gal, gbe)
    for (size_t i = 0; i < n; i++) {
        double ea = k_exp(ua - al * zn[i]), eb = k_exp(ub - be * zd[i]);
        double L = E + ea + eb;
        double r = k_log(L) - y[i];
        double ar = fabs(r), c = ar < d ? ar : d;
        f += w[i] * c * (ar - 0.5 * c);
        double psi = w[i] * (r < 0 ? -c : c) / L;
        ge += psi;
        ga += psi * ea;
        gal -= psi * ea * zn[i];
        gb += psi * eb;
        gbe -= psi * eb * zd[i];
    }
    if (g) {
        g[0] = ge * E;
        g[1] = ga;
        g[2] = gb;
        g[3] = gal;
        g[4] = gbe;
    }
    return f;
}

/* Any form: log L = m + log(sum_k exp(t_k - m)) over the 3 terms of every point and the 3
 * penalty terms of quantized points, m the largest term, so any finite u is safe (terms more
 * than 700 below the largest count as 1e-304 of it). */
__attribute__((target_clones("avx512f", "avx2", "default")))
double fit_kernel_lse(const fit_problem *P, const double *u, double *g)
{
    const double d = P->delta;
    const double *zn = P->zn, *zd = P->zd, *zb = P->zb, *zq = P->zq, *zf = P->zf, *y = P->y, *w = P->w;
    const unsigned char *quant = P->quant;
    const int qat = P->form == DATA_LAW_QAT;
    double f = 0, g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0, g8 = 0, g9 = 0,
           g10 = 0, g11 = 0, g12 = 0, g13 = 0, g14 = 0, g15 = 0;
    const double u0 = u[0], u1 = u[1], u2 = u[2], u3 = u[3], u4 = u[4];
    const double u5 = qat ? u[5] : 0, u6 = qat ? u[6] : 0, u7 = qat ? u[7] : 0, u8 = qat ? u[8] : 0,
                 u9 = qat ? u[9] : 0, u10 = qat ? u[10] : 0, u11 = qat ? u[11] : 0,
                 u12 = qat ? u[12] : 0, u13 = qat ? u[13] : 0, u14 = qat ? u[14] : 0,
                 u15 = qat ? u[15] : 0;
#pragma omp simd reduction(+ : f, g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15)
    for (size_t i = 0; i < P->n; i++) {
        double q = qat && quant[i] ? 1.0 : 0.0;
        double t0 = u0, t1 = u1 - u3 * zn[i], t2 = u2 - u4 * zd[i];
        double t3 = u5 - u6 * zb[i];
        double t4 = u7 - u8 * zb[i] - u9 * zn[i] - u10 * zq[i];
        double t5 = u11 - u12 * zb[i] + u13 * zf[i] - u14 * zn[i] - u15 * zq[i];
        double m = t0 > t1 ? t0 : t1;
        m = m > t2 ? m : t2;
        double m3 = t3 > t4 ? t3 : t4;
        m3 = m3 > t5 ? m3 : t5;
        m = q > 0 && m3 > m ? m3 : m;
#define EXPD(t) k_exp((t) - m > -700 ? (t) - m : -700)
        double e0 = EXPD(t0), e1 = EXPD(t1), e2 = EXPD(t2);
        double e3 = q * EXPD(t3), e4 = q * EXPD(t4), e5 = q * EXPD(t5);
#undef EXPD
        double s = e0 + e1 + e2 + e3 + e4 + e5;
        double r = m + k_log(s) - y[i];
        double ar = fabs(r), c = ar < d ? ar : d;
        f += w[i] * c * (ar - 0.5 * c);
        double psi = w[i] * (r < 0 ? -c : c) / s;
        double p0 = psi * e0, p1 = psi * e1, p2 = psi * e2, p3 = psi * e3, p4 = psi * e4, p5 = psi * e5;
        g0 += p0;
        g1 += p1;
        g3 -= p1 * zn[i];
        g2 += p2;
        g4 -= p2 * zd[i];
        g5 += p3;
        g6 -= p3 * zb[i];
        g7 += p4;
        g8 -= p4 * zb[i];
        g9 -= p4 * zn[i];
        g10 -= p4 * zq[i];
        g11 += p5;
        g12 -= p5 * zb[i];
        g13 += p5 * zf[i];
        g14 -= p5 * zn[i];
        g15 -= p5 * zq[i];
    }
    if (g) {
        const double gg[16] = {g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15};
        memcpy(g, gg, sizeof(double) * (size_t)P->np);
    }
    return f;
}
