/* The planner: the numerical optimum is never worse than a fine grid, the token split and
 * schedule are consistent, the memory constraint picks among fitting bit widths, and the
 * 10%-rule token gap is what the law says. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "testutil.h"

/* The model of a qat-form law, for the planner's numerical functions. */
#define QM(law) (&(law_model){(law), (law), DATA_UNITS_UNKNOWN, 0})

/* A QAT law whose optimal fraction grows with S_total (xi < 0, omega < |xi| + rho; see
 * docs/law.md), with per-bit precision floors so bit widths rank differently. */
static const double TEST_QAT[16] = {1.8, 400, 2000, 0.34, 0.36, 0.3, 0.7, 0.5, 0.5, 0.02, 0.15, 6.0, 0.5, -0.5, 0.02, 0.25};

static void make_laws(plan_laws *laws)
{
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(laws, NULL), QP_OK);
    plan_laws_drop_qat(laws);
    data_law_init(&laws->qat, DATA_LAW_QAT);
    memcpy(laws->qat.coef, TEST_QAT, sizeof TEST_QAT);
    snprintf(laws->qat.prov.source, sizeof laws->qat.prov.source, "test");
    laws->has_qat = 1;
    snprintf(laws->qat_name, sizeof laws->qat_name, "test-law");
}

static double loss_at(const data_law *law, double n, double d, double f, int bits)
{
    return law_loss(law, &(law_point){n, (1 - f) * d, f * d, bits});
}

static void test_optimum_never_worse_than_grid(void)
{
    plan_laws laws;
    make_laws(&laws);
    const double ns[] = {5e7, 1e8, 1e9, 7e9};
    const double ss[] = {3, 30, 300, 3000, 3e4, 3e5};
    const int bits[] = {1, 2, 3, 4, 6, 8};
    int interior = 0;
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t c = 0; c < 6; c++) {
                double d = ss[b] * ns[a] * bits[c] / 8;
                double f, l;
                CU_ASSERT_EQUAL_FATAL(plan_optimal_fraction(QM(&laws.qat), ns[a], d, bits[c], &f, &l, NULL), QP_OK);
                CU_ASSERT_TRUE(f >= 0 && f <= 1);
                CU_ASSERT_DOUBLE_EQUAL(l, loss_at(&laws.qat, ns[a], d, f, bits[c]), 1e-12);
                /* a grid 10x finer than the search's own, offset so it hits other points */
                for (int i = 0; i <= 10000; i++) {
                    double g = (i + 0.37) / 10001.0;
                    if (loss_at(&laws.qat, ns[a], d, g, bits[c]) < l - 1e-13) {
                        CU_FAIL("a grid point beats the numerical optimum");
                        fprintf(stderr, "N=%g S=%g bits=%d: f=%g l=%.15g, grid f=%g l=%.15g\n", ns[a], ss[b], bits[c],
                                f, l, g, loss_at(&laws.qat, ns[a], d, g, bits[c]));
                        break;
                    }
                }
                interior += f > 0.001 && f < 0.999;
            }
    CU_ASSERT_TRUE(interior > 100); /* the law has interior optima: the test exercises Brent */
    plan_laws_free(&laws);
}

static void test_optimal_fraction_grows_with_s(void)
{
    plan_laws laws;
    make_laws(&laws);
    double prev = -1;
    for (double s = 10; s <= 1e5; s *= 10) {
        double f, l;
        CU_ASSERT_EQUAL(plan_optimal_fraction(QM(&laws.qat), 1e9, s * 1e9 * 4 / 8, 4, &f, &l, NULL), QP_OK);
        CU_ASSERT_TRUE(f > prev);
        prev = f;
    }
    plan_laws_free(&laws);
}

