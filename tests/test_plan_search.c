/* The planner's questions beyond a given N: the model size searched under the law and a
 * memory limit, the memory model, ternary, whole-token counts, ties, grouped warnings and
 * the units at the command line's edges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plan.h"
#include "testutil.h"

/* Epoch's Chinchilla law's compute-optimal N under C = 6ND (Hoffmann et al.'s closed form). */
static double chinchilla_n_opt(double flops)
{
    const double A = 482.01, B = 2085.43, a = 0.3478, b = 0.3658;
    double G = pow(a * A / (b * B), 1 / (a + b));
    return G * pow(flops / 6, b / (a + b));
}

static void test_search_finds_compute_optimal_size(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req;
    plan_request_init(&req);
    req.flops = 1e22;
    plan_result *res = malloc(sizeof *res);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, NULL), QP_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CU_ASSERT_TRUE(secs < 5); /* a generous bound: it takes ~0.1 s; the benchmark is the CLI's answer time */
    CU_ASSERT_EQUAL(res->mode, PLAN_MODE_SEARCH);
    CU_ASSERT_TRUE_FATAL(res->recommended >= 0);
    double n_opt = chinchilla_n_opt(1e22), n = res->rows[res->recommended].n_params;
    CU_ASSERT_TRUE(n_opt > 8e9 && n_opt < 1e10); /* "about 9B at 1e22" */
    CU_ASSERT_TRUE(n > n_opt / 2.5 && n < n_opt * 2.5);
    /* each row's N is a local optimum: a 10% smaller or larger model predicts no lower loss */
    law_model m;
    CU_ASSERT_EQUAL_FATAL(plan_laws_model(&laws, &m, NULL), QP_OK);
    for (int i = 0; i < res->n_rows; i++) {
        const plan_row *r = &res->rows[i];
        for (int s = -1; s <= 1; s += 2) {
            double n2 = r->n_params * (1 + 0.1 * s), f, l;
            CU_ASSERT_EQUAL(plan_optimal_fraction(&m, n2, 1e22 / (6 * n2), r->bits, &f, &l, NULL), QP_OK);
            CU_ASSERT_TRUE(l >= r->loss_opt - 1e-6);
        }
    }
    /* under 2 GiB, the recommended model's memory fits */
    req.memory_bytes = 2.0 * 1073741824.0;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, NULL), QP_OK);
    CU_ASSERT_TRUE_FATAL(res->recommended >= 0);
    CU_ASSERT_TRUE(res->rows[res->recommended].memory_bytes <= req.memory_bytes);
    for (int i = 0; i < res->n_rows; i++) CU_ASSERT_EQUAL(res->rows[i].fits_memory, 1);
    free(res);
    plan_laws_free(&laws);
}

static void test_memory_model(void)
{
    plan_request req;
    plan_request_init(&req);
    req.embed_params = 1.05e9;
    req.group_size = 32;
    /* the example: 5.95e9 body weights at 4 bits + a 16-bit scale per 32, embeddings at 16 bits */
    double want = 5.95e9 * 4.5 / 8 + 1.05e9 * 2;
    CU_ASSERT_DOUBLE_EQUAL(plan_memory_bytes(&req, 7e9, 4), want, want * 1e-3);
    /* from the vocabulary: untied embeddings are two V x d matrices, tied one */
    plan_request_init(&req);
    req.embed_params = NAN;
    req.vocab = 128000;
    req.d_model = 4096;
    CU_ASSERT_DOUBLE_EQUAL(plan_embed_params(&req, 8e9), 2 * 128000.0 * 4096, 1);
    req.tied = 1;
    CU_ASSERT_DOUBLE_EQUAL(plan_embed_params(&req, 8e9), 128000.0 * 4096, 1);
    /* per-row scales: one 16-bit scale per d_model weights */
    plan_request_init(&req);
    req.d_model = 2048;
    CU_ASSERT_DOUBLE_EQUAL(plan_memory_bytes(&req, 1e9, 4), 1e9 * 4 / 8 + 1e9 / 2048 * 2, 1e-3);
    /* the CLI reports it per row */
    char *out = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 7B --embed-params 1.05B --group-size 32 --bits 4 --tokens 2T --json", &out, NULL), 0);
    const char *p = out ? strstr(out, "\"memory_bytes\":") : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_DOUBLE_EQUAL(strtod(p + 15, NULL), want, want * 1e-3);
    free(out);
}

