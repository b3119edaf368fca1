/* The built-in reference law (docs/reference-law.md): its headline numbers at 2.2B
 * parameters, the physical checks over an LLM-scale grid, every calibration point
 * reproduced, the law file rebuilt byte for byte, 'law eval', and penalty fits from runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fit.h"
#include "plan.h"
#include "testutil.h"

static void reference_model(plan_laws *laws, law_model *m)
{
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(laws, NULL), QP_OK);
    CU_ASSERT_EQUAL_FATAL(plan_laws_model(laws, m, NULL), QP_OK);
}

/* At 2.2B parameters, 1.4T tokens and a 1e22-FLOP budget: the penalty at the law's optimum
 * is in the range the published material gives (docs/reference-law.md), and the law's
 * optimal fraction is the paper's closed form within 0.08. */
static void test_headline_targets(void)
{
    plan_laws laws;
    law_model m;
    reference_model(&laws, &m);
    const double n = 2.2e9, budgets[2] = {1.4e12, 1e22 / (6 * 2.2e9)};
    const int bits[4] = {1, 2, 4, 6};
    /* 1 and 2 bits: the ranges. 4 bits: the issue says "about 0.01-0.035"; the
     * calibration data put an optimal split at 0.004-0.01 (docs/reference-law.md says why),
     * so the lower bound here is 0.004. 6 bits: below the 4-bit penalty. */
    const double lo[4] = {0.05, 0.03, 0.004, 0}, hi[4] = {0.4, 0.18, 0.035, 0.035};
    for (int k = 0; k < 2; k++) {
        double prev = INFINITY;
        for (int b = 0; b < 4; b++) {
            double f, l;
            CU_ASSERT_EQUAL_FATAL(plan_optimal_fraction(&m, n, budgets[k], bits[b], &f, &l, NULL), QP_OK);
            double f_hat = law_fraction_hat(LAW_FRACTION_A_PAPER, law_tokens_per_param_byte(budgets[k], n, bits[b]));
            double pen = l - law_model_loss_fp(&m, n, budgets[k]);
            CU_ASSERT_TRUE(fabs(f - f_hat) <= 0.08);
            CU_ASSERT_TRUE(pen >= lo[b] && pen <= hi[b]);
            CU_ASSERT_TRUE(pen < prev);
            if (fabs(f - f_hat) > 0.08 || !(pen >= lo[b] && pen <= hi[b]))
                printf("  D %.3g, %d bits: f_opt %.3f, f_hat %.3f, penalty %.4f\n", budgets[k], bits[b], f, f_hat, pen);
            prev = pen;
        }
    }
    /* the plan recommends from its own table: the row of lowest predicted loss among valid rows */
    plan_request req;
    plan_request_init(&req);
    req.n_params = n;
    req.tokens = 1.4e12;
    req.memory_bytes = 0.6 * 1024 * 1024 * 1024.0; /* 0.6 GiB: 1 and 2 bits fit */
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_EQUAL_FATAL(res.recommended, 1);
    CU_ASSERT_EQUAL(res.rows[1].bits, 2);
    plan_laws_free(&laws);
}

/* N 50M-400B x 10-1000 tokens per parameter x bits 1-8: no prediction breaks a physical
 * check, and the optimal fraction is in [0, 1]. */
