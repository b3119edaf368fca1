/* fit_runs: clean the run records, check that the form is identifiable, multi-start
 * BFGS2, quality figures, leave-one-size-out, bootstrap, provenance. Method: docs/fitter.md. */
#include <gsl/gsl_errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fit_internal.h"

enum { P_E, P_A, P_B, P_ALPHA, P_BETA };

void fit_options_init(fit_options *o)
{
    memset(o, 0, sizeof *o);
    o->form = DATA_LAW_QAT;
    o->huber_delta = 1e-3;
    o->ci_level = 0.95;
    o->seed = 1;
    o->best_rtol = 1e-4;
    o->max_iter = 3000;
    o->loo = 1;
}

void fit_report_free(fit_report *rep)
{
    if (!rep) return;
    free(rep->by_size);
    free(rep->by_bits);
    free(rep->groups);
    rep->by_size = rep->by_bits = NULL;
    rep->groups = NULL;
}

/* ---- cleaning ------------------------------------------------------------ */

static int run_is_bad(const data_run *r)
{
    double dt = r->d_fp + r->d_qat;
    if (!(isfinite(r->n_params) && r->n_params > 0)) return 1;
    if (!(isfinite(r->d_fp) && r->d_fp >= 0 && isfinite(r->d_qat) && r->d_qat >= 0 && dt > 0))
        return 1;
    if (!data_bits_valid(r->bits)) return 1;
    return 0;
}

static const data_run *g_sort_runs; /* qsort has no context argument; cleaning is serial */

static int cmp_run_id(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(g_sort_runs[i].run_id, g_sort_runs[j].run_id);
    return c ? c : (i > j) - (i < j);
}

static int cmp3(double x, double y) { return (x > y) - (x < y); }

static int cmp_run_point(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    const data_run *x = &g_sort_runs[i], *y = &g_sort_runs[j];
    int c = cmp3(x->n_params, y->n_params);
    if (!c) c = cmp3(x->d_fp, y->d_fp);
    if (!c) c = cmp3(x->d_qat, y->d_qat);
    if (!c) c = (x->bits > y->bits) - (x->bits < y->bits);
    if (!c) c = cmp3(x->loss, y->loss);
    if (!c) c = (x->seed > y->seed) - (x->seed < y->seed);
    return c ? c : (i > j) - (i < j);
}

/* Names an excluded run in rep->excluded_runs, while it has room; then counts the rest. */
static void name_excluded(fit_report *rep, const data_run *r, const char *why, int *more)
{
    char item[400];
    size_t k = strlen(rep->excluded_runs);
    int n = snprintf(item, sizeof item, "%s%s (%s%s%s)", k ? ", " : "", r->run_id[0] ? r->run_id : "(no id)", why,
                     r->reason[0] ? ": " : "", r->reason);
    if (!*more && n > 0 && k + (size_t)n + 16 < sizeof rep->excluded_runs) memcpy(rep->excluded_runs + k, item, (size_t)n + 1);
    else ++*more;
}

/* Marks used[i] = 1 for runs the form fits; counts the others in rep. A duplicate is a
 * second record with the same run_id, or with the same N, D_fp, D_qat, bits, loss and
 * seed (the same run recorded twice); repeated seeds of one configuration are kept. */
/* A fit describes one training method: quantized runs of another are excluded, counted and
 * their methods named, so that a qat law never silently absorbs EfQAT runs. Full-precision
 * runs train no quantizer and belong to every method. */
static void exclude_other_methods(const data_run_list *runs, const char *method, unsigned char *used,
                                  fit_report *rep)
{
    const char *want = method[0] ? method : "qat";
    for (size_t i = 0; i < runs->n; i++) {
        const data_run *r = &runs->runs[i];
        const char *m = data_run_method(r);
        if (!used[i] || data_run_is_fp(r) || !strcmp(m, want)) continue;
        used[i] = 0;
        rep->n_other_method++;
        size_t k = strlen(rep->other_methods), ml = strlen(m);
        int seen = 0;
        for (const char *p = rep->other_methods; (p = strstr(p, m)); p += ml)
            if ((p == rep->other_methods || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0')) seen = 1;
        if (!seen && k + ml + 3 < sizeof rep->other_methods)
            snprintf(rep->other_methods + k, sizeof rep->other_methods - k, "%s%s", k ? ", " : "", m);
    }
}

static qp_status clean_runs(const data_run_list *runs, data_law_form form, const char *method,
                            unsigned char *used, fit_report *rep, qp_error *err)
{
    size_t n = runs->n;
    int *idx = malloc(sizeof(int) * (n + 1));
    if (!idx) return qp_fail(err, QP_ERR_NOMEM, "out of memory cleaning %zu runs", n);
    int m = 0, more = 0;
    rep->excluded_runs[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const data_run *r = &runs->runs[i];
        used[i] = 0;
        if (r->status == DATA_RUN_DIVERGED) rep->n_diverged++, name_excluded(rep, r, "diverged", &more);
        else if (r->status == DATA_RUN_FAILED) rep->n_failed++, name_excluded(rep, r, "failed", &more);
        else if (run_is_bad(r) || !(isfinite(r->loss) && r->loss > 0)) rep->n_bad++, name_excluded(rep, r, "bad", &more);
        else {
            used[i] = 1;
            idx[m++] = (int)i;
        }
    }
    if (more) {
        size_t k = strlen(rep->excluded_runs);
        snprintf(rep->excluded_runs + k, sizeof rep->excluded_runs - k, " and %d more", more);
    }
    g_sort_runs = runs->runs;
    qsort(idx, (size_t)m, sizeof(int), cmp_run_id);
    for (int k = 1; k < m; k++)
        if (runs->runs[idx[k]].run_id[0] && !strcmp(runs->runs[idx[k]].run_id, runs->runs[idx[k - 1]].run_id) &&
            used[idx[k]]) {
            used[idx[k]] = 0;
            rep->n_duplicate++;
        }
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (used[i]) idx[m++] = (int)i;
    qsort(idx, (size_t)m, sizeof(int), cmp_run_point);
    for (int k = 1; k < m; k++)
        if (cmp_run_point(&idx[k], &idx[k - 1]) != 0) {
            const data_run *x = &runs->runs[idx[k]], *y = &runs->runs[idx[k - 1]];
            if (x->n_params == y->n_params && x->d_fp == y->d_fp && x->d_qat == y->d_qat &&
                x->bits == y->bits && x->loss == y->loss && x->seed == y->seed) {
                used[idx[k]] = 0;
                rep->n_duplicate++;
            }
        }
    g_sort_runs = NULL;
    free(idx);
    for (size_t i = 0; i < n; i++)
        if (used[i] && form == DATA_LAW_CHINCHILLA && !data_run_is_fp(&runs->runs[i])) {
            used[i] = 0;
            rep->n_other_form++;
        }
    exclude_other_methods(runs, method, used, rep);
    return QP_OK;
}

/* Distinct values up to a relative tolerance (values are sorted in place). */
static int count_distinct(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), qp_cmp_double);
    int c = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || fabs(v[i] - v[i - 1]) > 1e-9 * fabs(v[i])) c++;
    return c;
}


