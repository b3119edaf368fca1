/* The fitter's objective (summed Huber on log-loss residuals plus a quadratic penalty
 * outside the physical bounds), its analytic gradient, and GSL BFGS2 multi-start. */
#include <gsl/gsl_errno.h>
#include <gsl/gsl_multimin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "fit_internal.h"

enum { P_E, P_A, P_B, P_ALPHA, P_BETA, P_THETA, P_KAPPA, P_PHI, P_CHI, P_PSI, P_OMEGA,
       P_LAMBDA, P_MU, P_XI, P_NU, P_RHO };

/* ---- random numbers ------------------------------------------------------ */

uint64_t fit_rng_next(uint64_t *s) { return qp_rng_next(s); }

double fit_rng_uniform(uint64_t *s) { return qp_rng_uniform(s); }

double fit_rng_normal(uint64_t *s)
{
    double u1 = fit_rng_uniform(s), u2 = fit_rng_uniform(s);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* ---- the problem --------------------------------------------------------- */

void fit_lhs_column(int n, double lo, double hi, double scale, uint64_t *rng, int *perm, double *out,
                    size_t stride)
{
    for (int k = 0; k < n; k++) perm[k] = k;
    for (int k = n - 1; k > 0; k--) {
        int r = (int)(fit_rng_uniform(rng) * (k + 1));
        int t = perm[k];
        perm[k] = perm[r];
        perm[r] = t;
    }
    for (int k = 0; k < n; k++) out[(size_t)k * stride] = scale * (lo + (hi - lo) * (perm[k] + fit_rng_uniform(rng)) / n);
}

qp_status fit_law_take_samples(data_law *law, double *samples, int ks, double level, qp_error *err)
{
    int np = data_law_ncoef(law->form);
    double *col = malloc(sizeof(double) * (size_t)ks);
    if (!col) {
        free(samples);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    double a = (1 - level) / 2;
    for (int j = 0; j < np; j++) {
        for (int k = 0; k < ks; k++) col[k] = samples[(size_t)k * (size_t)np + (size_t)j];
        qsort(col, (size_t)ks, sizeof(double), qp_cmp_double);
        law->ci_lo[j] = qp_percentile_sorted(col, ks, a);
        law->ci_hi[j] = qp_percentile_sorted(col, ks, 1 - a);
    }
    free(col);
    law->has_interval = 1;
    law->ci_level = level;
    law->n_samples = ks;
    law->samples = samples;
    return QP_OK;
}

/* Distinct values of v (exact), and each element's index into them. */
static int distinct(const double *v, size_t n, double *uniq, int *idx)
{
    memcpy(uniq, v, n * sizeof(double));
    qsort(uniq, n, sizeof(double), qp_cmp_double);
    int m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || uniq[i] != uniq[m - 1]) uniq[m++] = uniq[i];
    for (size_t i = 0; i < n; i++) {
        int lo = 0, hi = m - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (uniq[mid] < v[i]) lo = mid + 1;
            else hi = mid;
        }
        idx[i] = lo;
    }
    return m;
}

