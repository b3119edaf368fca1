/* The fitter's pieces: objective and gradient, the start grid, cleaning and exclusion
 * counts, identifiability refusals, the fraction form, bootstrap, the synthetic-run
 * generator, and the `qatplan fit` command line (exit codes, messages, round trip to
 * `qatplan plan --law`). Fast: few starts where the property does not depend on them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fit.h"
#include "fit_internal.h"
#include "plan.h"
#include "testutil.h"

/* The model of a qat-form law, for the planner's numerical functions. */
#define QM(law) (&(law_model){(law), (law), DATA_UNITS_UNKNOWN, 0})

static void synth(data_law_form form, int n, double noise, double outliers, uint64_t seed,
                  data_run_list *runs)
{
    data_law truth;
    if (form == DATA_LAW_QAT) fit_synth_true_qat(&truth);
    else law_builtin_chinchilla(&truth);
    fit_synth_options so;
    fit_synth_options_init(&so, form);
    so.n_runs = n;
    so.noise = noise;
    so.outlier_frac = outliers;
    so.seed = seed;
    data_run_list_init(runs);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_synth_runs(&truth, &so, runs, &err), QP_OK);
}

static void quick_options(fit_options *fo, data_law_form form)
{
    fit_options_init(fo);
    fo->form = form;
    fo->n_starts = 24;
    fo->loo = 0;
}

static int law_is_finite(const data_law *l)
{
    for (int i = 0; i < data_law_ncoef(l->form); i++)
        if (!isfinite(l->coef[i])) return 0;
    return 1;
}

/* ---- objective ------------------------------------------------------------ */

static void check_gradient(data_law_form form, int center)
{
    data_run_list runs;
    synth(form, form == DATA_LAW_QAT ? 200 : 60, 0.01, 0, 3, &runs);
    size_t n = runs.n;
    law_point *x = malloc(n * sizeof *x);
    double *loss = malloc(n * sizeof *loss);
    for (size_t i = 0; i < n; i++) {
        const data_run *r = &runs.runs[i];
        x[i] = (law_point){r->n_params, r->d_fp, r->d_qat, r->bits};
        loss[i] = r->loss;
    }
    fit_problem P;
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(fit_problem_init(&P, form, x, loss, n, 1e-3, center, &err), QP_OK);
    fit_problem_set_bounds(&P, 100.0); /* E far below its bound: no penalty term */
    data_law t;
    if (form == DATA_LAW_QAT) fit_synth_true_qat(&t);
    else law_builtin_chinchilla(&t);
    double th[16], u[16], g[16], up[16];
    law_to_theta(&t, th);
    fit_theta_to_u(&P, th, u);
    for (int j = 0; j < P.np; j++) u[j] += 0.03 * (j % 3 - 1); /* off the optimum; E above its bound */
    double back[16];
    fit_u_to_theta(&P, u, back);
    fit_theta_to_u(&P, back, up);
    for (int j = 0; j < P.np; j++) CU_ASSERT_DOUBLE_EQUAL(up[j], u[j], 1e-9);
    double f = fit_objective(&P, u, g, NULL);
    CU_ASSERT(isfinite(f) && f > 0);
    for (int j = 0; j < P.np; j++) {
        double h = 1e-5;
        memcpy(up, u, sizeof up);
        up[j] += h;
        double fp = fit_objective(&P, up, NULL, NULL);
        up[j] -= 2 * h;
        double fm = fit_objective(&P, up, NULL, NULL);
        double fd = (fp - fm) / (2 * h);
        if (!(fabs(fd - g[j]) <= 1e-5 * (fabs(g[j]) + 1e-3)))
            printf("  param %d: analytic %.10g, central difference %.10g\n", j, g[j], fd);
        CU_ASSERT(fabs(fd - g[j]) <= 1e-5 * (fabs(g[j]) + 1e-3));
    }
    fit_problem_free(&P);
    free(x);
    free(loss);
    data_run_list_free(&runs);
}

static void test_gradient_chinchilla(void)
{
    check_gradient(DATA_LAW_CHINCHILLA, 0);
    check_gradient(DATA_LAW_CHINCHILLA, 1);
}

