/* The planner's numerics: the law-optimal fraction, the tokens a rule needs to reach a
 * loss, bootstrap intervals, the memory model and the search over model size. */
#include <gsl/gsl_errno.h>
#include <gsl/gsl_min.h>
#include <gsl/gsl_roots.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan_internal.h"

#define GRID_POINTS 1001

double plan_loss_at_fraction(double f, void *p)
{
    const plan_frac_ctx *c = p;
    double k = c->k > 0 ? c->k : 1; /* k = 1 is exact: today's split, bit for bit */
    law_point x = {c->n, (1 - f) * c->d, f * c->d * k, c->bits};
    return law_model_loss(c->m, &x);
}

static qp_status optimum_ctx(plan_frac_ctx *cp, int grid, double *f_opt, double *loss_opt, qp_error *err)
{
    plan_frac_ctx c = *cp;
    double n = c.n, d = c.d, bits = c.bits;
    int best = 0;
    double best_l = INFINITY;
    for (int i = 0; i < grid; i++) {
        double l = plan_loss_at_fraction((double)i / (grid - 1), &c);
        if (!isfinite(l))
            return qp_fail(err, QP_ERR_NUMERIC,
                           "the QAT law gives a non-finite loss at N=%g, D=%g, %g bits: check the law file",
                           n, d, bits);
        if (l < best_l) {
            best_l = l;
            best = i;
        }
    }
    double f = (double)best / (grid - 1);
    *f_opt = f;
    *loss_opt = best_l;
    if (best == 0 || best == grid - 1) return QP_OK; /* optimum at an end of [0, 1] */
    double lo = (double)(best - 1) / (grid - 1), hi = (double)(best + 1) / (grid - 1);
    gsl_function fn = {plan_loss_at_fraction, &c};
    gsl_min_fminimizer *m = gsl_min_fminimizer_alloc(gsl_min_fminimizer_brent);
    if (!m) return qp_fail(err, QP_ERR_NOMEM, "out of memory in the fraction search");
    /* The grid point is strictly below both neighbours' values or ties them; Brent needs strict. */
    if (gsl_min_fminimizer_set_with_values(m, &fn, f, best_l, lo, plan_loss_at_fraction(lo, &c), hi,
                                           plan_loss_at_fraction(hi, &c)) == GSL_SUCCESS) {
        for (int it = 0; it < 100; it++) {
            if (gsl_min_fminimizer_iterate(m) != GSL_SUCCESS) break;
            double a = gsl_min_fminimizer_x_lower(m), b = gsl_min_fminimizer_x_upper(m);
            if (gsl_min_test_interval(a, b, 1e-10, 0) == GSL_SUCCESS) break;
        }
        double fx = gsl_min_fminimizer_x_minimum(m), lx = gsl_min_fminimizer_f_minimum(m);
        if (isfinite(lx) && lx <= best_l) { /* never worse than the grid */
            *f_opt = fx;
            *loss_opt = lx;
        }
    }
    gsl_min_fminimizer_free(m);
    return QP_OK;
}

qp_status plan_optimum_on_grid(const law_model *qat, double n, double d, double bits, int grid, double *f_opt,
                               double *loss_opt, qp_error *err)
{
    plan_frac_ctx c = {qat, n, d, bits, 0};
    return optimum_ctx(&c, grid, f_opt, loss_opt, err);
}

qp_status plan_optimum_ctx(plan_frac_ctx *c, double *f_opt, double *loss_opt, qp_error *err)
{
    gsl_set_error_handler_off();
    return optimum_ctx(c, GRID_POINTS, f_opt, loss_opt, err);
}

qp_status plan_optimal_fraction(const law_model *qat, double n_params, double d_total, double bits,
                                double *f_opt, double *loss_opt, qp_error *err)
{
    if (!qat->penalty)
        return qp_fail(err, QP_ERR_INPUT, "the optimal fraction needs a QAT law (a penalty or qat law)");
    gsl_set_error_handler_off();
    return plan_optimum_on_grid(qat, n_params, d_total, bits, GRID_POINTS, f_opt, loss_opt, err);
}

