/* The trainer's matrix products (trainer/gemm.c): oneDNN's fp32 kernel agrees with OpenBLAS's
 * (both transposes, strides, alpha and beta), the bf16 products are fp32 products of the
 * bf16-rounded inputs, and the rounding is to nearest even. The oneDNN cases say SKIPPED
 * where the build has no oneDNN. Tolerances are stated here and in docs/trainer.md. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "testutil.h"

/* fp32, kernel against kernel: max |C1 - C2| / max |C2| (different summation orders only) */
#define F32_AGREE_REL 1e-5
/* bf16 kernel against fp32 on the rounded inputs: the same products, other summation order */
#define BF16_SAME_REL 1e-5
/* bf16 against fp32 on the unrounded inputs: 8-bit mantissas, errors partly cancel in a sum */
#define BF16_VS_F32_REL 1e-2

static uint64_t rng = 12345;
static float frand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct { int tA, tB, M, N, K, lda, ldb, ldc; float alpha, beta; } shape;

/* The cases: every transpose pair, odd sizes, row strides wider than the rows, beta 0 and 1. */
static const shape cases[] = {
    {0, 1, 64, 96, 128, 128, 128, 96, 1.0f, 0.0f},
    {0, 0, 37, 53, 71, 80, 60, 64, 1.0f, 0.0f},
    {1, 0, 48, 40, 300, 56, 44, 40, 1.0f, 1.0f},
    {1, 1, 17, 33, 29, 20, 35, 40, 0.5f, 1.0f},
    {0, 1, 256, 512, 384, 384, 384, 512, 0.125f, 0.0f},
};

static float *fill(size_t n)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) x[i] = frand();
    return x;
}

static double max_rel(const float *a, const float *b, const shape *s)
{
    double d = 0, m = 0;
    for (int i = 0; i < s->M; i++)
        for (int j = 0; j < s->N; j++) {
            double x = a[(size_t)i * s->ldc + j], y = b[(size_t)i * s->ldc + j];
            d = fmax(d, fabs(x - y));
            m = fmax(m, fabs(y));
        }
    return d / m;
}

typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int, float,
                        float *, int);

/* Runs f on the case (C starts from c0) into out. */
static void run(gemm_fn f, const shape *s, const float *A, const float *B, const float *c0, float *out)
{
    memcpy(out, c0, (size_t)s->M * s->ldc * sizeof *out);
    f(s->tA, s->tB, s->M, s->N, s->K, s->alpha, A, s->lda, B, s->ldb, s->beta, out, s->ldc);
}

/* A case's operands, filled: A, B and the starting C. nan_c: where beta is 0, every third
 * element of C is NaN, so that a kernel reading C (it must not) shows in the result. */
typedef struct {
    float *A, *B, *c0;
    size_t na, nb, nc;
} operands;

static operands operands_make(const shape *s, int nan_c)
{
    operands o;
    o.na = (size_t)(s->tA ? s->K : s->M) * s->lda;
    o.nb = (size_t)(s->tB ? s->N : s->K) * s->ldb;
    o.nc = (size_t)s->M * s->ldc;
    o.A = fill(o.na), o.B = fill(o.nb), o.c0 = fill(o.nc);
    CU_ASSERT_FATAL(o.A && o.B && o.c0);
    if (nan_c && s->beta == 0.0f)
        for (size_t j = 0; j < o.nc; j += 3) o.c0[j] = NAN;
    return o;
}

static void operands_free(operands *o) { free(o->A), free(o->B), free(o->c0); }

/* The columns past N in each row of C (ldc > N) are left alone, bit for bit. */
static void assert_tail_untouched(const shape *s, const float *out, const float *c0)
{
    for (int r = 0; r < s->M; r++)
        for (int j = s->N; j < s->ldc; j++)
            CU_ASSERT(memcmp(&out[(size_t)r * s->ldc + j], &c0[(size_t)r * s->ldc + j], sizeof *out) == 0);
}

static void round_copy(float *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = train_bf16_round(x[i]);
}