qp_status fit_problem_init(fit_problem *P, data_law_form form, const law_point *x,
                           const double *loss, size_t n, double delta, int center, qp_error *err)
{
    memset(P, 0, sizeof *P);
    P->form = form;
    P->np = data_law_ncoef(form);
    P->n = n;
    P->delta = delta;
    /* 9 double arrays (y w zn zd zb zq zf un ud), the index arrays as doubles' worth of room */
    size_t nd = 9 * n + 2 * n + n; /* + in, id (stored in double slots), quant */
    P->block = malloc((nd + 1) * sizeof(double));
    if (!P->block) return qp_fail(err, QP_ERR_NOMEM, "out of memory for %zu fit points", n);
    double *b = P->block;
    P->y = b; b += n;
    P->w = b; b += n;
    P->zn = b; b += n;
    P->zd = b; b += n;
    P->zb = b; b += n;
    P->zq = b; b += n;
    P->zf = b; b += n;
    P->un = b; b += n;
    P->ud = b; b += n;
    P->in = (int *)b; b += n; /* an int fits in a double's slot */
    P->id = (int *)b; b += n;
    P->quant = (unsigned char *)b;
    int nq = 0;
    for (size_t i = 0; i < n; i++) {
        double dt = x[i].d_fp + x[i].d_qat;
        P->y[i] = log(loss[i]);
        P->w[i] = 1;
        P->zn[i] = log(x[i].n_params);
        P->zd[i] = log(dt);
        P->quant[i] = form == DATA_LAW_QAT && !data_bits_is_fp(x[i].bits);
        if (P->quant[i]) {
            double bytes = x[i].n_params * x[i].bits / 8.0;
            P->zb[i] = x[i].bits * M_LN2;
            P->zq[i] = log1p(x[i].d_qat / bytes);
            P->zf[i] = log1p(x[i].d_fp / bytes);
            P->m_b += P->zb[i];
            P->m_q += P->zq[i];
            P->m_f += P->zf[i];
            nq++;
        } else {
            P->zb[i] = P->zq[i] = P->zf[i] = 0;
        }
        P->m_n += P->zn[i];
        P->m_d += P->zd[i];
    }
    if (center && n > 0) {
        P->m_n /= (double)n;
        P->m_d /= (double)n;
        if (nq) {
            P->m_b /= nq;
            P->m_q /= nq;
            P->m_f /= nq;
        }
    } else {
        P->m_n = P->m_d = P->m_b = P->m_q = P->m_f = 0;
    }
    double s_n = 0, s_d = 0, s_b = 0, s_q = 0, s_f = 0;
    for (size_t i = 0; i < n; i++) {
        P->zn[i] -= P->m_n;
        P->zd[i] -= P->m_d;
        s_n += P->zn[i] * P->zn[i];
        s_d += P->zd[i] * P->zd[i];
        if (P->quant[i]) {
            P->zb[i] -= P->m_b;
            P->zq[i] -= P->m_q;
            P->zf[i] -= P->m_f;
            s_b += P->zb[i] * P->zb[i];
            s_q += P->zq[i] * P->zq[i];
            s_f += P->zf[i] * P->zf[i];
        }
    }
    /* unit spread: each exponent then moves the log loss as much as an intercept does,
     * which BFGS's first steps (identity Hessian) rely on */
#define SPREAD(s, cnt) ((center && (cnt) > 0 && (s) > 0) ? sqrt((s) / (double)(cnt)) : 1.0)
    s_n = SPREAD(s_n, n);
    s_d = SPREAD(s_d, n);
    s_b = SPREAD(s_b, nq);
    s_q = SPREAD(s_q, nq);
    s_f = SPREAD(s_f, nq);
#undef SPREAD
    for (size_t i = 0; i < n; i++) {
        P->zn[i] /= s_n;
        P->zd[i] /= s_d;
        P->zb[i] /= s_b;
        P->zq[i] /= s_q;
        P->zf[i] /= s_f;
    }
    for (int j = 0; j < DATA_LAW_MAX_COEF; j++) P->sc[j] = 1;
    P->sc[P_ALPHA] = P->sc[P_PSI] = P->sc[P_NU] = s_n;
    P->sc[P_BETA] = s_d;
    P->sc[P_KAPPA] = P->sc[P_CHI] = P->sc[P_MU] = s_b;
    P->sc[P_OMEGA] = P->sc[P_RHO] = s_q;
    P->sc[P_XI] = s_f;
    P->nu_n = distinct(P->zn, n, P->un, P->in);
    P->nu_d = distinct(P->zd, n, P->ud, P->id);
    for (int j = 0; j < DATA_LAW_MAX_COEF; j++) {
        P->lo[j] = -INFINITY;
        P->hi[j] = INFINITY;
    }
    P->bound_w = 1e4;
    return QP_OK;
}

