/* The planner ranks methods: the compute split equals today's token split for full QAT,
 * EfQAT rows get 6/(4+2r) QAT tokens per FLOP of full QAT's, an efficiency law ranks a
 * method, a method without one is shown and not ranked, storage follows spec 6.2, and bad
 * input is one line, exit 2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "testutil.h"

static plan_request base_request(void)
{
    plan_request req;
    plan_request_init(&req);
    req.n_params = 2.2e9;
    req.flops = 1e22;
    return req;
}

/* An efficiency law for `method` with the same eta at every width. */
static void add_eta(plan_laws *laws, const char *method, double eta)
{
    data_law e;
    data_law_init(&e, DATA_LAW_EFFICIENCY);
    for (int i = 0; i < 8; i++) e.coef[i] = eta;
    snprintf(e.prov.run_method, sizeof e.prov.run_method, "%s", method);
    char path[512];
    snprintf(path, sizeof path, "%s", tu_path("eta.json"));
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(data_law_write(path, &e, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(plan_laws_add(laws, path, &err), QP_OK);
}

static void test_qat_compute_split_is_token_split(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req = base_request();
    plan_result *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, a, &err), QP_OK);
    req.methods[0] = PLAN_METHOD_QAT;
    req.n_methods = 1;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, b, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(a->n_rows, b->n_rows);
    CU_ASSERT_EQUAL(a->recommended, b->recommended);
    for (int i = 0; i < a->n_rows; i++) {
        const plan_row *x = &a->rows[i], *y = &b->rows[i];
        CU_ASSERT_EQUAL(y->method, PLAN_METHOD_QAT);
        /* bit for bit: the same optimum, split, losses and intervals */
        CU_ASSERT_EQUAL(x->f_opt, y->f_opt);
        CU_ASSERT_EQUAL(x->d_fp, y->d_fp);
        CU_ASSERT_EQUAL(x->d_qat, y->d_qat);
        CU_ASSERT_EQUAL(x->loss_opt, y->loss_opt);
        CU_ASSERT_EQUAL(x->loss_opt_lo, y->loss_opt_lo);
        CU_ASSERT_DOUBLE_EQUAL(y->qat_flops_per_token, 6 * 2.2e9, 1);
        CU_ASSERT_DOUBLE_EQUAL(y->compute_fraction, y->fraction, 1e-12);
        CU_ASSERT_DOUBLE_EQUAL(x->compute_fraction, x->fraction, 1e-12);
    }
    free(a);
    free(b);
    plan_laws_free(&laws);
}

static void test_efqat_tokens_per_flop(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    add_eta(&laws, "efqat", 1);
    CU_ASSERT(laws.has_eta[PLAN_METHOD_EFQAT]);
    CU_ASSERT(laws.has_penalty); /* the qat law stays */
    plan_request req = base_request();
    req.bits[0] = 2, req.bits[1] = 4, req.n_bits = 2;
    req.methods[0] = PLAN_METHOD_QAT, req.methods[1] = PLAN_METHOD_EFQAT, req.n_methods = 2;
    req.unfrozen = 0.25;
    plan_result *res = malloc(sizeof *res);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(res->n_rows, 4);
    for (int i = 0; i < 2; i++) {
        const plan_row *q = &res->rows[i], *e = &res->rows[2 + i];
        CU_ASSERT_EQUAL(e->method, PLAN_METHOD_EFQAT);
        CU_ASSERT_DOUBLE_EQUAL(e->qat_flops_per_token, 4.5 * 2.2e9, 1);
        /* QAT tokens per QAT FLOP: (D_qat / (x C)) for each; their ratio is 6 / (4 + 2r) */
        double tq = q->d_qat / q->compute_fraction, te = e->d_qat / e->compute_fraction;
        CU_ASSERT_DOUBLE_EQUAL(te / tq, 6 / 4.5, 1e-6);
        /* the budget is spent: 6N D_fp + c D_qat = C */
        CU_ASSERT_DOUBLE_EQUAL(6 * 2.2e9 * e->d_fp + e->qat_flops_per_token * e->d_qat, 1e22, 1e22 * 1e-9);
        /* eta = 1 and cheaper tokens: at least as good as full QAT, never below FP on the same tokens */
        CU_ASSERT(e->rankable && e->valid);
        CU_ASSERT(e->loss_opt <= q->loss_opt + 1e-12);
        CU_ASSERT(e->loss_opt >= e->loss_fp);
        CU_ASSERT(e->d_total > q->d_total);
        CU_ASSERT_DOUBLE_EQUAL(e->eta, 1, 0);
    }
    CU_ASSERT(res->ranked);
    CU_ASSERT_EQUAL(res->rows[res->recommended].method, PLAN_METHOD_EFQAT);
    /* a small eta makes full QAT win */
    add_eta(&laws, "efqat", 0.2);
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT_EQUAL(res->rows[res->recommended].method, PLAN_METHOD_QAT);
    CU_ASSERT(res->rows[2].loss_opt > res->rows[0].loss_opt);
    /* an eta far above 1 would put a quantized model below FP on the same tokens: refused */
    add_eta(&laws, "efqat", 50);
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT(!res->rows[3].valid);
    CU_ASSERT_PTR_NOT_NULL(strstr(res->rows[3].invalid_reason, "below the full-precision loss"));
    CU_ASSERT_EQUAL(res->rows[res->recommended].method, PLAN_METHOD_QAT);
    free(res);
    plan_laws_free(&laws);
}