static void test_gradient_qat(void) { check_gradient(DATA_LAW_QAT, 1); }

/* The vectorised kernel's own exp and log against libm, and its objective against the
 * log-sum-exp evaluation of the same law. */
static void test_kernel_accuracy(void)
{
    double worst_e = 0, worst_l = 0;
    for (int i = 0; i <= 200000; i++) {
        double x = -700 + 1400.0 * i / 200000 + 1e-7 * (i % 7);
        worst_e = fmax(worst_e, fabs(fit_kernel_exp(x) / exp(x) - 1));
        double v = exp(-690 + 1380.0 * i / 200000);
        double lv = log(v);
        worst_l = fmax(worst_l, fabs(fit_kernel_log(v) - lv) / fmax(fabs(lv), 1e-300));
        double near1 = 1 + (i - 100000) * 1e-9;
        if (near1 != 1) {
            double l1 = log(near1);
            worst_l = fmax(worst_l, fabs(fit_kernel_log(near1) - l1) / fabs(l1));
        }
    }
    printf("  kernel exp max rel error %.2e, log %.2e\n", worst_e, worst_l);
    CU_ASSERT(worst_e < 1e-15);
    CU_ASSERT(worst_l < 1e-15);
    data_law t;
    law_builtin_chinchilla(&t);
    law_point x[4] = {{1e8, 2e9, 0, 16}, {1e9, 2e10, 0, 16}, {3e8, 1e10, 0, 16}, {1e5, 1e6, 0, 16}};
    double loss[4] = {3.1, 2.6, 2.9, 5.5};
    fit_problem P;
    CU_ASSERT_EQUAL_FATAL(fit_problem_init(&P, DATA_LAW_CHINCHILLA, x, loss, 4, 1e-3, 0, NULL), QP_OK);
    double th[5], g[5];
    law_to_theta(&t, th);
    double fk = fit_kernel_chinchilla(4, P.zn, P.zd, P.y, P.w, th, 1e-3, g);
    double fl = 0;
    for (int i = 0; i < 4; i++) {
        double r = log(law_loss(&t, &x[i])) - log(loss[i]), a = fabs(r);
        fl += a <= 1e-3 ? 0.5 * r * r : 1e-3 * (a - 0.5e-3);
    }
    CU_ASSERT_DOUBLE_EQUAL(fk, fl, 1e-13 * fl);
    fit_problem_free(&P);
    /* the qat form through the log-sum-exp kernel, against law.c (libm) point by point */
    data_law q;
    fit_synth_true_qat(&q);
    law_point xq[5] = {{1e8, 2e9, 0, 16}, {1e8, 1.6e9, 4e8, 4}, {3e8, 0, 6e9, 2}, {1e9, 1e10, 0, 1},
                       {5e7, 9e8, 1e8, 6}};
    double lq[5] = {3.0, 3.2, 3.1, 4.0, 3.3}, want = 0;
    for (int i = 0; i < 5; i++) {
        double r = log(law_loss(&q, &xq[i])) - log(lq[i]), a = fabs(r);
        want += a <= 1e-3 ? 0.5 * r * r : 1e-3 * (a - 0.5e-3);
    }
    CU_ASSERT_DOUBLE_EQUAL(fit_huber_objective(&q, xq, lq, 5, 1e-3), want, 1e-13 * want);
}

static void test_huber_objective_by_hand(void)
{
    data_law t;
    law_builtin_chinchilla(&t);
    law_point x[3] = {{1e8, 2e9, 0, 16}, {1e9, 2e10, 0, 16}, {3e8, 1e10, 0, 16}};
    double loss[3];
    const double r[3] = {0.0005, -0.002, 0.01}; /* log residuals: inside and outside delta */
    double want = 0;
    for (int i = 0; i < 3; i++) {
        loss[i] = law_loss(&t, &x[i]) * exp(r[i]);
        double a = fabs(r[i]);
        want += a <= 1e-3 ? 0.5 * a * a : 1e-3 * (a - 0.5e-3);
    }
    CU_ASSERT_DOUBLE_EQUAL(fit_huber_objective(&t, x, loss, 3, 1e-3), want, 1e-12);
}