static void test_plan_rows_consistent(void)
{
    plan_laws laws;
    make_laws(&laws);
    plan_request req;
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.flops = 1e22;
    req.batch_tokens = 4e6;
    plan_result res;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, &err), QP_OK);
    CU_ASSERT_EQUAL(res.n_rows, 6);
    CU_ASSERT_TRUE(res.ranked);
    CU_ASSERT_TRUE(res.recommended >= 0);
    double best = INFINITY;
    for (int i = 0; i < res.n_rows; i++) {
        const plan_row *r = &res.rows[i];
        /* whole batches: the budget's tokens rounded down, the switch on a batch boundary */
        CU_ASSERT_TRUE(r->d_total <= 1e22 / (6 * 2.2e9) && r->d_total > 1e22 / (6 * 2.2e9) - 4e6);
        CU_ASSERT_DOUBLE_EQUAL(fmod(r->d_total, 4e6), 0, 0);
        CU_ASSERT_DOUBLE_EQUAL(fmod(r->d_qat, 4e6), 0, 0);
        CU_ASSERT_DOUBLE_EQUAL(r->d_fp + r->d_qat, r->d_total, 0);
        CU_ASSERT_DOUBLE_EQUAL(r->fraction, r->d_qat / r->d_total, 0);
        CU_ASSERT_TRUE(fabs(r->fraction - r->f_opt) <= 2e6 / r->d_total);
        CU_ASSERT_DOUBLE_EQUAL(r->s_total, r->d_total / (2.2e9 * r->bits / 8), 1e-9);
        CU_ASSERT_EQUAL(r->schedule, r->bits >= 3 ? DATA_SCHED_FUSED : DATA_SCHED_CLASSIC);
        CU_ASSERT_DOUBLE_EQUAL(r->qat_start_token, r->d_fp, 0);
        CU_ASSERT_DOUBLE_EQUAL(r->qat_start_step, floor(r->d_fp / 4e6), 0);
        if (r->schedule == DATA_SCHED_FUSED) CU_ASSERT_DOUBLE_EQUAL(r->decay_start_token, r->d_fp, 0);
        if (r->schedule == DATA_SCHED_CLASSIC) {
            CU_ASSERT_DOUBLE_EQUAL(r->fp_decay_start_token, floor(0.8 * r->d_fp / 4e6) * 4e6, 0); /* on a batch boundary */
            CU_ASSERT_DOUBLE_EQUAL(r->decay_start_token, floor((r->d_fp + 0.8 * r->d_qat) / 4e6) * 4e6, 0);
        }
        /* the optimum is no worse than f_hat or the 10% rule */
        CU_ASSERT_TRUE(r->loss_opt <= r->loss_f_hat + 1e-12);
        CU_ASSERT_TRUE(r->loss_opt <= r->loss_10pct + 1e-12);
        /* the 10% rule reaches the optimum's loss with the extra tokens, not before */
        if (isfinite(r->extra_tokens_10pct) && r->extra_tokens_10pct > 0) {
            double d2 = r->d_total + r->extra_tokens_10pct;
            CU_ASSERT_DOUBLE_EQUAL(loss_at(&laws.qat, r->n_params, d2, 0.1, r->bits), r->loss_opt, 1e-9);
            CU_ASSERT_TRUE(loss_at(&laws.qat, r->n_params, d2 * 0.99, 0.1, r->bits) > r->loss_opt);
        }
        if (r->loss_opt < best) best = r->loss_opt;
    }
    CU_ASSERT_DOUBLE_EQUAL(res.rows[res.recommended].loss_opt, best, 0);
    plan_laws_free(&laws);
}

