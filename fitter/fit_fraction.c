/* The fraction form: the constant a of f_hat = exp(-a / ln S_total), fitted by least
 * squares to the best QAT fraction of each (N, D_total, bits) group with >= 3 fractions. */
#include <gsl/gsl_errno.h>
#include <gsl/gsl_min.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fit_internal.h"

#define MAX_FRACS 64

typedef struct {
    double n, d;
    int bits, nf;
    double f[MAX_FRACS], y[MAX_FRACS]; /* distinct fractions, mean log loss at each */
    int c[MAX_FRACS];
} group_acc;

static int same(double a, double b) { return fabs(a - b) <= 1e-6 * fabs(a); }

typedef struct {
    const double *ls, *f, *w;
    int n;
} afit_data;

static double sse_a(double a, void *p)
{
    const afit_data *d = p;
    double s = 0;
    for (int i = 0; i < d->n; i++) {
        double e = exp(-a / d->ls[i]) - d->f[i];
        s += (d->w ? d->w[i] : 1) * e * e;
    }
    return s;
}

/* Least-squares a in [1e-3, 100]: the best of a log-spaced grid, refined by Brent. */
static int fit_a(const double *ls, const double *f, const double *w, int n, double *a_out)
{
    afit_data d = {ls, f, w, n};
    double best = INFINITY, ab = NAN;
    const int G = 400;
    double grid[400];
    for (int i = 0; i < G; i++) {
        grid[i] = exp(log(1e-3) + (log(100.0) - log(1e-3)) * i / (G - 1));
        double s = sse_a(grid[i], &d);
        if (s < best) {
            best = s;
            ab = grid[i];
        }
    }
    if (!isfinite(ab)) return -1;
    int k = 0;
    while (grid[k] != ab) k++;
    *a_out = ab;
    if (k == 0 || k == G - 1) return 0; /* on the edge: keep the grid point */
    gsl_min_fminimizer *m = gsl_min_fminimizer_alloc(gsl_min_fminimizer_brent);
    if (!m) return 0;
    gsl_function F = {sse_a, &d};
    if (gsl_min_fminimizer_set(m, &F, ab, grid[k - 1], grid[k + 1]) == GSL_SUCCESS) {
        for (int it = 0; it < 100; it++) {
            if (gsl_min_fminimizer_iterate(m) != GSL_SUCCESS) break;
            double lo = gsl_min_fminimizer_x_lower(m), hi = gsl_min_fminimizer_x_upper(m);
            if (gsl_min_test_interval(lo, hi, 1e-10, 0) == GSL_SUCCESS) break;
        }
        double x = gsl_min_fminimizer_x_minimum(m);
        if (isfinite(x) && sse_a(x, &d) <= best) *a_out = x;
    }
    gsl_min_fminimizer_free(m);
    return 0;
}

/* Leave one model size out: the RMSE of the held-out groups' fractions; NAN when none. */
static double fraction_loo(const fit_fraction_group *groups, int m, const double *size_seen, int sizes,
                           const double *ls, const double *fb, double *w)
{
    double sq = 0;
    int c = 0;
    for (int z = 0; z < sizes; z++) {
        for (int j = 0; j < m; j++) w[j] = same(groups[j].n_params, size_seen[z]) ? 0 : 1;
        double az;
        if (fit_a(ls, fb, w, m, &az) != 0) continue;
        for (int j = 0; j < m; j++)
            if (w[j] == 0) {
                double e = exp(-az / ls[j]) - fb[j];
                sq += e * e;
                c++;
            }
    }
    return c ? sqrt(sq / c) : NAN;
}

/* The bootstrap over groups: percentile interval of a and the samples into out. */
static qp_status fraction_bootstrap(const double *ls, const double *fb, double *w, int m, const fit_options *opt,
                                    data_law *out, fit_report *rep, qp_error *err)
{
    int K = opt->bootstrap, ks = 0;
    double *smp = malloc(sizeof(double) * (size_t)K);
    if (!smp) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    uint64_t rng = (opt->seed + 1) * 0xd1342543de82ef95ull;
    for (int k = 0; k < K; k++) {
        memset(w, 0, sizeof(double) * (size_t)m);
        for (int j = 0; j < m; j++) {
            int t = (int)(fit_rng_uniform(&rng) * m);
            w[t < m ? t : m - 1] += 1;
        }
        double ak;
        if (fit_a(ls, fb, w, m, &ak) == 0 && isfinite(ak)) smp[ks++] = ak;
    }
    rep->bootstrap_done = ks;
    rep->bootstrap_failed = K - ks;
    if (ks < 2) {
        free(smp);
        return QP_OK;
    }
    return fit_law_take_samples(out, smp, ks, opt->ci_level, err);
}

/* The provenance of a fraction fit: method, ranges and bit widths of the groups. */
static void fraction_provenance(const fit_report *rep, int m, data_law_provenance *p)
{
    snprintf(p->method, sizeof p->method,
             "least squares of exp(-a/ln S_total) to the best fraction of %d (N, D_total, bits) "
             "groups (parabola through each group's argmin, docs/fitter.md); fraction RMSE "
             "%.4f, MAE %.4f", m, rep->frac_rmse, rep->frac_mae);
    p->starts = 1;
    p->starts_at_best = 1;
    p->loo_rmse_log = NAN; /* that field is in log loss; the fraction's LOO is in the report */
    p->n_min = p->d_min = p->s_min = INFINITY;
    p->n_max = p->d_max = p->s_max = -INFINITY;
    for (int j = 0; j < m; j++) {
        const fit_fraction_group *o = &rep->groups[j];
        p->n_min = fmin(p->n_min, o->n_params);
        p->n_max = fmax(p->n_max, o->n_params);
        p->d_min = fmin(p->d_min, o->d_total);
        p->d_max = fmax(p->d_max, o->d_total);
        p->s_min = fmin(p->s_min, o->s_total);
        p->s_max = fmax(p->s_max, o->s_total);
        int z = 0;
        while (z < p->n_bits && p->bits[z] != o->bits) z++;
        if (z == p->n_bits && p->n_bits < 16) p->bits[p->n_bits++] = o->bits;
    }
}