typedef struct {
    const law_model *m;
    double n, f, target, bits;
} reach_ctx;

static double reach_residual(double log_d, void *p)
{
    const reach_ctx *c = p;
    double d = exp(log_d);
    law_point x = {c->n, (1 - c->f) * d, c->f * d, c->bits};
    return law_model_loss(c->m, &x) - c->target;
}

qp_status plan_tokens_to_reach(const law_model *qat, double n_params, double d_total, double bits,
                               double fraction, double target, double *tokens, qp_error *err)
{
    gsl_set_error_handler_off();
    reach_ctx c = {qat, n_params, fraction, target, bits};
    double lo = log(d_total);
    double r_lo = reach_residual(lo, &c);
    if (!isfinite(r_lo)) return qp_fail(err, QP_ERR_NUMERIC, "the QAT law is not finite at D=%g", d_total);
    if (r_lo <= 0) {
        *tokens = d_total;
        return QP_OK;
    }
    /* Expand until the residual changes sign; the loss falls with D, towards a floor. */
    double hi = lo;
    double r_hi = r_lo;
    for (int k = 0; k < 60 && r_hi > 0; k++) {
        hi += M_LN2 * 2; /* x4 tokens per step, up to 4^60 */
        r_hi = reach_residual(hi, &c);
        if (!isfinite(r_hi)) break;
    }
    if (!(r_hi <= 0)) {
        *tokens = INFINITY;
        return QP_OK;
    }
    gsl_function fn = {reach_residual, &c};
    gsl_root_fsolver *s = gsl_root_fsolver_alloc(gsl_root_fsolver_brent);
    if (!s) return qp_fail(err, QP_ERR_NOMEM, "out of memory in the token search");
    double a = hi - M_LN2 * 2 > lo ? hi - M_LN2 * 2 : lo;
    if (gsl_root_fsolver_set(s, &fn, a, hi) != GSL_SUCCESS) {
        gsl_root_fsolver_free(s);
        return qp_fail(err, QP_ERR_NUMERIC, "the token search could not bracket the target loss");
    }
    for (int it = 0; it < 200; it++) {
        if (gsl_root_fsolver_iterate(s) != GSL_SUCCESS) break;
        if (gsl_root_test_interval(gsl_root_fsolver_x_lower(s), gsl_root_fsolver_x_upper(s), 1e-12, 1e-12) ==
            GSL_SUCCESS)
            break;
    }
    *tokens = exp(gsl_root_fsolver_root(s));
    gsl_root_fsolver_free(s);
    return QP_OK;
}

/* ---- the plan ------------------------------------------------------------ */

/* ---- bootstrap ----------------------------------------------------------- */