static void test_llm_grid_is_physical(void)
{
    plan_laws laws;
    law_model m;
    reference_model(&laws, &m);
    const int bits[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    law_check_summary cs;
    law_check_grid(&m, 5e7, 4e11, 10, 1000, bits, 8, &cs);
    CU_ASSERT_EQUAL(cs.n_points, 13L * 9 * 8 * 11);
    CU_ASSERT_EQUAL(cs.n_failed, 0);
    if (cs.n_failed) printf("  %ld failures, first: %s\n", cs.n_failed, cs.first);
    for (double n = 5e7; n <= 4.01e11; n *= 4)
        for (double tpp = 10; tpp <= 1000.1; tpp *= 10)
            for (int b = 1; b <= 8; b++) {
                double f = NAN, l = NAN;
                CU_ASSERT_EQUAL(plan_optimal_fraction(&m, n, n * tpp, b, &f, &l, NULL), QP_OK);
                CU_ASSERT_TRUE(f >= 0 && f <= 1);
                CU_ASSERT_TRUE(l >= law_model_loss_fp(&m, n, n * tpp));
            }
    /* the checks themselves: a law whose penalty grows with bits, and one above ln(vocab) */
    data_law bad;
    CU_ASSERT_EQUAL_FATAL(data_law_copy(&bad, &laws.penalty, NULL), QP_OK);
    bad.coef[1] = -0.5; /* kappa < 0: the precision floor grows with bits */
    law_model mb;
    CU_ASSERT_EQUAL_FATAL(law_model_init(&mb, &laws.fp, &bad, NULL), QP_OK);
    char why[256];
    CU_ASSERT_EQUAL(law_check_point(&mb, &(law_point){1e9, 8e9, 2e9, 4}, why, sizeof why), LAW_CHECK_MORE_BITS_WORSE);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "grows with more bits"));
    bad.coef[1] = 1.46;
    bad.coef[0] = 1000; /* a 17-nat penalty at 4 bits: worse than a uniform guess over 32000 tokens */
    CU_ASSERT_EQUAL(law_check_point(&mb, &(law_point){1e9, 8e9, 2e9, 4}, why, sizeof why), LAW_CHECK_ABOVE_UNIFORM);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "ln(vocabulary 32000)"));
    data_law_free(&bad);
    plan_laws_free(&laws);
}

/* Every calibration point against the law: QuEST's measured weight-only penalties within
 * 15% (the tolerance), Chen et al.'s W4A16 law within 10%. */
static void test_calibration_points_reproduced(void)
{
    fit_penalty_point *pts = NULL;
    size_t n = 0;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_penalty_points_read(QP_SOURCE_DIR "/data/laws/reference/calibration.csv", &pts, &n, &err),
                          QP_OK);
    CU_ASSERT_EQUAL(n, 24);
    data_law law;
    CU_ASSERT_EQUAL_FATAL(law_builtin_reference(&law, NULL), QP_OK);
    int quest = 0;
    for (size_t i = 0; i < n; i++) {
        double rel = law_penalty(&law, &pts[i].x) / pts[i].penalty - 1;
        int is_quest = !strncmp(pts[i].source, "QuEST", 5);
        quest += is_quest;
        CU_ASSERT_TRUE(fabs(rel) <= (is_quest ? 0.15 : 0.10));
        if (fabs(rel) > (is_quest ? 0.15 : 0.10)) printf("  %s N %.3g bits %g: %+.1f%%\n", pts[i].source, pts[i].x.n_params, pts[i].x.bits, 100 * rel);
    }
    CU_ASSERT_EQUAL(quest, 12);
    free(pts);
    data_law_free(&law);
}

/* scripts/build-reference-law.sh rebuilds the committed law file byte for byte. */
static void test_rebuilt_byte_for_byte(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        tu_skip("/usr/bin/python3 is missing: the calibration script cannot run");
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "QATPLAN=%s bash %s/scripts/build-reference-law.sh %s/rebuilt > %s/rebuild.log 2>&1",
             QP_QATPLAN_EXE, QP_SOURCE_DIR, tu_tmpdir(), tu_tmpdir());
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    const char *pairs[2][2] = {{"rebuilt/reference.law.json", QP_SOURCE_DIR "/data/laws/reference.law.json"},
                               {"rebuilt/reference/calibration.csv", QP_SOURCE_DIR "/data/laws/reference/calibration.csv"}};
    for (int i = 0; i < 2; i++) {
        size_t la = 0, lb = 0;
        char *a = tu_read(tu_path(pairs[i][0]), &la), *b = tu_read(pairs[i][1], &lb);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_TRUE(la == lb && !memcmp(a, b, la));
        free(a);
        free(b);
    }
}