static int has_warning(const plan_result *r, const char *s)
{
    for (int i = 0; i < r->n_warnings; i++)
        if (strstr(r->warnings[i], s)) return 1;
    return 0;
}

static void test_without_law_not_ranked(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    plan_request req = base_request();
    req.methods[0] = PLAN_METHOD_QAT, req.methods[1] = PLAN_METHOD_EFFICIENTQAT, req.n_methods = 2;
    req.group_size = 64;
    plan_result *res = malloc(sizeof *res);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(res->n_rows, 12);
    for (int i = 6; i < 12; i++) {
        const plan_row *r = &res->rows[i];
        CU_ASSERT(!r->rankable);
        CU_ASSERT(isnan(r->loss_opt) && isnan(r->eta));
        CU_ASSERT(r->d_qat > 0 && isfinite(r->compute_fraction)); /* costs and tokens still shown */
        /* w2g64 stores 2 + 18/64 = 2.28 bits per weight (EfficientQAT Table 11) */
        if (r->bits == 2) CU_ASSERT_DOUBLE_EQUAL(r->storage_bits_per_weight, 2.28125, 1e-12);
    }
    CU_ASSERT_DOUBLE_EQUAL(res->rows[3].storage_bits_per_weight, 4 + 16.0 / 4096, 1e-12);
    CU_ASSERT(res->recommended >= 0 && res->rows[res->recommended].method == PLAN_METHOD_QAT);
    CU_ASSERT(has_warning(res, "no law or efficiency factor for efficientqat: fit one with `qatplan fit --form "
                               "efficiency --method efficientqat RUNS`"));
    /* only an unrankable method: no recommendation */
    req.methods[0] = PLAN_METHOD_EFFICIENTQAT, req.n_methods = 1;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT(!res->ranked);
    CU_ASSERT_EQUAL(res->recommended, -1);
    /* the memory limit holds each method's storage: EfficientQAT's zero points do not fit */
    plan_laws_free(&laws);
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    add_eta(&laws, "efficientqat", 1);
    req.methods[0] = PLAN_METHOD_QAT, req.methods[1] = PLAN_METHOD_EFFICIENTQAT, req.n_methods = 2;
    req.bits[0] = 2, req.n_bits = 1;
    req.memory_bytes = 2.2e9 * 2.1 / 8;
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT_EQUAL(res->rows[0].fits_memory, 1);
    CU_ASSERT_EQUAL(res->rows[1].fits_memory, 0);
    CU_ASSERT_EQUAL(res->recommended, 0);
    free(res);
    plan_laws_free(&laws);
}

/* A qat law fitted to a method's runs (provenance run_method) goes to that method's slot:
 * full QAT keeps the default law; the method is ranked on its own tokens (eta 1). */
