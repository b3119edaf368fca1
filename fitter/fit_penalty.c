/* Fitting a QAT penalty law (form penalty) to penalty observations: weighted least squares
 * on log penalties, optionally with "fraction anchors" that make the paper's closed-form
 * fraction f_hat the law's optimum (the penalty's derivative in f vanishes there).
 * GSL's trust-region Levenberg-Marquardt with a finite-difference Jacobian, multi-start
 * from a Latin hypercube, bootstrap over the observations. docs/fitter.md, "Penalty fits". */
#include <gsl/gsl_blas.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit_nlinear.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fit_internal.h"

enum { NP = 11 }; /* theta kappa phi chi psi omega lambda mu xi nu rho */
enum { Q_THETA, Q_KAPPA, Q_PHI, Q_CHI, Q_PSI, Q_OMEGA, Q_LAMBDA, Q_MU, Q_XI, Q_NU, Q_RHO };

void fit_penalty_options_init(fit_penalty_options *o)
{
    memset(o, 0, sizeof *o);
    o->anchor_a = NAN;
    o->anchor_weight = 1.0;
    o->n_starts = 48;
    o->seed = 1;
    o->ci_level = 0.95;
}

/* The optimiser's vector v maps into bounds (docs/fitter.md, "Penalty fits"): each
 * parameter is lo + (hi - lo) * sigmoid(v), so the fit stays among physical laws. The
 * bit-width exponents kappa, chi, mu are positive (a penalty that never grows with more
 * bits); omega > 0 (the too-few-QAT-tokens term shrinks with QAT tokens, the paper's
 * intent) and xi < 0 (FP tokens shrink the interaction term: without it the optimum is
 * f = 1, docs/law.md); the ranges keep the terms from degenerating (an exponent of -11 on
 * S_fp makes a term vanish wherever there are FP tokens, which would let the fraction
 * anchors be met by a penalty flat in f). theta, phi, lambda are logs. */
static const double v_lo[NP] = {-30, 0.05, -30, 0.05, -0.5, 0.05, -30, 0.05, -3, -0.5, -2};
static const double v_hi[NP] = {5, 4, 15, 4, 1, 2, 15, 4, -0.05, 1, 2};

static void v_to_theta(const double *v, double *th)
{
    for (int j = 0; j < NP; j++) th[j] = v_lo[j] + (v_hi[j] - v_lo[j]) / (1 + exp(-v[j]));
}

static void theta_to_v(const double *th, double *v)
{
    for (int j = 0; j < NP; j++) {
        double u = (th[j] - v_lo[j]) / (v_hi[j] - v_lo[j]);
        u = fmin(fmax(u, 1e-9), 1 - 1e-9);
        v[j] = log(u / (1 - u));
    }
}

typedef struct {
    const fit_penalty_point *pts;
    const double *mult; /* bootstrap multiplicity per point, NULL = 1 */
    size_t n;
    const law_point *anchors; /* at f_hat */
    size_t n_anchors;
    double anchor_weight;
} pen_problem;

/* The law's optimal fraction at an anchor's (N, D_total, bits) minus the anchor's f_hat.
 * The argmin itself, not the slope at f_hat: a slope can be zero because the penalty is flat
 * in f, which would satisfy a slope condition without an optimum there. A 41-point grid,
 * then golden-section search in the best point's bracket. */
static double anchor_argmin_error(const double *th, const law_point *x)
{
    double d = x->d_fp + x->d_qat, f_hat = x->d_qat / d;
    enum { G = 41 };
    double best = INFINITY;
    int bi = 0;
    for (int i = 0; i < G; i++) {
        double f = (double)i / (G - 1);
        law_point p = {x->n_params, (1 - f) * d, f * d, x->bits};
        double v = law_log_loss(DATA_LAW_PENALTY, th, &p, NULL);
        if (v < best) best = v, bi = i;
    }
    double lo = fmax(0, (bi - 1.0) / (G - 1)), hi = fmin(1, (bi + 1.0) / (G - 1));
    const double g = 0.6180339887498949;
    double a = hi - g * (hi - lo), b = lo + g * (hi - lo);
    law_point pa = {x->n_params, (1 - a) * d, a * d, x->bits}, pb = {x->n_params, (1 - b) * d, b * d, x->bits};
    double fa = law_log_loss(DATA_LAW_PENALTY, th, &pa, NULL), fb = law_log_loss(DATA_LAW_PENALTY, th, &pb, NULL);
    for (int it = 0; it < 40; it++) {
        if (fa < fb) {
            hi = b, b = a, fb = fa, a = hi - g * (hi - lo);
            pa = (law_point){x->n_params, (1 - a) * d, a * d, x->bits};
            fa = law_log_loss(DATA_LAW_PENALTY, th, &pa, NULL);
        } else {
            lo = a, a = b, fa = fb, b = lo + g * (hi - lo);
            pb = (law_point){x->n_params, (1 - b) * d, b * d, x->bits};
            fb = law_log_loss(DATA_LAW_PENALTY, th, &pb, NULL);
        }
    }
    return 0.5 * (lo + hi) - f_hat;
}

