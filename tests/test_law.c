/* The law module: values against numbers computed by hand (Python, from the formula in
 * docs/law.md), the analytic gradient against finite differences, and f_hat against the
 * reference's table and worked examples. */
#include <math.h>
#include <string.h>

#include "fit.h"
#include "testutil.h"

static void make_qat_law(data_law *law)
{
    data_law_init(law, DATA_LAW_QAT);
    const double c[16] = {1.8, 400, 2000, 0.34, 0.36, 0.9, 0.55, 3.0, 0.35, 0.05, 0.45, 0.02, 0.3, 0.25, 0.02, 0.3};
    memcpy(law->coef, c, sizeof c);
}

static void test_chinchilla_values(void)
{
    data_law law;
    law_builtin_chinchilla(&law);
    /* E + A/N^alpha + B/D^beta with Epoch AI's coefficients */
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){1e9, 2e10, 0, 32}), 2.530050323678703, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){2.2e9, 1.4e12, 0, 32}), 2.163881618368049, 1e-12);
    /* D = D_fp + D_qat in the Chinchilla part, whatever the split */
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){8.6e7, 1.3e9, 1e9, 4}), 3.4402226621576437, 1e-12);
    CU_ASSERT_TRUE(isnan(law_loss(&law, &(law_point){0, 1e9, 0, 32})));
    CU_ASSERT_TRUE(isnan(law_loss(&law, &(law_point){1e9, 0, 0, 32})));
}

static void test_qat_values(void)
{
    data_law law;
    make_qat_law(&law);
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){1e8, 8e9, 2e9, 4}), 3.3525763576537075, 1e-12);
    /* QAT from scratch (D_fp = 0) and no QAT at all (D_qat = 0) are finite */
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){1e8, 0, 1e10, 2}), 3.535481471353656, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){1e8, 1e10, 0, 1}), 4.676115433677589, 1e-12);
    /* full precision: the penalty terms vanish */
    double fp = 1.8 + 400 / pow(1e8, 0.34) + 2000 / pow(1e10, 0.36);
    CU_ASSERT_DOUBLE_EQUAL(law_loss(&law, &(law_point){1e8, 1e10, 0, 16}), fp, 1e-12);
}

static void test_gradient_matches_finite_differences(void)
{
    data_law law;
    make_qat_law(&law);
    double th[16], g[16];
    law_to_theta(&law, th);
    const law_point pts[] = {{1e8, 8e9, 2e9, 4}, {3e8, 0, 5e9, 1}, {5e7, 4e9, 1e9, 2}, {1e9, 1e10, 0, 6}, {1e8, 1e9, 0, 16}};
    for (size_t p = 0; p < sizeof pts / sizeof pts[0]; p++) {
        law_log_loss(DATA_LAW_QAT, th, &pts[p], g);
        for (int i = 0; i < 16; i++) {
            double h = 1e-6, t0 = th[i];
            th[i] = t0 + h;
            double up = law_log_loss(DATA_LAW_QAT, th, &pts[p], NULL);
            th[i] = t0 - h;
            double dn = law_log_loss(DATA_LAW_QAT, th, &pts[p], NULL);
            th[i] = t0;
            double fd = (up - dn) / (2 * h);
            CU_ASSERT_DOUBLE_EQUAL(g[i], fd, 1e-7 + 1e-6 * fabs(fd));
        }
    }
}

static void test_theta_round_trip(void)
{
    data_law law, back;
    make_qat_law(&law);
    data_law_init(&back, DATA_LAW_QAT);
    double th[16];
    law_to_theta(&law, th);
    CU_ASSERT_DOUBLE_EQUAL(th[0], log(1.8), 1e-15);  /* E in log space */
    CU_ASSERT_DOUBLE_EQUAL(th[3], 0.34, 0);          /* alpha as it is */
    law_theta_to_coef(DATA_LAW_QAT, th, back.coef);
    for (int i = 0; i < 16; i++) CU_ASSERT_DOUBLE_EQUAL(back.coef[i], law.coef[i], 1e-12 * fabs(law.coef[i]));
}

