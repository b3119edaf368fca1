/* The planner: per bit width, the token split from the closed-form fraction, and with a
 * fitted QAT law the law-optimal fraction, the predicted losses and a ranking. */
#include "plan.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_min.h>
#include <gsl/gsl_roots.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define GRID_POINTS 1001

qp_status plan_laws_builtin(plan_laws *laws, qp_error *err)
{
    memset(laws, 0, sizeof *laws);
    law_builtin_chinchilla(&laws->fp);
    law_builtin_fraction(&laws->fraction);
    laws->has_fp = laws->has_fraction = 1;
    snprintf(laws->fp_name, sizeof laws->fp_name, "built-in chinchilla");
    snprintf(laws->fraction_name, sizeof laws->fraction_name, "built-in");
    qp_status st = law_builtin_reference(&laws->penalty, err);
    if (st) return st;
    laws->has_penalty = 1;
    snprintf(laws->penalty_name, sizeof laws->penalty_name, "built-in reference");
    return QP_OK;
}

void plan_laws_drop_qat(plan_laws *laws)
{
    if (laws->has_qat) data_law_free(&laws->qat);
    if (laws->has_penalty) data_law_free(&laws->penalty);
    laws->has_qat = laws->has_penalty = 0;
    laws->qat_name[0] = laws->penalty_name[0] = 0;
}

/* Put a law in the role its form gives. A qat law and a penalty law are alternatives (a
 * qat law carries its own full-precision part): the later one replaces the earlier. */
static qp_status laws_put(plan_laws *laws, data_law *law, const char *name, qp_error *err)
{
    data_law *slot = NULL;
    int *has = NULL;
    char *dst = NULL;
    switch (law->form) {
    case DATA_LAW_CHINCHILLA:
        slot = &laws->fp, has = &laws->has_fp, dst = laws->fp_name;
        laws->fp_given = 1;
        break;
    case DATA_LAW_FRACTION: slot = &laws->fraction, has = &laws->has_fraction, dst = laws->fraction_name; break;
    case DATA_LAW_QAT:
    case DATA_LAW_PENALTY:
        plan_laws_drop_qat(laws);
        if (law->form == DATA_LAW_QAT) slot = &laws->qat, has = &laws->has_qat, dst = laws->qat_name;
        else slot = &laws->penalty, has = &laws->has_penalty, dst = laws->penalty_name;
        break;
    case DATA_LAW_FORM_COUNT_:
        data_law_free(law);
        return qp_fail(err, QP_ERR_INPUT, "%s: unknown law form", name);
    }
    if (*has) data_law_free(slot);
    *slot = *law;
    *has = 1;
    snprintf(dst, sizeof laws->fp_name, "%s", name);
    return QP_OK;
}

qp_status plan_laws_add_file(plan_laws *laws, const char *path, qp_error *err)
{
    data_law law;
    qp_status st = data_law_read(path, &law, err);
    if (st) return st;
    return laws_put(laws, &law, path, err);
}

qp_status plan_laws_add_builtin(plan_laws *laws, const char *name, qp_error *err)
{
    data_law law;
    qp_status st = law_builtin_by_name(name, &law, err);
    if (st) return st;
    char label[64];
    snprintf(label, sizeof label, "built-in %s", name);
    return laws_put(laws, &law, label, err);
}

qp_status plan_laws_add(plan_laws *laws, const char *file_or_name, qp_error *err)
{
    static const char *const names[] = {"reference", "own", "chinchilla", "fraction"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(file_or_name, names[i])) return plan_laws_add_builtin(laws, file_or_name, err);
    return plan_laws_add_file(laws, file_or_name, err);
}

qp_status plan_laws_model(const plan_laws *laws, law_model *m, qp_error *err)
{
    const data_law *pen = laws->has_qat ? &laws->qat : laws->has_penalty ? &laws->penalty : NULL;
    /* A qat law is its own full-precision reference unless a chinchilla law was given on purpose. */
    const data_law *fp = laws->has_qat && !laws->fp_given ? &laws->qat : laws->has_fp ? &laws->fp : NULL;
    return law_model_init(m, fp, pen, err);
}

void plan_laws_free(plan_laws *laws)
{
    if (!laws) return;
    if (laws->has_fp) data_law_free(&laws->fp);
    if (laws->has_fraction) data_law_free(&laws->fraction);
    plan_laws_drop_qat(laws);
    laws->has_fp = laws->has_fraction = 0;
}