/* The full-precision law is fixed unless the QAT law is its own full-precision reference. */
qp_status plan_bootstrap_row(const law_model *m, plan_row *row, double level, double *sample_loss, qp_error *err)
{
    const data_law *q = m->penalty;
    int n = data_law_ncoef(q->form), ns = q->n_samples;
    double *f = malloc(sizeof(double) * (size_t)ns * 3);
    if (!f) return qp_fail(err, QP_ERR_NOMEM, "out of memory in the bootstrap interval");
    double *l = f + ns, *pen = l + ns;
    data_law s;
    data_law_init(&s, q->form);
    s.units = q->units;
    law_model sm = *m;
    sm.penalty = &s;
    if (m->fp == m->penalty) sm.fp = &s;
    int k = 0;
    for (int i = 0; i < ns; i++) {
        memcpy(s.coef, q->samples + (size_t)i * (size_t)n, sizeof(double) * (size_t)n);
        double fo = 0, lo = 0;
        if (sample_loss) sample_loss[i] = NAN;
        /* a coarser grid per sample keeps the planner fast; Brent refines it */
        if (plan_optimum_on_grid(&sm, row->n_params, row->d_total, row->bits, 201, &fo, &lo, NULL) != QP_OK) continue;
        f[k] = fo;
        l[k] = lo;
        pen[k] = law_model_penalty(&sm, &(law_point){row->n_params, (1 - fo) * row->d_total, fo * row->d_total, row->bits});
        if (sample_loss) sample_loss[i] = lo;
        k++;
    }
    if (k >= 2) {
        qsort(f, (size_t)k, sizeof(double), qp_cmp_double);
        qsort(l, (size_t)k, sizeof(double), qp_cmp_double);
        qsort(pen, (size_t)k, sizeof(double), qp_cmp_double);
        double a = (1 - level) / 2;
        row->f_opt_lo = qp_percentile_sorted(f, k, a);
        row->f_opt_hi = qp_percentile_sorted(f, k, 1 - a);
        row->loss_opt_lo = qp_percentile_sorted(l, k, a);
        row->loss_opt_hi = qp_percentile_sorted(l, k, 1 - a);
        row->penalty_lo = qp_percentile_sorted(pen, k, a);
        row->penalty_hi = qp_percentile_sorted(pen, k, 1 - a);
    }
    free(f);
    return QP_OK;
}

/* ---- memory and model size ---------------------------------------------- */

/* The shapes of the QuEST models follow d_model = 2.1 N_body^(1/3) (docs/reference-law.md). */
static double d_model_for(const plan_request *req, double n_body)
{
    return isfinite(req->d_model) ? req->d_model : 2.1 * cbrt(n_body > 1 ? n_body : 1);
}

double plan_embed_params(const plan_request *req, double n_params)
{
    if (isfinite(req->embed_params)) return req->embed_params;
    if (!isfinite(req->vocab)) return 0;
    /* d_model from the whole model first; one fixed-point step is enough at these sizes */
    double d = d_model_for(req, n_params);
    double e = req->vocab * d * (req->tied ? 1 : 2);
    if (!isfinite(req->d_model) && e < n_params) e = req->vocab * d_model_for(req, n_params - e) * (req->tied ? 1 : 2);
    return e < n_params ? e : n_params;
}

double plan_memory_bytes(const plan_request *req, double n_params, double bits)
{
    double e = plan_embed_params(req, n_params), body = n_params - e;
    double per_scale = req->group_size > 0 ? req->group_size : d_model_for(req, body); /* per row: one per input row */
    return body * bits / 8.0 + body / per_scale * 2.0 + e * req->embed_bits / 8.0;
}

double plan_largest_n_in_memory(const plan_request *req, double bits)
{
    double lo = 1, hi = 1e16;
    if (plan_memory_bytes(req, lo + plan_embed_params(req, lo), bits) > req->memory_bytes) return NAN;
    for (int it = 0; it < 200 && hi / lo > 1 + 1e-12; it++) {
        double mid = sqrt(lo * hi);
        if (plan_memory_bytes(req, mid, bits) <= req->memory_bytes) lo = mid;
        else hi = mid;
    }
    return lo;
}

double plan_qat_flops_per_token(const plan_request *req, plan_method m, double n_params)
{
    double n = n_params, body = n - plan_embed_params(req, n);
    double e2e = req->group_size > 0 ? 4 * n + 2 * body : 4 * n; /* per-group scales: a reduced dW GEMM */
    double bap = (6 * req->blockap_epochs + 4) * body;
    switch (m) {
    case PLAN_METHOD_EFQAT: return (4 + 2 * req->unfrozen) * n; /* N_f = all matrices ~ N */
    case PLAN_METHOD_E2EQP: return e2e;
    case PLAN_METHOD_BLOCKAP: return bap;
    case PLAN_METHOD_EFFICIENTQAT: /* share s of the FLOPs at bap, the rest at e2e: FLOPs per token of both */
        return 1 / (req->blockap_share / bap + (1 - req->blockap_share) / e2e);
    default: return 6 * n;
    }
}