void fit_problem_free(fit_problem *P)
{
    if (!P) return;
    free(P->block);
    P->block = NULL;
}

static void set_theta_bounds(fit_problem *P, double lowest_loss);
static void scale_bounds(fit_problem *P);

void fit_problem_set_bounds(fit_problem *P, double lowest_loss)
{
    set_theta_bounds(P, lowest_loss);
    scale_bounds(P);
}

static void set_theta_bounds(fit_problem *P, double lowest_loss)
{
    /* E at most the lowest observed loss: an irreducible loss above an observed one is
     * unphysical. Exponents: Chinchilla-like ranges, wide enough for every published fit. */
    P->hi[P_E] = log(lowest_loss);
    P->lo[P_ALPHA] = P->lo[P_BETA] = 0;
    P->hi[P_ALPHA] = P->hi[P_BETA] = 2.5;
    if (P->form != DATA_LAW_QAT) return;
    P->lo[P_KAPPA] = P->lo[P_CHI] = P->lo[P_MU] = 0; /* more bits never hurt */
    P->hi[P_KAPPA] = P->hi[P_CHI] = P->hi[P_MU] = 5;
    P->lo[P_PSI] = P->lo[P_NU] = -1;
    P->hi[P_PSI] = P->hi[P_NU] = 2;
    P->lo[P_OMEGA] = P->lo[P_RHO] = -1;
    P->hi[P_OMEGA] = P->hi[P_RHO] = 3;
    P->lo[P_XI] = -3;
    P->hi[P_XI] = 3;
}

/* theta's bounds into u (called last by fit_problem_set_bounds) */
static void scale_bounds(fit_problem *P)
{
    for (int j = 0; j < P->np; j++) {
        P->lo[j] *= P->sc[j];
        P->hi[j] *= P->sc[j];
    }
}

void fit_u_to_theta(const fit_problem *P, const double *u, double *t)
{
    for (int j = 0; j < P->np; j++) t[j] = u[j] / P->sc[j];
    t[P_A] = u[P_A] + t[P_ALPHA] * P->m_n;
    t[P_B] = u[P_B] + t[P_BETA] * P->m_d;
    if (P->form != DATA_LAW_QAT) return;
    t[P_THETA] = u[P_THETA] + t[P_KAPPA] * P->m_b;
    t[P_PHI] = u[P_PHI] + t[P_CHI] * P->m_b + t[P_PSI] * P->m_n + t[P_OMEGA] * P->m_q;
    t[P_LAMBDA] = u[P_LAMBDA] + t[P_MU] * P->m_b - t[P_XI] * P->m_f + t[P_NU] * P->m_n +
                  t[P_RHO] * P->m_q;
}

void fit_theta_to_u(const fit_problem *P, const double *t, double *u)
{
    for (int j = 0; j < P->np; j++) u[j] = t[j] * P->sc[j];
    u[P_A] = t[P_A] - t[P_ALPHA] * P->m_n;
    u[P_B] = t[P_B] - t[P_BETA] * P->m_d;
    if (P->form != DATA_LAW_QAT) return;
    u[P_THETA] = t[P_THETA] - t[P_KAPPA] * P->m_b;
    u[P_PHI] = t[P_PHI] - t[P_CHI] * P->m_b - t[P_PSI] * P->m_n - t[P_OMEGA] * P->m_q;
    u[P_LAMBDA] = t[P_LAMBDA] - t[P_MU] * P->m_b + t[P_XI] * P->m_f - t[P_NU] * P->m_n -
                  t[P_RHO] * P->m_q;
}

/* ---- the objective ------------------------------------------------------- */

size_t fit_scratch_size(const fit_problem *P) { return 2 * (size_t)(P->nu_n + P->nu_d) + 1; }

static inline double huber(double r, double d)
{
    double a = fabs(r), c = fmin(a, d); /* 0.5 r^2 inside delta, d (|r| - d/2) outside */
    return c * (a - 0.5 * c);
}