/* What the data can identify, for the points with weight > 0. */
typedef struct {
    int n, sizes, tokens, q_n, q_sizes, q_bits, q_fracs, q_tokens;
} fit_census;

static qp_status census(const law_point *x, const double *w, size_t n, fit_census *c, qp_error *err)
{
    memset(c, 0, sizeof *c);
    double *v = malloc(sizeof(double) * (n + 1));
    if (!v) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int k = 0;
#define DISTINCT(expr, cond, dst)                                      \
    k = 0;                                                             \
    for (size_t i = 0; i < n; i++)                                     \
        if ((!w || w[i] > 0) && (cond)) v[k++] = (expr);               \
    dst = count_distinct(v, k);
    DISTINCT(x[i].n_params, 1, c->sizes)
    c->n = k;
    DISTINCT(x[i].d_fp + x[i].d_qat, 1, c->tokens)
    DISTINCT(x[i].n_params, !data_bits_is_fp(x[i].bits), c->q_sizes)
    c->q_n = k;
    DISTINCT(x[i].bits, !data_bits_is_fp(x[i].bits), c->q_bits)
    DISTINCT(x[i].d_qat / (x[i].d_fp + x[i].d_qat), !data_bits_is_fp(x[i].bits), c->q_fracs)
    DISTINCT(x[i].d_fp + x[i].d_qat, !data_bits_is_fp(x[i].bits), c->q_tokens)
#undef DISTINCT
    free(v);
    return QP_OK;
}

/* NULL when identifiable, else what is missing. */
static const char *unidentified(data_law_form form, const fit_census *c, char *buf, size_t len)
{
    int np = data_law_ncoef(form);
    if (form == DATA_LAW_CHINCHILLA) {
        if (c->sizes < 2)
            snprintf(buf, len, "%d full-precision model size(s); the chinchilla form needs >= 2 "
                     "(A and alpha are not identified): add runs of another size", c->sizes);
        else if (c->tokens < 2)
            snprintf(buf, len, "%d token count(s); the chinchilla form needs >= 2 (B and beta "
                     "are not identified): add runs with other token budgets", c->tokens);
        else if (c->n <= np)
            snprintf(buf, len, "%d usable runs for %d coefficients; the chinchilla form needs at "
                     "least %d", c->n, np, np + 1);
        else return NULL;
        return buf;
    }
    if (c->q_sizes < 2)
        snprintf(buf, len, "quantized runs of %d model size(s); the qat form needs >= 2: add "
                 "QAT runs of another size", c->q_sizes);
    else if (c->q_bits < 2)
        snprintf(buf, len, "quantized runs of %d bit width(s); the qat form needs >= 2 (the "
                 "bit exponents are not identified): add another bit width", c->q_bits);
    else if (c->q_fracs < 2)
        snprintf(buf, len, "quantized runs with %d QAT fraction(s); the qat form needs >= 2 "
                 "(the token terms are not identified): vary D_qat/(D_fp+D_qat)", c->q_fracs);
    else if (c->tokens < 2)
        snprintf(buf, len, "%d token count(s); the qat form needs >= 2: add runs with other "
                 "token budgets", c->tokens);
    else if (c->sizes < 2)
        snprintf(buf, len, "%d model size(s); the qat form needs >= 2", c->sizes);
    else if (c->n <= np)
        snprintf(buf, len, "%d usable runs for %d coefficients; the qat form needs at least %d",
                 c->n, np, np + 1);
    else return NULL;
    return buf;
}

/* ---- starts -------------------------------------------------------------- */

/* Latin hypercube over the penalty parameters (docs/fitter.md): each term's log value at
 * the mean quantized point, and the exponents (in theta units, scaled into u). */