static void test_grid(void)
{
    double *s = malloc(sizeof(double) * 5 * 4500);
    CU_ASSERT_EQUAL_FATAL(fit_chinchilla_grid(s, 0), 4500);
    int ok = 1, distinct = 1;
    for (int k = 0; k < 4500; k++) {
        const double *p = s + 5 * k;
        ok &= p[0] >= -1 && p[0] <= 1 && p[1] >= 0 && p[1] <= 25 && p[2] >= 0 && p[2] <= 25 &&
              p[3] >= 0 && p[3] <= 2 && p[4] >= 0 && p[4] <= 2;
        if (k && !memcmp(p, p - 5, 5 * sizeof(double))) distinct = 0;
    }
    CU_ASSERT(ok);
    CU_ASSERT(distinct);
    CU_ASSERT_EQUAL(fit_chinchilla_grid(s, 100), 100);
    free(s);
}

/* ---- cleaning and identifiability ------------------------------------------ */

static void test_bad_data_excluded(void)
{
    data_run_list runs;
    synth(DATA_LAW_CHINCHILLA, 80, 0.01, 0, 5, &runs);
    qp_error err = {0};
    data_run r = runs.runs[0];
    snprintf(r.run_id, sizeof r.run_id, "div");
    r.status = DATA_RUN_DIVERGED;
    r.loss = NAN;
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[1];
    snprintf(r.run_id, sizeof r.run_id, "fail");
    r.status = DATA_RUN_FAILED;
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[2];
    snprintf(r.run_id, sizeof r.run_id, "nan");
    r.loss = NAN; /* status ok but no loss: bad */
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[3];
    snprintf(r.run_id, sizeof r.run_id, "neg");
    r.n_params = -5;
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[4];
    snprintf(r.run_id, sizeof r.run_id, "inf");
    r.loss = INFINITY;
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[5]; /* same run_id as an earlier run: duplicate */
    r.loss *= 1.5;
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[6]; /* the same record again under another id: duplicate */
    snprintf(r.run_id, sizeof r.run_id, "copy");
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[7]; /* another seed of the same configuration: kept */
    snprintf(r.run_id, sizeof r.run_id, "seed2");
    r.seed = 999;
    r.loss *= 1.001;
    data_run_list_push(&runs, &r, &err);
    r = runs.runs[8]; /* a quantized run: not used by the chinchilla form */
    snprintf(r.run_id, sizeof r.run_id, "q");
    r.bits = 4;
    r.d_qat = r.d_fp * 0.2;
    data_run_list_push(&runs, &r, &err);

    fit_options fo;
    quick_options(&fo, DATA_LAW_CHINCHILLA);
    data_law law;
    fit_report rep;
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(rep.n_input, 89);
    CU_ASSERT_EQUAL(rep.n_diverged, 1);
    CU_ASSERT_EQUAL(rep.n_failed, 1);
    CU_ASSERT_EQUAL(rep.n_bad, 3);
    CU_ASSERT_EQUAL(rep.n_duplicate, 2);
    CU_ASSERT_EQUAL(rep.n_other_form, 1);
    CU_ASSERT_EQUAL(rep.n_used, 81);
    CU_ASSERT_EQUAL(law.prov.n_runs, 81);
    CU_ASSERT_EQUAL(law.prov.n_excluded, 7);
    CU_ASSERT(law_is_finite(&law));
    CU_ASSERT_EQUAL(data_law_validate(&law, &err), QP_OK);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
}

static qp_status fit_expect(data_run_list *runs, data_law_form form, qp_error *err)
{
    fit_options fo;
    quick_options(&fo, form);
    data_law law;
    qp_status st = fit_runs(runs, &fo, &law, NULL, err);
    if (st == QP_OK) {
        CU_ASSERT(law_is_finite(&law));
        data_law_free(&law);
    }
    return st;
}