/* Any law, any point: log-sum-exp over the terms, safe for every finite u. */
static double objective_lse(const fit_problem *P, const double *u, double *g)
{
    const double d = P->delta;
    double f = 0;
    if (g) memset(g, 0, sizeof(double) * (size_t)P->np);
    for (size_t i = 0; i < P->n; i++) {
        if (P->w[i] == 0) continue;
        double t[6];
        int nt = 3;
        t[0] = u[P_E];
        t[1] = u[P_A] - u[P_ALPHA] * P->zn[i];
        t[2] = u[P_B] - u[P_BETA] * P->zd[i];
        if (P->quant[i]) {
            t[3] = u[P_THETA] - u[P_KAPPA] * P->zb[i];
            t[4] = u[P_PHI] - u[P_CHI] * P->zb[i] - u[P_PSI] * P->zn[i] - u[P_OMEGA] * P->zq[i];
            t[5] = u[P_LAMBDA] - u[P_MU] * P->zb[i] + u[P_XI] * P->zf[i] - u[P_NU] * P->zn[i] -
                   u[P_RHO] * P->zq[i];
            nt = 6;
        }
        double m = t[0];
        for (int k = 1; k < nt; k++)
            if (t[k] > m) m = t[k];
        double s = 0, e[6];
        for (int k = 0; k < nt; k++) s += (e[k] = exp(t[k] - m));
        double r = m + log(s) - P->y[i];
        f += P->w[i] * huber(r, d);
        if (!g) continue;
        double psi = P->w[i] * (r > d ? d : r < -d ? -d : r) / s;
        g[P_E] += psi * e[0];
        g[P_A] += psi * e[1];
        g[P_ALPHA] -= psi * e[1] * P->zn[i];
        g[P_B] += psi * e[2];
        g[P_BETA] -= psi * e[2] * P->zd[i];
        if (nt == 6) {
            g[P_THETA] += psi * e[3];
            g[P_KAPPA] -= psi * e[3] * P->zb[i];
            g[P_PHI] += psi * e[4];
            g[P_CHI] -= psi * e[4] * P->zb[i];
            g[P_PSI] -= psi * e[4] * P->zn[i];
            g[P_OMEGA] -= psi * e[4] * P->zq[i];
            g[P_LAMBDA] += psi * e[5];
            g[P_MU] -= psi * e[5] * P->zb[i];
            g[P_XI] += psi * e[5] * P->zf[i];
            g[P_NU] -= psi * e[5] * P->zn[i];
            g[P_RHO] -= psi * e[5] * P->zq[i];
        }
    }
    return f;
}

/* Chinchilla form: the vectorised kernel (fit_kernel.c) when every exponent of every point
 * lies in [-700, 700] (the extremes of a linear term are at the extreme covariates);
 * NAN otherwise, and the caller uses log-sum-exp. */
static double objective_chinchilla(const fit_problem *P, const double *u, double *g, double *scr)
{
    (void)scr;
    if (P->n == 0) return 0;
    double a1 = u[P_A] - u[P_ALPHA] * P->un[0], a2 = u[P_A] - u[P_ALPHA] * P->un[P->nu_n - 1];
    double b1 = u[P_B] - u[P_BETA] * P->ud[0], b2 = u[P_B] - u[P_BETA] * P->ud[P->nu_d - 1];
    const double lim = 700;
    if (!(fabs(u[P_E]) <= lim && fabs(a1) <= lim && fabs(a2) <= lim && fabs(b1) <= lim && fabs(b2) <= lim))
        return NAN;
    return fit_kernel_chinchilla(P->n, P->zn, P->zd, P->y, P->w, u, P->delta, g);
}

static double huber_part(const fit_problem *P, const double *u, double *g, double *scratch)
{
    if (P->form == DATA_LAW_CHINCHILLA) {
        double f = objective_chinchilla(P, u, g, scratch);
        if (!isnan(f)) return f;
    }
    return fit_kernel_lse(P, u, g);
}

