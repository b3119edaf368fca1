/* The run vocabulary (data/vocab.c): one owner for bit widths, full precision, fraction,
 * schedule, run groups, the best fraction and the parameter count; and the places that used
 * to carry their own copies agree with it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "fit.h"
#include "law.h"
#include "sweep.h"
#include "testutil.h"

static void test_bits(void)
{
    for (int b = -2; b <= 40; b++) {
        int want = (b >= 1 && b <= 8) || b == 16 || b == 32;
        CU_ASSERT_EQUAL(data_bits_valid(b), want);
    }
    CU_ASSERT(!data_bits_is_fp(8));
    CU_ASSERT(data_bits_is_fp(16));
    CU_ASSERT(data_bits_is_fp(32));
    CU_ASSERT_EQUAL(LAW_FP_BITS, DATA_FP_BITS);
}

static void test_fraction_and_schedule(void)
{
    data_run r;
    data_run_init(&r);
    r.n_params = 1e6, r.d_fp = 3e6, r.d_qat = 1e6, r.bits = 4;
    CU_ASSERT_DOUBLE_EQUAL(data_run_fraction(&r), 0.25, 1e-15);
    r.bits = 16;
    CU_ASSERT_EQUAL(data_run_fraction(&r), 0);
    CU_ASSERT_EQUAL(data_schedule_resolve(16, 1, 1, DATA_SCHED_FUSED), DATA_SCHED_FP_ONLY);
    CU_ASSERT_EQUAL(data_schedule_resolve(32, 1, 0, DATA_SCHED_CLASSIC), DATA_SCHED_FP_ONLY);
    CU_ASSERT_EQUAL(data_schedule_resolve(4, 1, 0, DATA_SCHED_FUSED), DATA_SCHED_FP_ONLY);
    CU_ASSERT_EQUAL(data_schedule_resolve(4, 0, 1, DATA_SCHED_CLASSIC), DATA_SCHED_QAT_ONLY);
    CU_ASSERT_EQUAL(data_schedule_resolve(4, 1, 1, DATA_SCHED_FUSED), DATA_SCHED_FUSED);
    CU_ASSERT_EQUAL(data_schedule_resolve(4, 1, 1, DATA_SCHED_CLASSIC), DATA_SCHED_CLASSIC);
    CU_ASSERT_EQUAL(data_schedule_resolve(4, 1, 1, DATA_SCHED_QAT_ONLY), DATA_SCHED_CLASSIC);
}

static void test_groups(void)
{
    CU_ASSERT(data_group_same(1e8, 1e9, 1.019e8, 1.049e9));
    CU_ASSERT(!data_group_same(1e8, 1e9, 1.03e8, 1e9));
    CU_ASSERT(!data_group_same(1e8, 1e9, 1e8, 1.06e9));
}

static void test_best_fraction(void)
{
    /* a parabola in sqrt f with its vertex at f = 0.3: recovered from a coarse grid */
    double f[] = {0, 0.2, 0.4, 0.6, 1}, y[5], fa = 0;
    for (int i = 0; i < 5; i++) y[i] = 2 + (sqrt(f[i]) - sqrt(0.3)) * (sqrt(f[i]) - sqrt(0.3));
    CU_ASSERT_DOUBLE_EQUAL(data_best_fraction(f, y, 5, &fa), 0.3, 1e-12);
    CU_ASSERT_EQUAL(fa, 0.4); /* the grid point nearest the vertex in sqrt f */
    /* minimum at an end: the end */
    for (int i = 0; i < 5; i++) y[i] = 2 - f[i];
    CU_ASSERT_EQUAL(data_best_fraction(f, y, 5, NULL), 1);
    for (int i = 0; i < 5; i++) y[i] = 2 + f[i];
    CU_ASSERT_DOUBLE_EQUAL(data_best_fraction(f, y, 5, NULL), 0, 1e-12);
    CU_ASSERT(isnan(data_best_fraction(f, y, 0, &fa)) && isnan(fa));
}

static void test_shape_params(void)
{
    data_model_shape s = {2, 64, 4, 4, 176, 128, 256};
    /* per layer 64*(64+128) + 64*64 + 3*64*176 + 2*64 = 50304; two layers, a final norm */
    CU_ASSERT_EQUAL(data_shape_params_nonembed(&s), 2 * 50304.0 + 64);
    CU_ASSERT_EQUAL(data_shape_params(&s), 2 * 50304.0 + 64 + 256 * 64);
    /* the sweep fills the defaults (kv heads, d_ff, vocab) and counts with the same rule */
    data_model_shape t = {2, 64, 4, 0, 0, 128, 0};
    CU_ASSERT_EQUAL(sweep_shape_params(&t), data_shape_params(&s));
}

/* The synthetic generator and the readers give every run the same schedule: written as
 * JSONL and as CSV without a schedule column (the reader resolves it from the split). */
static void test_synth_schedules_agree_with_reader(void)
{
    data_law truth;
    fit_synth_true_qat(&truth);
    fit_synth_options o;
    fit_synth_options_init(&o, DATA_LAW_QAT);
    data_run_list syn, js, csv;
    data_run_list_init(&syn), data_run_list_init(&js), data_run_list_init(&csv);
    qp_error err = {0};
    CU_ASSERT_EQUAL_FATAL(fit_synth_runs(&truth, &o, &syn, &err), QP_OK);
    size_t cap = syn.n * 96 + 64, at = 0;
    char *text = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    at += (size_t)snprintf(text, cap, "N,D_fp,D_qat,bits,loss\n");
    int n_fp = 0;
    for (size_t i = 0; i < syn.n; i++) {
        const data_run *r = &syn.runs[i];
        char *j = data_run_to_json(r);
        CU_ASSERT_EQUAL(data_runs_parse_jsonl(j, "synth", &js, &err), QP_OK);
        free(j);
        CU_ASSERT_EQUAL(data_run_validate(r, &err), QP_OK);
        at += (size_t)snprintf(text + at, cap - at, "%.17g,%.17g,%.17g,%d,%.17g\n", r->n_params, r->d_fp, r->d_qat,
                               r->bits, r->loss);
        n_fp += data_run_is_fp(r);
    }
    CU_ASSERT(n_fp > 0); /* the full-precision runs are the case that disagreed */
    CU_ASSERT_EQUAL(data_runs_parse_csv(text, "synth.csv", &csv, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(js.n, syn.n);
    CU_ASSERT_EQUAL_FATAL(csv.n, syn.n);
    int bad = 0;
    for (size_t i = 0; i < syn.n; i++) {
        const data_run *r = &syn.runs[i];
        data_schedule want = data_schedule_resolve(r->bits, r->d_fp, r->d_qat, DATA_SCHED_CLASSIC);
        bad += r->schedule != want || js.runs[i].schedule != want || csv.runs[i].schedule != want;
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(text);
    data_run_list_free(&syn), data_run_list_free(&js), data_run_list_free(&csv);
    data_law_free(&truth);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_bits);
    TU_ADD(s, test_fraction_and_schedule);
    TU_ADD(s, test_groups);
    TU_ADD(s, test_best_fraction);
    TU_ADD(s, test_shape_params);
    TU_ADD(s, test_synth_schedules_agree_with_reader);
}

int main(void) { return tu_main("vocab", add); }