static void test_identifiability_chinchilla(void)
{
    data_run_list runs;
    qp_error err = {0};
    synth(DATA_LAW_CHINCHILLA, 30, 0.01, 0, 7, &runs);
    for (size_t i = 0; i < runs.n; i++) runs.runs[i].n_params = 1e8; /* one model size */
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_CHINCHILLA, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "model size"));
    data_run_list_free(&runs);
    synth(DATA_LAW_CHINCHILLA, 30, 0.01, 0, 7, &runs);
    for (size_t i = 0; i < runs.n; i++) runs.runs[i].d_fp = 1e10; /* one token count */
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_CHINCHILLA, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "token count"));
    data_run_list_free(&runs);
    synth(DATA_LAW_CHINCHILLA, 5, 0.01, 0, 7, &runs); /* 5 points, 5 coefficients */
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_CHINCHILLA, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "at least 6"));
    for (size_t i = 0; i < runs.n; i++) runs.runs[i].status = DATA_RUN_DIVERGED;
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_CHINCHILLA, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no usable runs"));
    data_run_list_free(&runs);
    data_run_list empty;
    data_run_list_init(&empty);
    CU_ASSERT_EQUAL(fit_expect(&empty, DATA_LAW_CHINCHILLA, &err), QP_ERR_UNIDENTIFIED);
}

static void test_identifiability_qat(void)
{
    data_run_list runs;
    qp_error err = {0};
    synth(DATA_LAW_QAT, 300, 0.002, 0, 8, &runs);
    for (size_t i = 0; i < runs.n; i++)
        if (runs.runs[i].bits < 16) runs.runs[i].bits = 4; /* one bit width */
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_QAT, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "bit width"));
    data_run_list_free(&runs);
    synth(DATA_LAW_QAT, 300, 0.002, 0, 8, &runs);
    for (size_t i = 0; i < runs.n; i++) { /* one QAT fraction */
        data_run *r = &runs.runs[i];
        if (r->bits >= 16) continue;
        double d = r->d_fp + r->d_qat;
        r->d_qat = 0.3 * d;
        r->d_fp = d - r->d_qat;
    }
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_QAT, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "fraction"));
    data_run_list_free(&runs);
    /* only full-precision runs: no quantized sizes at all */
    synth(DATA_LAW_CHINCHILLA, 40, 0.01, 0, 8, &runs);
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_QAT, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_EQUAL(fit_expect(&runs, DATA_LAW_FRACTION, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "fractions"));
    data_run_list_free(&runs);
}

/* ---- forms ----------------------------------------------------------------- */

static void test_fraction_form(void)
{
    data_run_list runs;
    synth(DATA_LAW_QAT, 0, 0, 0, 9, &runs); /* noiseless: the law is very flat near its optimum */
    fit_options fo;
    fit_options_init(&fo);
    fo.form = DATA_LAW_FRACTION;
    fo.bootstrap = 50;
    data_law law, truth;
    fit_synth_true_qat(&truth);
    fit_report rep;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(rep.n_groups, 6 * 4 * 4);
    CU_ASSERT_EQUAL(rep.n_other_form, 24);
    /* each group's estimated best fraction is near the law-optimal one (fractions on a 0.1
     * grid, so the parabola must do better than the grid's half step) */
    double worst = 0;
    for (int j = 0; j < rep.n_groups; j++) {
        const fit_fraction_group *g = &rep.groups[j];
        double f, l;
        CU_ASSERT_EQUAL_FATAL(plan_optimal_fraction(QM(&truth), g->n_params, g->d_total, g->bits, &f, &l, &err), QP_OK);
        worst = fmax(worst, fabs(g->f_best - f));
        if (fabs(g->f_best - f) > 0.03)
            printf("  N %.3g D %.3g bits %d S %.1f: argmin %.2f best %.3f law-optimal %.3f\n", g->n_params,
                   g->d_total, g->bits, g->s_total, g->f_argmin, g->f_best, f);
        CU_ASSERT_EQUAL(g->n_fractions, 10);
    }
    printf("  fraction form: a = %.3f, worst group best-fraction error %.4f, fraction RMSE %.4f\n",
           law.coef[0], worst, rep.frac_rmse);
    CU_ASSERT(worst < 0.03);
    /* the synthetic law's optimum tracks the paper's f_hat: a lands near 6.73 */
    CU_ASSERT(law.coef[0] > 5.5 && law.coef[0] < 8);
    CU_ASSERT(rep.frac_rmse < 0.05);
    CU_ASSERT_EQUAL(law.has_interval, 1);
    CU_ASSERT_EQUAL(law.n_samples, 50);
    CU_ASSERT(law.ci_lo[0] <= law.coef[0] && law.coef[0] <= law.ci_hi[0]);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
}