/* d/df log(the penalty's f-dependent part) * f(1-f) at an anchor (at f_hat): zero where f_hat
 * is stationary. Smooth in the parameters, so Levenberg-Marquardt can use it; the bounds on
 * omega and xi keep it from being met by a penalty flat in f, and the report checks the
 * argmin itself (anchor_argmin_error). */
static double anchor_residual(const double *th, const law_point *x)
{
    double t[NP];
    memcpy(t, th, sizeof t);
    t[Q_THETA] = -745; /* the precision floor does not depend on f */
    double d = x->d_fp + x->d_qat, f = x->d_qat / d, h = 1e-4;
    law_point a = {x->n_params, (1 - f - h) * d, (f + h) * d, x->bits};
    law_point b = {x->n_params, (1 - f + h) * d, (f - h) * d, x->bits};
    double lp = law_log_loss(DATA_LAW_PENALTY, t, &a, NULL), lm = law_log_loss(DATA_LAW_PENALTY, t, &b, NULL);
    return (lp - lm) / (2 * h) * f * (1 - f);
}

static int pen_residuals(const gsl_vector *vv, void *params, gsl_vector *r)
{
    const pen_problem *P = params;
    double th[NP];
    v_to_theta(vv->data, th);
    for (size_t i = 0; i < P->n; i++) {
        double w = P->pts[i].weight * (P->mult ? P->mult[i] : 1);
        double lp = law_log_loss(DATA_LAW_PENALTY, th, &P->pts[i].x, NULL);
        gsl_vector_set(r, i, sqrt(w) * (lp - log(P->pts[i].penalty)));
    }
    for (size_t j = 0; j < P->n_anchors; j++)
        gsl_vector_set(r, P->n + j, P->anchor_weight * anchor_residual(th, &P->anchors[j]));
    for (size_t k = 0; k < r->size; k++)
        if (!isfinite(gsl_vector_get(r, k))) return GSL_EDOM;
    return GSL_SUCCESS;
}

/* Minimise from v (in/out); returns the cost 0.5*|r|^2, or INFINITY when the start failed. */
static double pen_minimize(const pen_problem *P, double *v)
{
    size_t nr = P->n + P->n_anchors;
    gsl_multifit_nlinear_parameters prm = gsl_multifit_nlinear_default_parameters();
    gsl_multifit_nlinear_workspace *w = gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &prm, nr, NP);
    if (!w) return INFINITY;
    gsl_multifit_nlinear_fdf fdf = {pen_residuals, NULL, NULL, nr, NP, (void *)P, 0, 0, 0};
    gsl_vector_view x0 = gsl_vector_view_array(v, NP);
    double cost = INFINITY;
    int info = 0;
    if (gsl_multifit_nlinear_init(&x0.vector, &fdf, w) == GSL_SUCCESS) {
        gsl_multifit_nlinear_driver(2000, 1e-10, 1e-10, 1e-12, NULL, NULL, &info, w);
        gsl_vector *res = gsl_multifit_nlinear_residual(w);
        double s = 0;
        gsl_blas_ddot(res, res, &s);
        if (isfinite(s)) {
            cost = 0.5 * s;
            memcpy(v, gsl_multifit_nlinear_position(w)->data, sizeof(double) * NP);
        }
    }
    gsl_multifit_nlinear_free(w);
    return cost;
}

/* Latin hypercube over a box of plausible values (theta space, then converted to v). */
/* Returns 0, or -1 when out of memory. */
static int penalty_starts(int n, uint64_t seed, double *v)
{
    static const double lo[NP] = {-6, 0.3, -4, 0.2, -0.2, -0.5, -4, 0.2, -2.0, -0.2, -0.8};
    static const double hi[NP] = {1, 2.0, 3, 2.0, 0.6, 1.0, 3, 2.0, 0.5, 0.6, 0.5};
    uint64_t s = seed;
    int *perm = malloc(sizeof(int) * (size_t)n);
    if (!perm) return -1;
    double th[NP];
    for (int j = 0; j < NP; j++) fit_lhs_column(n, lo[j], hi[j], 1.0, &s, perm, v + j, NP);
    for (int i = 0; i < n; i++) { /* the box is in theta; the optimiser works in v */
        memcpy(th, v + (size_t)i * NP, sizeof th);
        theta_to_v(th, v + (size_t)i * NP);
    }
    free(perm);
    return 0;
}