double fit_huber_only(const fit_problem *P, const double *u, double *scratch)
{
    double *own = NULL;
    if (!scratch) scratch = own = malloc(fit_scratch_size(P) * sizeof(double));
    double f = scratch ? huber_part(P, u, NULL, scratch) : objective_lse(P, u, NULL);
    free(own);
    return f;
}

double fit_objective(const fit_problem *P, const double *u, double *g, double *scratch)
{
    double *own = NULL;
    if (!scratch) scratch = own = malloc(fit_scratch_size(P) * sizeof(double));
    double f = scratch ? huber_part(P, u, g, scratch) : objective_lse(P, u, g);
    free(own);
    /* quadratic penalty outside the bounds: smooth, so BFGS keeps its curvature model */
    for (int j = 0; j < P->np; j++) {
        double v = u[j] > P->hi[j] ? u[j] - P->hi[j] : u[j] < P->lo[j] ? u[j] - P->lo[j] : 0;
        if (v != 0) {
            f += P->bound_w * v * v;
            if (g) g[j] += 2 * P->bound_w * v;
        }
    }
    return f;
}

/* ---- BFGS2 --------------------------------------------------------------- */

/* GSL's line search asks for f and then for the gradient at the same point; one pass
 * gives both, so the gradient of the last f-evaluation is cached. */
typedef struct {
    const fit_problem *P;
    double *scratch;
    double x[DATA_LAW_MAX_COEF], g[DATA_LAW_MAX_COEF], f;
    int valid;
} fit_ctx;


static double ctx_eval(fit_ctx *c, const gsl_vector *x)
{
    int np = c->P->np;
    if (c->valid) {
        int same = 1;
        for (int j = 0; j < np && same; j++) same = gsl_vector_get(x, (size_t)j) == c->x[j];
        if (same) return c->f;
    }
    for (int j = 0; j < np; j++) c->x[j] = gsl_vector_get(x, (size_t)j);
    double f = fit_objective(c->P, c->x, c->g, c->scratch);
    c->f = isfinite(f) ? f : GSL_POSINF;
    c->valid = 1;
    return c->f;
}

static double gsl_f(const gsl_vector *x, void *p) { return ctx_eval(p, x); }

static void gsl_fdf(const gsl_vector *x, void *p, double *f, gsl_vector *g)
{
    fit_ctx *c = p;
    *f = ctx_eval(c, x);
    for (int j = 0; j < c->P->np; j++) gsl_vector_set(g, (size_t)j, c->g[j]);
}

static void gsl_df(const gsl_vector *x, void *p, gsl_vector *g)
{
    double f;
    gsl_fdf(x, p, &f, g);
}

