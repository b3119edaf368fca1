/* The CUDA backend against the CPU trainer: one step's loss and every gradient tensor from
 * the same parameters and batch (full precision and each quantizer), and the loss curve of
 * a short run, at fp32 and bf16. Each test says SKIPPED, with the reason, when this build
 * has no CUDA backend or the machine no GPU (CI has none); then the suite exits 77 and CTest
 * reports it as skipped. Tolerances are stated
 * here and in docs/trainer.md, "CUDA backend". The CLI side (--device cuda without a GPU,
 * --device auto's fallback) is tested in test_train.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

/* fp32: cuBLAS and the kernels sum in other orders than OpenBLAS and the OpenMP loops. */
#define FP32_LOSS_REL 1e-5 /* one step's loss, relative */
#define FP32_GRAD_REL 1e-4 /* per tensor: max |g_gpu - g_cpu| / max |g_cpu| */
#define FP32_CURVE_REL 1e-3 /* each step's training loss over a 200-step run */
/* bf16 products (8-bit mantissa inputs, fp32 accumulation) */
#define BF16_LOSS_REL 1e-2
#define BF16_GRAD_REL 5e-2
#define BF16_CURVE_REL 2e-2

static int have_gpu(void)
{
    char why[256];
    if (train_cuda_devices(why, sizeof why) > 0) return 1;
    tu_skip("no CUDA GPU: %s", why);
    return 0;
}

#ifdef QATPLAN_HAVE_CUDA

/* Tokens from a small random Markov chain: a model can learn it, so losses fall. */
static void make_tokens(uint16_t *t, size_t n, uint64_t seed)
{
    uint64_t st = seed;
    uint16_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = train_rng_next(&st);
        prev = (uint16_t)(r % 4 == 0 ? (unsigned)(r % 64) : (prev * 7u + 3u) % 64u + 32u);
        t[i] = prev;
    }
}

typedef struct {
    const char *name;
    train_qspec q;
    int qat_embed;
} qcase;

static const qcase cases[] = {
    {"fp", {TRAIN_Q_NONE, 32, 0, 0}, 0},
    {"binary", {TRAIN_Q_BINARY, 1, 0, 0}, 0},
    {"ternary", {TRAIN_Q_TERNARY, 2, 0, 0}, 0},
    {"seq 2-bit", {TRAIN_Q_SEQ, 2, 0, 0}, 0},
    {"lsq 4-bit + 8-bit embeddings", {TRAIN_Q_LSQ, 4, 0, 8}, 1},
    {"asym 3-bit group 16", {TRAIN_Q_ASYM, 3, 16, 0}, 0},
};

/* grouped KV heads (4 query heads share 2) so the K/V gradient sums are exercised */
static const train_shape tiny = {2, 64, 4, 2, 0, 32, 256};

static qp_status setup(model *m, const train_qspec *q, int B, train_shape *s)
{
    qp_error err;
    *s = tiny;
    qp_status st = train_shape_finish(s, &err);
    if (!st) st = model_create(m, s, q, B, s->context, &err);
    if (st) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return st;
    }
    model_init(m, 11);
    if (q->kind != TRAIN_Q_NONE) model_quant_init(m);
    return QP_OK;
}

static double max_abs(const float *x, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)x[i]));
    return mx;
}

static void one_step(int bf16, double loss_tol, double grad_tol)
{
    if (!have_gpu()) return;
    int B = 4;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const qcase *qc = &cases[k];
        model m;
        train_shape s;
        CU_ASSERT_EQUAL_FATAL(setup(&m, &qc->q, B, &s), QP_OK);
        int T = s.context;
        uint16_t *tok = malloc(((size_t)B * T + 1) * sizeof *tok);
        make_tokens(tok, (size_t)B * T + 1, 5 + k);
        m.qat = qc->q.kind != TRAIN_Q_NONE;
        m.qat_embed = qc->qat_embed;
        cuda_model *g = NULL;
        qp_error err;
        CU_ASSERT_EQUAL_FATAL(model_cuda_create(&g, &m, bf16, &err), QP_OK);
        double gn_gpu, gn_cpu;
        float l_gpu = cuda_forward_backward(g, tok, tok + 1, B, m.qat, m.qat_embed, &gn_gpu);
        float *gg = malloc(m.n_floats * sizeof *gg);
        cuda_download(g, NULL, NULL, NULL, gg);
        CU_ASSERT_EQUAL(model_cuda_check(g, &err), QP_OK);
        float l_cpu = train_forward_backward(&m, tok, tok + 1, B, T, &gn_cpu);
        double rel = fabs((double)l_gpu - l_cpu) / fabs((double)l_cpu);
        fprintf(stderr, "%s %s: loss cpu %.7f gpu %.7f (rel %.2e), grad norm cpu %.6g gpu %.6g\n",
                bf16 ? "bf16" : "fp32", qc->name, l_cpu, l_gpu, rel, gn_cpu, gn_gpu);
        CU_ASSERT(rel <= loss_tol);
        CU_ASSERT(fabs(gn_gpu - gn_cpu) <= grad_tol * gn_cpu);
        for (int i = 0; i < MODEL_NT; i++) {
            size_t n = m.numel[i];
            if (!n) continue;
            const float *a = m.g.t[i], *b = gg + m.off[i];
            double ref = max_abs(a, n), diff = 0;
            for (size_t j = 0; j < n; j++) diff = fmax(diff, fabs((double)a[j] - b[j]));
            double r = ref > 0 ? diff / ref : diff;
            if (!(r <= grad_tol))
                fprintf(stderr, "  %s: gradient of %s: max diff %.3g, max |g| %.3g (rel %.2e > %.0e)\n",
                        qc->name, m.desc[i].name, diff, ref, r, grad_tol);
            CU_ASSERT(r <= grad_tol);
        }
        free(gg);
        free(tok);
        cuda_model_free(g);
        model_free(&m);
    }
}