static qp_status make_anchors(const fit_penalty_options *o, law_point **out, size_t *n_out, qp_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!isfinite(o->anchor_a)) return QP_OK;
    static const double sizes[] = {1e8, 1e9, 1e10, 1e11}, tpp[] = {10, 30, 100, 300, 1000};
    static const int bits[] = {1, 2, 4, 6, 8};
    law_point *a = malloc(sizeof *a * 4 * 5 * 5);
    if (!a) return qp_fail(err, QP_ERR_NOMEM, "out of memory for the fraction anchors");
    size_t k = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++)
            for (int b = 0; b < 5; b++) {
                double d = sizes[i] * tpp[j];
                double f = law_fraction_hat(o->anchor_a, law_tokens_per_param_byte(d, sizes[i], bits[b]));
                if (!(f > 0.02 && f < 0.98)) continue; /* S_total too small for a meaningful optimum */
                a[k++] = (law_point){sizes[i], (1 - f) * d, f * d, bits[b]};
            }
    *out = a;
    *n_out = k;
    return QP_OK;
}

/* Best of the starts (deterministic: lowest cost, then lowest index). */
static double best_of_starts(const pen_problem *P, const fit_penalty_options *o, double *v_best, int *reached)
{
    int ns = o->n_starts > 0 ? o->n_starts : 48;
    double *v = malloc(sizeof(double) * NP * (size_t)ns), *cost = malloc(sizeof(double) * (size_t)ns);
    double best = INFINITY;
    if (!v || !cost || penalty_starts(ns, o->seed, v)) goto out; /* out of memory: no start */
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < ns; i++) cost[i] = pen_minimize(P, v + (size_t)i * NP);
    int bi = -1;
    for (int i = 0; i < ns; i++)
        if (cost[i] < best) {
            best = cost[i];
            bi = i;
        }
    if (bi >= 0) memcpy(v_best, v + (size_t)bi * NP, sizeof(double) * NP);
    *reached = 0;
    for (int i = 0; i < ns; i++) *reached += cost[i] <= best + 1e-6 * fabs(best) + 1e-12;
out:
    free(v);
    free(cost);
    return best;
}

static qp_status bootstrap(const pen_problem *P0, const fit_penalty_options *o, const double *v_best, data_law *out,
                           qp_error *err)
{
    int K = o->bootstrap;
    double *samples = malloc(sizeof(double) * NP * (size_t)K), *mult = malloc(sizeof(double) * P0->n * (size_t)K);
    if (!samples || !mult) {
        free(samples);
        free(mult);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for %d bootstrap samples", K);
    }
    int ok = 0;
    for (int k = 0; k < K; k++) { /* resample the observations, refit from the point estimate */
        uint64_t s = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)k + 1;
        double *m = mult + (size_t)k * P0->n;
        memset(m, 0, sizeof(double) * P0->n);
        for (size_t i = 0; i < P0->n; i++) m[(size_t)(fit_rng_uniform(&s) * (double)P0->n)] += 1;
    }
    double *cost = malloc(sizeof(double) * (size_t)K);
    if (!cost) {
        free(samples);
        free(mult);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for %d bootstrap samples", K);
    }
#pragma omp parallel for schedule(dynamic)
    for (int k = 0; k < K; k++) {
        pen_problem P = *P0;
        P.mult = mult + (size_t)k * P0->n;
        double v[NP];
        memcpy(v, v_best, sizeof v);
        cost[k] = pen_minimize(&P, v);
        v_to_theta(v, samples + (size_t)k * NP);
        law_theta_to_coef(DATA_LAW_PENALTY, samples + (size_t)k * NP, samples + (size_t)k * NP);
    }
    for (int k = 0; k < K; k++)
        if (isfinite(cost[k])) memmove(samples + (size_t)ok++ * NP, samples + (size_t)k * NP, sizeof(double) * NP);
    free(cost);
    free(mult);
    if (ok < 2) { /* too few for an interval: kept as samples only */
        out->samples = samples;
        out->n_samples = ok;
        return QP_OK;
    }
    return fit_law_take_samples(out, samples, ok, o->ci_level, err);
}

