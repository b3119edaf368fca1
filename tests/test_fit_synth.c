/* Acceptance tests of the fitter against synthetic runs from known laws, with the real
 * method (the full 4,500-start grid; 128 Latin hypercube starts for the qat form):
 * - chinchilla: coefficients within 2% from 500 points at 1% noise, also with 10% outliers;
 * - qat: the law-optimal QAT fraction within 0.02 of the truth at every (N, D_total, bits)
 *   of the data grid, also with 10% outliers (noise 0.2%, full grid; docs/fitter.md). */
#include <math.h>
#include <stdio.h>

#include "fit.h"
#include "plan.h"
#include "testutil.h"

/* The model of a qat-form law, for the planner's numerical functions. */
#define QM(law) (&(law_model){(law), (law), DATA_UNITS_UNKNOWN, 0})

static void chinchilla_case(double outliers, uint64_t seed)
{
    data_law truth, law;
    law_builtin_chinchilla(&truth);
    fit_synth_options so;
    fit_synth_options_init(&so, DATA_LAW_CHINCHILLA);
    CU_ASSERT_EQUAL(so.n_runs, 500);
    CU_ASSERT_DOUBLE_EQUAL(so.noise, 0.01, 1e-12);
    so.outlier_frac = outliers;
    so.seed = seed;
    data_run_list runs;
    data_run_list_init(&runs);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_synth_runs(&truth, &so, &runs, &err), QP_OK);
    fit_options fo;
    fit_options_init(&fo);
    fo.form = DATA_LAW_CHINCHILLA;
    fo.loo = 0; /* a quality figure, not part of the estimate */
    fit_report rep;
    qp_status st = fit_runs(&runs, &fo, &law, &rep, &err);
    CU_ASSERT_EQUAL_FATAL(st, QP_OK);
    CU_ASSERT_EQUAL(rep.starts, 4500);
    CU_ASSERT(rep.starts_at_best >= 1);
    for (int i = 0; i < 5; i++) {
        double rel = fabs(law.coef[i] / truth.coef[i] - 1);
        printf("  %s: fit %.5g truth %.5g (%.2f%%)\n", data_law_coef_name(DATA_LAW_CHINCHILLA, i),
               law.coef[i], truth.coef[i], 100 * rel);
        CU_ASSERT(rel < 0.02);
    }
    CU_ASSERT(law.prov.rmse_log > 0.005 && law.prov.rmse_log < (outliers > 0 ? 0.1 : 0.02));
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
}

static void test_chinchilla_recovery(void) { chinchilla_case(0, 11); }
static void test_chinchilla_recovery_outliers(void) { chinchilla_case(0.1, 12); }

static void qat_case(double outliers, uint64_t seed)
{
    data_law truth, law;
    fit_synth_true_qat(&truth);
    fit_synth_options so;
    fit_synth_options_init(&so, DATA_LAW_QAT);
    so.n_runs = 0; /* the full grid: 6 sizes x 4 token ratios x 4 bit widths x 10 fractions + FP */
    so.outlier_frac = outliers;
    so.seed = seed;
    data_run_list runs;
    data_run_list_init(&runs);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_synth_runs(&truth, &so, &runs, &err), QP_OK);
    CU_ASSERT_EQUAL(runs.n, 984);
    fit_options fo;
    fit_options_init(&fo);
    fo.form = DATA_LAW_QAT;
    fo.loo = 0;
    fit_report rep;
    CU_ASSERT_EQUAL_FATAL(fit_runs(&runs, &fo, &law, &rep, &err), QP_OK);
    CU_ASSERT_EQUAL(rep.starts, FIT_QAT_DEFAULT_STARTS);
    double worst = 0;
    int n = 0;
    for (int is = 0; is < so.n_sizes; is++) {
        double N = round(exp(log(so.n_lo) + (log(so.n_hi) - log(so.n_lo)) * is / (so.n_sizes - 1)));
        for (int it = 0; it < so.n_tpp; it++) {
            double tpp = exp(log(so.tpp_lo) + (log(so.tpp_hi) - log(so.tpp_lo)) * it / (so.n_tpp - 1));
            for (int ib = 0; ib < so.n_bits; ib++) {
                double f1, l1, f2, l2;
                CU_ASSERT_EQUAL_FATAL(plan_optimal_fraction(QM(&truth), N, N * tpp, so.bits[ib], &f1, &l1, &err), QP_OK);
                CU_ASSERT_EQUAL_FATAL(plan_optimal_fraction(QM(&law), N, N * tpp, so.bits[ib], &f2, &l2, &err), QP_OK);
                if (fabs(f1 - f2) > worst) worst = fabs(f1 - f2);
                /* the truth's optimum is interior: the test is not trivially 0 vs 0 */
                CU_ASSERT(f1 > 0.05 && f1 < 0.6);
                n++;
            }
        }
    }
    printf("  qat form, %d%% outliers: worst |f_opt(fit) - f_opt(truth)| = %.4f over %d points\n",
           (int)(100 * outliers), worst, n);
    CU_ASSERT(worst < 0.02);
    fit_report_free(&rep);
    data_law_free(&law);
    data_run_list_free(&runs);
}

static void test_qat_recovery(void) { qat_case(0, 21); }
static void test_qat_recovery_outliers(void) { qat_case(0.1, 22); }

/* The true law's optimal fraction grows with S_total like the paper's (docs/fitter.md). */
static void test_true_qat_law_shape(void)
{
    data_law t;
    fit_synth_true_qat(&t);
    qp_error err;
    double prev = 0;
    const double s[] = {20, 100, 1000, 10000};
    for (int i = 0; i < 4; i++) {
        int bits = 4;
        double N = 1e8, D = s[i] * N * bits / 8, f, l;
        CU_ASSERT_EQUAL_FATAL(plan_optimal_fraction(QM(&t), N, D, bits, &f, &l, &err), QP_OK);
        double paper = law_fraction_hat(LAW_FRACTION_A_PAPER, s[i]);
        printf("  S=%g: law-optimal %.3f, paper f_hat %.3f\n", s[i], f, paper);
        CU_ASSERT(f > prev);
        CU_ASSERT(fabs(f - paper) < 0.04);
        prev = f;
    }
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_true_qat_law_shape);
    TU_ADD(s, test_chinchilla_recovery);
    TU_ADD(s, test_chinchilla_recovery_outliers);
    TU_ADD(s, test_qat_recovery);
    TU_ADD(s, test_qat_recovery_outliers);
}

int main(void) { return tu_main("fit_synth", add); }
