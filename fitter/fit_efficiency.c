/* The efficiency form: how many of the qat law's QAT tokens one QAT token of another
 * training method is worth, per bit width (seed-methods spec 6.3). One parameter per width,
 * so Brent's method on a bracket from a log-spaced grid finds it; no multi-start needed. */
#include <gsl/gsl_errno.h>
#include <gsl/gsl_min.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fit_internal.h"

typedef struct {
    const law_model *m;
    const data_run *const *runs; /* this width's runs */
    const int *weight;           /* bootstrap multiplicity per run; NULL = 1 */
    int n;
    double delta;
} eta_ctx;

static double huber(double r, double delta)
{
    double a = fabs(r);
    return a <= delta ? 0.5 * r * r : delta * (a - 0.5 * delta);
}

/* log(predicted / observed) of one run at eta. */
static double eta_resid(const law_model *m, const data_run *r, double eta)
{
    law_point x = {r->n_params, r->d_fp, eta * r->d_qat, r->bits};
    return log(law_model_loss(m, &x)) - log(r->loss);
}

/* Summed Huber at ln eta = u; non-finite predictions cost infinity. */
static double eta_objective(double u, void *p)
{
    const eta_ctx *c = p;
    double s = 0, eta = exp(u);
    for (int i = 0; i < c->n; i++) {
        double w = c->weight ? c->weight[i] : 1;
        if (w == 0) continue;
        double r = eta_resid(c->m, c->runs[i], eta);
        if (!isfinite(r)) return INFINITY;
        s += w * huber(r, c->delta);
    }
    return s;
}

/* The minimising eta: the best of 121 log-spaced points over [FIT_ETA_MIN, FIT_ETA_MAX],
 * refined by Brent between its neighbours; never worse than the grid. NAN when no point is
 * finite. *at_bound: the optimum is an end of the range. */
static double eta_minimise(const eta_ctx *c, int *at_bound)
{
    enum { G = 121 };
    double a = log(FIT_ETA_MIN), b = log(FIT_ETA_MAX), best = INFINITY, ub = NAN;
    int bi = -1;
    for (int i = 0; i < G; i++) {
        double u = a + (b - a) * i / (G - 1), v = eta_objective(u, (void *)c);
        if (v < best) best = v, bi = i, ub = u;
    }
    if (bi < 0) return NAN;
    if (at_bound) *at_bound = bi == 0 || bi == G - 1;
    if (bi == 0 || bi == G - 1) return exp(ub);
    double lo = a + (b - a) * (bi - 1) / (G - 1), hi = a + (b - a) * (bi + 1) / (G - 1);
    gsl_function fn = {eta_objective, (void *)c};
    gsl_min_fminimizer *s = gsl_min_fminimizer_alloc(gsl_min_fminimizer_brent);
    if (!s) return exp(ub);
    if (gsl_min_fminimizer_set_with_values(s, &fn, ub, best, lo, eta_objective(lo, (void *)c), hi,
                                           eta_objective(hi, (void *)c)) == GSL_SUCCESS) {
        for (int it = 0; it < 100; it++) {
            if (gsl_min_fminimizer_iterate(s) != GSL_SUCCESS) break;
            if (gsl_min_test_interval(gsl_min_fminimizer_x_lower(s), gsl_min_fminimizer_x_upper(s), 1e-10, 0) ==
                GSL_SUCCESS)
                break;
        }
        double u = gsl_min_fminimizer_x_minimum(s), v = gsl_min_fminimizer_f_minimum(s);
        if (isfinite(v) && v <= best) ub = u;
    }
    gsl_min_fminimizer_free(s);
    return exp(ub);
}

/* Runs this fit uses: status ok, finite loss, the method's, quantized at a whole width 1..8
 * with a QAT phase. Everything else is counted by reason. */
static int usable(const data_run *r, const char *method, fit_efficiency_report *rep)
{
    if (r->status != DATA_RUN_OK || !(r->loss > 0) || !isfinite(r->loss) || !(r->n_params > 0) || !(r->d_fp >= 0))
        return rep->n_not_ok++, 0;
    if (data_run_is_fp(r)) return rep->n_fp++, 0;
    if (strcmp(data_run_method(r), method)) return rep->n_other_method++, 0;
    if (!(r->d_qat > 0) || r->bits < 1 || r->bits > 8) return rep->n_no_qat++, 0;
    return 1;
}

/* Bootstrap of one width: resamples of its runs, eta refitted; samples[k * 8 + b - 1]. */
static void eta_bootstrap(const eta_ctx *c0, int b, const fit_options *opt, double *samples, int *ok)
{
    int *w = calloc((size_t)c0->n, sizeof(int));
    if (!w) return;
    uint64_t rng = opt->seed * 0x9E3779B97F4A7C15ull + (uint64_t)b;
    for (int k = 0; k < opt->bootstrap; k++) {
        memset(w, 0, sizeof(int) * (size_t)c0->n);
        for (int i = 0; i < c0->n; i++) w[(size_t)(fit_rng_uniform(&rng) * c0->n)]++;
        eta_ctx c = *c0;
        c.weight = w;
        double eta = eta_minimise(&c, NULL);
        if (isfinite(eta)) samples[(size_t)k * 8 + (size_t)b - 1] = eta;
        else ok[k] = 0;
    }
    free(w);
}