/* 200 steps (150 FP, then 50 of 4-bit LSQ QAT, as a classic run switches) on the same
 * batches: each step's loss within the tolerance. */
static void curve(int bf16, double tol)
{
    if (!have_gpu()) return;
    int B = 4, steps = 200, n_fp = 150;
    train_qspec q = {TRAIN_Q_LSQ, 4, 0, 0};
    model m, mg; /* the CPU run; a host copy of the GPU run's parameters for the switch */
    train_shape s;
    CU_ASSERT_EQUAL_FATAL(setup(&m, &q, B, &s), QP_OK);
    CU_ASSERT_EQUAL_FATAL(setup(&mg, &q, 1, &s), QP_OK);
    int T = s.context;
    train_config c;
    train_config_default(&c);
    size_t ntok = 1 << 16;
    uint16_t *data = malloc(ntok * sizeof *data), *inp = malloc((size_t)B * T * 2),
             *tgt = malloc((size_t)B * T * 2);
    make_tokens(data, ntok, 99);
    cuda_model *g = NULL;
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(model_cuda_create(&g, &m, bf16, &err), QP_OK);
    cuda_adam hp = {3e-3, c.weight_decay, c.beta1, c.beta2, c.adam_eps, c.grad_clip};
    uint64_t rng = 7;
    double worst = 0, first = NAN, last = NAN;
    for (int step = 0; step < steps; step++) {
        if (step == n_fp) {
            /* the switch as train.c does it, each run from its own weights: the GPU's step
             * sizes are initialised on a host copy of its parameters */
            model_quant_init(&m);
            cuda_download(g, mg.params_mem, mg.m_mem, mg.v_mem, NULL);
            model_quant_init(&mg);
            cuda_upload(g, mg.params_mem, mg.m_mem, mg.v_mem);
            m.qat = 1;
        }
        for (int b = 0; b < B; b++) {
            size_t off = train_rng_next(&rng) % (ntok - T - 1);
            memcpy(inp + (size_t)b * T, data + off, T * sizeof *inp);
            memcpy(tgt + (size_t)b * T, data + off + 1, T * sizeof *tgt);
        }
        double gc, gg;
        float lc = train_forward_backward(&m, inp, tgt, B, T, &gc);
        train_update(&m, &c, hp.lr, step + 1, gc);
        float lg = cuda_forward_backward(g, inp, tgt, B, m.qat, 0, &gg);
        cuda_update(g, &hp, step + 1, gg);
        double rel = fabs((double)lg - lc) / lc;
        if (rel > worst) worst = rel;
        if (step == 0) first = lc;
        last = lc;
        if (!(rel <= tol)) fprintf(stderr, "  step %d: loss cpu %.6f gpu %.6f (rel %.2e)\n", step, lc, lg, rel);
    }
    CU_ASSERT_EQUAL(model_cuda_check(g, &err), QP_OK);
    fprintf(stderr, "%s curve: loss %.4f -> %.4f, worst relative difference %.2e (limit %.0e)\n",
            bf16 ? "bf16" : "fp32", first, last, worst, tol);
    CU_ASSERT(last < first - 1.0); /* it learned: the comparison is not between two flat lines */
    CU_ASSERT(worst <= tol);
    cuda_model_free(g);
    free(data);
    free(inp);
    free(tgt);
    model_free(&m);
    model_free(&mg);
}

static void test_step_fp32(void) { one_step(0, FP32_LOSS_REL, FP32_GRAD_REL); }
static void test_step_bf16(void) { one_step(1, BF16_LOSS_REL, BF16_GRAD_REL); }
static void test_curve_fp32(void) { curve(0, FP32_CURVE_REL); }
static void test_curve_bf16(void) { curve(1, BF16_CURVE_REL); }

#else /* no CUDA backend in this build */

static void skipped(void) { have_gpu(); }
static void test_step_fp32(void) { skipped(); }
static void test_step_bf16(void) { skipped(); }
static void test_curve_fp32(void) { skipped(); }
static void test_curve_bf16(void) { skipped(); }

#endif

static void add(CU_pSuite s)
{
    TU_ADD(s, test_step_fp32);
    TU_ADD(s, test_step_bf16);
    TU_ADD(s, test_curve_fp32);
    TU_ADD(s, test_curve_bf16);
}

int main(void) { return tu_main("train_cuda", add); }