/* checks one case; dnn: compare the oneDNN and OpenBLAS fp32 kernels */
static void check_case(const shape *s, int dnn)
{
    operands o = operands_make(s, 0);
    const float *A = o.A, *B = o.B, *c0 = o.c0;
    size_t na = o.na, nb = o.nb, nc = o.nc;
    float *r1 = malloc(nc * 4), *r2 = malloc(nc * 4), *Ar = malloc(na * 4), *Br = malloc(nb * 4);
    CU_ASSERT_FATAL(r1 && r2 && Ar && Br);
    qp_error err;
    if (dnn) {
        CU_ASSERT_EQUAL_FATAL(train_gemm_set_kernel(TRAIN_GEMM_OPENBLAS, &err), QP_OK);
        run(train_gemm_f32, s, A, B, c0, r1);
        CU_ASSERT_EQUAL_FATAL(train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err), QP_OK);
        run(train_gemm_f32, s, A, B, c0, r2);
        double rel = max_rel(r2, r1, s);
        fprintf(stderr, "[%d%d %dx%dx%d] onednn vs openblas fp32 %.2e; ", s->tA, s->tB, s->M, s->N, s->K, rel);
        CU_ASSERT(rel <= F32_AGREE_REL);
    } else {
        round_copy(Ar, A, na);
        round_copy(Br, B, nb);
        run(train_gemm_f32, s, Ar, Br, c0, r1);
        run(train_gemm_bf16, s, A, B, c0, r2);
        double same = max_rel(r2, r1, s);
        run(train_gemm_f32, s, A, B, c0, r1);
        double vs = max_rel(r2, r1, s);
        fprintf(stderr, "[%d%d %dx%dx%d] bf16 vs rounded fp32 %.2e, vs fp32 %.2e; ", s->tA, s->tB, s->M, s->N,
                s->K, same, vs);
        CU_ASSERT(same <= BF16_SAME_REL);
        CU_ASSERT(vs <= BF16_VS_F32_REL);
        CU_ASSERT(vs > 0); /* the inputs really were rounded */
        /* train_gemm follows the process's precision */
        train_gemm_set_bf16(1);
        run(train_gemm, s, A, B, c0, r1);
        train_gemm_set_bf16(0);
        CU_ASSERT(max_rel(r1, r2, s) <= BF16_SAME_REL);
    }
    assert_tail_untouched(s, r2, c0);
    operands_free(&o);
    free(r1), free(r2), free(Ar), free(Br);
}

static void test_onednn_agrees_with_openblas(void)
{
    qp_error err;
    if (train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err) != QP_OK) {
        tu_skip("%s", err.msg);
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 1);
    CU_ASSERT_EQUAL(strncmp(train_gemm_backend_name(), "onednn-", 7), 0);
    train_gemm_set_kernel(TRAIN_GEMM_OPENBLAS, &err);
    CU_ASSERT_EQUAL(strncmp(train_gemm_backend_name(), "openblas", 8), 0);
    train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err);
    fprintf(stderr, "%s\n", train_gemm_backend_name());
}

/* oneDNN's fp32 products split by rows of C over 2 threads (op(B) transposed, K > N): they
 * agree with OpenBLAS as the unsplit ones do (row counts not a multiple of the 16-row
 * blocks, strides, alpha, beta 1 and, with NaN in C, beta 0), leave the columns past N alone,
 * and equal oneDNN's product on 1 thread bit for bit (each block is the same single-threaded
 * kernel). The last case is w2's forward at (8, 384), 1024 rows of its 4096. */