static const double lhs_lo[16] = {0, 0, 0, 0, 0, -9.2, 0, -11.5, 0, -0.5, 0, -11.5, 0, -2, -0.5, 0};
static const double lhs_hi[16] = {0, 0, 0, 0, 0, -1.2, 2, 0, 2, 1, 1.5, 0, 2, 1, 1, 1.5};

/* Returns 0, or -1 when out of memory. */
static int qat_lhs_starts(const fit_problem *P, const double *u_chin, int n, uint64_t seed, double *starts)
{
    uint64_t rng = seed * 0x9e3779b97f4a7c15ull + 5;
    int *perm = malloc(sizeof(int) * (size_t)n);
    if (!perm) return -1;
    for (int k = 0; k < n; k++) memcpy(starts + (size_t)k * 16, u_chin, 5 * sizeof(double));
    for (int j = 5; j < 16; j++) fit_lhs_column(n, lhs_lo[j], lhs_hi[j], P->sc[j], &rng, perm, starts + j, 16);
    free(perm);
    return 0;
}

/* ---- quality ------------------------------------------------------------- */

static double predict_log(const fit_problem *P, const double *u, size_t i)
{
    double t[6];
    int nt = 3;
    t[0] = u[0];
    t[1] = u[1] - u[3] * P->zn[i];
    t[2] = u[2] - u[4] * P->zd[i];
    if (P->quant[i]) {
        t[3] = u[5] - u[6] * P->zb[i];
        t[4] = u[7] - u[8] * P->zb[i] - u[9] * P->zn[i] - u[10] * P->zq[i];
        t[5] = u[11] - u[12] * P->zb[i] + u[13] * P->zf[i] - u[14] * P->zn[i] - u[15] * P->zq[i];
        nt = 6;
    }
    double m = t[0], s = 0;
    for (int k = 1; k < nt; k++)
        if (t[k] > m) m = t[k];
    for (int k = 0; k < nt; k++) s += exp(t[k] - m);
    return m + log(s);
}

/* The model-size group of each point: the size itself, or, with more than 12 distinct
 * sizes, one of 8 log-spaced bins (its geometric centre), so that residuals by size and
 * leave-one-size-out stay meaningful for data with continuous sizes. */
static void size_groups(const law_point *x, size_t n, double *key)
{
    double mn = INFINITY, mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        key[i] = x[i].n_params;
        mn = fmin(mn, key[i]);
        mx = fmax(mx, key[i]);
    }
    int distinct = count_distinct(key, (int)n); /* sorts key: refill below */
    for (size_t i = 0; i < n; i++) key[i] = x[i].n_params;
    if (distinct <= 12) return;
    const int nb = 8;
    double l0 = log(mn), w = (log(mx) - l0) / nb;
    for (size_t i = 0; i < n; i++) {
        int b = (int)((log(x[i].n_params) - l0) / w);
        if (b >= nb) b = nb - 1;
        if (b < 0) b = 0;
        key[i] = exp(l0 + (b + 0.5) * w);
    }
}

static qp_status group_residuals(const double *key, const double *kx, const double *res, size_t n,
                                 fit_resid_group **out, int *n_out, qp_error *err)
{
    fit_resid_group *g = calloc(n + 1, sizeof *g);
    if (!g) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int j = 0;
        while (j < m && fabs(g[j].key - key[i]) > 1e-9 * fabs(key[i])) j++;
        if (j == m) {
            g[m].key = key[i];
            g[m].key_lo = INFINITY;
            g[m].key_hi = -INFINITY;
            m++;
        }
        g[j].n++;
        g[j].key_lo = fmin(g[j].key_lo, kx ? kx[i] : key[i]);
        g[j].key_hi = fmax(g[j].key_hi, kx ? kx[i] : key[i]);
        g[j].mean += res[i];
        g[j].rmse += res[i] * res[i];
    }
    for (int j = 0; j < m; j++) {
        g[j].mean /= g[j].n;
        g[j].rmse = sqrt(g[j].rmse / g[j].n);
    }
    /* sorted by key for the report */
    for (int a = 1; a < m; a++)
        for (int b = a; b > 0 && g[b].key < g[b - 1].key; b--) {
            fit_resid_group t = g[b];
            g[b] = g[b - 1];
            g[b - 1] = t;
        }
    *out = g;
    *n_out = m;
    return QP_OK;
}

/* Clamp the exponents and E into their bounds; name the ones that were outside. */
static int clamp_to_bounds(const fit_problem *P, double *u, char *note, size_t len)
{
    int c = 0;
    note[0] = 0;
    for (int j = 0; j < P->np; j++) {
        double v = u[j] > P->hi[j] ? P->hi[j] : u[j] < P->lo[j] ? P->lo[j] : u[j];
        /* inside the tolerance the penalty allows (~1e-4), it is at the bound */
        if (u[j] > P->hi[j] - 1e-4 || u[j] < P->lo[j] + 1e-4) {
            size_t l = strlen(note);
            snprintf(note + l, len - l, "%s%s", c ? ", " : "", data_law_coef_name(P->form, j));
            c++;
        }
        u[j] = v;
    }
    return c;
}

/* ---- one refit from a given point, with per-point weights ---------------- */

/* Leave-one-out and bootstrap refits start at the point estimate, next to their optimum;
 * they stop as the multi-start does (scipy's default tolerances): sampling noise is far
 * larger than what tighter stopping would change, and it is 3x faster on the qat form. */