void plan_request_init(plan_request *r)
{
    memset(r, 0, sizeof *r);
    r->n_params = r->memory_bytes = r->flops = r->tokens = r->flops_per_token = r->batch_tokens = NAN;
    r->decay_frac = 0.2;
    static const int defaults[] = {1, 2, 3, 4, 6, 8};
    r->n_bits = 6;
    memcpy(r->bits, defaults, sizeof defaults);
}

/* ---- numerical optimum -------------------------------------------------- */

typedef struct {
    const law_model *m;
    double n, d;
    int bits;
} frac_ctx;

static double loss_at_fraction(double f, void *p)
{
    const frac_ctx *c = p;
    law_point x = {c->n, (1 - f) * c->d, f * c->d, c->bits};
    return law_model_loss(c->m, &x);
}

static qp_status optimal_fraction_grid(const law_model *qat, double n, double d, int bits, int grid,
                                       double *f_opt, double *loss_opt, qp_error *err)
{
    frac_ctx c = {qat, n, d, bits};
    int best = 0;
    double best_l = INFINITY;
    for (int i = 0; i < grid; i++) {
        double l = loss_at_fraction((double)i / (grid - 1), &c);
        if (!isfinite(l))
            return qp_fail(err, QP_ERR_NUMERIC,
                           "the QAT law gives a non-finite loss at N=%g, D=%g, %d bits: check the law file",
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
    gsl_function fn = {loss_at_fraction, &c};
    gsl_min_fminimizer *m = gsl_min_fminimizer_alloc(gsl_min_fminimizer_brent);
    if (!m) return qp_fail(err, QP_ERR_NOMEM, "out of memory in the fraction search");
    /* The grid point is strictly below both neighbours' values or ties them; Brent needs strict. */
    if (gsl_min_fminimizer_set_with_values(m, &fn, f, best_l, lo, loss_at_fraction(lo, &c), hi,
                                           loss_at_fraction(hi, &c)) == GSL_SUCCESS) {
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

qp_status plan_optimal_fraction(const law_model *qat, double n_params, double d_total, int bits,
                                double *f_opt, double *loss_opt, qp_error *err)
{
    if (!qat->penalty)
        return qp_fail(err, QP_ERR_INPUT, "the optimal fraction needs a QAT law (a penalty or qat law)");
    gsl_set_error_handler_off();
    return optimal_fraction_grid(qat, n_params, d_total, bits, GRID_POINTS, f_opt, loss_opt, err);
}

typedef struct {
    const law_model *m;
    double n, f, target;
    int bits;
} reach_ctx;

static double reach_residual(double log_d, void *p)
{
    const reach_ctx *c = p;
    double d = exp(log_d);
    law_point x = {c->n, (1 - c->f) * d, c->f * d, c->bits};
    return law_model_loss(c->m, &x) - c->target;
}

qp_status plan_tokens_to_reach(const law_model *qat, double n_params, double d_total, int bits,
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

static void warn(plan_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(plan_result *r, const char *fmt, ...)
{
    if (r->n_warnings >= PLAN_MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warnings[r->n_warnings], sizeof r->warnings[0], fmt, ap);
    va_end(ap);
    for (int i = 0; i < r->n_warnings; i++) /* keep each warning once */
        if (!strcmp(r->warnings[i], r->warnings[r->n_warnings])) return;
    r->n_warnings++;
}

static int law_has_bits(const data_law *law, int bits)
{
    for (int i = 0; i < law->prov.n_bits; i++)
        if (law->prov.bits[i] == bits) return 1;
    return law->prov.n_bits == 0;
}

/* How far x lies outside [lo, hi], as a factor (1 inside). */
static double beyond(double x, double lo, double hi) { return x < lo ? lo / x : x > hi ? x / hi : 1; }

static void check_range(plan_result *res, const data_law *law, const char *what, double n, double d,
                        int bits, double s)
{
    const data_law_provenance *p = &law->prov;
    char a[32], b[32], c[32];
    double k;
    if (isfinite(p->n_min) && (k = beyond(n, p->n_min, p->n_max)) > 1.001)
        warn(res, "N = %s is %.3gx outside the %s law's fitted range %s-%s parameters: extrapolating",
             qp_format_count(n, a, sizeof a), k, what, qp_format_count(p->n_min, b, sizeof b),
             qp_format_count(p->n_max, c, sizeof c));
    if (isfinite(p->d_min) && (k = beyond(d, p->d_min, p->d_max)) > 1.001)
        warn(res, "D = %s tokens is %.3gx outside the %s law's fitted range %s-%s tokens: extrapolating",
             qp_format_count(d, a, sizeof a), k, what, qp_format_count(p->d_min, b, sizeof b),
             qp_format_count(p->d_max, c, sizeof c));
    if (law->form != DATA_LAW_CHINCHILLA && !law_has_bits(law, bits)) {
        int lo = 0, hi = 0; /* the fitted widths around this one */
        for (int i = 0; i < p->n_bits; i++) {
            if (p->bits[i] < bits && p->bits[i] > lo) lo = p->bits[i];
            if (p->bits[i] > bits && p->bits[i] < LAW_FP_BITS && (!hi || p->bits[i] < hi)) hi = p->bits[i];
        }
        if (lo && hi)
            warn(res, "%d bits lies between the widths %d and %d the %s law was fitted on: interpolating", bits, lo,
                 hi, what);
        else
            warn(res, "%d bits is outside the bit widths the %s law was fitted on (%d-%d): extrapolating", bits, what,
                 p->n_bits ? p->bits[0] : 0, p->n_bits ? p->bits[p->n_bits - 1] : 0);
    }
    if (isfinite(p->s_min) && isfinite(s) && (k = beyond(s, p->s_min, p->s_max)) > 1.001)
        warn(res, "S_total = %.3g (%d bits) is %.3gx outside the %s law's fitted range %.3g-%.3g: extrapolating", s,
             bits, k, what, p->s_min, p->s_max);
}

static double percentile(double *v, int n, double q)
{
    /* v sorted ascending; linear interpolation between order statistics */
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Interval of the optimum over the QAT law's bootstrap samples (the full-precision law is
 * fixed unless the QAT law is its own full-precision reference). */
static qp_status bootstrap_interval(const law_model *m, plan_row *row, double level, qp_error *err)
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
        /* a coarser grid per sample keeps the planner fast; Brent refines it */
        if (optimal_fraction_grid(&sm, row->n_params, row->d_total, row->bits, 201, &fo, &lo, NULL) == QP_OK) {
            f[k] = fo;
            l[k] = lo;
            pen[k] = law_model_penalty(&sm, &(law_point){row->n_params, (1 - fo) * row->d_total, fo * row->d_total,
                                                         row->bits});
            k++;
        }
    }
    if (k >= 2) {
        qsort(f, (size_t)k, sizeof(double), cmp_double);
        qsort(l, (size_t)k, sizeof(double), cmp_double);
        qsort(pen, (size_t)k, sizeof(double), cmp_double);
        double a = (1 - level) / 2;
        row->f_opt_lo = percentile(f, k, a);
        row->f_opt_hi = percentile(f, k, 1 - a);
        row->loss_opt_lo = percentile(l, k, a);
        row->loss_opt_hi = percentile(l, k, 1 - a);
        row->penalty_lo = percentile(pen, k, a);
        row->penalty_hi = percentile(pen, k, 1 - a);
    }
    free(f);
    return QP_OK;
}

static void set_schedule(const plan_request *req, plan_row *r)
{
    /* The paper saw fusion help at 4 and 6 bits and fail at 1 bit and some 2-bit settings. */
    r->schedule = r->d_qat == 0 ? DATA_SCHED_FP_ONLY
                  : r->d_fp == 0 ? DATA_SCHED_QAT_ONLY
                  : r->bits >= 3 ? DATA_SCHED_FUSED
                                 : DATA_SCHED_CLASSIC;
    r->qat_start_token = r->d_fp;
    r->fp_decay_start_token = NAN;
    switch (r->schedule) {
    case DATA_SCHED_FUSED:
        r->decay_start_token = r->d_fp; /* the decay runs during QAT */
        break;
    case DATA_SCHED_CLASSIC:
        r->fp_decay_start_token = r->d_fp * (1 - req->decay_frac);
        r->decay_start_token = r->d_fp + r->d_qat * (1 - req->decay_frac);
        break;
    default:
        r->decay_start_token = r->d_total * (1 - req->decay_frac);
        break;
    }
    double bt = req->batch_tokens;
    r->qat_start_step = isfinite(bt) ? floor(r->qat_start_token / bt) : NAN;
    r->decay_start_step = isfinite(bt) ? floor(r->decay_start_token / bt) : NAN;
    r->fp_decay_start_step = isfinite(bt) && isfinite(r->fp_decay_start_token) ? floor(r->fp_decay_start_token / bt) : NAN;
}

/* Rows share one law model; a row breaking a physical check is marked invalid. */
static qp_status plan_row_law(const plan_request *req, const law_model *m, plan_result *out, plan_row *r,
                              qp_error *err)
{
    qp_status st;
    (void)req;
    if ((st = plan_optimal_fraction(m, r->n_params, r->d_total, r->bits, &r->f_opt, &r->loss_opt, err))) return st;
    frac_ctx c = {m, r->n_params, r->d_total, r->bits};
    law_point opt = {r->n_params, (1 - r->f_opt) * r->d_total, r->f_opt * r->d_total, r->bits};
    r->penalty = law_model_penalty(m, &opt);
    if (isfinite(r->f_hat)) r->loss_f_hat = loss_at_fraction(r->f_hat, &c);
    r->loss_10pct = loss_at_fraction(0.1, &c);
    if ((st = plan_tokens_to_reach(m, r->n_params, r->d_total, r->bits, 0.1, r->loss_opt, &r->extra_tokens_10pct,
                                   err)))
        return st;
    r->extra_tokens_10pct -= r->d_total;
    if (r->extra_tokens_10pct < 0) r->extra_tokens_10pct = 0;
    if (m->penalty->n_samples >= 2) {
        double level = m->penalty->has_interval && m->penalty->ci_level > 0 ? m->penalty->ci_level : 0.95;
        if ((st = bootstrap_interval(m, r, level, err))) return st;
    }
    r->fraction = r->f_opt;
    /* The checks at the optimum, at f_hat and at 10%: any physically impossible number disqualifies the row. */
    const double fs[3] = {r->f_opt, r->f_hat, 0.1};
    for (int k = 0; k < 3 && r->valid; k++) {
        if (!isfinite(fs[k])) continue;
        law_point x = {r->n_params, (1 - fs[k]) * r->d_total, fs[k] * r->d_total, r->bits};
        if (law_check_point(m, &x, r->invalid_reason, sizeof r->invalid_reason) != LAW_CHECK_OK) {
            r->valid = 0;
            warn(out, "%d bits is not recommended: %s", r->bits, r->invalid_reason);
        }
    }
    return QP_OK;
}

static void row_init(const plan_request *req, plan_row *r, int bits, int from_memory)
{
    memset(r, 0, sizeof *r);
    r->bits = bits;
    r->valid = 1;
    r->n_params = from_memory ? req->memory_bytes * 8.0 / r->bits : req->n_params;
    r->weight_bytes = r->n_params * r->bits / 8.0;
    r->fits_memory = isfinite(req->memory_bytes) ? r->weight_bytes <= req->memory_bytes * (1 + 1e-12) : -1;
    r->f_opt = r->loss_opt = r->loss_f_hat = r->loss_10pct = r->extra_tokens_10pct = r->penalty = NAN;
    r->f_opt_lo = r->f_opt_hi = r->loss_opt_lo = r->loss_opt_hi = r->penalty_lo = r->penalty_hi = NAN;
}

static void row_split(const plan_request *req, plan_row *r)
{
    if (isfinite(r->fraction)) {
        r->d_qat = r->fraction * r->d_total;
        r->d_fp = r->d_total - r->d_qat;
        set_schedule(req, r);
    } else {
        r->d_qat = r->d_fp = NAN;
        r->schedule = r->bits >= 3 ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC;
        r->qat_start_token = r->decay_start_token = r->fp_decay_start_token = NAN;
        r->qat_start_step = r->decay_start_step = r->fp_decay_start_step = NAN;
    }
}

static void recommend(const plan_request *req, plan_result *out)
{
    if (out->ranked) { /* the lowest predicted loss among valid rows that fit memory */
        double best = INFINITY;
        for (int i = 0; i < out->n_rows; i++) {
            const plan_row *r = &out->rows[i];
            if (r->fits_memory == 0 || !r->valid || !isfinite(r->loss_opt)) continue;
            if (r->loss_opt < best) {
                best = r->loss_opt;
                out->recommended = i;
            }
        }
        if (out->recommended < 0 && isfinite(req->memory_bytes))
            warn(out, "no bit width fits the memory limit: the smallest weights need %.3g bytes", out->rows[0].weight_bytes);
        return;
    }
    int candidates = 0, last = -1;
    for (int i = 0; i < out->n_rows; i++)
        if (out->rows[i].fits_memory != 0 && isfinite(out->rows[i].fraction)) {
            candidates++;
            last = i;
        }
    if (candidates == 1) out->recommended = last; /* one bit width asked for: plan it */
}

static qp_status check_request(const plan_request *req, qp_error *err)
{
    if (!isfinite(req->n_params) && !isfinite(req->memory_bytes))
        return qp_fail(err, QP_ERR_USAGE, "give the model size (--params 2.2B) or a memory limit (--memory 1.5GiB)");
    if (isfinite(req->flops) == isfinite(req->tokens))
        return qp_fail(err, QP_ERR_USAGE, "give exactly one budget: --budget FLOPs (or GPU-hours) or --tokens");
    if (req->n_bits < 1) return qp_fail(err, QP_ERR_USAGE, "no bit widths to plan for: --bits needs at least one");
    if (!(req->decay_frac > 0 && req->decay_frac < 1))
        return qp_fail(err, QP_ERR_INPUT, "--decay-frac must be in (0, 1)");
    return QP_OK;
}

qp_status plan_run(const plan_request *req, const plan_laws *laws, plan_result *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    out->req = *req;
    out->recommended = -1;
    gsl_set_error_handler_off();
    qp_status st = check_request(req, err);
    if (st) return st;
    law_model m;
    int has_model = laws->has_fp || laws->has_qat;
    if (has_model && (st = plan_laws_model(laws, &m, err))) return st;
    out->units = has_model ? m.units : DATA_UNITS_UNKNOWN;
    out->ranked = has_model && m.penalty != NULL;
    int from_memory = !isfinite(req->n_params);
    double a = laws->has_fraction ? laws->fraction.coef[0] : LAW_FRACTION_A_PAPER;
    for (int i = 0; i < req->n_bits; i++) {
        plan_row *r = &out->rows[out->n_rows++];
        row_init(req, r, req->bits[i], from_memory);
        double fpt = isfinite(req->flops_per_token) ? req->flops_per_token : 6.0 * r->n_params;
        r->d_total = isfinite(req->tokens) ? req->tokens : req->flops / fpt;
        if (!isfinite(r->d_total) || !(r->d_total > 0))
            return qp_fail(err, QP_ERR_INPUT, "the budget gives %g tokens: it must give a positive finite number", r->d_total);
        r->s_total = law_tokens_per_param_byte(r->d_total, r->n_params, r->bits);
        r->f_hat = law_fraction_hat(a, r->s_total);
        if (!isfinite(r->f_hat))
            warn(out, "S_total = %.3g <= 1 at %d bits: the closed-form fraction is meaningless there (fewer tokens "
                      "than weight bytes); give a larger budget",
                 r->s_total, r->bits);
        r->loss_fp = has_model ? law_model_loss_fp(&m, r->n_params, r->d_total) : NAN;
        if (has_model) check_range(out, m.fp, "full-precision", r->n_params, r->d_total, LAW_FP_BITS, NAN);
        if (laws->has_fraction) check_range(out, &laws->fraction, "fraction", r->n_params, r->d_total, r->bits, r->s_total);
        r->fraction = r->f_hat;
        if (out->ranked) {
            check_range(out, m.penalty, "QAT", r->n_params, r->d_total, r->bits, r->s_total);
            if ((st = plan_row_law(req, &m, out, r, err))) return st;
        }
        row_split(req, r);
    }
    recommend(req, out);
    return QP_OK;
}

qp_status plan_eval(const plan_laws *laws, const law_point *x, plan_eval_result *out, qp_error *err)
{
    memset(out, 0, sizeof *out);
    out->x = *x;
    double d = x->d_fp + x->d_qat;
    if (!(x->n_params > 0) || !(d > 0) || x->d_fp < 0 || x->d_qat < 0 || !isfinite(d) || x->bits < 1)
        return qp_fail(err, QP_ERR_INPUT, "a law is evaluated at N > 0 and D_fp + D_qat > 0 tokens, bits >= 1");
    law_model m;
    qp_status st = plan_laws_model(laws, &m, err);
    if (st) return st;
    int quantized = x->bits < LAW_FP_BITS;
    if (quantized && !m.penalty)
        return qp_fail(err, QP_ERR_USAGE, "no QAT law to evaluate %d bits with: drop --no-qat-law or give --law", x->bits);
    out->units = m.units;
    out->loss_fp = law_model_loss_fp(&m, x->n_params, d);
    out->penalty = law_model_penalty(&m, x);
    out->loss = out->loss_fp + out->penalty;
    out->valid = law_check_point(&m, x, out->invalid_reason, sizeof out->invalid_reason) == LAW_CHECK_OK;
    /* the plan's range warnings, through a scratch plan */
    plan_result *tmp = calloc(1, sizeof *tmp);
    if (!tmp) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    double s = law_tokens_per_param_byte(d, x->n_params, x->bits);
    check_range(tmp, m.fp, "full-precision", x->n_params, d, LAW_FP_BITS, NAN);
    if (quantized) check_range(tmp, m.penalty, "QAT", x->n_params, d, x->bits, s);
    if (!out->valid) warn(tmp, "physically impossible: %s", out->invalid_reason);
    memcpy(out->warnings, tmp->warnings, sizeof out->warnings);
    out->n_warnings = tmp->n_warnings;
    free(tmp);
    return QP_OK;
}