static void test_memory_constraint(void)
{
    plan_laws laws;
    make_laws(&laws);
    plan_request req;
    plan_request_init(&req);
    req.n_params = 1e9;
    req.tokens = 1e11;
    req.memory_bytes = 300e6; /* 1e9 params fit at 1 and 2 bits only (125 MB, 250 MB) */
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    for (int i = 0; i < res.n_rows; i++) CU_ASSERT_EQUAL(res.rows[i].fits_memory, res.rows[i].bits <= 2);
    CU_ASSERT_TRUE_FATAL(res.recommended >= 0);
    double rb = res.rows[res.recommended].bits;
    CU_ASSERT_TRUE(rb <= 2);
    /* it is the better of the two that fit, even if a wider one would be better still */
    double l1 = res.rows[0].loss_opt, l2 = res.rows[1].loss_opt;
    CU_ASSERT_EQUAL(rb, l1 < l2 ? 1 : 2);

    /* memory alone (--fill-memory): N per bit width = the largest model that fits; its
     * memory is the weights at B bits plus a 16-bit scale per row (no embeddings given) */
    plan_request_init(&req);
    req.memory_bytes = 1.5 * 1073741824.0;
    req.flops = 1e21;
    req.fill_memory = 1;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_EQUAL(res.mode, PLAN_MODE_FILL_MEMORY);
    for (int i = 0; i < res.n_rows; i++) {
        const plan_row *r = &res.rows[i];
        CU_ASSERT_DOUBLE_EQUAL(r->memory_bytes, req.memory_bytes, req.memory_bytes * 1e-9);
        CU_ASSERT_TRUE(r->n_params < req.memory_bytes * 8 / r->bits && r->n_params > 0.98 * req.memory_bytes * 8 / r->bits);
        CU_ASSERT_DOUBLE_EQUAL(r->memory_bytes, plan_memory_bytes(&req, r->n_params, r->bits), 1e-3);
        CU_ASSERT_DOUBLE_EQUAL(r->weight_bytes, r->n_params * r->bits / 8, 1e-3);
        CU_ASSERT_DOUBLE_EQUAL(r->d_total, floor(1e21 / (6 * r->n_params)), 0);
        CU_ASSERT_EQUAL(r->fits_memory, 1);
    }
    double best = INFINITY;
    int bi = -1;
    for (int i = 0; i < res.n_rows; i++)
        if (res.rows[i].loss_opt < best) best = res.rows[i].loss_opt, bi = i;
    CU_ASSERT_EQUAL(res.recommended, bi);

    /* nothing fits */
    plan_request_init(&req);
    req.n_params = 1e9;
    req.tokens = 1e11;
    req.memory_bytes = 1e6;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_EQUAL(res.recommended, -1);
    CU_ASSERT_TRUE(res.n_warnings > 0);
    plan_laws_free(&laws);
}

static void test_without_qat_law_does_not_rank(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_laws_drop_qat(&laws);
    plan_request req;
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.tokens = 1.4e12;
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_FALSE(res.ranked);
    CU_ASSERT_EQUAL(res.recommended, -1);
    for (int i = 0; i < res.n_rows; i++) {
        const plan_row *r = &res.rows[i];
        CU_ASSERT_TRUE(isnan(r->loss_opt));
        CU_ASSERT_DOUBLE_EQUAL(r->fraction, exp(-LAW_FRACTION_A_PAPER / log(r->s_total)), 1e-12);
        if (r->bits == 4) CU_ASSERT_DOUBLE_EQUAL(r->fraction, 0.39, 0.005); /* the paper's worked example */
    }
    /* one bit width asked for: planned with the closed form */
    req.n_bits = 1;
    req.bits[0] = 6;
    req.n_params = 86e6;
    req.tokens = 2.3e9;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_EQUAL(res.recommended, 0);
    CU_ASSERT_DOUBLE_EQUAL(res.rows[0].fraction, 0.15, 0.005);
    plan_laws_free(&laws);
}

static void test_small_s_and_extrapolation_warnings(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req;
    plan_request_init(&req);
    req.n_params = 1e9;
    req.tokens = 1e8; /* S_total < 1 at every width */
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_TRUE(isnan(res.rows[0].f_hat));
    int saw = 0, extrap = 0;
    for (int i = 0; i < res.n_warnings; i++) {
        saw |= strstr(res.warnings[i], "meaningless") != NULL;
        extrap |= strstr(res.warnings[i], "extrapolating") != NULL;
    }
    CU_ASSERT_TRUE(saw);
    CU_ASSERT_TRUE(extrap);
    /* JSON never carries a silent null */
    char *json = plan_result_to_json(&res, &laws, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(json);
    CU_ASSERT_PTR_NULL(strstr(json, "null"));
    CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"f_hat\":\t\"NaN\""));
    free(json);
    plan_laws_free(&laws);
}