static void test_fraction_table(void)
{
    /* ../shared/reference/compute-optimal-qat.md, section 2 */
    static const double s[] = {10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 3e4, 1e5};
    static const double f[] = {0.054, 0.106, 0.179, 0.232, 0.281, 0.339, 0.377, 0.413, 0.454, 0.482, 0.521, 0.557};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        CU_ASSERT_DOUBLE_EQUAL(law_fraction_hat(LAW_FRACTION_A_PAPER, s[i]), f[i], 0.0005);
    CU_ASSERT_TRUE(isnan(law_fraction_hat(LAW_FRACTION_A_PAPER, 1.0)));
    CU_ASSERT_TRUE(isnan(law_fraction_hat(LAW_FRACTION_A_PAPER, 0.5)));
}

static void test_worked_examples(void)
{
    double s = law_tokens_per_param_byte(1.4e12, 2.2e9, 4);
    CU_ASSERT_DOUBLE_EQUAL(s, 1272.727, 0.001);
    CU_ASSERT_DOUBLE_EQUAL(law_fraction_hat(LAW_FRACTION_A_PAPER, s), 0.39, 0.005);
    s = law_tokens_per_param_byte(2.3e9, 86e6, 6);
    CU_ASSERT_DOUBLE_EQUAL(s, 35.66, 0.01);
    CU_ASSERT_DOUBLE_EQUAL(law_fraction_hat(LAW_FRACTION_A_PAPER, s), 0.15, 0.005);
    CU_ASSERT_TRUE(isnan(law_tokens_per_param_byte(1e9, 0, 4)));
}

/* The efficiency form: eta per whole width, none at 0 or between widths; a law file that
 * round-trips, and refusals of a negative eta or a law that names no method. */
static void test_efficiency_form(void)
{
    data_law e;
    data_law_init(&e, DATA_LAW_EFFICIENCY);
    CU_ASSERT_EQUAL(data_law_ncoef(DATA_LAW_EFFICIENCY), 8);
    CU_ASSERT_STRING_EQUAL(data_law_coef_name(DATA_LAW_EFFICIENCY, 1), "eta_2");
    e.coef[1] = 0.3, e.coef[2] = 0.6;
    CU_ASSERT_DOUBLE_EQUAL(law_efficiency_eta(&e, 2), 0.3, 0);
    CU_ASSERT_DOUBLE_EQUAL(law_efficiency_eta(&e, 3), 0.6, 0);
    CU_ASSERT(isnan(law_efficiency_eta(&e, 4)));   /* 0: not fitted */
    CU_ASSERT(isnan(law_efficiency_eta(&e, 2.5))); /* between widths */
    CU_ASSERT(isnan(law_efficiency_eta(&e, 16)));
    qp_error err = {0};
    CU_ASSERT_EQUAL(data_law_validate(&e, &err), QP_ERR_INPUT); /* no method */
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "run_method"));
    snprintf(e.prov.run_method, sizeof e.prov.run_method, "efqat");
    CU_ASSERT_EQUAL(data_law_validate(&e, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(data_law_write(tu_path("eff.json"), &e, &err), QP_OK);
    data_law back;
    CU_ASSERT_EQUAL_FATAL(data_law_read(tu_path("eff.json"), &back, &err), QP_OK);
    CU_ASSERT_EQUAL(back.form, DATA_LAW_EFFICIENCY);
    CU_ASSERT_STRING_EQUAL(back.prov.run_method, "efqat");
    CU_ASSERT_EQUAL(memcmp(back.coef, e.coef, sizeof e.coef), 0);
    data_law_free(&back);
    e.coef[3] = -0.1;
    CU_ASSERT_EQUAL(data_law_validate(&e, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "eta_4"));
    CU_ASSERT(isnan(law_loss(&e, &(law_point){1e8, 1e9, 1e9, 2}))); /* not a loss law */
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_efficiency_form);
    TU_ADD(s, test_chinchilla_values);
    TU_ADD(s, test_qat_values);
    TU_ADD(s, test_gradient_matches_finite_differences);
    TU_ADD(s, test_theta_round_trip);
    TU_ADD(s, test_fraction_table);
    TU_ADD(s, test_worked_examples);
}

int main(void) { return tu_main("law", add); }