static int refit_weighted(const fit_problem *P, const double *w, double lowest, const double *u0,
                          int max_iter, double *u)
{
    fit_problem Q = *P; /* shallow: shares the features, owns nothing */
    Q.w = (double *)w;
    Q.hi[0] = log(lowest);
    memcpy(u, u0, sizeof(double) * (size_t)P->np);
    double f;
    int it;
    if (fit_minimize(&Q, u, max_iter, 0, &f, &it) != 0) return -1;
    for (int j = 0; j < P->np; j++) {
        if (u[j] > Q.hi[j]) u[j] = Q.hi[j];
        if (u[j] < Q.lo[j]) u[j] = Q.lo[j];
    }
    return 0;
}

/* ---- the fit ------------------------------------------------------------- */

/* The loss unit of the runs used, when their vocabularies say it: 256 byte tokens make the
 * loss nats per byte; any other shared vocabulary makes it nats per token of that
 * vocabulary; runs that disagree or do not say leave it unknown. */
static void infer_units(const data_run_list *runs, const unsigned char *used, data_law *out)
{
    int vocab = -1;
    for (size_t i = 0; i < runs->n; i++) {
        if (!used[i]) continue;
        int v = runs->runs[i].shape.vocab;
        if (vocab < 0) vocab = v;
        else if (vocab != v) vocab = 0;
    }
    if (vocab <= 0) return;
    out->units = vocab == 256 ? DATA_UNITS_NATS_PER_BYTE : DATA_UNITS_NATS_PER_TOKEN;
    out->vocab = vocab;
    if (vocab == 256) snprintf(out->tokenizer, sizeof out->tokenizer, "bytes");
}

static void iso_utc_now(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void fill_ranges(const law_point *x, size_t n, data_law_provenance *p)
{
    p->n_min = p->d_min = p->s_min = INFINITY;
    p->n_max = p->d_max = p->s_max = -INFINITY;
    p->n_bits = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i].d_fp + x[i].d_qat;
        if (x[i].n_params < p->n_min) p->n_min = x[i].n_params;
        if (x[i].n_params > p->n_max) p->n_max = x[i].n_params;
        if (d < p->d_min) p->d_min = d;
        if (d > p->d_max) p->d_max = d;
        if (!data_bits_is_fp(x[i].bits)) {
            double s = law_tokens_per_param_byte(d, x[i].n_params, x[i].bits);
            if (s < p->s_min) p->s_min = s;
            if (s > p->s_max) p->s_max = s;
        }
        int j = 0;
        while (j < p->n_bits && p->bits[j] != x[i].bits) j++;
        if (j == p->n_bits && p->n_bits < 16) p->bits[p->n_bits++] = x[i].bits;
    }
    if (!isfinite(p->s_min)) p->s_min = p->s_max = NAN;
    if (n == 0) p->n_min = p->n_max = p->d_min = p->d_max = NAN;
    for (int a = 1; a < p->n_bits; a++)
        for (int b = a; b > 0 && p->bits[b] < p->bits[b - 1]; b--) {
            int t = p->bits[b];
            p->bits[b] = p->bits[b - 1];
            p->bits[b - 1] = t;
        }
}

/* Multi-start fit of the chinchilla form to the points with the Epoch grid. */
static qp_status fit_chinchilla_stage(const fit_problem *P, const fit_options *opt, double *u_best,
                                      int *starts, int *ok, int *at_best, double *fbest,
                                      qp_error *err)
{
    int want = opt->n_starts > 0 && opt->n_starts < FIT_CHINCHILLA_GRID_STARTS
                   ? opt->n_starts : FIT_CHINCHILLA_GRID_STARTS;
    double *st = malloc(sizeof(double) * 5 * (size_t)want);
    double *fv = malloc(sizeof(double) * (size_t)want);
    double *ends = malloc(sizeof(double) * 5 * (size_t)want);
    if (!st || !fv || !ends) {
        free(st);
        free(fv);
        free(ends);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for %d starts", want);
    }
    want = fit_chinchilla_grid(st, want);
    for (int k = 0; k < want; k++) { /* the grid's points, in the centred coordinates */
        double t[5];
        memcpy(t, st + (size_t)k * 5, sizeof t);
        fit_theta_to_u(P, t, st + (size_t)k * 5);
    }
    int best = fit_multistart(P, st, want, opt->max_iter, opt->threads, fv, ends);
    *starts = want;
    *ok = *at_best = 0;
    if (best >= 0) {
        for (int k = 0; k < want; k++) {
            if (isfinite(fv[k])) (*ok)++;
            if (isfinite(fv[k]) && fv[k] - fv[best] <= opt->best_rtol * fabs(fv[best]) + 1e-15) (*at_best)++;
        }
        memcpy(u_best, ends + (size_t)best * 5, 5 * sizeof(double));
        *fbest = fv[best];
        double f;
        int it;
        if (fit_minimize(P, u_best, opt->max_iter, 1, &f, &it) == 0 && f <= *fbest) *fbest = f;
        else memcpy(u_best, ends + (size_t)best * 5, 5 * sizeof(double));
    }
    free(st);
    free(fv);
    free(ends);
    if (best < 0)
        return qp_fail(err, QP_ERR_NUMERIC, "no start of the chinchilla fit converged to a finite "
                       "objective: check the losses (nats/token) and token counts");
    return QP_OK;
}

qp_status fit_fraction_form(const data_run_list *runs, const unsigned char *used,
                            const fit_options *opt, data_law *out, fit_report *rep, qp_error *err);