static void fill_provenance(const fit_penalty_point *pts, size_t n, const fit_penalty_options *o, data_law *out)
{
    data_law_provenance *p = &out->prov;
    snprintf(p->source, sizeof p->source, "%s", o->source[0] ? o->source : "penalty observations");
    int l = snprintf(p->method, sizeof p->method,
                     "weighted least squares on log penalty (GSL trust-region LM) from %d Latin hypercube starts",
                     o->n_starts > 0 ? o->n_starts : 48);
    if (isfinite(o->anchor_a) && l > 0 && (size_t)l < sizeof p->method)
        snprintf(p->method + l, sizeof p->method - (size_t)l,
                 "; the penalty is stationary in f at f_hat = exp(-a/ln S_total), a = %.4f", o->anchor_a);
    if (!o->reproducible) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(p->created, sizeof p->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(p->code_version, sizeof p->code_version, "%s", qp_version());
    }
    p->n_runs = (int)n;
    p->n_min = p->d_min = INFINITY;
    p->n_max = p->d_max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        const law_point *x = &pts[i].x;
        double d = x->d_fp + x->d_qat;
        p->n_min = fmin(p->n_min, x->n_params);
        p->n_max = fmax(p->n_max, x->n_params);
        p->d_min = fmin(p->d_min, d);
        p->d_max = fmax(p->d_max, d);
        int seen = 0;
        for (int b = 0; b < p->n_bits; b++) seen |= p->bits[b] == x->bits;
        if (!seen && p->n_bits < 16) p->bits[p->n_bits++] = x->bits;
    }
    for (int i = 1; i < p->n_bits; i++) /* ascending */
        for (int j = i; j > 0 && p->bits[j - 1] > p->bits[j]; j--) {
            int t = p->bits[j];
            p->bits[j] = p->bits[j - 1];
            p->bits[j - 1] = t;
        }
}

qp_status fit_penalty(const fit_penalty_point *pts, size_t n, const fit_penalty_options *o, data_law *out,
                      fit_penalty_report *rep, qp_error *err)
{
    data_law_init(out, DATA_LAW_PENALTY);
    if (n < NP)
        return qp_fail(err, QP_ERR_UNIDENTIFIED,
                       "a penalty law has %d coefficients but only %zu penalty observations were given: it needs at "
                       "least %d (more sizes, token counts or bit widths)",
                       NP, n, NP);
    for (size_t i = 0; i < n; i++)
        if (!(pts[i].penalty > 0) || !isfinite(pts[i].penalty) || !(pts[i].weight > 0) ||
            pts[i].x.bits >= LAW_FP_BITS || !(pts[i].x.n_params > 0) || !(pts[i].x.d_fp + pts[i].x.d_qat > 0))
            return qp_fail(err, QP_ERR_INPUT,
                           "penalty observation %zu (%s) is not usable: it needs N > 0, tokens > 0, bits < 16, a "
                           "positive finite penalty and weight",
                           i + 1, pts[i].source);
    gsl_set_error_handler_off();
    pen_problem P = {pts, NULL, n, NULL, 0, o->anchor_weight};
    law_point *anchors = NULL;
    qp_status st = make_anchors(o, &anchors, &P.n_anchors, err);
    if (st) return st;
    P.anchors = anchors;
    double v[NP];
    int reached = 0;
    double cost = best_of_starts(&P, o, v, &reached);
    if (!isfinite(cost)) {
        free(anchors);
        return qp_fail(err, QP_ERR_NUMERIC, "no start of the penalty fit converged: check the observations");
    }
    double th[NP];
    v_to_theta(v, th);
    law_theta_to_coef(DATA_LAW_PENALTY, th, out->coef);
    if (o->bootstrap > 0 && (st = bootstrap(&P, o, v, out, err))) {
        free(anchors);
        data_law_free(out);
        return st;
    }
    fill_provenance(pts, n, o, out);
    out->prov.starts = o->n_starts > 0 ? o->n_starts : 48;
    out->prov.starts_at_best = reached;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double r = log(law_penalty(out, &pts[i].x)) - log(pts[i].penalty);
        ss += r * r;
    }
    out->prov.rmse_log = sqrt(ss / (double)n);
    out->prov.huber_objective = cost;
    if (rep) {
        memset(rep, 0, sizeof *rep);
        rep->cost = cost;
        rep->starts = out->prov.starts;
        rep->starts_at_best = reached;
        rep->n_anchors = (int)P.n_anchors;
        rep->rmse_log = out->prov.rmse_log;
        double amax = 0;
        for (size_t j = 0; j < P.n_anchors; j++) amax = fmax(amax, fabs(anchor_argmin_error(th, &anchors[j])));
        rep->anchor_max = amax;
    }
    free(anchors);
    if ((st = data_law_validate(out, err))) data_law_free(out);
    return st;
}