/* Residuals of the fitted law by S_qat decade (eta may depend on S: this shows it). */
static void resid_by_sqat(const data_run *const *use, int n, const law_model *m, const data_law *law,
                          fit_efficiency_report *rep)
{
    double ss = 0;
    for (int i = 0; i < n; i++) {
        const data_run *r = use[i];
        double res = eta_resid(m, r, law_efficiency_eta(law, r->bits));
        double s = law_tokens_per_param_byte(r->d_qat, r->n_params, r->bits);
        double key = pow(10, floor(log10(s)));
        ss += res * res;
        int g = 0;
        while (g < rep->n_sqat && rep->by_sqat[g].key != key) g++;
        if (g == rep->n_sqat) {
            if (g == (int)(sizeof rep->by_sqat / sizeof rep->by_sqat[0])) continue;
            memset(&rep->by_sqat[g], 0, sizeof rep->by_sqat[g]);
            rep->by_sqat[g].key = key;
            rep->by_sqat[g].eta = rep->by_sqat[g].eta_lo = rep->by_sqat[g].eta_hi = NAN;
            rep->n_sqat++;
        }
        fit_eta_group *G = &rep->by_sqat[g];
        G->mean_resid += res;
        G->rmse_log += res * res;
        G->n++;
    }
    for (int g = 0; g < rep->n_sqat; g++) {
        rep->by_sqat[g].mean_resid /= rep->by_sqat[g].n;
        rep->by_sqat[g].rmse_log = sqrt(rep->by_sqat[g].rmse_log / rep->by_sqat[g].n);
    }
    qsort(rep->by_sqat, (size_t)rep->n_sqat, sizeof rep->by_sqat[0], qp_cmp_double); /* key is the first member */
    rep->rmse_log = n ? sqrt(ss / n) : NAN;
}

static void fill_provenance(data_law *out, const data_run *const *use, int n, const fit_options *opt,
                            const law_model *m)
{
    data_law_provenance *p = &out->prov;
    snprintf(p->source, sizeof p->source, "%s", opt->source[0] ? opt->source : "run records");
    snprintf(p->method, sizeof p->method,
             "efficiency: one eta per bit width, Brent's method on the summed Huber (delta %g) of log-loss "
             "residuals with the qat law held fixed", opt->huber_delta);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(p->created, sizeof p->created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(p->code_version, sizeof p->code_version, "%s", qp_version());
    snprintf(p->run_method, sizeof p->run_method, "%s", opt->method);
    p->n_runs = n;
    p->n_min = p->d_min = p->s_min = INFINITY;
    p->n_max = p->d_max = p->s_max = -INFINITY;
    for (int i = 0; i < n; i++) {
        const data_run *r = use[i];
        double d = data_run_tokens(r), s = law_tokens_per_param_byte(d, r->n_params, r->bits);
        p->n_min = fmin(p->n_min, r->n_params), p->n_max = fmax(p->n_max, r->n_params);
        p->d_min = fmin(p->d_min, d), p->d_max = fmax(p->d_max, d);
        p->s_min = fmin(p->s_min, s), p->s_max = fmax(p->s_max, s);
    }
    out->units = m->units;
    out->vocab = m->vocab;
}

/* The usable runs of width b into sel; their count. */
static int runs_of_width(const data_run *const *use, int n, int b, const data_run **sel)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (use[i]->bits == b) sel[k++] = use[i];
    return k;
}