static void test_f32_row_split(void)
{
    qp_error err;
    if (train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err) != QP_OK) {
        tu_skip("%s", err.msg);
        return;
    }
    static const shape split[] = {
        {0, 1, 301, 72, 200, 208, 200, 80, 0.5f, 1.0f},
        {1, 1, 260, 40, 96, 270, 100, 40, 1.0f, 0.0f},
        {0, 1, 1024, 384, 1024, 1024, 1024, 384, 1.0f, 0.0f},
    };
    int nt0 = omp_get_max_threads();
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) {
        const shape *s = &split[i];
        CU_ASSERT(train_gemm_f32_row_split(s->tB, s->M, s->N, s->K, 2));
        omp_set_num_threads(2);
        check_case(s, 1);
        operands o = operands_make(s, 1);
        float *two = malloc(o.nc * 4), *one = malloc(o.nc * 4);
        CU_ASSERT_FATAL(two && one);
        run(train_gemm_f32, s, o.A, o.B, o.c0, two);
        omp_set_num_threads(1);
        run(train_gemm_f32, s, o.A, o.B, o.c0, one);
        int nan = 0;
        for (int r = 0; r < s->M; r++)
            for (int j = 0; j < s->N; j++) nan += isnan(two[(size_t)r * s->ldc + j]);
        CU_ASSERT_EQUAL(nan, 0);
        CU_ASSERT_EQUAL(memcmp(two, one, o.nc * 4), 0);
        assert_tail_untouched(s, two, o.c0);
        operands_free(&o);
        free(two), free(one);
    }
    /* not split: B not transposed, K <= N, or too few rows for the threads */
    CU_ASSERT(!train_gemm_f32_row_split(0, 4096, 384, 1024, 2));
    CU_ASSERT(!train_gemm_f32_row_split(1, 4096, 384, 384, 2));
    CU_ASSERT(!train_gemm_f32_row_split(1, 100, 64, 128, 2));
    CU_ASSERT(!train_gemm_f32_row_split(1, 4096, 384, 1024, 1));
    omp_set_num_threads(nt0);
    fprintf(stderr, "\n");
}

static void test_bf16_products(void)
{
    for (int k = 0; k < 2; k++) {
        qp_error err;
        /* the oneDNN bf16 kernel where built, and the rounding fallback (fp32 on OpenBLAS) */
        if (train_gemm_set_kernel(k ? TRAIN_GEMM_OPENBLAS : TRAIN_GEMM_ONEDNN, &err) != QP_OK) continue;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], 0);
        fprintf(stderr, "(%s)\n", train_gemm_backend_name());
    }
    /* the same shapes again come from the primitive cache and give the same numbers */
    check_case(&cases[0], 0);
    train_gemm_release();
    check_case(&cases[0], 0);
    train_gemm_release();
}

/* Within a reuse scope the second product reads the first one's bf16 copy of A (stored the
 * same way, read transposed): the same numbers as without reuse; a new scope converts again. */
static void test_bf16_reuse(void)
{
    enum { R = 64, C = 48, N2 = 40 };
    float *A = fill(R * C), *B1 = fill(C * N2), *B2 = fill(R * N2), *c1 = calloc(R * N2, 4),
          *c2 = calloc(C * N2, 4), *r1 = calloc(R * N2, 4), *r2 = calloc(C * N2, 4);
    CU_ASSERT_FATAL(A && B1 && B2 && c1 && c2 && r1 && r2);
    qp_error err;
    train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err); /* where built; else the fallback stays */
    train_gemm_bf16(0, 0, R, N2, C, 1.0f, A, C, B1, N2, 0.0f, r1, N2);
    train_gemm_bf16(1, 0, C, N2, R, 1.0f, A, C, B2, N2, 0.0f, r2, N2);
    train_gemm_stats g;
    train_gemm_stats_take(&g);
    train_gemm_stats_enable(1);
    train_gemm_reuse(1);
    train_gemm_bf16(0, 0, R, N2, C, 1.0f, A, C, B1, N2, 0.0f, c1, N2);
    train_gemm_bf16(1, 0, C, N2, R, 1.0f, A, C, B2, N2, 0.0f, c2, N2);
    train_gemm_reuse(0);
    train_gemm_stats_enable(0);
    train_gemm_stats_take(&g);
    /* A converted once where oneDNN does the products (the fallback rounds its own copies) */
    if (train_gemm_kernel_now() == TRAIN_GEMM_ONEDNN) CU_ASSERT_EQUAL(g.converted, R * C + C * N2 + R * N2);
    CU_ASSERT_EQUAL(memcmp(c1, r1, sizeof(float) * R * N2), 0);
    CU_ASSERT_EQUAL(memcmp(c2, r2, sizeof(float) * C * N2), 0);
    /* A changes between scopes: the next scope sees the new values */
    for (int i = 0; i < R * C; i++) A[i] = -A[i];
    train_gemm_reuse(1);
    train_gemm_bf16(0, 0, R, N2, C, 1.0f, A, C, B1, N2, 0.0f, c1, N2);
    train_gemm_reuse(0);
    for (int i = 0; i < R * N2; i++) CU_ASSERT_EQUAL(c1[i], -r1[i]);
    free(A), free(B1), free(B2), free(c1), free(c2), free(r1), free(r2);
}