/* Check the options and fill the defaults. */
static qp_status fit_options_check(fit_options *opt, qp_error *err)
{
    if (!(opt->huber_delta > 0) || !isfinite(opt->huber_delta))
        return qp_fail(err, QP_ERR_INPUT, "the Huber delta must be a positive number (default 1e-3)");
    if (opt->bootstrap < 0) return qp_fail(err, QP_ERR_INPUT, "the bootstrap count must be >= 0");
    if (!(opt->ci_level > 0 && opt->ci_level < 1)) opt->ci_level = 0.95;
    if (opt->max_iter <= 0) opt->max_iter = 3000;
    if (opt->form != DATA_LAW_CHINCHILLA && opt->form != DATA_LAW_QAT && opt->form != DATA_LAW_FRACTION)
        return qp_fail(err, QP_ERR_INPUT, opt->form == DATA_LAW_PENALTY
                           ? "a penalty law is fitted from penalty observations: use fit_penalty ('qatplan fit --form penalty')"
                           : "unknown law form: use chinchilla, qat or fraction");
    return QP_OK;
}

static int n_threads(const fit_options *opt) { return opt->threads > 0 ? opt->threads : omp_get_max_threads(); }

/* The chinchilla form: Epoch AI's grid of starts. */
static qp_status fit_chinchilla_point(fit_problem *P, const law_point *x, const double *loss, size_t n,
                                      double lowest, const fit_options *opt, fit_report *rep, double *u,
                                      char *method, size_t method_n, qp_error *err)
{
    qp_status st;
    if ((st = fit_problem_init(P, DATA_LAW_CHINCHILLA, x, loss, n, opt->huber_delta, 1, err))) return st;
    fit_problem_set_bounds(P, lowest);
    double fb;
    if ((st = fit_chinchilla_stage(P, opt, u, &rep->starts, &rep->starts_ok, &rep->starts_at_best, &fb, err)))
        return st;
    snprintf(method, method_n,
             "summed Huber (delta %g) on log loss; GSL BFGS2 from %s%d starts of Epoch AI's "
             "4,500-start grid; bounds in docs/fitter.md", opt->huber_delta,
             rep->starts < FIT_CHINCHILLA_GRID_STARTS ? "a strided subset: " : "", rep->starts);
    return QP_OK;
}

/* Stage 1 of the qat form: the chinchilla part from the full-precision runs (all runs when
 * there are too few), with the grid. *fp_ok: whether the full-precision runs sufficed. */