static int method_grouped(plan_method m)
{
    return m == PLAN_METHOD_E2EQP || m == PLAN_METHOD_BLOCKAP || m == PLAN_METHOD_EFFICIENTQAT;
}

double plan_storage_bits(const plan_request *req, plan_method m, double bits)
{
    if (!method_grouped(m)) return bits + 16 / req->row_size; /* a 16-bit scale per row */
    double g = req->group_size > 0 ? req->group_size : req->row_size;
    return bits + (bits + 16) / g; /* a 16-bit scale and a b-bit zero point per group */
}

double plan_storage_bytes(const plan_request *req, plan_method m, double n_params, double bits)
{
    double e = plan_embed_params(req, n_params);
    return (n_params - e) * plan_storage_bits(req, m, bits) / 8.0 + e * req->embed_bits / 8.0;
}

double plan_largest_n_in_storage(const plan_request *req, plan_method m, double bits)
{
    double lo = 1, hi = 1e16;
    if (plan_storage_bytes(req, m, lo + plan_embed_params(req, lo), bits) > req->memory_bytes) return NAN;
    for (int it = 0; it < 200 && hi / lo > 1 + 1e-12; it++) {
        double mid = sqrt(lo * hi);
        if (plan_storage_bytes(req, m, mid, bits) <= req->memory_bytes) lo = mid;
        else hi = mid;
    }
    return lo;
}

double plan_tokens_for(const plan_request *req, double n_params)
{
    if (isfinite(req->tokens)) return req->tokens;
    if (isfinite(req->tokens_per_param)) return req->tokens_per_param * n_params;
    double fpt = isfinite(req->flops_per_token) ? req->flops_per_token : 6.0 * n_params;
    return req->flops / fpt;
}

static double loss_at_n(const plan_request *req, const law_model *m, double bits, double ln_n)
{
    double n = exp(ln_n), f, l;
    if (plan_optimum_on_grid(m, n, plan_tokens_for(req, n), bits, 201, &f, &l, NULL) != QP_OK) return INFINITY;
    return l;
}

qp_status plan_search_n(const plan_request *req, const law_model *m, double bits, double n_lo, double n_hi,
                        double *n_best, qp_error *err)
{
    enum { G = 49 };
    double a = log(n_lo), b = log(n_hi), best = INFINITY;
    int bi = 0;
    for (int i = 0; i < G; i++) {
        double l = loss_at_n(req, m, bits, a + (b - a) * i / (G - 1));
        if (l < best) best = l, bi = i;
    }
    if (!isfinite(best))
        return qp_fail(err, QP_ERR_NUMERIC, "the law gives no finite loss for any model size at %g bits", bits);
    double lo = a + (b - a) * (bi > 0 ? bi - 1 : 0) / (G - 1), hi = a + (b - a) * (bi < G - 1 ? bi + 1 : G - 1) / (G - 1);
    const double g = 0.6180339887498949;
    double x1 = hi - g * (hi - lo), x2 = lo + g * (hi - lo);
    double f1 = loss_at_n(req, m, bits, x1), f2 = loss_at_n(req, m, bits, x2);
    for (int it = 0; it < 60 && hi - lo > 1e-6; it++) {
        if (f1 < f2) hi = x2, x2 = x1, f2 = f1, x1 = hi - g * (hi - lo), f1 = loss_at_n(req, m, bits, x1);
        else lo = x1, x1 = x2, f1 = f2, x2 = lo + g * (hi - lo), f2 = loss_at_n(req, m, bits, x2);
    }
    double x = 0.5 * (lo + hi);
    /* never worse than the grid's best point */
    *n_best = loss_at_n(req, m, bits, x) <= best ? exp(x) : exp(a + (b - a) * bi / (G - 1));
    return QP_OK;
}