qp_status fit_fraction_form(const data_run_list *runs, const unsigned char *used,
                            const fit_options *opt, data_law *out, fit_report *rep, qp_error *err);

qp_status fit_fraction_form(const data_run_list *runs, const unsigned char *used,
                            const fit_options *opt, data_law *out, fit_report *rep, qp_error *err)
{
    size_t n = runs->n;
    group_acc *g = calloc(n + 1, sizeof *g);
    if (!g) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int ng = 0, q_runs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!used[i]) continue;
        const data_run *r = &runs->runs[i];
        if (data_run_is_fp(r)) {
            rep->n_other_form++;
            continue;
        }
        q_runs++;
        double d = data_run_tokens(r), f = data_run_fraction(r);
        int j = 0;
        while (j < ng && !(data_group_same(g[j].n, g[j].d, r->n_params, d) && g[j].bits == r->bits)) j++;
        if (j == ng) {
            g[ng].n = r->n_params;
            g[ng].d = d;
            g[ng].bits = r->bits;
            ng++;
        }
        int k = 0;
        while (k < g[j].nf && fabs(g[j].f[k] - f) > 1e-9) k++;
        if (k == g[j].nf) {
            if (k == MAX_FRACS) continue;
            g[j].f[k] = f;
            g[j].nf++;
        }
        g[j].y[k] += log(r->loss); /* repeated seeds: mean log loss */
        g[j].c[k]++;
    }
    rep->n_used = q_runs;
    /* keep groups with >= 3 fractions and S_total > 1; sort each by fraction */
    fit_fraction_group *fg = calloc((size_t)ng + 1, sizeof *fg);
    double *ls = malloc(sizeof(double) * ((size_t)ng + 1)), *fb = malloc(sizeof(double) * ((size_t)ng + 1));
    double *w = malloc(sizeof(double) * ((size_t)ng + 1));
    qp_status st = QP_OK;
    if (!fg || !ls || !fb || !w) {
        st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
        goto done;
    }
    int m = 0, sizes = 0;
    double size_seen[64];
    for (int j = 0; j < ng; j++) {
        group_acc *a = &g[j];
        for (int k = 0; k < a->nf; k++) a->y[k] /= a->c[k];
        for (int p = 1; p < a->nf; p++)
            for (int q = p; q > 0 && a->f[q] < a->f[q - 1]; q--) {
                double tf = a->f[q], ty = a->y[q];
                a->f[q] = a->f[q - 1];
                a->y[q] = a->y[q - 1];
                a->f[q - 1] = tf;
                a->y[q - 1] = ty;
            }
        double s = law_tokens_per_param_byte(a->d, a->n, a->bits);
        if (a->nf < 3 || !(s > 1)) continue;
        fit_fraction_group *o = &fg[m];
        o->n_params = a->n;
        o->d_total = a->d;
        o->s_total = s;
        o->bits = a->bits;
        o->n_fractions = a->nf;
        o->f_best = data_best_fraction(a->f, a->y, a->nf, &o->f_argmin);
        ls[m] = log(s);
        fb[m] = o->f_best;
        int z = 0;
        while (z < sizes && !same(size_seen[z], a->n)) z++;
        if (z == sizes && sizes < 64) size_seen[sizes++] = a->n;
        m++;
    }
    if (m < 2) {
        st = qp_fail(err, QP_ERR_UNIDENTIFIED,
                     "cannot identify the fraction form: %d (N, D_total, bits) group(s) with >= 3 "
                     "QAT fractions and S_total > 1 (from %d quantized runs); it needs >= 2: run "
                     "each configuration at three or more fractions, e.g. 0.1, 0.3, 0.5", m, q_runs);
        goto done;
    }
    double a;
    if (fit_a(ls, fb, NULL, m, &a) != 0 || !isfinite(a)) {
        st = qp_fail(err, QP_ERR_NUMERIC, "the fraction fit failed to find a finite a");
        goto done;
    }
    out->coef[0] = a;
    double se = 0, ae = 0;
    for (int j = 0; j < m; j++) {
        fg[j].f_fit = exp(-a / ls[j]);
        double e = fg[j].f_fit - fg[j].f_best;
        se += e * e;
        ae += fabs(e);
    }
    rep->frac_rmse = sqrt(se / m);
    rep->frac_mae = ae / m;
    rep->groups = fg;
    rep->n_groups = m;
    fg = NULL;
    rep->starts = rep->starts_ok = rep->starts_at_best = 1;
    rep->best_objective = se;

    /* leave one model size out, in the fraction's units (reported as the fraction's LOO RMSE) */
    if (opt->loo && sizes >= 3) rep->loo_rmse_log = fraction_loo(rep->groups, m, size_seen, sizes, ls, fb, w);
    if (opt->bootstrap > 0 && (st = fraction_bootstrap(ls, fb, w, m, opt, out, rep, err))) goto done;
    fraction_provenance(rep, m, &out->prov);
done:
    free(g);
    free(fg);
    free(ls);
    free(fb);
    free(w);
    return st;
}