static void test_method_law_slot(void)
{
    plan_laws laws;
    CU_ASSERT_EQUAL_FATAL(plan_laws_builtin(&laws, NULL), QP_OK);
    data_law own;
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(law_builtin_own(&own, &err), QP_OK);
    snprintf(own.prov.run_method, sizeof own.prov.run_method, "e2eqp");
    CU_ASSERT_EQUAL_FATAL(data_law_write(tu_path("e2eqp.law.json"), &own, &err), QP_OK);
    data_law_free(&own);
    CU_ASSERT_EQUAL_FATAL(plan_laws_add(&laws, tu_path("e2eqp.law.json"), &err), QP_OK);
    CU_ASSERT(laws.has_method_law[PLAN_METHOD_E2EQP]);
    CU_ASSERT(laws.has_penalty && !laws.has_qat); /* the qat slot is untouched */
    plan_request req = base_request();
    req.n_params = 1e5;
    req.flops = 6e5 * 2e6; /* 2M tokens: inside the own law's range */
    req.bits[0] = 2, req.n_bits = 1;
    req.methods[0] = PLAN_METHOD_E2EQP, req.methods[1] = PLAN_METHOD_QAT, req.n_methods = 2;
    plan_result *res = malloc(sizeof *res);
    /* the default laws are in nats/token, the method's in nats/byte: refused, not ranked together */
    CU_ASSERT_EQUAL(plan_run(&req, &laws, res, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "different units"));
    CU_ASSERT_EQUAL_FATAL(plan_laws_add(&laws, "own", &err), QP_OK); /* full QAT in nats/byte too */
    CU_ASSERT_EQUAL_FATAL(plan_run(&req, &laws, res, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(res->n_rows, 2);
    CU_ASSERT_EQUAL(res->rows[0].method, PLAN_METHOD_E2EQP);
    CU_ASSERT(res->rows[0].rankable && isfinite(res->rows[0].loss_opt));
    CU_ASSERT_DOUBLE_EQUAL(res->rows[0].eta, 1, 0);
    /* the same law, but e2eqp's QAT tokens cost 4N instead of 6N: more of them, a lower loss */
    CU_ASSERT(res->rows[0].d_qat / res->rows[0].compute_fraction > res->rows[1].d_qat / res->rows[1].compute_fraction);
    CU_ASSERT(res->rows[0].loss_opt < res->rows[1].loss_opt);
    CU_ASSERT_EQUAL(res->recommended, 0);
    /* an unknown method in a law's provenance is refused, naming it */
    data_law bad;
    CU_ASSERT_EQUAL_FATAL(law_builtin_own(&bad, &err), QP_OK);
    snprintf(bad.prov.run_method, sizeof bad.prov.run_method, "magic");
    CU_ASSERT_EQUAL_FATAL(data_law_write(tu_path("magic.law.json"), &bad, &err), QP_OK);
    data_law_free(&bad);
    CU_ASSERT_EQUAL(plan_laws_add(&laws, tu_path("magic.law.json"), &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "magic"));
    free(res);
    plan_laws_free(&laws);
}

static void test_costs(void)
{
    plan_request req;
    plan_request_init(&req);
    double n = 1e9;
    CU_ASSERT_DOUBLE_EQUAL(plan_qat_flops_per_token(&req, PLAN_METHOD_QAT, n), 6e9, 1);
    CU_ASSERT_DOUBLE_EQUAL(plan_qat_flops_per_token(&req, PLAN_METHOD_EFQAT, n), 4.1e9, 1);
    CU_ASSERT_DOUBLE_EQUAL(plan_qat_flops_per_token(&req, PLAN_METHOD_E2EQP, n), 4e9, 1); /* per-row scales */
    CU_ASSERT_DOUBLE_EQUAL(plan_qat_flops_per_token(&req, PLAN_METHOD_BLOCKAP, n), 16e9, 1);
    req.group_size = 64;
    req.embed_params = 1e8;
    CU_ASSERT_DOUBLE_EQUAL(plan_qat_flops_per_token(&req, PLAN_METHOD_E2EQP, n), 4e9 + 1.8e9, 1);
    /* half the FLOPs each at 16 N_body and 4N + 2 N_lin: tokens = C/2 (1/c_b + 1/c_e) */
    double cb = 16 * 0.9e9, ce = 5.8e9, c = plan_qat_flops_per_token(&req, PLAN_METHOD_EFFICIENTQAT, n);
    CU_ASSERT_DOUBLE_EQUAL(1 / c, 0.5 / cb + 0.5 / ce, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(plan_storage_bytes(&req, PLAN_METHOD_EFFICIENTQAT, n, 2),
                           0.9e9 * (2 + 18.0 / 64) / 8 + 1e8 * 2, 1);
}

static void test_cli_methods(void)
{
    char *out = NULL, *err = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("plan --params 2.2B --budget 1e22 --method qat,efqat,efficientqat --unfrozen 0.05 "
                                   "--group-size 64", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "efficientqat"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "no law or efficiency factor for efqat: fit one with `qatplan fit --form "
                                       "efficiency --method efqat RUNS`"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Recommendation: qat at"));
    free(out), free(err);
    CU_ASSERT_EQUAL(tu_run_qatplan("plan --params 2.2B --budget 1e22 --method qat,efqat --json", &out, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"methods\":\t[\"qat\", \"efqat\"]"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"compute_fraction\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"storage_bytes\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"qat_flops_per_token\""));
    free(out), free(err);
    /* bad input: one line, exit 2 */
    const char *bad[] = {"plan --params 2.2B --budget 1e22 --method qat,banana",
                         "plan --params 2.2B --budget 1e22 --method efqat --unfrozen 1.5",
                         "plan --params 2.2B --budget 1e22 --method efqat,efqat",
                         "plan --budget 1e22 --method efqat",
                         "plan --params 2.2B --budget 1e22 --method ''"};
    const char *says[] = {"banana", "--unfrozen", "twice", "--params", "empty"};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(tu_run_qatplan(bad[i], &out, &err), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, says[i]));
        CU_ASSERT_PTR_NULL(strchr(err, '\n') ? strchr(strchr(err, '\n') + 1, '\n') : NULL); /* one line */
        free(out), free(err);
    }
}

/* Plans without --method are today's: the README's headline block is the command's output
 * byte for byte, and --method qat adds keys to the JSON rows but changes no value. */
static void test_without_method_unchanged(void)
{
    char *readme = tu_read(QP_SOURCE_DIR "/README.md", NULL), *out = NULL, *err = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(readme);
    const char *cmd = "$ qatplan --params 2.2B --budget 1e22\n";
    char *blk = strstr(readme, cmd);
    CU_ASSERT_PTR_NOT_NULL_FATAL(blk);
    blk += strlen(cmd);
    char *end = strstr(blk, "```");
    CU_ASSERT_PTR_NOT_NULL_FATAL(end);
    *end = 0;
    CU_ASSERT_EQUAL(tu_run_qatplan("--params 2.2B --budget 1e22", &out, &err), 0);
    CU_ASSERT_STRING_EQUAL(out, blk);
    free(out), free(err), free(readme);
    char *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL(tu_run_qatplan("plan --params 2.2B --budget 1e22 --json", &a, &err), 0);
    free(err);
    CU_ASSERT_EQUAL(tu_run_qatplan("plan --params 2.2B --budget 1e22 --json --method qat", &b, &err), 0);
    free(err);
    /* every line of the plain plan's rows appears in the same order in the --method qat plan
     * (a row's last key gains a comma there) */
    char *pa = strstr(a, "\"rows\""), *pb = strstr(b, "\"rows\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(pa);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pb);
    char *stop = strstr(pa, "\"recommended_bits\"");
    int lines = 0;
    for (char *l = strchr(pa, '\n') + 1; l && l < stop; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t n = strcspn(l, "\n");
        if (n && l[n - 1] == ',') n--;
        char line[256];
        snprintf(line, sizeof line, "\n%.*s", (int)n, l);
        char *hit = strstr(pb, line);
        CU_ASSERT_PTR_NOT_NULL(hit);
        if (hit) pb = hit + 1;
        lines++;
    }
    CU_ASSERT(lines > 100);
    free(a), free(b);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_without_method_unchanged);
    TU_ADD(s, test_qat_compute_split_is_token_split);
    TU_ADD(s, test_efqat_tokens_per_flop);
    TU_ADD(s, test_without_law_not_ranked);
    TU_ADD(s, test_costs);
    TU_ADD(s, test_method_law_slot);
    TU_ADD(s, test_cli_methods);
}

int main(void) { return tu_main("plan_methods", add); }