/* A fit is of one training method: quantized runs of another method are excluded, counted
 * and named, and leave the law exactly as without them; --method selects them instead.
 * Full-precision runs belong to every method. */
static void test_method_selection(void)
{
    data_run_list runs;
    synth(DATA_LAW_QAT, 0, 0, 0, 9, &runs);
    fit_options fo;
    fit_options_init(&fo);
    fo.form = DATA_LAW_FRACTION;
    data_law base, law;
    fit_report rep;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &base, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(rep.n_other_method, 0);
    CU_ASSERT_STRING_EQUAL(base.prov.run_method, "qat");
    int n_used = rep.n_used, n_fp = rep.n_other_form, n_q = 0;
    fit_report_free(&rep);
    size_t n0 = runs.n;
    for (size_t i = 0; i < n0; i++) {
        data_run r = runs.runs[i];
        if (data_run_is_fp(&r)) continue;
        snprintf(r.method, sizeof r.method, "efqat");
        snprintf(r.run_id, sizeof r.run_id, "efqat-%zu", i);
        r.loss *= 1.05;
        CU_ASSERT_EQUAL_FATAL(data_run_list_push(&runs, &r, &err), QP_OK);
        n_q++;
    }
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(rep.n_other_method, n_q);
    CU_ASSERT_STRING_EQUAL(rep.other_methods, "efqat");
    CU_ASSERT_EQUAL(rep.n_used, n_used);
    CU_ASSERT(law.coef[0] == base.coef[0]); /* the EfQAT runs changed nothing */
    CU_ASSERT_STRING_EQUAL(law.prov.run_method, "qat");
    char *json = data_law_to_json(&law, &err);
    CU_ASSERT_PTR_NOT_NULL(json && strstr(json, "\"run_method\":\t\"qat\""));
    data_law back;
    CU_ASSERT_EQUAL(data_law_parse(json, "mem", &back, &err), QP_OK);
    CU_ASSERT_STRING_EQUAL(back.prov.run_method, "qat");
    data_law_free(&back);
    free(json);
    fit_report_free(&rep);
    data_law_free(&law);
    snprintf(fo.method, sizeof fo.method, "efqat");
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(rep.n_other_method, n_q); /* now the records without a method: qat */
    CU_ASSERT_STRING_EQUAL(rep.other_methods, "qat");
    CU_ASSERT_EQUAL(rep.n_used, n_used);
    CU_ASSERT_EQUAL(rep.n_other_form, n_fp);
    CU_ASSERT(law.coef[0] != base.coef[0]);
    CU_ASSERT_STRING_EQUAL(law.prov.run_method, "efqat");
    fit_report_free(&rep);
    data_law_free(&law);
    data_law_free(&base);
    data_run_list_free(&runs);
    char *e = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("fit x.jsonl -o y.json --method fqat", NULL, &e), 2);
    CU_ASSERT_PTR_NOT_NULL(e && strstr(e, "--method fqat: use qat, efqat"));
    free(e);
}