/* A keep scope: the marked product's inputs are converted once; later products reading the
 * same arrays the same way (B of a dX product: the weight, untransposed; B of a dW product:
 * the activation) use those copies, with the same numbers as converting again; unmarked
 * inputs (dout) are converted as before; a new scope converts again and sees new values. */
static void test_bf16_keep(void)
{
    enum { N = 64, C = 48, R = 40 };
    float *x = fill(N * C), *w = fill(R * C), *dy = fill(N * R), *y = calloc(N * R, 4), *dx = calloc(N * C, 4),
          *dw = calloc(R * C, 4), *ry = calloc(N * R, 4), *rdx = calloc(N * C, 4), *rdw = calloc(R * C, 4);
    CU_ASSERT_FATAL(x && w && dy && y && dx && dw && ry && rdx && rdw);
    qp_error err;
    train_gemm_set_kernel(TRAIN_GEMM_ONEDNN, &err); /* where built; else the fallback stays */
    for (int pass = 0; pass < 3; pass++) {
        /* reference: no scope */
        train_gemm_bf16(0, 1, N, R, C, 1.0f, x, C, w, C, 0.0f, ry, R);
        train_gemm_bf16(0, 0, N, C, R, 1.0f, dy, R, w, C, 0.0f, rdx, C);
        train_gemm_bf16(1, 0, R, C, N, 1.0f, dy, R, x, C, 0.0f, rdw, C);
        train_gemm_stats g;
        train_gemm_stats_take(&g);
        train_gemm_stats_enable(1);
        train_gemm_keep(1);
        train_gemm_keep_mark(1);
        train_gemm_bf16(0, 1, N, R, C, 1.0f, x, C, w, C, 0.0f, y, R);
        train_gemm_keep_mark(0);
        train_gemm_bf16(0, 0, N, C, R, 1.0f, dy, R, w, C, 0.0f, dx, C);
        train_gemm_bf16(1, 0, R, C, N, 1.0f, dy, R, x, C, 0.0f, dw, C);
        train_gemm_keep(0);
        train_gemm_stats_enable(0);
        train_gemm_stats_take(&g);
        /* x and w once, dy twice (no reuse scope here) */
        if (train_gemm_kernel_now() == TRAIN_GEMM_ONEDNN) CU_ASSERT_EQUAL(g.converted, N * C + R * C + 2 * N * R);
        CU_ASSERT_EQUAL(memcmp(y, ry, sizeof(float) * N * R), 0);
        CU_ASSERT_EQUAL(memcmp(dx, rdx, sizeof(float) * N * C), 0);
        CU_ASSERT_EQUAL(memcmp(dw, rdw, sizeof(float) * R * C), 0);
        /* the next step's values (the scope opened again must not read the old copies) */
        for (int i = 0; i < N * C; i++) x[i] = frand();
        for (int i = 0; i < R * C; i++) w[i] = frand();
    }
    train_gemm_release();
    free(x), free(w), free(dy), free(y), free(dx), free(dw), free(ry), free(rdx), free(rdw);
}

/* Inside a parallel region (attention's per-head products) each thread's bf16 product runs on
 * that thread: the AVX512_BF16 kernel where the CPU has it, else the rounding fallback. Both
 * threads at once, each on its own C, give the fp32 product of the rounded inputs; beta 0 does
 * not read C (NaN there stays out of the result); the columns past N are left alone. */
