/* The efficiency form: eta per bit width recovered from synthetic runs of a method drawn
 * from a known qat law with eta planted; runs of other methods are not used; the CLI fits,
 * writes and refuses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fit_internal.h"
#include "testutil.h"

/* Runs of `method` at 2 and 3 bits with eta2, eta3 planted: L = L_qat(N, D_fp, eta D_qat, b)
 * times log-normal noise; plus qat runs at a different efficiency and FP runs. */
static void planted_runs(data_run_list *runs, const data_law *truth, double eta2, double eta3, double noise)
{
    uint64_t rng = 7;
    int k = 0;
    const double ns[3] = {3e7, 1e8, 3e8}, tpp[3] = {20, 60, 200}, fs[4] = {0.05, 0.1, 0.2, 0.4};
    for (int b = 2; b <= 3; b++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                for (int q = 0; q < 4; q++)
                    for (int m = 0; m < 2; m++) { /* m = 0: the method; 1: a qat run, eta 1 */
                        data_run r;
                        data_run_init(&r);
                        snprintf(r.run_id, sizeof r.run_id, "r%d", k++);
                        double d = ns[i] * tpp[j], eta = m ? 1 : b == 2 ? eta2 : eta3;
                        r.n_params = ns[i], r.d_fp = (1 - fs[q]) * d, r.d_qat = fs[q] * d, r.bits = b;
                        snprintf(r.method, sizeof r.method, "%s", m ? "" : "efqat");
                        law_point x = {r.n_params, r.d_fp, eta * r.d_qat, b};
                        r.loss = law_loss(truth, &x) * exp(noise * fit_rng_normal(&rng));
                        data_run_list_push(runs, &r, NULL);
                    }
    for (int i = 0; i < 3; i++) { /* full precision: no eta, not used */
        data_run r;
        data_run_init(&r);
        snprintf(r.run_id, sizeof r.run_id, "fp%d", i);
        r.n_params = ns[i], r.d_fp = 20 * ns[i], r.d_qat = 0, r.bits = 16;
        r.loss = law_loss(truth, &(law_point){r.n_params, r.d_fp, 0, 16});
        data_run_list_push(runs, &r, NULL);
    }
}

static void test_recovers_planted_eta(void)
{
    data_law truth;
    fit_synth_true_qat(&truth);
    data_run_list runs;
    data_run_list_init(&runs);
    planted_runs(&runs, &truth, 0.3, 0.6, 0.002);
    law_model m;
    CU_ASSERT_EQUAL_FATAL(law_model_init(&m, &truth, &truth, NULL), QP_OK);
    fit_options fo;
    fit_options_init(&fo);
    snprintf(fo.method, sizeof fo.method, "efqat");
    fo.bootstrap = 40;
    data_law law;
    fit_efficiency_report rep;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_efficiency(&runs, &m, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(law.form, DATA_LAW_EFFICIENCY);
    CU_ASSERT_STRING_EQUAL(law.prov.run_method, "efqat");
    CU_ASSERT_EQUAL(rep.n_used, 72);
    CU_ASSERT_EQUAL(rep.n_other_method, 72);
    CU_ASSERT_EQUAL(rep.n_fp, 3);
    CU_ASSERT_DOUBLE_EQUAL(law.coef[1], 0.3, 0.3 * 0.05);
    CU_ASSERT_DOUBLE_EQUAL(law.coef[2], 0.6, 0.6 * 0.05);
    CU_ASSERT_EQUAL(law.coef[0], 0); /* no 1-bit runs: not fitted */
    CU_ASSERT(isnan(law_efficiency_eta(&law, 1)));
    CU_ASSERT_DOUBLE_EQUAL(law_efficiency_eta(&law, 2), law.coef[1], 0);
    CU_ASSERT(law.has_interval && law.ci_lo[1] <= 0.3 && law.ci_hi[1] >= 0.3);
    CU_ASSERT(law.ci_lo[2] <= 0.6 && law.ci_hi[2] >= 0.6);
    CU_ASSERT(rep.n_sqat >= 2 && rep.rmse_log < 0.01);
    /* without noise the fit is exact */
    data_run_list_free(&runs);
    data_run_list_init(&runs);
    planted_runs(&runs, &truth, 0.3, 0.6, 0);
    fo.bootstrap = 0;
    data_law exact;
    CU_ASSERT_EQUAL_FATAL(fit_efficiency(&runs, &m, &fo, &exact, NULL, &err), QP_OK);
    CU_ASSERT_DOUBLE_EQUAL(exact.coef[1], 0.3, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(exact.coef[2], 0.6, 1e-5);
    /* full QAT is the reference, not a method to measure; a method without runs fails */
    snprintf(fo.method, sizeof fo.method, "qat");
    CU_ASSERT_EQUAL(fit_efficiency(&runs, &m, &fo, &exact, NULL, &err), QP_ERR_USAGE);
    snprintf(fo.method, sizeof fo.method, "e2eqp");
    CU_ASSERT_EQUAL(fit_efficiency(&runs, &m, &fo, &exact, NULL, &err), QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no usable e2eqp runs"));
    data_law_free(&law);
    data_law_free(&exact);
    data_run_list_free(&runs);
}

/* qatplan fit --form efficiency writes a law that round-trips and that the planner puts in
 * the method's slot; refusals exit 2 with one line. */
static void test_cli(void)
{
    data_law truth;
    fit_synth_true_qat(&truth);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(data_law_write(tu_path("truth.json"), &truth, &err), QP_OK);
    data_run_list runs;
    data_run_list_init(&runs);
    planted_runs(&runs, &truth, 0.3, 0.6, 0.002);
    FILE *f = fopen(tu_path("eff.jsonl"), "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (size_t i = 0; i < runs.n; i++) {
        char *t = data_run_to_json(&runs.runs[i]);
        fprintf(f, "%s\n", t);
        free(t);
    }
    fclose(f);
    data_run_list_free(&runs);
    char cmd[2048], *out = NULL, *e = NULL;
    snprintf(cmd, sizeof cmd, "fit --form efficiency --method efqat --qat-law %s %s -o %s", tu_path("truth.json"),
             tu_path("eff.jsonl"), tu_path("eff.law.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "residuals by S_qat"));
    free(out), free(e);
    data_law back;
    CU_ASSERT_EQUAL_FATAL(data_law_read(tu_path("eff.law.json"), &back, &err), QP_OK);
    CU_ASSERT_EQUAL(back.form, DATA_LAW_EFFICIENCY);
    CU_ASSERT_DOUBLE_EQUAL(back.coef[1], 0.3, 0.015);
    data_law_free(&back);
    /* the planner ranks efqat with it */
    snprintf(cmd, sizeof cmd, "plan --params 1e8 --tokens 2e9 --bits 2,3 --law %s --law %s --method qat,efqat --json",
             tu_path("truth.json"), tu_path("eff.law.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"eta\":\t0."));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"recommended_method\""));
    free(out), free(e);
    snprintf(cmd, sizeof cmd, "fit --form efficiency --method efqat %s -o %s", tu_path("eff.jsonl"), tu_path("x.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &e), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "--qat-law"));
    free(out), free(e);
    snprintf(cmd, sizeof cmd, "fit --form efficiency --qat-law own %s -o %s", tu_path("eff.jsonl"), tu_path("x.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &e), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "--method efqat"));
    free(out), free(e);
    snprintf(cmd, sizeof cmd, "fit --qat-law own %s -o %s", tu_path("eff.jsonl"), tu_path("x.json"));
    CU_ASSERT_EQUAL(tu_run_qatplan(cmd, &out, &e), 2);
    free(out), free(e);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_recovers_planted_eta);
    TU_ADD(s, test_cli);
}

int main(void) { return tu_main("fit_efficiency", add); }