static void test_bootstrap_interval(void)
{
    plan_laws laws;
    make_laws(&laws);
    /* samples spread around the point estimate in the precision-floor coefficient */
    laws.qat.n_samples = 40;
    laws.qat.samples = malloc(sizeof(double) * 16 * 40);
    for (int s = 0; s < 40; s++) {
        memcpy(laws.qat.samples + 16 * s, TEST_QAT, sizeof TEST_QAT);
        laws.qat.samples[16 * s + 13] = -0.5 + 0.01 * (s - 19.5) / 19.5; /* xi */
    }
    plan_request req;
    plan_request_init(&req);
    req.n_params = 1e9;
    req.tokens = 1e11;
    req.n_bits = 1;
    req.bits[0] = 4;
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    const plan_row *r = &res.rows[0];
    CU_ASSERT_TRUE(isfinite(r->f_opt_lo) && isfinite(r->f_opt_hi));
    CU_ASSERT_TRUE(r->f_opt_lo < r->f_opt_hi);
    CU_ASSERT_TRUE(r->f_opt_lo <= r->f_opt + 0.01 && r->f_opt <= r->f_opt_hi + 0.01);
    CU_ASSERT_TRUE(r->loss_opt_lo <= r->loss_opt + 1e-6 && r->loss_opt <= r->loss_opt_hi + 1e-6);
    plan_laws_free(&laws);
}

static void test_bad_requests(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req;
    plan_result res;
    qp_error err = {0};
    plan_request_init(&req);
    req.tokens = 1e9;
    CU_ASSERT_EQUAL(plan_run(&req, &laws, &res, &err), QP_ERR_USAGE); /* no size */
    plan_request_init(&req);
    req.n_params = 1e9;
    CU_ASSERT_EQUAL(plan_run(&req, &laws, &res, &err), QP_ERR_USAGE); /* no budget */
    req.tokens = 1e9;
    req.flops = 1e20;
    CU_ASSERT_EQUAL(plan_run(&req, &laws, &res, &err), QP_ERR_USAGE); /* two budgets */
    plan_laws_free(&laws);
}

/* The built-in set includes the project's own QAT law: it ranks bit widths at the README's
 * query, with its provenance, and warns that 2.2B parameters is far outside its range. */
/* The default laws: Epoch's Chinchilla law plus the reference penalty, in nats per token;
 * every row passes the physical checks and the best valid row is recommended. */
static void test_builtin_reference_law_ranks(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    CU_ASSERT_FALSE(laws.has_qat);
    CU_ASSERT_TRUE_FATAL(laws.has_penalty);
    CU_ASSERT_EQUAL(laws.penalty.form, DATA_LAW_PENALTY);
    CU_ASSERT_EQUAL(laws.penalty.units, DATA_UNITS_NATS_PER_TOKEN);
    CU_ASSERT_TRUE(laws.penalty.n_samples >= 100);
    plan_request req;
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.flops = 1e22;
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    CU_ASSERT_TRUE(res.ranked);
    CU_ASSERT_EQUAL(res.units, DATA_UNITS_NATS_PER_TOKEN);
    CU_ASSERT_TRUE_FATAL(res.recommended >= 0 && res.recommended < res.n_rows);
    const plan_row *best = &res.rows[res.recommended];
    for (int i = 0; i < res.n_rows; i++) {
        const plan_row *r = &res.rows[i];
        CU_ASSERT_TRUE(r->valid);
        CU_ASSERT_TRUE(isfinite(r->loss_opt));
        CU_ASSERT_TRUE(r->f_opt >= 0 && r->f_opt <= 1);
        CU_ASSERT_TRUE(r->loss_opt >= r->loss_fp);            /* QAT never beats full precision */
        CU_ASSERT_TRUE(r->loss_fp >= laws.fp.coef[0]);        /* nor the floor E */
        CU_ASSERT_DOUBLE_EQUAL(r->penalty, r->loss_opt - r->loss_fp, 1e-12);
        CU_ASSERT_TRUE(best->loss_opt <= r->loss_opt);
        if (i) CU_ASSERT_TRUE(r->penalty <= res.rows[i - 1].penalty); /* more bits, smaller penalty */
        CU_ASSERT_TRUE(r->penalty_lo <= r->penalty * 1.0001 && r->penalty <= r->penalty_hi * 1.0001);
    }
    int extrap = 0;
    for (int i = 0; i < res.n_warnings; i++)
        extrap |= strstr(res.warnings[i], "QAT law's fitted range") != NULL;
    CU_ASSERT_TRUE(extrap);
    plan_laws_free(&laws);
    plan_laws_free(NULL);
}