static void test_bf16_in_parallel(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const shape *s = &cases[i];
        operands o = operands_make(s, 1);
        const float *A = o.A, *B = o.B, *c0 = o.c0;
        size_t na = o.na, nb = o.nb, nc = o.nc;
        float *ref = malloc(nc * 4), *out[2] = {malloc(nc * 4), malloc(nc * 4)};
        CU_ASSERT_FATAL(ref && out[0] && out[1]);
        float *Ar = malloc(na * 4), *Br = malloc(nb * 4);
        CU_ASSERT_FATAL(Ar && Br);
        round_copy(Ar, A, na);
        round_copy(Br, B, nb);
        run(train_gemm_f32, s, Ar, Br, c0, ref);
        int inpar[2] = {0, 0};
        float *viag[2] = {malloc(nc * 4), malloc(nc * 4)};
        CU_ASSERT_FATAL(viag[0] && viag[1]);
        train_gemm_set_bf16(1);
#pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            if (t < 2) {
                inpar[t] = omp_in_parallel();
                run(train_gemm_bf16, s, A, B, c0, out[t]);
                run(train_gemm, s, A, B, c0, viag[t]); /* follows the process's precision */
            }
        }
        train_gemm_set_bf16(0);
        for (int t = 0; t < 2; t++) {
            double rel = max_rel(out[t], ref, s);
            CU_ASSERT(inpar[t]);
            CU_ASSERT_EQUAL(memcmp(viag[t], out[t], nc * 4), 0);
            free(viag[t]);
            CU_ASSERT(rel <= BF16_SAME_REL);
            if (t == 0)
                fprintf(stderr, "[%d%d %dx%dx%d] in parallel: bf16 vs rounded fp32 %.2e; ", s->tA, s->tB, s->M,
                        s->N, s->K, rel);
            assert_tail_untouched(s, out[t], c0);
        }
        operands_free(&o);
        free(ref), free(out[0]), free(out[1]), free(Ar), free(Br);
    }
    fprintf(stderr, "\n");
}

/* fp32 on the calling thread (attention's per-head products, train_gemm_f32_1t): the AVX-512
 * kernel where the CPU has it, else train_gemm_f32. Both threads at once, each on its own C,
 * agree with train_gemm_f32 as two fp32 kernels do, and with each other bit for bit (one sum
 * per element, whatever the thread); beta 0 does not read C; the columns past N are left alone. */
static void test_f32_in_parallel(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const shape *s = &cases[i];
        operands o = operands_make(s, 1);
        const float *A = o.A, *B = o.B, *c0 = o.c0;
        size_t nc = o.nc;
        float *ref = malloc(nc * 4), *out[2] = {malloc(nc * 4), malloc(nc * 4)};
        CU_ASSERT_FATAL(ref && out[0] && out[1]);
        run(train_gemm_f32, s, A, B, c0, ref);
        int inpar[2] = {0, 0};
#pragma omp parallel num_threads(2)
        {
            int t = omp_get_thread_num();
            if (t < 2) {
                inpar[t] = omp_in_parallel();
                run(train_gemm_f32_1t, s, A, B, c0, out[t]);
            }
        }
        double rel = max_rel(out[0], ref, s);
        fprintf(stderr, "[%d%d %dx%dx%d] in parallel: f32_1t vs f32 %.2e; ", s->tA, s->tB, s->M, s->N, s->K, rel);
        CU_ASSERT(rel <= F32_AGREE_REL);
        CU_ASSERT(inpar[0] && inpar[1]);
        CU_ASSERT_EQUAL(memcmp(out[0], out[1], nc * 4), 0);
        assert_tail_untouched(s, out[0], c0);
        operands_free(&o);
        free(ref), free(out[0]), free(out[1]);
    }
    fprintf(stderr, "\n");
}

/* Attention's causal products (train_gemm_f32_1t_causal, diag = the chunk's first row r0):
 * with the score matrix S zero for j > i + r0, S V (0,0) and S^T Y (1,0) are the whole
 * products bit for bit (the skipped terms are +-0), and S = Q K^T (0,1) is where j <= i + r0;
 * the FLOPs returned are fewer than 2 M N K where the AVX-512 kernel runs, and 2 M N K (the
 * whole product) or fewer otherwise. Rows 64 (a chunk) and 37 (a short one), keys past 128. */
