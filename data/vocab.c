/* vocab.c: the run vocabulary, one owner each: shape and parameter count, bit widths and
 * full precision, fraction and schedule, run groups and a group's best fraction. */
#include <math.h>

#include "data.h"

double data_shape_params_nonembed(const data_model_shape *s)
{
    double D = s->d_model, F = s->d_ff, hd = D / s->n_head, Dkv = hd * s->n_kv_head;
    double per_layer = D * (D + 2 * Dkv) + D * D + 3 * D * F + 2 * D;
    return s->n_layer * per_layer + D;
}

double data_shape_params(const data_model_shape *s)
{
    return data_shape_params_nonembed(s) + (double)s->vocab * s->d_model;
}

int data_bits_valid(int bits) { return (bits >= 1 && bits <= 8) || bits == 16 || bits == 32; }

int data_bits_is_fp(int bits) { return bits >= DATA_FP_BITS; }

int data_run_is_fp(const data_run *r) { return data_bits_is_fp(r->bits); }

double data_run_fraction(const data_run *r) { return data_run_is_fp(r) ? 0 : r->d_qat / data_run_tokens(r); }

data_schedule data_schedule_resolve(int bits, double d_fp, double d_qat, data_schedule chosen)
{
    if (data_bits_is_fp(bits) || d_qat == 0) return DATA_SCHED_FP_ONLY;
    if (d_fp == 0) return DATA_SCHED_QAT_ONLY;
    return chosen == DATA_SCHED_FUSED ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC;
}

static int near(double a, double b, double rel) { return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)); }

int data_group_same(double n_a, double d_a, double n_b, double d_b)
{
    return near(n_a, n_b, DATA_GROUP_N_TOL) && near(d_a, d_b, DATA_GROUP_D_TOL);
}

int data_run_same_group(const data_run *a, const data_run *b)
{
    return data_group_same(a->n_params, data_run_tokens(a), b->n_params, data_run_tokens(b));
}

/* sqrt(f) because the loss curves fall steeply at small f and flatten beyond the optimum:
 * on the synthetic law's 0.1 grid a parabola in f is off by up to 0.023 (0.073 over 5
 * points), in sqrt f by up to 0.022 with a third of the mean error (docs/fitter.md). */
double data_best_fraction(const double *f, const double *y, int n, double *f_argmin)
{
    if (f_argmin) *f_argmin = NAN;
    if (n < 1) return NAN;
    int k = 0;
    for (int i = 1; i < n; i++)
        if (y[i] < y[k]) k = i;
    if (f_argmin) *f_argmin = f[k];
    int lo = k - 1 < 0 ? 0 : k - 1, hi = k + 1 >= n ? n - 1 : k + 1;
    while (hi - lo < 2) { /* at least three points */
        if (lo > 0) lo--;
        else if (hi < n - 1) hi++;
        else break;
    }
    /* normal equations of y = c0 + c1 t + c2 t^2 with t = sqrt(f) - sqrt(f_k) */
    double s[5] = {0}, r[3] = {0}, sk = sqrt(f[k]);
    for (int i = lo; i <= hi; i++) {
        double t = sqrt(f[i]) - sk, p = 1;
        for (int j = 0; j < 5; j++, p *= t) {
            s[j] += p;
            if (j < 3) r[j] += p * y[i];
        }
    }
    double M[3][3] = {{s[0], s[1], s[2]}, {s[1], s[2], s[3]}, {s[2], s[3], s[4]}};
    double det = M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1]) -
                 M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0]) +
                 M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
    if (!(fabs(det) > 1e-300)) return f[k];
    /* Cramer's rule for c1 and c2 */
    double d1 = M[0][0] * (r[1] * M[2][2] - M[1][2] * r[2]) - r[0] * (M[1][0] * M[2][2] - M[1][2] * M[2][0]) +
                M[0][2] * (M[1][0] * r[2] - r[1] * M[2][0]);
    double d2 = M[0][0] * (M[1][1] * r[2] - r[1] * M[2][1]) - M[0][1] * (M[1][0] * r[2] - r[1] * M[2][0]) +
                r[0] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
    double c1 = d1 / det, c2 = d2 / det;
    if (!(c2 > 0)) return f[k];
    double v = sk - c1 / (2 * c2);
    if (v < sqrt(f[lo])) v = sqrt(f[lo]);
    if (v > sqrt(f[hi])) v = sqrt(f[hi]);
    return v * v;
}