static qp_status fit_qat_stage1(fit_problem *P1, const law_point *x, const double *loss, size_t n,
                                const fit_options *opt, double *u1, int *s1, int *fp_ok, qp_error *err)
{
    *fp_ok = 0;
    *s1 = 0;
    law_point *xf = malloc(sizeof(law_point) * (n + 1));
    double *lf = malloc(sizeof(double) * (n + 1));
    if (!xf || !lf) {
        free(xf);
        free(lf);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
    size_t nf = 0;
    for (size_t i = 0; i < n; i++)
        if (data_bits_is_fp(x[i].bits)) {
            xf[nf] = x[i];
            lf[nf++] = loss[i];
        }
    fit_census cf;
    char why[400];
    *fp_ok = census(xf, NULL, nf, &cf, NULL) == QP_OK && nf > 0 &&
             !unidentified(DATA_LAW_CHINCHILLA, &cf, why, sizeof why);
    if (!*fp_ok) {
        memcpy(xf, x, sizeof(law_point) * n);
        memcpy(lf, loss, sizeof(double) * n);
        nf = n;
        for (size_t i = 0; i < n; i++) xf[i].bits = DATA_FP_BITS; /* chinchilla form on all runs */
    }
    double low1 = INFINITY;
    for (size_t i = 0; i < nf; i++)
        if (lf[i] < low1) low1 = lf[i];
    qp_status st = fit_problem_init(P1, DATA_LAW_CHINCHILLA, xf, lf, nf, opt->huber_delta, 1, err);
    free(xf);
    free(lf);
    if (st) return st;
    fit_problem_set_bounds(P1, low1);
    double fb1;
    int ok1, ab1;
    return fit_chinchilla_stage(P1, opt, u1, s1, &ok1, &ab1, &fb1, err);
}

/* 16 parameters: loose convergence can rank basins wrongly, so the 8 best starts are
 * polished tight before the best is chosen. Returns the best start. */
static int polish_best(const fit_problem *P, const fit_options *opt, int ns, double *fv, double *ends,
                       fit_report *rep)
{
    int order[8], no = 0;
    for (int k = 0; k < ns; k++) {
        if (!isfinite(fv[k])) continue;
        int p = no < 8 ? no++ : 8;
        if (p == 8 && !(fv[k] < fv[order[7]])) continue;
        if (p == 8) p = 7;
        while (p > 0 && fv[order[p - 1]] > fv[k]) {
            order[p] = order[p - 1];
            p--;
        }
        order[p] = k;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads(opt))
    for (int q = 0; q < no; q++) {
        double f, uu[16];
        int it, k = order[q];
        memcpy(uu, ends + (size_t)k * 16, sizeof uu);
        if (fit_minimize(P, uu, opt->max_iter, 1, &f, &it) == 0 && f <= fv[k]) {
            fv[k] = f;
            memcpy(ends + (size_t)k * 16, uu, sizeof uu);
        }
    }
    int best = order[0];
    for (int q = 1; q < no; q++)
        if (fv[order[q]] < fv[best]) best = order[q];
    for (int k = 0; k < ns; k++) {
        if (isfinite(fv[k])) rep->starts_ok++;
        if (isfinite(fv[k]) && fv[k] - fv[best] <= opt->best_rtol * fabs(fv[best]) + 1e-15) rep->starts_at_best++;
    }
    return best;
}

/* The qat form: stage 1 (fit_qat_stage1), then the whole law from a Latin hypercube over the
 * penalty terms, each start carrying the stage-1 chinchilla part. */
static qp_status fit_qat_point(fit_problem *P, fit_problem *P1, const law_point *x, const double *loss, size_t n,
                               double lowest, const fit_options *opt, fit_report *rep, double *u, char *method,
                               size_t method_n, qp_error *err)
{
    double u1[5];
    int s1, fp_ok;
    qp_status st;
    if ((st = fit_qat_stage1(P1, x, loss, n, opt, u1, &s1, &fp_ok, err))) return st;
    if ((st = fit_problem_init(P, DATA_LAW_QAT, x, loss, n, opt->huber_delta, 1, err))) return st;
    fit_problem_set_bounds(P, lowest);
    double t1[16] = {0}, uc[16];
    fit_u_to_theta(P1, u1, t1);
    fit_theta_to_u(P, t1, uc);
    int ns = opt->n_starts > 0 ? opt->n_starts : FIT_QAT_DEFAULT_STARTS;
    double *starts = malloc(sizeof(double) * 16 * (size_t)ns);
    double *fv = malloc(sizeof(double) * (size_t)ns);
    double *ends = malloc(sizeof(double) * 16 * (size_t)ns);
    if (!starts || !fv || !ends || qat_lhs_starts(P, uc, ns, opt->seed, starts)) {
        free(starts);
        free(fv);
        free(ends);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for %d starts", ns);
    }
    int best = fit_multistart(P, starts, ns, opt->max_iter, opt->threads, fv, ends);
    rep->starts = ns;
    if (best >= 0) {
        best = polish_best(P, opt, ns, fv, ends, rep);
        memcpy(u, ends + (size_t)best * 16, 16 * sizeof(double));
    }
    free(starts);
    free(fv);
    free(ends);
    if (best < 0)
        return qp_fail(err, QP_ERR_NUMERIC, "no start of the qat fit converged to a finite "
                       "objective: check the losses (nats/token) and token counts");
    snprintf(method, method_n,
             "summed Huber (delta %g) on log loss; chinchilla part from %s (%d-start grid), "
             "then GSL BFGS2 from %d Latin hypercube starts over the penalty terms; bounds "
             "in docs/fitter.md", opt->huber_delta,
             fp_ok ? "the full-precision runs" : "all runs (too few full-precision runs)", s1, ns);
    return QP_OK;
}

/* Residuals, RMSE, MAE, R^2 and the residuals by bit width and by size; key[i] gets the
 * size group of point i (for leave-one-out), w is scratch. */
static qp_status fit_quality(const fit_problem *P, const law_point *x, size_t n, const double *u, double *res,
                             double *key, double *w, fit_report *rep, qp_error *err)
{
    double ss_res = 0, ss_tot = 0, mean_y = 0, mae = 0;
    for (size_t i = 0; i < n; i++) mean_y += P->y[i];
    mean_y /= (double)n;
    for (size_t i = 0; i < n; i++) {
        res[i] = P->y[i] - predict_log(P, u, i);
        ss_res += res[i] * res[i];
        mae += fabs(res[i]);
        ss_tot += (P->y[i] - mean_y) * (P->y[i] - mean_y);
    }
    rep->rmse_log = sqrt(ss_res / (double)n);
    rep->mae_log = mae / (double)n;
    rep->r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : NAN;
    for (size_t i = 0; i < n; i++) key[i] = x[i].bits;
    qp_status st;
    if ((st = group_residuals(key, NULL, res, n, &rep->by_bits, &rep->n_bitw, err))) return st;
    for (size_t i = 0; i < n; i++) w[i] = x[i].n_params;
    size_groups(x, n, key);
    return group_residuals(key, w, res, n, &rep->by_size, &rep->n_sizes, err);
}

/* Leave one model size out: refit from the point estimate u without that size; the RMSE of
 * the held-out points in rep->loo_rmse_log (NAN when a refit fails). key: size groups. */
static qp_status leave_one_size_out(const fit_problem *P, const double *key, const double *loss, size_t n,
                                    const double *u, const fit_options *opt, fit_report *rep, qp_error *err)
{
    int ns = rep->n_sizes, fails = 0;
    double *sq = calloc((size_t)ns, sizeof(double));
    int *cnt = calloc((size_t)ns, sizeof(int));
    if (!sq || !cnt) {
        free(sq);
        free(cnt);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads(opt)) reduction(+ : fails)
    for (int s = 0; s < ns; s++) {
        double *ws = malloc(sizeof(double) * (n + 1)), uu[16];
        if (!ws) {
            fails++;
            continue;
        }
        double low = INFINITY, size = rep->by_size[s].key;
        for (size_t i = 0; i < n; i++) {
            int out_i = fabs(key[i] - size) <= 1e-9 * size;
            ws[i] = out_i ? 0 : 1;
            if (!out_i && loss[i] < low) low = loss[i];
        }
        if (refit_weighted(P, ws, low, u, opt->max_iter, uu) == 0) {
            for (size_t i = 0; i < n; i++)
                if (ws[i] == 0) {
                    double r = P->y[i] - predict_log(P, uu, i);
                    sq[s] += r * r;
                    cnt[s]++;
                }
        } else {
            fails++;
        }
        free(ws);
    }
    double tot = 0;
    int c = 0;
    for (int s = 0; s < ns; s++) {
        tot += sq[s];
        c += cnt[s];
    }
    if (!fails && c > 0) rep->loo_rmse_log = sqrt(tot / c);
    free(sq);
    free(cnt);
    return QP_OK;
}

/* One bootstrap replicate k: resample the runs with replacement (redrawn up to 20 times while
 * the sample cannot identify the form), refit from u; its coefficients in row. 1 if finite. */
static int bootstrap_one(const fit_problem *P, const law_point *x, const double *loss, size_t n, const double *u,
                         const fit_options *opt, int k, double *row)
{
    /* each replicate's stream starts at a hashed state: plain seed + k * step would make
     * replicate k the same stream as replicate 0 shifted by k draws */
    uint64_t mix = (opt->seed + 1) * 0xd1342543de82ef95ull ^ ((uint64_t)k + 1) * 0xbf58476d1ce4e5b9ull;
    uint64_t rng = fit_rng_next(&mix);
    double *ws = malloc(sizeof(double) * (n + 1)), uu[16], th[16];
    if (!ws) return 0;
    int ok = 0;
    for (int tries = 0; tries < 20; tries++) {
        memset(ws, 0, sizeof(double) * n);
        double low = INFINITY;
        for (size_t i = 0; i < n; i++) {
            size_t j = (size_t)(fit_rng_uniform(&rng) * (double)n);
            if (j >= n) j = n - 1;
            ws[j] += 1;
            if (loss[j] < low) low = loss[j];
        }
        fit_census c;
        char b2[400];
        if (census(x, ws, n, &c, NULL) || unidentified(opt->form, &c, b2, sizeof b2)) continue;
        if (refit_weighted(P, ws, low, u, opt->max_iter, uu) != 0) break;
        fit_u_to_theta(P, uu, th);
        law_theta_to_coef(opt->form, th, row);
        int fin = 1;
        for (int j = 0; j < data_law_ncoef(opt->form); j++) fin &= isfinite(row[j]);
        ok = fin;
        break;
    }
    free(ws);
    return ok;
}

/* The bootstrap: opt->bootstrap replicates; with >= 2 good ones, percentile intervals and the
 * samples go into out. */
static qp_status bootstrap(const fit_problem *P, const law_point *x, const double *loss, size_t n, const double *u,
                           const fit_options *opt, data_law *out, fit_report *rep, qp_error *err)
{
    int K = opt->bootstrap, np = data_law_ncoef(opt->form);
    double *samples = malloc(sizeof(double) * (size_t)K * (size_t)np);
    int *okk = calloc((size_t)K, sizeof(int));
    if (!samples || !okk) {
        free(samples);
        free(okk);
        return qp_fail(err, QP_ERR_NOMEM, "out of memory for %d bootstrap samples", K);
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads(opt))
    for (int k = 0; k < K; k++) okk[k] = bootstrap_one(P, x, loss, n, u, opt, k, samples + (size_t)k * (size_t)np);
    int ks = 0;
    for (int k = 0; k < K; k++)
        if (okk[k]) {
            if (ks != k)
                memmove(samples + (size_t)ks * (size_t)np, samples + (size_t)k * (size_t)np, sizeof(double) * (size_t)np);
            ks++;
        }
    free(okk);
    rep->bootstrap_done = ks;
    rep->bootstrap_failed = K - ks;
    if (ks < 2) {
        free(samples);
        return QP_OK;
    }
    return fit_law_take_samples(out, samples, ks, opt->ci_level, err);
}

/* The usable runs as law points and losses; the lowest loss in *lowest. */
static void runs_to_points(const data_run_list *runs, const unsigned char *used, law_point *x, double *loss,
                           double *lowest)
{
    size_t m = 0;
    *lowest = INFINITY;
    for (size_t i = 0; i < runs->n; i++) {
        if (!used[i]) continue;
        const data_run *r = &runs->runs[i];
        x[m] = (law_point){r->n_params, r->d_fp, r->d_qat, r->bits};
        loss[m] = r->loss;
        if (r->loss < *lowest) *lowest = r->loss;
        m++;
    }
}

/* The point estimate u of the chinchilla or qat form from n points, checked identifiable;
 * P (and P1, the qat form's stage 1) are left for the caller to free. */
static qp_status fit_point(fit_problem *P, fit_problem *P1, const law_point *x, const double *loss, size_t n,
                           double lowest, const fit_options *opt, fit_report *rep, double *u, char *method,
                           size_t method_n, qp_error *err)
{
    fit_census cen;
    char why[400];
    qp_status st;
    if ((st = census(x, NULL, n, &cen, err))) return st;
    if (n == 0)
        return qp_fail(err, QP_ERR_UNIDENTIFIED,
                       "no usable runs (%d input: %d bad, %d diverged, %d failed, %d duplicate, %d "
                       "not full precision): the %s form needs valid runs with status ok",
                       rep->n_input, rep->n_bad, rep->n_diverged, rep->n_failed, rep->n_duplicate,
                       rep->n_other_form, data_law_form_name(opt->form));
    if (unidentified(opt->form, &cen, why, sizeof why))
        return qp_fail(err, QP_ERR_UNIDENTIFIED, "cannot identify the %s form: %s", data_law_form_name(opt->form), why);
    if (opt->form == DATA_LAW_CHINCHILLA)
        return fit_chinchilla_point(P, x, loss, n, lowest, opt, rep, u, method, method_n, err);
    return fit_qat_point(P, P1, x, loss, n, lowest, opt, rep, u, method, method_n, err);
}

/* The chinchilla or qat form from the usable runs: the point estimate, its quality,
 * leave-one-size-out, the bootstrap, the provenance of the fit. */
static qp_status fit_huber_form(const data_run_list *runs, const unsigned char *used, const fit_options *opt,
                                data_law *out, fit_report *rep, qp_error *err)
{
    size_t n = (size_t)rep->n_used;
    law_point *x = malloc(sizeof(law_point) * (n + 1));
    double *loss = malloc(sizeof(double) * (n + 1)), *res = malloc(sizeof(double) * (n + 1));
    double *key = malloc(sizeof(double) * (n + 1)), *w = malloc(sizeof(double) * (n + 1));
    fit_problem P = {0}, P1 = {0};
    qp_status st = QP_OK;
    if (!x || !loss || !res || !key || !w) {
        st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
        goto done;
    }
    double lowest, u[DATA_LAW_MAX_COEF], theta[DATA_LAW_MAX_COEF];
    char method[256];
    runs_to_points(runs, used, x, loss, &lowest);
    if ((st = fit_point(&P, &P1, x, loss, n, lowest, opt, rep, u, method, sizeof method, err))) goto done;
    rep->bounds_active = clamp_to_bounds(&P, u, rep->bound_note, sizeof rep->bound_note);
    rep->best_objective = fit_huber_only(&P, u, NULL);
    fit_u_to_theta(&P, u, theta);
    law_theta_to_coef(opt->form, theta, out->coef);
    for (int j = 0; j < data_law_ncoef(opt->form); j++)
        if (!isfinite(out->coef[j])) {
            st = qp_fail(err, QP_ERR_NUMERIC, "the fit produced a non-finite %s: the data do not "
                         "constrain it; add runs or use a smaller form",
                         data_law_coef_name(opt->form, j));
            goto done;
        }
    if ((st = fit_quality(&P, x, n, u, res, key, w, rep, err))) goto done;
    if (opt->loo && rep->n_sizes >= 3 && (st = leave_one_size_out(&P, key, loss, n, u, opt, rep, err))) goto done;
    if (opt->bootstrap > 0 && (st = bootstrap(&P, x, loss, n, u, opt, out, rep, err))) goto done;
    data_law_provenance *p = &out->prov;
    snprintf(p->method, sizeof p->method, "%s", method);
    p->rmse_log = rep->rmse_log;
    p->mae_log = rep->mae_log;
    p->r2 = rep->r2;
    p->huber_objective = rep->best_objective;
    p->loo_rmse_log = rep->loo_rmse_log;
    p->starts = rep->starts;
    p->starts_at_best = rep->starts_at_best;
    fill_ranges(x, n, p);
done:
    fit_problem_free(&P);
    fit_problem_free(&P1);
    free(x);
    free(loss);
    free(res);
    free(key);
    free(w);
    return st;
}

qp_status fit_runs(const data_run_list *runs, const fit_options *opt_in, data_law *out,
                   fit_report *rep_out, qp_error *err)
{
    fit_options opt;
    if (opt_in) opt = *opt_in;
    else fit_options_init(&opt);
    fit_report rep_local, *rep = rep_out ? rep_out : &rep_local;
    memset(rep, 0, sizeof *rep);
    rep->form = opt.form;
    rep->rmse_log = rep->mae_log = rep->r2 = rep->loo_rmse_log = rep->best_objective = NAN;
    rep->frac_rmse = rep->frac_mae = NAN;
    rep->n_input = (int)runs->n;
    data_law_init(out, opt.form);
    double t0 = qp_now();
    gsl_set_error_handler_off(); /* GSL must return errors, never abort the process */
    qp_status st = fit_options_check(&opt, err);
    if (st) return st;

    unsigned char *used = malloc(runs->n + 1);
    if (!used) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    if ((st = clean_runs(runs, opt.form, opt.method, used, rep, err))) goto done;
    for (size_t i = 0; i < runs->n; i++) rep->n_used += used[i];
    if (opt.form == DATA_LAW_FRACTION) st = fit_fraction_form(runs, used, &opt, out, rep, err);
    else st = fit_huber_form(runs, used, &opt, out, rep, err);
    if (!st) {
        data_law_provenance *p = &out->prov;
        snprintf(p->source, sizeof p->source, "%s", opt.source[0] ? opt.source : "run records");
        iso_utc_now(p->created, sizeof p->created);
        snprintf(p->code_version, sizeof p->code_version, "%s", qp_version());
        p->n_runs = rep->n_used;
        p->n_excluded = rep->n_bad + rep->n_diverged + rep->n_failed + rep->n_duplicate;
        if (opt.form != DATA_LAW_CHINCHILLA)
            snprintf(p->run_method, sizeof p->run_method, "%s", opt.method[0] ? opt.method : "qat");
        infer_units(runs, used, out);
        st = data_law_validate(out, err);
    }
done:
    free(used);
    rep->seconds = qp_now() - t0;
    if (st) data_law_free(out);
    if (!rep_out) fit_report_free(rep);
    return st;
}

double fit_huber_objective(const data_law *law, const law_point *x, const double *loss, size_t n,
                           double delta)
{
    fit_problem P;
    if (fit_problem_init(&P, law->form, x, loss, n, delta, 0, NULL)) return NAN;
    double t[DATA_LAW_MAX_COEF];
    law_to_theta(law, t);
    double f = fit_huber_only(&P, t, NULL);
    fit_problem_free(&P);
    return f;
}