static void test_f32_causal(void)
{
    const int r0s[2] = {128, 3}, rowss[2] = {64, 37}, hd = 40;
    for (int c = 0; c < 2; c++) {
        int r0 = r0s[c], rows = rowss[c], keys = r0 + rows, ld = keys + 5;
        float *S = fill((size_t)rows * ld), *V = fill((size_t)keys * 48), *Y = fill((size_t)rows * 48);
        float *full = malloc((size_t)keys * 48 * 4), *cz = malloc((size_t)keys * 48 * 4);
        float *Cs = malloc((size_t)rows * ld * 4), *Cf = malloc((size_t)rows * ld * 4);
        CU_ASSERT_FATAL(S && V && Y && full && cz && Cs && Cf);
        for (int i = 0; i < rows; i++)
            for (int j = i + r0 + 1; j < keys; j++) S[(size_t)i * ld + j] = 0.0f;
        uint64_t all = 2ull * rows * keys * hd, got;
        /* (0,0): C[rows, hd] = S V */
        for (size_t j = 0; j < (size_t)keys * 48; j++) full[j] = cz[j] = 0.5f;
        train_gemm_f32_1t(0, 0, rows, hd, keys, 1.0f, S, ld, V, 48, 0.0f, full, 48);
        got = train_gemm_f32_1t_causal(0, 0, rows, hd, keys, 1.0f, S, ld, V, 48, 0.0f, cz, 48, r0);
        CU_ASSERT_EQUAL(memcmp(full, cz, (size_t)rows * 48 * 4), 0);
        CU_ASSERT(got > 0 && got <= all);
        /* (1,0): C[keys, hd] += S^T Y */
        for (size_t j = 0; j < (size_t)keys * 48; j++) full[j] = cz[j] = 0.5f;
        train_gemm_f32_1t(1, 0, keys, hd, rows, 1.0f, S, ld, Y, 48, 1.0f, full, 48);
        got = train_gemm_f32_1t_causal(1, 0, keys, hd, rows, 1.0f, S, ld, Y, 48, 1.0f, cz, 48, r0);
        CU_ASSERT_EQUAL(memcmp(full, cz, (size_t)keys * 48 * 4), 0);
        CU_ASSERT(got > 0 && got <= all);
        /* (0,1): C[rows, keys] = Q K^T (Q = Y's rows, K = V's), where j <= i + r0 */
        train_gemm_f32_1t(0, 1, rows, keys, hd, 0.125f, Y, 48, V, 48, 0.0f, Cf, ld);
        uint64_t g01 = train_gemm_f32_1t_causal(0, 1, rows, keys, hd, 0.125f, Y, 48, V, 48, 0.0f, Cs, ld, r0);
        int same = 1;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j <= i + r0; j++) same &= memcmp(&Cf[(size_t)i * ld + j], &Cs[(size_t)i * ld + j], 4) == 0;
        CU_ASSERT(same);
        CU_ASSERT(g01 > 0 && g01 <= all);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (__builtin_cpu_supports("avx512f")) CU_ASSERT(g01 < all && got < all);
#endif
        fprintf(stderr, "[rows %d keys %d] causal FLOPs %.3f of the whole (0,1); ", rows, keys, (double)g01 / all);
        free(S), free(V), free(Y), free(full), free(cz), free(Cs), free(Cf);
    }
    fprintf(stderr, "\n");
}