static void test_ternary_and_whole_counts(void)
{
    char *out = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 2.2B --tokens 1.4T --bits 1.58,2,4 --batch-tokens 4M", &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\n1.58 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "fake_quant_after_n_steps="));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "% of the budget) to match"));
    free(out);
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req;
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.tokens = 1.4e12 + 0.5;
    req.bits[0] = PLAN_TERNARY_BITS;
    req.bits[1] = 2;
    req.n_bits = 2;
    plan_result *res = malloc(sizeof *res);
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, NULL), QP_OK);
    const plan_row *t = &res->rows[0], *two = &res->rows[1];
    CU_ASSERT_DOUBLE_EQUAL(t->s_total, t->d_total / (2.2e9 * log2(3) / 8), 1e-6);
    CU_ASSERT_TRUE(t->penalty > two->penalty); /* fewer bits, larger penalty */
    for (int i = 0; i < res->n_rows; i++) { /* every token count is a whole number */
        const plan_row *r = &res->rows[i];
        const double counts[] = {r->d_total, r->d_fp, r->d_qat, r->qat_start_token, r->decay_start_token};
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) CU_ASSERT_DOUBLE_EQUAL(counts[k], floor(counts[k]), 0);
        if (isfinite(r->extra_tokens_10pct)) CU_ASSERT_DOUBLE_EQUAL(r->extra_tokens_10pct, floor(r->extra_tokens_10pct), 0);
    }
    /* a tie: under 2 GiB and 1e22 FLOPs, a 5.7B 3-bit model and a 4.3B 4-bit model are within
     * the law's uncertainty (the 3-bit one wins in some bootstrap samples) */
    plan_request_init(&req);
    req.flops = 1e22;
    req.memory_bytes = 2.0 * 1073741824.0;
    req.bits[0] = 3;
    req.bits[1] = 4;
    req.n_bits = 2;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, NULL), QP_OK);
    CU_ASSERT_TRUE(res->tie);
    /* at a fixed N more bits win in every sample: no tie, however close */
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.tokens = 1.4e12;
    req.bits[0] = 4;
    req.bits[1] = 4.1;
    req.n_bits = 2;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, NULL), QP_OK);
    CU_ASSERT_FALSE(res->tie);
    free(res);
    plan_laws_free(&laws);
}

/* --memory 2GiB --budget 1e22: each warning once per law and quantity, the most severe
 * first, none cut. */
static void test_warnings_grouped_and_complete(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req;
    plan_request_init(&req);
    req.flops = 1e22;
    req.memory_bytes = 2.0 * 1073741824.0;
    plan_result *res = malloc(sizeof *res);
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, NULL), QP_OK);
    CU_ASSERT_EQUAL(res->n_warnings_dropped, 0);
    CU_ASSERT_TRUE(res->n_warnings > 0);
    const char *laws_named[] = {"the QAT law's fitted range", "the full-precision law's fitted range",
                                "the fraction law's fitted range"};
    const char *quantities[] = {"N = ", "D = "};
    for (size_t l = 0; l < 3; l++)
        for (size_t q = 0; q < 2; q++) {
            int n = 0;
            for (int i = 0; i < res->n_warnings; i++)
                n += strstr(res->warnings[i], laws_named[l]) && !strncmp(res->warnings[i], quantities[q], 4);
            CU_ASSERT_TRUE(n <= 1);
        }
    for (int i = 1; i < res->n_warnings; i++) CU_ASSERT_TRUE(res->severity[i] <= res->severity[i - 1]);
    free(res);
    plan_laws_free(&laws);
}

static void test_units_at_the_edges(void)
{
    char *out = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 7B --budget 50Kgpuh --peak-flops 989TFLOPS --mfu 40%", &out, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL(out && strstr(out, "50000 GPU-hours x 3600 s/h x 9.89e+14 FLOP/s peak x MFU 0.4 = 7.121e+22 FLOPs"));
    free(out);
    double v = 0;
    int gpuh = 0;
    CU_ASSERT_EQUAL(qp_parse_budget("1.5Mgpuh", &v, &gpuh, NULL), QP_OK);
    CU_ASSERT_TRUE(gpuh && v == 1.5e6);
    CU_ASSERT_EQUAL(qp_parse_flops("2.5PFLOPs", "x", &v, NULL), QP_OK);
    CU_ASSERT_DOUBLE_EQUAL(v, 2.5e15, 1);
    CU_ASSERT_EQUAL(qp_parse_flops("3Qflops", "x", &v, NULL), QP_ERR_INPUT);
    /* N from compute and tokens per parameter */
    CU_ASSERT_EQUAL(tu_run_qatplan("--budget 1e22 --tokens-per-param 20 --json", &out, NULL), 0);
    const char *p = out ? strstr(out, "\"recommended_params\":") : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_DOUBLE_EQUAL(strtod(p + 21, NULL), sqrt(1e22 / 120), 1);
    free(out);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_search_finds_compute_optimal_size);
    TU_ADD(s, test_memory_model);
    TU_ADD(s, test_ternary_and_whole_counts);
    TU_ADD(s, test_warnings_grouped_and_complete);
    TU_ADD(s, test_units_at_the_edges);
}

int main(void) { return tu_main("plan_search", add); }