static void test_bootstrap_chinchilla(void)
{
    data_run_list runs;
    synth(DATA_LAW_CHINCHILLA, 120, 0.01, 0, 10, &runs);
    fit_options fo;
    quick_options(&fo, DATA_LAW_CHINCHILLA);
    fo.n_starts = 200;
    fo.bootstrap = 30;
    fo.loo = 1;
    data_law law, back;
    fit_report rep;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(law.has_interval, 1);
    CU_ASSERT_DOUBLE_EQUAL(law.ci_level, 0.95, 1e-12);
    CU_ASSERT_EQUAL(law.n_samples, 30);
    CU_ASSERT_EQUAL(rep.bootstrap_done + rep.bootstrap_failed, 30);
    for (int i = 0; i < 5; i++) CU_ASSERT(law.ci_lo[i] < law.ci_hi[i]);
    printf("  alpha %.5f [%.5f, %.5f]\n", law.coef[3], law.ci_lo[3], law.ci_hi[3]);
    CU_ASSERT(law.ci_lo[3] <= law.coef[3] && law.coef[3] <= law.ci_hi[3]); /* alpha */
    CU_ASSERT(isfinite(law.prov.loo_rmse_log) && law.prov.loo_rmse_log > 0);
    CU_ASSERT(rep.n_sizes >= 3 && rep.n_sizes <= 8); /* continuous sizes are binned */
    /* the law file round-trips with its samples */
    const char *p = tu_path("boot.json");
    CU_ASSERT_EQUAL_FATAL(data_law_write(p, &law, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(data_law_read(p, &back, &err), QP_OK);
    CU_ASSERT_EQUAL(back.n_samples, 30);
    CU_ASSERT_DOUBLE_EQUAL(back.samples[7], law.samples[7], 1e-12 * fabs(law.samples[7]));
    CU_ASSERT_STRING_EQUAL(back.prov.code_version, qp_version());
    CU_ASSERT_EQUAL(back.prov.starts, 200);
    data_law_free(&back);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
}

/* Constant losses: the law degenerates (A, B -> 0) but stays finite, E at the loss. */
static void test_degenerate_never_nan(void)
{
    data_run_list runs;
    synth(DATA_LAW_CHINCHILLA, 40, 0, 0, 11, &runs);
    for (size_t i = 0; i < runs.n; i++) runs.runs[i].loss = 2.5;
    fit_options fo;
    quick_options(&fo, DATA_LAW_CHINCHILLA);
    data_law law;
    qp_error err = {0};
    qp_status st = fit_runs(&runs, &fo, &law, NULL, &err);
    CU_ASSERT(st == QP_OK || st == QP_ERR_NUMERIC);
    if (st == QP_OK) {
        CU_ASSERT(law_is_finite(&law));
        CU_ASSERT(law.coef[0] <= 2.5 * (1 + 1e-9));
        data_law_free(&law);
    }
    data_run_list_free(&runs);
}

/* ---- the generator ----------------------------------------------------------- */

static void test_synth_generator(void)
{
    data_law t;
    law_builtin_chinchilla(&t);
    data_run_list runs;
    synth(DATA_LAW_CHINCHILLA, 2000, 0.01, 0.1, 12, &runs);
    CU_ASSERT_EQUAL_FATAL(runs.n, 2000);
    double s2 = 0;
    int n_in = 0, n_out = 0;
    for (size_t i = 0; i < runs.n; i++) {
        const data_run *r = &runs.runs[i];
        law_point x = {r->n_params, r->d_fp, r->d_qat, r->bits};
        double res = log(r->loss / law_loss(&t, &x));
        if (fabs(res) < 0.04) {
            s2 += res * res;
            n_in++;
        } else {
            n_out++;
        }
        CU_ASSERT_EQUAL(r->bits, 16);
        CU_ASSERT_EQUAL(data_run_validate(r, NULL), QP_OK);
    }
    double sd = sqrt(s2 / n_in);
    CU_ASSERT(sd > 0.0085 && sd < 0.0115);
    CU_ASSERT(n_out > 140 && n_out < 260); /* ~10% outliers (a few small ones hide in the noise) */
    data_run_list_free(&runs);
    synth(DATA_LAW_QAT, 0, 0.002, 0, 13, &runs);
    CU_ASSERT_EQUAL(runs.n, 984);
    int fp = 0, ptq = 0, fp_fp_only = 0;
    for (size_t i = 0; i < runs.n; i++) {
        int is_fp = data_run_is_fp(&runs.runs[i]), fp_only = runs.runs[i].schedule == DATA_SCHED_FP_ONLY;
        fp += is_fp;
        CU_ASSERT_EQUAL(data_run_validate(&runs.runs[i], NULL), QP_OK);
        ptq += !is_fp && fp_only;
        fp_fp_only += is_fp && fp_only;
    }
    CU_ASSERT_EQUAL(fp, 24);
    CU_ASSERT_EQUAL(fp_fp_only, 24); /* full-precision runs are fp-only, as the readers say */
    CU_ASSERT_EQUAL(ptq, 6 * 4 * 4); /* f = 0: PTQ runs */
    data_run_list_free(&runs);
    synth(DATA_LAW_QAT, 757, 0.002, 0, 13, &runs);
    CU_ASSERT_EQUAL(runs.n, 757);
    data_run_list_free(&runs);
}

/* ---- the command line ---------------------------------------------------------- */

static void test_cli_errors(void)
{
    char *out = NULL, *err = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("fit", &out, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no run files"));
    free(out);
    free(err);
    tu_write(tu_path("one.csv"), "N,D_fp,D_qat,bits,loss\n1e8,2e9,0,16,3.1\n");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "fit %s", tu_path("one.csv"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "-o LAW.json"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "fit %s -o %s --form chinchilla", tu_path("one.csv"), tu_path("one.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot identify the chinchilla form"));
    struct stat sb;
    CU_ASSERT_NOT_EQUAL(stat(tu_path("one.json"), &sb), 0); /* no law written */
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "fit %s -o %s", tu_path("missing.jsonl"), tu_path("x.json"));
    CU_ASSERT_NOT_EQUAL(tu_run_qatplan(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing.jsonl"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "fit %s -o %s --form banana", tu_path("one.csv"), tu_path("x.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 2);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "fit %s -o %s --bootstrap -3", tu_path("one.csv"), tu_path("x.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 2);
    free(out);
    free(err);
    CU_ASSERT_EQUAL(tu_run_qatplan("fit --help", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--bootstrap"));
    free(out);
    free(err);
}

/* qatplan fit --synth -> qatplan fit -> qatplan plan --law: the fitted qat law with
 * bootstrap samples drives the planner, which prints an interval on the fraction. */
static void test_cli_round_trip(void)
{
    char cmd[2048], *out = NULL, *err = NULL;
    const char *runs = tu_path("runs.jsonl"), *law = tu_path("law.json"), *rep = tu_path("report.txt");
    snprintf(cmd, sizeof cmd, "fit --synth %s --form qat --runs 400 --seed 4", runs);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, &out, &err), 0);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "fit %s -o %s --form qat --starts 16 --bootstrap 8 --report %s", runs, law, rep);
    CU_ASSERT_EQUAL_FATAL(tu_run_qatplan(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "by bit width"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "reached the best objective"));
    free(out);
    free(err);
    data_law l;
    qp_error e;
    CU_ASSERT_EQUAL_FATAL(data_law_read(law, &l, &e), QP_OK);
    CU_ASSERT_EQUAL(l.form, DATA_LAW_QAT);
    CU_ASSERT_EQUAL(l.n_samples, 8);
    CU_ASSERT_EQUAL(l.prov.n_runs, 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(l.prov.source, "runs.jsonl"));
    CU_ASSERT(l.prov.created[0] != 0);
    CU_ASSERT(l.prov.n_bits == 5); /* 1, 2, 4, 6 and 16 */
    data_law_free(&l);
    char *text = NULL;
    size_t len;
    CU_ASSERT_EQUAL(qp_read_file(rep, &text, &len, &e), QP_OK);
    CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "residuals"));
    free(text);
    snprintf(cmd, sizeof cmd, "plan --params 100M --tokens 5B --bits 2,4 --law %s", law);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, law));
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "intervals over the QAT law's bootstrap"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "plan --params 100M --tokens 5B --bits 2,4 --json --law %s", law);
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "f_opt_interval"));
    free(out);
    free(err);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_gradient_chinchilla);
    TU_ADD(s, test_gradient_qat);
    TU_ADD(s, test_kernel_accuracy);
    TU_ADD(s, test_huber_objective_by_hand);
    TU_ADD(s, test_grid);
    TU_ADD(s, test_bad_data_excluded);
    TU_ADD(s, test_identifiability_chinchilla);
    TU_ADD(s, test_identifiability_qat);
    TU_ADD(s, test_fraction_form);
    TU_ADD(s, test_method_selection);
    TU_ADD(s, test_bootstrap_chinchilla);
    TU_ADD(s, test_degenerate_never_nan);
    TU_ADD(s, test_synth_generator);
    TU_ADD(s, test_cli_errors);
    TU_ADD(s, test_cli_round_trip);
}

int main(void) { return tu_main("fit", add); }