static void test_bf16_rounding(void)
{
    struct { uint32_t in, out; } v[] = {
        {0x3f800000u, 0x3f80}, /* 1 exact */
        {0x3f808000u, 0x3f80}, /* halfway, even below: down */
        {0x3f818000u, 0x3f82}, /* halfway, odd below: up */
        {0x3f808001u, 0x3f81}, /* above halfway: up */
        {0xbf80ffffu, 0xbf81}, /* negative: magnitude rounds */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to +inf, as IEEE does */
        {0x7f800000u, 0x7f80}, /* inf stays */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        float x;
        memcpy(&x, &v[i].in, 4);
        unsigned short b;
        train_to_bf16(&b, &x, 1);
        CU_ASSERT_EQUAL(b, v[i].out);
        float r = train_bf16_round(x);
        uint32_t ru;
        memcpy(&ru, &r, 4);
        CU_ASSERT_EQUAL(ru, (uint32_t)v[i].out << 16);
    }
    /* long arrays (the vector code where the CPU has AVX-512, threads above 64K elements):
     * the same bits as the scalar definition, for normal, halfway, denormal, inf, NaN values */
    enum { NL = 70001 };
    float *x = malloc(NL * sizeof *x);
    unsigned short *o = malloc(NL * sizeof *o);
    CU_ASSERT_FATAL(x && o);
    const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x00000001u, 0x807fffffu, 0x00008000u,
                                0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffa00001u, 0x7f7fffffu, 0x80000000u};
    for (int i = 0; i < NL; i++) {
        uint32_t u;
        if (i % 7 == 3) u = special[(i / 7) % (sizeof special / sizeof special[0])];
        else {
            float f = frand() * 100.0f;
            memcpy(&u, &f, 4);
        }
        memcpy(&x[i], &u, 4);
    }
    for (size_t n = 1; n <= NL; n = n < 100 ? n + 13 : n * 10 + 1) {
        train_to_bf16(o, x, n < NL ? n : NL);
        int bad = 0;
        for (size_t i = 0; i < n && i < NL; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            uint32_t want = (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
            bad += o[i] != (unsigned short)want;
        }
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(x);
    free(o);
    float nan = NAN;
    unsigned short b;
    train_to_bf16(&b, &nan, 1);
    CU_ASSERT((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0); /* still a NaN */
    CU_ASSERT(isnan(train_bf16_round(nan)));
}

/* The row-subset gather (EfQAT): every width from 1 to 70 (whole and partial 16-column
 * chunks), column sets from one column to all, with the mask (AVX-512 where the CPU has it)
 * and without: the listed columns in order, bit for bit, nothing written past ncols, and the
 * source read only inside its width (it ends the allocation, so ASan sees a read past it). */
static void test_gather_cols(void)
{
    int bad = 0;
    for (int width = 1; width <= 70; width++) {
        float *src = malloc((size_t)width * sizeof *src), dst[72], ref[72];
        int32_t cols[70];
        uint16_t mask[5];
        CU_ASSERT_FATAL(src != NULL);
        for (int c = 0; c < width; c++) src[c] = frand();
        for (int pattern = 0; pattern < 5; pattern++) {
            int n = 0;
            for (int c = 0; c < width; c++) {
                int take = pattern == 0 ? c == width - 1 : pattern == 1 ? 1 : pattern == 2 ? c % 3 == 1
                         : pattern == 3 ? (c / 5) % 2 == 0 : frand() > 0.5f;
                if (take) cols[n++] = c;
            }
            for (int j = 0; j < n; j++) ref[j] = src[cols[j]];
            train_cols_mask(mask, width, cols, n);
            for (int with_mask = 0; with_mask < 2; with_mask++) {
                for (int j = 0; j < 72; j++) dst[j] = NAN;
                train_gather_cols(dst, src, width, cols, n, with_mask ? mask : NULL);
                bad += n > 0 && memcmp(dst, ref, (size_t)n * sizeof *dst) != 0;
                for (int j = n; j < 72; j++) bad += !isnan(dst[j]);
            }
        }
        free(src);
    }
    CU_ASSERT_EQUAL(bad, 0);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_onednn_agrees_with_openblas);
    TU_ADD(s, test_f32_row_split);
    TU_ADD(s, test_bf16_products);
    TU_ADD(s, test_bf16_reuse);
    TU_ADD(s, test_bf16_in_parallel);
    TU_ADD(s, test_f32_in_parallel);
    TU_ADD(s, test_f32_causal);
    TU_ADD(s, test_bf16_keep);
    TU_ADD(s, test_bf16_rounding);
    TU_ADD(s, test_gather_cols);
}

int main(void) { return tu_main("gemm", add); }