qp_status fit_efficiency(const data_run_list *runs, const law_model *qat, const fit_options *opt, data_law *out,
                         fit_efficiency_report *rep, qp_error *err)
{
    fit_efficiency_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    data_law_init(out, DATA_LAW_EFFICIENCY);
    if (!opt->method[0] || !strcmp(opt->method, "qat"))
        return qp_fail(err, QP_ERR_USAGE, "an efficiency fit is of one method against the qat law: give --method "
                                          "efqat (or efficientqat, blockap, e2eqp)");
    if (!qat->penalty) return qp_fail(err, QP_ERR_USAGE, "an efficiency fit needs a QAT law to hold fixed: give --qat-law");
    gsl_set_error_handler_off();
    rep->n_input = (int)runs->n;
    const data_run **use = malloc(sizeof(*use) * (runs->n + 1) * 2);
    if (!use) return qp_fail(err, QP_ERR_NOMEM, "out of memory");
    const data_run **sel = use + runs->n + 1;
    int n = 0;
    for (size_t i = 0; i < runs->n; i++)
        if (usable(&runs->runs[i], opt->method, rep)) use[n++] = &runs->runs[i];
    rep->n_used = n;
    double *samples = opt->bootstrap > 0 ? calloc((size_t)opt->bootstrap * 8, sizeof(double)) : NULL;
    int *ok = opt->bootstrap > 0 ? malloc(sizeof(int) * (size_t)opt->bootstrap) : NULL;
    qp_status st = QP_OK;
    if (opt->bootstrap > 0 && (!samples || !ok)) st = qp_fail(err, QP_ERR_NOMEM, "out of memory");
    for (int k = 0; k < opt->bootstrap && ok; k++) ok[k] = 1;
    for (int b = 1; b <= 8 && !st; b++) {
        int k = runs_of_width(use, n, b, sel);
        if (!k) continue;
        eta_ctx c = {qat, sel, NULL, k, opt->huber_delta};
        fit_eta_group *G = &rep->by_bits[rep->n_bitw++];
        memset(G, 0, sizeof *G);
        G->key = b;
        G->n = k;
        G->eta = eta_minimise(&c, &G->at_bound);
        G->eta_lo = G->eta_hi = NAN;
        if (!isfinite(G->eta))
            st = qp_fail(err, QP_ERR_NUMERIC, "the qat law is not finite at the %s runs of %d bits for any eta: "
                                              "check that the law fits these model sizes", opt->method, b);
        else out->coef[b - 1] = G->eta, out->prov.bits[out->prov.n_bits++] = b;
        if (!st && samples) eta_bootstrap(&c, b, opt, samples, ok);
        double ss = 0, sr = 0;
        for (int i = 0; i < k && !st; i++) {
            double r = eta_resid(qat, sel[i], G->eta);
            ss += r * r, sr += r;
        }
        G->mean_resid = sr / k, G->rmse_log = sqrt(ss / k);
    }
    if (!st && n == 0)
        st = qp_fail(err, QP_ERR_UNIDENTIFIED, "no usable %s runs (quantized, status ok, with a QAT phase, whole bit "
                                               "width 1..8): %d of %d runs are of another method, %d full precision",
                     opt->method, rep->n_other_method, rep->n_input, rep->n_fp);
    if (!st && samples) { /* keep the resamples where every width refitted */
        int ks = 0;
        for (int k = 0; k < opt->bootstrap; k++)
            if (ok[k]) memmove(samples + (size_t)ks++ * 8, samples + (size_t)k * 8, 8 * sizeof(double));
        rep->bootstrap_done = ks;
        if (ks >= 2) {
            st = fit_law_take_samples(out, samples, ks, opt->ci_level, err);
            samples = NULL;
            for (int g = 0; g < rep->n_bitw && !st; g++) {
                int b = (int)rep->by_bits[g].key;
                rep->by_bits[g].eta_lo = out->ci_lo[b - 1], rep->by_bits[g].eta_hi = out->ci_hi[b - 1];
            }
        }
    }
    if (!st) {
        fill_provenance(out, use, n, opt, qat);
        resid_by_sqat(use, n, qat, out, rep);
        out->prov.rmse_log = rep->rmse_log;
        st = data_law_validate(out, err);
    }
    free(samples);
    free(ok);
    free(use);
    if (st) data_law_free(out);
    return st;
}

void fit_efficiency_report_print(FILE *f, const fit_efficiency_report *rep, const data_law *law)
{
    fprintf(f, "efficiency fit of %s against the qat law: %d of %d runs used", law->prov.run_method, rep->n_used,
            rep->n_input);
    if (rep->n_other_method) fprintf(f, "; %d quantized runs of another method", rep->n_other_method);
    if (rep->n_fp) fprintf(f, "; %d full-precision", rep->n_fp);
    if (rep->n_not_ok) fprintf(f, "; %d diverged, failed or bad", rep->n_not_ok);
    if (rep->n_no_qat) fprintf(f, "; %d without a QAT phase or at a width outside 1..8", rep->n_no_qat);
    fprintf(f, "\nRMSE(log L) %.4f%s\n", rep->rmse_log,
            rep->bootstrap_done ? "" : " (no bootstrap: --bootstrap K gives intervals)");
    fprintf(f, "%4s %6s %9s %21s %11s %9s\n", "bits", "runs", "eta", "interval", "mean resid", "RMSE");
    for (int g = 0; g < rep->n_bitw; g++) {
        const fit_eta_group *G = &rep->by_bits[g];
        char iv[64] = "-";
        if (isfinite(G->eta_lo)) snprintf(iv, sizeof iv, "[%.4g, %.4g]", G->eta_lo, G->eta_hi);
        fprintf(f, "%4.0f %6d %9.4g %21s %+11.4f %9.4f%s\n", G->key, G->n, G->eta, iv, G->mean_resid, G->rmse_log,
                G->at_bound ? "  (at a bound of the search: the law cannot explain these runs by tokens alone)" : "");
    }
    fprintf(f, "residuals by S_qat = D_qat / (N B / 8) (a trend means eta depends on S):\n%12s %6s %11s %9s\n",
            "S_qat from", "runs", "mean resid", "RMSE");
    for (int g = 0; g < rep->n_sqat; g++)
        fprintf(f, "%12.3g %6d %+11.4f %9.4f\n", rep->by_sqat[g].key, rep->by_sqat[g].n, rep->by_sqat[g].mean_resid,
                rep->by_sqat[g].rmse_log);
}