static double json_number(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static void test_law_eval_cli(void)
{
    char *out = NULL, *err = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("law eval --params 2.2B --fp-tokens 850B --qat-tokens 550B --bits 4 --json", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    double fp = json_number(out, "loss_fp"), loss = json_number(out, "loss"), pen = json_number(out, "penalty");
    CU_ASSERT_DOUBLE_EQUAL(fp, 2.163881618368049, 1e-9); /* Epoch's law at N and D_fp + D_qat */
    CU_ASSERT_DOUBLE_EQUAL(loss, fp + pen, 1e-12);
    CU_ASSERT_TRUE(pen > 0 && pen < 0.035);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"loss_units\":\t\"nats_per_token\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "outside the QAT law's fitted range")); /* the plan's warnings */
    free(out);
    free(err);
    /* the own law: nats per byte, its own full-precision part */
    CU_ASSERT_EQUAL(tu_run_qatplan("law eval --params 100K --fp-tokens 8M --qat-tokens 2M --bits 2 --law own", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "nats/byte"));
    free(out);
    free(err);
    /* full precision and QAT from scratch */
    CU_ASSERT_EQUAL(tu_run_qatplan("law eval --params 1B --fp-tokens 20B --qat-tokens 0 --bits 16 --json", &out, NULL), 0);
    CU_ASSERT_DOUBLE_EQUAL(json_number(out, "penalty"), 0, 0);
    free(out);
    CU_ASSERT_EQUAL(tu_run_qatplan("law eval --params 1B --fp-tokens 0 --qat-tokens 20B --bits 2 --json", &out, NULL), 0);
    CU_ASSERT_TRUE(json_number(out, "penalty") > 0.05);
    free(out);
    /* bad input: one line naming the problem, exit 2 */
    const char *bad[] = {"law eval --params 2.2B --bits 4", "law eval --params 0 --fp-tokens 1B --qat-tokens 1B --bits 4",
                         "law eval --params 1B --fp-tokens 1B --qat-tokens 1B --bits 0",
                         "law eval --params 1B --fp-tokens 1B --qat-tokens 1B --bits 4 --law nosuch.json",
                         "law eval --params 1B --fp-tokens 1B --qat-tokens 1B --bits 4 --law own --law chinchilla",
                         "law frobnicate"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = tu_run_qatplan(bad[i], NULL, &err);
        CU_ASSERT_TRUE(rc == 1 || rc == 2);
        CU_ASSERT_PTR_NOT_NULL(err && strstr(err, "qatplan") && strchr(err, '\n') == strrchr(err, '\n'));
        free(err);
        err = NULL;
    }
}

/* A penalty fitted from runs recovers the penalty the runs were drawn from: from matched
 * full-precision runs, and with a fixed full-precision law. */
static void test_penalty_fit_from_runs(void)
{
    data_law fp, truth;
    law_builtin_chinchilla(&fp);
    CU_ASSERT_EQUAL_FATAL(law_builtin_reference(&truth, NULL), QP_OK);
    data_run_list runs;
    data_run_list_init(&runs);
    const double sizes[3] = {1e8, 4e8, 1.6e9}, tpp[3] = {20, 80, 320}, fr[4] = {0.1, 0.3, 0.6, 1.0};
    const int bits[4] = {1, 2, 3, 4};
    uint64_t s = 7;
    int k = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double d = sizes[i] * tpp[j];
            data_run r;
            data_run_init(&r);
            r.n_params = sizes[i];
            r.d_fp = d;
            r.d_qat = 0;
            r.bits = 16;
            r.schedule = DATA_SCHED_FP_ONLY;
            r.loss = law_loss(&fp, &(law_point){sizes[i], d, 0, LAW_FP_BITS});
            snprintf(r.run_id, sizeof r.run_id, "fp-%d", k++);
            CU_ASSERT_EQUAL_FATAL(data_run_list_push(&runs, &r, NULL), QP_OK);
            for (int b = 0; b < 4; b++)
                for (int q = 0; q < 4; q++) {
                    law_point x = {sizes[i], (1 - fr[q]) * d, fr[q] * d, bits[b]};
                    s = s * 6364136223846793005ull + 1442695040888963407ull; /* 0.5% noise on the penalty */
                    double z = ((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.01;
                    r.d_fp = x.d_fp;
                    r.d_qat = x.d_qat;
                    r.bits = bits[b];
                    r.schedule = fr[q] == 1.0 ? DATA_SCHED_QAT_ONLY : DATA_SCHED_FUSED;
                    r.loss = law_loss(&fp, &(law_point){sizes[i], d, 0, LAW_FP_BITS}) + law_penalty(&truth, &x) * (1 + z);
                    snprintf(r.run_id, sizeof r.run_id, "q-%d", k++);
                    CU_ASSERT_EQUAL_FATAL(data_run_list_push(&runs, &r, NULL), QP_OK);
                }
        }
    for (int with_law = 0; with_law < 2; with_law++) {
        fit_penalty_point *pts = NULL;
        size_t n = 0;
        int unmatched = -1, nonpos = -1;
        CU_ASSERT_EQUAL_FATAL(fit_penalty_points_from_runs(&runs, with_law ? &fp : NULL, &pts, &n, &unmatched, &nonpos, NULL),
                              QP_OK);
        CU_ASSERT_EQUAL(n, 3 * 3 * 4 * 4);
        CU_ASSERT_EQUAL(unmatched, 0);
        CU_ASSERT_EQUAL(nonpos, 0);
        fit_penalty_options o;
        fit_penalty_options_init(&o);
        o.n_starts = 24;
        data_law law;
        fit_penalty_report rep;
        CU_ASSERT_EQUAL_FATAL(fit_penalty(pts, n, &o, &law, &rep, NULL), QP_OK);
        CU_ASSERT_TRUE(rep.rmse_log < 0.02);
        double worst = 0;
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(law_penalty(&law, &pts[i].x) / law_penalty(&truth, &pts[i].x) - 1));
        CU_ASSERT_TRUE(worst < 0.06);
        if (worst >= 0.06) printf("  worst relative penalty error %.3f (rmse %.4f)\n", worst, rep.rmse_log);
        data_law_free(&law);
        free(pts);
    }
    /* too few observations: says how many it needs */
    fit_penalty_point one[3];
    memset(one, 0, sizeof one);
    qp_error err = {0};
    data_law law;
    CU_ASSERT_EQUAL(fit_penalty(one, 3, &(fit_penalty_options){.n_starts = 1, .anchor_a = NAN}, &law, NULL, &err),
                    QP_ERR_UNIDENTIFIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "at least 11"));
    data_run_list_free(&runs);
    data_law_free(&truth);
}

/* The penalty form is the qat form's last three terms, in value and in log space. */
static void test_penalty_form_matches_qat_terms(void)
{
    data_law qat, pen;
    CU_ASSERT_EQUAL_FATAL(law_builtin_own(&qat, NULL), QP_OK);
    data_law_init(&pen, DATA_LAW_PENALTY);
    memcpy(pen.coef, qat.coef + 5, sizeof(double) * 11);
    const law_point xs[3] = {{1e5, 8e6, 2e6, 2}, {3e4, 0, 1e6, 1}, {1e5, 1e6, 0, 6}};
    for (int i = 0; i < 3; i++) {
        double full = law_loss(&qat, &xs[i]);
        law_point fpx = xs[i];
        fpx.bits = LAW_FP_BITS;
        CU_ASSERT_DOUBLE_EQUAL(law_penalty(&pen, &xs[i]), full - law_loss(&qat, &fpx), 1e-12 * full);
        CU_ASSERT_DOUBLE_EQUAL(law_penalty(&qat, &xs[i]), law_penalty(&pen, &xs[i]), 1e-15);
        double th[16];
        law_to_theta(&pen, th);
        CU_ASSERT_DOUBLE_EQUAL(exp(law_log_loss(DATA_LAW_PENALTY, th, &xs[i], NULL)), law_penalty(&pen, &xs[i]),
                               1e-12 * full);
    }
    CU_ASSERT_EQUAL(law_penalty(&pen, &(law_point){1e5, 1e6, 1e6, 16}), 0);
    data_law_free(&qat);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_headline_targets);
    TU_ADD(s, test_llm_grid_is_physical);
    TU_ADD(s, test_calibration_points_reproduced);
    TU_ADD(s, test_rebuilt_byte_for_byte);
    TU_ADD(s, test_law_eval_cli);
    TU_ADD(s, test_penalty_fit_from_runs);
    TU_ADD(s, test_penalty_form_matches_qat_terms);
}

int main(void) { return tu_main("reference_law", add); }