int fit_minimize(const fit_problem *P, double *u, int max_iter, int tight, double *fval, int *iters)
{
    int np = P->np, ok = -1, it = 0;
    *fval = INFINITY;
    double *scratch = malloc(fit_scratch_size(P) * sizeof(double));
    gsl_vector *x = gsl_vector_alloc((size_t)np);
    gsl_multimin_fdfminimizer *s =
        gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, (size_t)np);
    if (!scratch || !x || !s) goto done;
    fit_ctx ctx = {.P = P, .scratch = scratch, .valid = 0};
    gsl_multimin_function_fdf fdf = {gsl_f, gsl_df, gsl_fdf, (size_t)np, &ctx};
    for (int j = 0; j < np; j++) gsl_vector_set(x, (size_t)j, u[j]);
    double f0 = fit_objective(P, u, NULL, scratch);
    if (!isfinite(f0)) goto done;
    /* First step 0.1 in the (centred) parameter space; Wolfe curvature tolerance 0.5 (GSL
     * suggests 0.1; 0.5 needed fewer evaluations for the same optimum on the benchmark). */
    if (gsl_multimin_fdfminimizer_set(s, &fdf, x, 0.1, 0.5) != GSL_SUCCESS) goto done;
    /* Stop as scipy's L-BFGS-B does by default (pgtol 1e-5 on the largest gradient
     * component; factr 1e7, i.e. a decrease below 2.2e-9 * max(1, |f|) in one iteration),
     * or, when `tight`, far past it (1e-10, and 1e-14 relative three times in a row): the
     * multi-start runs loose and the best start is polished tight. */
    double gtol = tight ? 1e-10 : 1e-5, ftol = tight ? 1e-14 : 2.2e-9;
    int patience = tight ? 3 : 1;
    double fprev = s->f;
    int calm = 0;
    for (it = 0; it < max_iter; it++) {
        int st = gsl_multimin_fdfminimizer_iterate(s);
        if (st != GSL_SUCCESS) break; /* GSL_ENOPROG: converged as far as line search can tell */
        double gmax = 0;
        for (int j = 0; j < np; j++) gmax = fmax(gmax, fabs(gsl_vector_get(s->gradient, (size_t)j)));
        if (gmax < gtol) break;
        calm = fprev - s->f <= ftol * (tight ? fabs(s->f) : fmax(1.0, fabs(s->f))) ? calm + 1 : 0;
        if (calm >= patience) break;
        fprev = s->f;
    }
    const gsl_vector *xm = gsl_multimin_fdfminimizer_x(s);
    double f = gsl_multimin_fdfminimizer_minimum(s);
    int finite = isfinite(f);
    for (int j = 0; j < np && finite; j++) finite = isfinite(gsl_vector_get(xm, (size_t)j));
    if (finite) {
        for (int j = 0; j < np; j++) u[j] = gsl_vector_get(xm, (size_t)j);
        *fval = f;
        ok = 0;
    }
done:
    if (iters) *iters = it;
    gsl_multimin_fdfminimizer_free(s);
    gsl_vector_free(x);
    free(scratch);
    return ok;
}

int fit_multistart(const fit_problem *P, const double *starts, int n_starts, int max_iter,
                   int threads, double *fvals, double *ends)
{
    int np = P->np;
    int nth = threads > 0 ? threads : omp_get_max_threads();
    if (nth > n_starts) nth = n_starts > 0 ? n_starts : 1;
#pragma omp parallel for schedule(dynamic, 4) num_threads(nth)
    for (int k = 0; k < n_starts; k++) {
        double u[DATA_LAW_MAX_COEF], f;
        memcpy(u, starts + (size_t)k * (size_t)np, sizeof(double) * (size_t)np);
        int it;
        fvals[k] = fit_minimize(P, u, max_iter, 0, &f, &it) == 0 ? f : INFINITY;
        if (ends) memcpy(ends + (size_t)k * (size_t)np, u, sizeof(double) * (size_t)np);
    }
    int best = -1;
    for (int k = 0; k < n_starts; k++)
        if (isfinite(fvals[k]) && (best < 0 || fvals[k] < fvals[best])) best = k;
    return best;
}

int fit_chinchilla_grid(double *starts, int n)
{
    int total = FIT_CHINCHILLA_GRID_STARTS, k = 0, out = 0;
    if (n <= 0 || n > total) n = total;
    for (int ia = 0; ia < 5; ia++)         /* alpha 0..2 step 0.5 */
        for (int ib = 0; ib < 5; ib++)     /* beta 0..2 step 0.5 */
            for (int ie = 0; ie < 5; ie++) /* e -1..1 step 0.5 */
                for (int ja = 0; ja < 6; ja++)     /* a 0..25 step 5 */
                    for (int jb = 0; jb < 6; jb++, k++) { /* b 0..25 step 5 */
                        /* keep start k when it is the next of n evenly strided picks */
                        if ((long)out * total / n != k) continue;
                        double *s = starts + (size_t)out * 5;
                        s[P_E] = -1 + 0.5 * ie;
                        s[P_A] = 5.0 * ja;
                        s[P_B] = 5.0 * jb;
                        s[P_ALPHA] = 0.5 * ia;
                        s[P_BETA] = 0.5 * ib;
                        if (++out == n) return out;
                    }
    return out;
}