/* A law that breaks the physical checks: its rows are marked invalid, with the reason,
 * and never recommended. */
static void test_broken_law_never_recommended(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    /* a negative precision floor: the penalty turns negative once the other terms are small */
    laws.penalty.coef[0] = -3.0;
    data_law_free(&laws.penalty); /* drop the samples: they are of the sound law */
    laws.penalty.has_interval = 0;
    plan_request req;
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.tokens = 1.4e12;
    plan_result res;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    int invalid = 0, below = 0;
    for (int i = 0; i < res.n_rows; i++)
        if (!res.rows[i].valid) {
            invalid++;
            CU_ASSERT_NOT_EQUAL(i, res.recommended);
            CU_ASSERT_TRUE(res.rows[i].invalid_reason[0] != 0);
            below += strstr(res.rows[i].invalid_reason, "below the full-precision loss") != NULL;
        }
    CU_ASSERT_TRUE(invalid > 0);
    CU_ASSERT_TRUE(below > 0); /* the negative penalty is named as such */
    int said = 0;
    for (int i = 0; i < res.n_warnings; i++) said |= strstr(res.warnings[i], "is not recommended") != NULL;
    CU_ASSERT_TRUE(said);
    /* a full-precision law below its own floor (negative A): every row is invalid, no recommendation */
    plan_laws_free(&laws);
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    laws.fp.coef[1] = -482.01;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, &res, NULL), QP_OK);
    for (int i = 0; i < res.n_rows; i++) {
        CU_ASSERT_FALSE(res.rows[i].valid);
        CU_ASSERT_PTR_NOT_NULL(strstr(res.rows[i].invalid_reason, "below the law's irreducible loss"));
    }
    CU_ASSERT_EQUAL(res.recommended, -1);
    plan_laws_free(&laws);
}

/* Laws of different loss units are never composed. */
static void test_units_never_mixed(void)
{
    plan_laws laws;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    CU_ASSERT_EQUAL_FATAL(plan_laws_add(&laws, "own", &err), QP_OK);
    law_model m;
    CU_ASSERT_EQUAL(plan_laws_model(&laws, &m, &err), QP_OK); /* own is its own reference */
    CU_ASSERT_EQUAL(m.units, DATA_UNITS_NATS_PER_BYTE);
    CU_ASSERT_PTR_EQUAL(m.fp, &laws.qat);
    CU_ASSERT_EQUAL_FATAL(plan_laws_add(&laws, "chinchilla", &err), QP_OK); /* on purpose */
    CU_ASSERT_EQUAL(plan_laws_model(&laws, &m, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "different units"));
    plan_request req;
    plan_request_init(&req);
    req.n_params = 1e5;
    req.tokens = 1e7;
    plan_result res;
    CU_ASSERT_EQUAL(plan_run(&req, &laws, &res, &err), QP_ERR_INPUT);
    plan_laws_free(&laws);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_optimum_never_worse_than_grid);
    TU_ADD(s, test_optimal_fraction_grows_with_s);
    TU_ADD(s, test_plan_rows_consistent);
    TU_ADD(s, test_memory_constraint);
    TU_ADD(s, test_without_qat_law_does_not_rank);
    TU_ADD(s, test_builtin_reference_law_ranks);
    TU_ADD(s, test_broken_law_never_recommended);
    TU_ADD(s, test_units_never_mixed);
    TU_ADD(s, test_small_s_and_extrapolation_warnings);
    TU_ADD(s, test_bootstrap_interval);
    TU_ADD(s, test_bad_requests);
}

int main(void) { return tu_main("plan", add); }
