/* Finite-difference gradient checks of every layer and of the whole model (fp32 values,
 * losses accumulated in double, central differences); the block passes against the
 * whole-model passes; the GEMM FLOP counter; the row-subset weight gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "testutil.h"

static uint64_t rng = 12345;
static float rnd(void) { return train_rng_normal(&rng); }
static void fill(float *x, size_t n, float sd)
{
    for (size_t i = 0; i < n; i++) x[i] = sd * rnd();
}

/* sum(out * r) in double */
static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Compare analytic gradient `g` of buffer `x` (n entries) with central differences of f. */
static int fd_check(const char *what, float *x, const float *g, size_t n, loss_fn f, void *ctx,
                    float h, double tol, double floor_)
{
    int bad = 0;
    size_t stride = n > 60 ? n / 60 : 1;
    double worst = 0;
    for (size_t i = 0; i < n; i += stride) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = f(ctx);
        x[i] = x0 - h;
        double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * h);
        double e = fabs(fd - g[i]) / (tol * (floor_ + fabs(fd)));
        if (e > worst) worst = e;
        if (e > 1.0) {
            if (bad < 3) fprintf(stderr, "%s[%zu]: analytic %.6g, finite difference %.6g\n", what, i, g[i], fd);
            bad++;
        }
    }
    if (bad) fprintf(stderr, "%s: %d mismatches (worst %.2f x tolerance)\n", what, bad, worst);
    return bad;
}

/* ---- matmul ---------------------------------------------------------------- */
enum { MN = 6, MC = 5, MR = 4 };
static float m_inp[MN * MC], m_w[MR * MC], m_out[MN * MR], m_r[MN * MR];
static double f_matmul(void *c)
{
    (void)c;
    layer_matmul_forward(m_out, m_inp, m_w, MN, MC, MR);
    return dotd(m_out, m_r, MN * MR);
}
static void test_matmul_grad(void)
{
    fill(m_inp, MN * MC, 1);
    fill(m_w, MR * MC, 1);
    fill(m_r, MN * MR, 1);
    float dinp[MN * MC], dw[MR * MC] = {0};
    layer_matmul_backward(dinp, dw, m_r, m_inp, m_w, MN, MC, MR);
    CU_ASSERT_EQUAL(fd_check("matmul dinp", m_inp, dinp, MN * MC, f_matmul, NULL, 1e-2f, 1e-2, 1e-2), 0);
    CU_ASSERT_EQUAL(fd_check("matmul dw", m_w, dw, MR * MC, f_matmul, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* dw accumulates */
    float dw2[MR * MC];
    memcpy(dw2, dw, sizeof dw);
    layer_matmul_backward(NULL, dw2, m_r, m_inp, m_w, MN, MC, MR);
    CU_ASSERT_DOUBLE_EQUAL(dw2[3], 2 * dw[3], 1e-5);
}

/* ---- weight gradient of a row subset (EfQAT) ------------------------------ */
enum { WN = 64, WC = 48, WR = 80 };
static float rw_inp[WN * WC], rw_w[WR * WC], rw_dout[WN * WR], rw_dw0[WR * WC], rw_dwf[WR * WC], rw_dwr[WR * WC];
static float rw_dinf[WN * WC], rw_dinr[WN * WC], rw_scratch[(WN + WC) * WR], rw_dsub[WN * WR];

/* dw [R, C] after dw0 += dout^T inp [N, R]^T [N, C] for rows[0..nrows) only: the rows not
 * listed untouched bit for bit, the listed ones within 1e-5 of a double reference relative to
 * the sum of the terms' magnitudes (the summation order may differ). The bad entries. */
static int dw_rows_bad(const float *dw, const float *dw0, const float *dout, const float *inp, int N, int C, int R,
                       const int *rows, int nrows)
{
    int bad = 0;
    for (int r = 0, k = 0; r < R; r++) {
        int listed = k < nrows && rows[k] == r;
        k += listed;
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)r * C + c;
            if (!listed) {
                bad += memcmp(&dw[i], &dw0[i], sizeof(float)) != 0;
                continue;
            }
            double ref = dw0[i], mag = fabs(dw0[i]);
            for (int n = 0; n < N; n++) {
                double t = (double)dout[(size_t)n * R + r] * inp[(size_t)n * C + c];
                ref += t, mag += fabs(t);
            }
            bad += !(fabs((double)dw[i] - ref) <= 1e-5 * mag);
        }
    }
    return bad;
}

static int rows_mismatch(const int *rows, int nrows)
{
    return dw_rows_bad(rw_dwr, rw_dw0, rw_dout, rw_inp, WN, WC, WR, rows, nrows);
}

/* Scattered rows (gathered, one product) and long contiguous runs (one product per run, in
 * place): the listed rows' dW only, the full dX; a block gathered beforehand (a side job's)
 * gives the same. */
static void test_matmul_backward_rows(void)
{
    fill(rw_inp, WN * WC, 1);
    fill(rw_w, WR * WC, 1);
    fill(rw_dout, WN * WR, 1);
    fill(rw_dw0, WR * WC, 1); /* dw accumulates: start from non-zero values */
    layer_matmul_backward(rw_dinf, rw_dwf, rw_dout, rw_inp, rw_w, WN, WC, WR);
    int rows[2][WR], nrows[2] = {0, 0};
    for (int r = 0; r < WR; r++) {
        if (r % 3 == 1 || r == 0 || r == WR - 1) rows[0][nrows[0]++] = r;
        if ((r >= 2 && r < 36) || r >= 42) rows[1][nrows[1]++] = r; /* two runs of 34 and 38 */
    }
    CU_ASSERT(layer_rows_gather(rows[0], nrows[0]));
    CU_ASSERT(!layer_rows_gather(rows[1], nrows[1]));
    for (int v = 0; v < 2; v++) {
        memcpy(rw_dwr, rw_dw0, sizeof rw_dwr);
        uint64_t f0 = model_gemm_flops();
        layer_matmul_backward_rows(rw_dinr, rw_dwr, rw_dout, rw_inp, rw_w, WN, WC, WR, rows[v], nrows[v], rw_scratch);
        /* the products issued: the full dX, and dW of the listed rows only */
        CU_ASSERT_EQUAL(model_gemm_flops() - f0, 2ull * WN * WC * WR + 2ull * WN * WC * nrows[v]);
        CU_ASSERT_EQUAL(memcmp(rw_dinf, rw_dinr, sizeof rw_dinf), 0);
        CU_ASSERT_EQUAL(rows_mismatch(rows[v], nrows[v]), 0);
    }
    for (int n = 0; n < WN; n++)
        for (int j = 0; j < nrows[0]; j++) rw_dsub[n * nrows[0] + j] = rw_dout[n * WR + rows[0][j]];
    memcpy(rw_dwr, rw_dw0, sizeof rw_dwr);
    layer_matmul_dw_rows(rw_dwr, rw_dout, rw_dsub, rw_inp, WN, WC, WR, rows[0], nrows[0], rw_scratch);
    CU_ASSERT_EQUAL(rows_mismatch(rows[0], nrows[0]), 0);
    /* all rows: exactly layer_matmul_backward */
    int all[WR];
    for (int r = 0; r < WR; r++) all[r] = r;
    memcpy(rw_dwr, rw_dw0, sizeof rw_dwr);
    memcpy(rw_dwf, rw_dw0, sizeof rw_dwf);
    layer_matmul_backward(rw_dinf, rw_dwf, rw_dout, rw_inp, rw_w, WN, WC, WR);
    layer_matmul_backward_rows(rw_dinr, rw_dwr, rw_dout, rw_inp, rw_w, WN, WC, WR, all, WR, NULL);
    CU_ASSERT_EQUAL(memcmp(rw_dwr, rw_dwf, sizeof rw_dwr), 0);
    CU_ASSERT_EQUAL(memcmp(rw_dinr, rw_dinf, sizeof rw_dinr), 0);
    /* no rows: dX only */
    memcpy(rw_dwr, rw_dw0, sizeof rw_dwr);
    memset(rw_dinr, 0, sizeof rw_dinr);
    layer_matmul_backward_rows(rw_dinr, rw_dwr, rw_dout, rw_inp, rw_w, WN, WC, WR, rows[0], 0, rw_scratch);
    CU_ASSERT_EQUAL(memcmp(rw_dwr, rw_dw0, sizeof rw_dwr), 0);
    CU_ASSERT_EQUAL(memcmp(rw_dinr, rw_dinf, sizeof rw_dinr), 0);
}

/* The row subset on other shapes: an odd token count, widths off the 16-column chunks of
 * the gather, a single row (the last), and a subset whose scatter-add is large enough to run
 * on all threads; gathered here and gathered beforehand. Listed rows within 1e-5 of the sum
 * of the terms' magnitudes of a double reference, the others untouched bit for bit. */
static int dw_rows_case(int N, int C, int R, const int *rows, int nrows, int pregathered)
{
    float *inp = malloc(sizeof(float) * (size_t)N * C), *dout = malloc(sizeof(float) * (size_t)N * R);
    float *dw = malloc(sizeof(float) * (size_t)R * C), *dw0 = malloc(sizeof(float) * (size_t)R * C);
    float *scratch = malloc(sizeof(float) * (size_t)(N + C) * nrows), *dsub = malloc(sizeof(float) * (size_t)N * nrows);
    CU_ASSERT_FATAL(inp && dout && dw && dw0 && scratch && dsub);
    fill(inp, (size_t)N * C, 1);
    fill(dout, (size_t)N * R, 1);
    fill(dw0, (size_t)R * C, 1);
    memcpy(dw, dw0, sizeof(float) * (size_t)R * C);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < nrows; j++) dsub[(size_t)n * nrows + j] = dout[(size_t)n * R + rows[j]];
    layer_matmul_dw_rows(dw, dout, pregathered ? dsub : NULL, inp, N, C, R, rows, nrows, scratch);
    int bad = dw_rows_bad(dw, dw0, dout, inp, N, C, R, rows, nrows);
    free(inp), free(dout), free(dw), free(dw0), free(scratch), free(dsub);
    return bad;
}

static void test_matmul_dw_rows_shapes(void)
{
    static int rows[4][160];
    int nrows[4] = {0, 1, 0, 2};
    for (int r = 0; r < 50; r++)
        if (r % 2) rows[0][nrows[0]++] = r; /* 25 of 50, every other */
    rows[1][0] = 49;                        /* one row, the last */
    for (int r = 0; r < 131; r++)
        if (r % 8 != 3) rows[2][nrows[2]++] = r; /* 114 x 300 floats: the threads' scatter-add */
    rows[3][0] = 0, rows[3][1] = 16;
    const int shape[4][3] = {{37, 20, 50}, {37, 20, 50}, {33, 300, 131}, {5, 3, 17}}; /* N, C, R */
    for (int v = 0; v < 4; v++) {
        CU_ASSERT(layer_rows_gather(rows[v], nrows[v]));
        for (int pre = 0; pre < 2; pre++) {
            int bad = dw_rows_case(shape[v][0], shape[v][1], shape[v][2], rows[v], nrows[v], pre);
            if (bad) fprintf(stderr, "case %d (%s): %d bad entries\n", v, pre ? "gathered before" : "gathered here", bad);
            CU_ASSERT_EQUAL(bad, 0);
        }
    }
}

/* ---- rmsnorm --------------------------------------------------------------- */
enum { RN = 5, RD = 8 };
static float r_x[RN * RD], r_g[RD], r_out[RN * RD], r_rstd[RN], r_r[RN * RD];
static double f_rms(void *c)
{
    (void)c;
    layer_rmsnorm_forward(r_out, r_rstd, r_x, r_g, RN, RD);
    return dotd(r_out, r_r, RN * RD);
}
static void test_rmsnorm_grad(void)
{
    fill(r_x, RN * RD, 1);
    fill(r_g, RD, 1);
    fill(r_r, RN * RD, 1);
    f_rms(NULL);
    float dx[RN * RD] = {0}, dg[RD] = {0};
    layer_rmsnorm_backward(dx, dg, r_r, r_x, r_g, r_rstd, RN, RD);
    CU_ASSERT_EQUAL(fd_check("rmsnorm dx", r_x, dx, RN * RD, f_rms, NULL, 1e-2f, 1e-2, 1e-2), 0);
    CU_ASSERT_EQUAL(fd_check("rmsnorm dg", r_g, dg, RD, f_rms, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* the output has unit RMS when g = 1 */
    float ones[RD], out[RN * RD], rs[RN];
    for (int i = 0; i < RD; i++) ones[i] = 1;
    layer_rmsnorm_forward(out, rs, r_x, ones, RN, RD);
    double ss = 0;
    for (int d = 0; d < RD; d++) ss += out[d] * out[d];
    CU_ASSERT_DOUBLE_EQUAL(ss / RD, 1.0, 1e-3);
}

/* ---- rope ------------------------------------------------------------------ */
enum { QB = 2, QT = 5, QH = 4, QHKV = 2, QHD = 4, QQKV = (QH + 2 * QHKV) * QHD };
static float q_cos[QT * QHD / 2], q_sin[QT * QHD / 2];
static float q_x[QB * QT * QQKV], q_y[QB * QT * QQKV], q_r[QB * QT * QQKV];
static double f_rope(void *c)
{
    (void)c;
    memcpy(q_y, q_x, sizeof q_x);
    layer_rope(q_y, q_cos, q_sin, QB, QT, QH, QHKV, QHD, 0);
    return dotd(q_y, q_r, QB * QT * QQKV);
}
static void test_rope_grad(void)
{
    layer_rope_tables(q_cos, q_sin, QT, QHD);
    fill(q_x, QB * QT * QQKV, 1);
    fill(q_r, QB * QT * QQKV, 1);
    float d[QB * QT * QQKV];
    memcpy(d, q_r, sizeof d);
    layer_rope(d, q_cos, q_sin, QB, QT, QH, QHKV, QHD, 1);
    /* v is not rotated: its gradient passes through unchanged */
    size_t vi = (size_t)(QH + QHKV) * QHD;
    CU_ASSERT_EQUAL(d[vi], q_r[vi]);
    CU_ASSERT_EQUAL(fd_check("rope", q_x, d, QB * QT * QQKV, f_rope, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* position 0 is not rotated */
    f_rope(NULL);
    CU_ASSERT_EQUAL(q_y[0], q_x[0]);
}

/* ---- attention ----------------------------------------------------------- */
static float a_qkv[QB * QT * QQKV], a_out[QB * QT * QH * QHD], a_att[QB * QH * QT * QT],
    a_r[QB * QT * QH * QHD];
static double f_att(void *c)
{
    (void)c;
    layer_attention_forward(a_out, a_att, a_qkv, QB, QT, QH, QHKV, QHD);
    return dotd(a_out, a_r, QB * QT * QH * QHD);
}
static void test_attention_grad(void)
{
    fill(a_qkv, QB * QT * QQKV, 1);
    fill(a_r, QB * QT * QH * QHD, 1);
    f_att(NULL);
    float dq[QB * QT * QQKV] = {0};
    layer_attention_backward(dq, a_r, a_att, a_qkv, QB, QT, QH, QHKV, QHD, NULL);
    CU_ASSERT_EQUAL(fd_check("attention dqkv", a_qkv, dq, QB * QT * QQKV, f_att, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* causality: the first position attends only to itself */
    CU_ASSERT_DOUBLE_EQUAL(a_att[0], 1.0, 1e-6);
    /* the output at t = 0 is v_0 exactly (head 0 reads kv head 0) */
    CU_ASSERT_DOUBLE_EQUAL(a_out[0], a_qkv[(QH + QHKV) * QHD], 1e-6);
}

/* more positions than one attention block (64 rows): the causal blocking is exercised */
enum { LT = 80, LH = 2, LHKV = 1, LHD = 4, LQKV = (LH + 2 * LHKV) * LHD };
static float l_qkv[LT * LQKV], l_out[LT * LH * LHD], l_att[LH * LT * LT], l_r[LT * LH * LHD];
static double f_att_long(void *c)
{
    (void)c;
    layer_attention_forward(l_out, l_att, l_qkv, 1, LT, LH, LHKV, LHD);
    return dotd(l_out, l_r, LT * LH * LHD);
}
static void test_attention_long_grad(void)
{
    fill(l_qkv, LT * LQKV, 1);
    fill(l_r, LT * LH * LHD, 1);
    f_att_long(NULL);
    static float dq[LT * LQKV];
    memset(dq, 0, sizeof dq);
    layer_attention_backward(dq, l_r, l_att, l_qkv, 1, LT, LH, LHKV, LHD, NULL);
    CU_ASSERT_EQUAL(fd_check("attention(T=80) dqkv", l_qkv, dq, LT * LQKV, f_att_long, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* every row of probabilities sums to 1 and is 0 above the diagonal */
    int bad = 0;
    for (int t = 0; t < LT; t++) {
        double sum = 0;
        for (int t2 = 0; t2 < LT; t2++) {
            float p = l_att[(size_t)LT * LT + (size_t)t * LT + t2];
            sum += p;
            if (t2 > t && p != 0.0f) bad++;
        }
        if (fabs(sum - 1.0) > 1e-5) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* ---- swiglu ---------------------------------------------------------------- */
enum { SN = 4, SF = 6 };
static float s_h[SN * 2 * SF], s_out[SN * SF], s_r[SN * SF];
static double f_swi(void *c)
{
    (void)c;
    layer_swiglu_forward(s_out, s_h, SN, SF);
    return dotd(s_out, s_r, SN * SF);
}
static void test_swiglu_grad(void)
{
    fill(s_h, SN * 2 * SF, 1.5f);
    fill(s_r, SN * SF, 1);
    float d[SN * 2 * SF];
    layer_swiglu_backward(d, s_r, s_h, SN, SF);
    CU_ASSERT_EQUAL(fd_check("swiglu", s_h, d, SN * 2 * SF, f_swi, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* silu(0) = 0, silu(x) * 1 at x = 1 is 1 / (1 + e^-1) */
    float h[2] = {1.0f, 1.0f}, o;
    layer_swiglu_forward(&o, h, 1, 1);
    CU_ASSERT_DOUBLE_EQUAL(o, 1.0 / (1.0 + exp(-1.0)), 1e-6);
}

/* ---- softmax cross-entropy ----------------------------------------------- */
enum { XN = 4, XV = 7 };
static float x_logits[XN * XV], x_p[XN * XV], x_l[XN];
static uint16_t x_t[XN] = {0, 3, 6, 2};
static double f_xent(void *c)
{
    (void)c;
    memcpy(x_p, x_logits, sizeof x_p);
    return layer_softmax_xent_forward(x_p, x_l, x_t, XN, XV);
}
static void test_xent_grad(void)
{
    fill(x_logits, XN * XV, 2);
    f_xent(NULL);
    float d[XN * XV];
    memcpy(d, x_p, sizeof d);
    layer_softmax_xent_backward(d, x_t, XN, XV);
    CU_ASSERT_EQUAL(fd_check("xent", x_logits, d, XN * XV, f_xent, NULL, 1e-2f, 1e-2, 1e-2), 0);
    /* uniform logits: loss = ln V */
    float u[XV] = {0}, l;
    uint16_t t = 1;
    CU_ASSERT_DOUBLE_EQUAL(layer_softmax_xent_forward(u, &l, &t, 1, XV), log(7.0), 1e-6);
    /* a huge margin must not produce inf (no log of an underflowed 0) */
    float big[XV] = {0};
    big[0] = 200.0f;
    CU_ASSERT(isfinite(layer_softmax_xent_forward(big, &l, &t, 1, XV)));
    CU_ASSERT_DOUBLE_EQUAL(l, 200.0, 1e-3);
}

/* NaN weights (a diverging run, found by fuzz/fuzz_state.c) give NaN, which the trainer reports
 * as divergence; exp(NaN) once converted NaN to an integer, undefined behaviour that UBSan
 * (the build-asan tests) stops at. */
static void test_nan_propagates(void)
{
    float x[XV] = {0}, l;
    uint16_t t = 2;
    x[3] = NAN;
    CU_ASSERT(isnan(layer_softmax_xent_forward(x, &l, &t, 1, XV)));
    CU_ASSERT(isnan(l));
    float h[2] = {NAN, 1.0f}, o;
    layer_swiglu_forward(&o, h, 1, 1);
    CU_ASSERT(isnan(o));
}

/* ---- whole model ----------------------------------------------------------- */
static model M;
static uint16_t w_inp[2 * 8], w_tgt[2 * 8];
static double f_model(void *c)
{
    (void)c;
    return model_forward(&M, w_inp, w_tgt, 2, 8);
}

static void whole_model_check(int qkind_embed)
{
    train_shape s = {2, 16, 4, 2, 24, 8, 32};
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(train_shape_finish(&s, &err), QP_OK);
    train_qspec q = {TRAIN_Q_LSQ, 4, 0, qkind_embed ? 4 : 0};
    CU_ASSERT_EQUAL_FATAL(model_create(&M, &s, &q, 2, 8, &err), QP_OK);
    model_init(&M, 7);
    /* larger weights than the init so every path carries signal */
    for (int i = 0; i < MODEL_NT; i++)
        if (M.desc[i].decay)
            for (size_t j = 0; j < M.numel[i]; j++) M.p.t[i][j] *= 10.0f;
    for (int i = 0; i < 16; i++) {
        w_inp[i] = (uint16_t)(train_rng_next(&rng) % 32);
        w_tgt[i] = (uint16_t)(train_rng_next(&rng) % 32);
    }
    M.qat = M.qat_embed = 0;
    f_model(NULL);
    model_zero_grad(&M);
    model_backward(&M, w_inp, w_tgt, 2, 8);
    float *g = malloc(M.n_floats * sizeof *g);
    memcpy(g, M.grads_mem, M.n_floats * sizeof *g);
    int bad = 0;
    for (int i = 0; i < P_S_WTE; i++)
        bad += fd_check(M.desc[i].name, M.p.t[i], g + M.off[i], M.numel[i], f_model, NULL, 1e-2f, 5e-2, 1e-3);
    CU_ASSERT_EQUAL(bad, 0);
    /* gradient of a step size is nonzero only in QAT; none in FP mode */
    if (M.numel[P_S_QKV]) CU_ASSERT_EQUAL(g[M.off[P_S_QKV]], 0.0f);
    free(g);
    model_free(&M);
}

static void test_model_grad(void) { whole_model_check(0); }

/* In QAT mode, the STE gradient w.r.t. the quantized weights equals the FP gradient of a model
 * whose weights are the quantized values. */
static void test_model_qat_uses_quantized_weights(void)
{
    train_shape s = {1, 16, 2, 2, 16, 8, 32};
    qp_error err;
    train_shape_finish(&s, &err);
    train_qspec q = {TRAIN_Q_LSQ, 3, 0, 4};
    model a, b;
    CU_ASSERT_EQUAL_FATAL(model_create(&a, &s, &q, 2, 8, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(model_create(&b, &s, &q, 2, 8, &err), QP_OK);
    model_init(&a, 3);
    model_quant_init(&a);
    a.qat = a.qat_embed = 1;
    model_quantize(&a);
    float la = model_forward(&a, w_inp, w_tgt, 2, 8);
    memcpy(b.params_mem, a.params_mem, a.n_floats * sizeof(float));
    memcpy(b.p.wte, a.qw.wte, a.numel[P_WTE] * sizeof(float));
    memcpy(b.p.wqkv, a.qw.wqkv, a.numel[P_WQKV] * sizeof(float));
    memcpy(b.p.wo, a.qw.wo, a.numel[P_WO] * sizeof(float));
    memcpy(b.p.w13, a.qw.w13, a.numel[P_W13] * sizeof(float));
    memcpy(b.p.w2, a.qw.w2, a.numel[P_W2] * sizeof(float));
    float lb = model_forward(&b, w_inp, w_tgt, 2, 8);
    CU_ASSERT_DOUBLE_EQUAL(la, lb, 1e-6);
    /* quantized and latent weights differ: the test is not vacuous */
    CU_ASSERT(fabsf(a.qw.wqkv[5] - a.p.wqkv[5]) > 0 || fabsf(a.qw.wqkv[6] - a.p.wqkv[6]) > 0);
    model_free(&a);
    model_free(&b);
}

/* A model with every path carrying signal (weights x 10), quantized when qat. */
static void small_model_ff(model *m, int L, int T, int B, int qat, int ff)
{
    train_shape s = {L, 16, 4, 2, ff, T, 32};
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(train_shape_finish(&s, &err), QP_OK);
    train_qspec q = {TRAIN_Q_LSQ, 4, 0, 4};
    CU_ASSERT_EQUAL_FATAL(model_create(m, &s, &q, B, T, &err), QP_OK);
    model_init(m, 11);
    for (int i = 0; i < MODEL_NT; i++)
        if (m->desc[i].decay)
            for (size_t j = 0; j < m->numel[i]; j++) m->p.t[i][j] *= 10.0f;
    model_quant_init(m);
    m->qat = m->qat_embed = qat;
    model_quantize(m);
}

static void small_model(model *m, int L, int T, int B, int qat) { small_model_ff(m, L, T, B, qat, 24); }

/* Two models (one of them under EfQAT) through forward and backward on the same batch of B x T
 * <= 64 tokens: the losses must be equal; the gradients are the caller's to compare. */
static void same_step_pair(model *a, model *b, int B, int T)
{
    static uint16_t inp[64], tgt[64];
    CU_ASSERT_FATAL(B * T <= 64);
    for (int i = 0; i < B * T; i++) inp[i] = (uint16_t)((7 * i) % 32), tgt[i] = (uint16_t)((5 * i + 3) % 32);
    CU_ASSERT(model_forward(a, inp, tgt, B, T) == model_forward(b, inp, tgt, B, T));
    model_zero_grad(a);
    model_zero_grad(b);
    model_backward(a, inp, tgt, B, T);
    model_backward(b, inp, tgt, B, T);
}

/* d_ff 256: 2F a multiple of 512 floats, where the backward pads dh13's rows (model.c,
 * dh13_ld: w13's dW product reads them transposed); EfQAT at ratio 1 reads them compact.
 * Full QAT against EfQAT with every row unfrozen: the same loss and every gradient, bit for
 * bit, so the padded rows change nothing. The layer functions with the row stride: the same
 * rows as compact ones, bit for bit, the pad untouched. */
static void test_dh13_padded(void)
{
    enum { L = 2, B = 2, T = 8, N = B * T, F = 256 };
    model a, b;
    qp_error err;
    small_model_ff(&a, L, T, B, 1, F);
    small_model_ff(&b, L, T, B, 1, F);
    CU_ASSERT_EQUAL_FATAL(efqat_create(&a, 1.0, TRAIN_EFQAT_CWPL, &err), QP_OK);
    efqat_select(&a);
    model_quantize(&a);
    same_step_pair(&a, &b, B, T);
    model_quant_backward(&a);
    model_quant_backward(&b);
    CU_ASSERT_EQUAL(a.n_grads, b.n_grads);
    CU_ASSERT(!memcmp(a.grads_mem, b.grads_mem, b.n_grads * sizeof(float)));
    model_free(&a);
    model_free(&b);

    enum { ld = 2 * F + MODEL_DH13_PAD, C = 16 };
    float *h = malloc(N * 2 * F * 4), *dy = malloc(N * F * 4), *d0 = malloc(N * 2 * F * 4), *d1 = malloc(N * ld * 4);
    float *inp2 = malloc(N * C * 4), *w = malloc(2 * F * C * 4), *dx0 = malloc(N * C * 4), *dx1 = malloc(N * C * 4);
    float *dw0 = calloc(2 * F * C, 4), *dw1 = calloc(2 * F * C, 4);
    CU_ASSERT_FATAL(h && dy && d0 && d1 && inp2 && w && dx0 && dx1 && dw0 && dw1);
    fill(h, N * 2 * F, 1.5f), fill(dy, N * F, 1), fill(inp2, N * C, 1), fill(w, 2 * F * C, 1);
    for (int j = 0; j < N * ld; j++) d1[j] = NAN;
    layer_swiglu_backward(d0, dy, h, N, F);
    layer_swiglu_backward_ld(d1, ld, dy, h, N, F, NULL);
    int bad = 0;
    for (int n = 0; n < N; n++) {
        bad += memcmp(d1 + (size_t)n * ld, d0 + (size_t)n * 2 * F, 2 * F * sizeof(float)) != 0;
        for (int j = 2 * F; j < ld; j++) bad += !isnan(d1[(size_t)n * ld + j]);
    }
    CU_ASSERT_EQUAL(bad, 0);
    layer_matmul_backward(dx0, dw0, d0, inp2, w, N, C, 2 * F);
    layer_matmul_backward_ld(dx1, dw1, d1, ld, inp2, w, N, C, 2 * F);
    CU_ASSERT(!memcmp(dx0, dx1, N * C * sizeof(float)));
    CU_ASSERT(!memcmp(dw0, dw1, 2 * F * C * sizeof(float)));
    free(h), free(dy), free(d0), free(d1), free(inp2), free(w), free(dx0), free(dx1), free(dw0), free(dw1);
}

/* The whole-model passes are the block passes in a loop: rerunning them by hand, block by
 * block on buffers of the caller's (as Block-AP will), gives the same loss, block outputs,
 * d(input) and every gradient, bit for bit. */
static void block_compose_check(int qat)
{
    enum { L = 2, B = 2, T = 8, N = B * T, D = 16 };
    model m;
    small_model(&m, L, T, B, qat);
    uint16_t inp[N], tgt[N];
    for (int i = 0; i < N; i++) {
        inp[i] = (uint16_t)(train_rng_next(&rng) % 32);
        tgt[i] = (uint16_t)(train_rng_next(&rng) % 32);
    }
    float lw = model_forward(&m, inp, tgt, B, T);
    model_zero_grad(&m);
    model_backward(&m, inp, tgt, B, T);
    float *gw = malloc(m.n_floats * sizeof *gw), *xs = malloc((L + 1) * N * D * sizeof *xs);
    float *outw = malloc(N * D * sizeof *outw), *dxw = malloc(N * D * sizeof *dxw), dx[N * D] = {0};
    memcpy(gw, m.grads_mem, m.n_floats * sizeof *gw);
    memcpy(outw, m.a.resid + (size_t)L * N * D, N * D * sizeof *outw);
    memcpy(dxw, m.a.dx, N * D * sizeof *dxw);
    /* by hand: embedding, blocks, final norm, head, loss ... */
    const float *wte = qat ? m.qw.wte : m.p.wte;
    for (int n = 0; n < N; n++) memcpy(xs + n * D, wte + inp[n] * D, D * sizeof(float));
    for (int l = 0; l < L; l++) model_block_forward(&m, l, xs + l * N * D, xs + (l + 1) * N * D, B, T);
    CU_ASSERT_EQUAL(memcmp(xs + L * N * D, outw, N * D * sizeof(float)), 0);
    layer_rmsnorm_forward(m.a.lnf, m.a.lnf_rstd, xs + L * N * D, m.p.lnf, N, D);
    layer_matmul_forward(m.a.probs, m.a.lnf, wte, N, D, 32);
    float lb = layer_softmax_xent_forward(m.a.probs, m.a.losses, tgt, N, 32);
    CU_ASSERT_EQUAL(memcmp(&lw, &lb, sizeof lw), 0);
    /* ... and back */
    model_zero_grad(&m);
    layer_softmax_xent_backward(m.a.probs, tgt, N, 32);
    layer_matmul_backward(m.a.dln, m.g.wte, m.a.probs, m.a.lnf, wte, N, D, 32);
    layer_rmsnorm_backward(dx, m.g.lnf, m.a.dln, xs + L * N * D, m.p.lnf, m.a.lnf_rstd, N, D);
    for (int l = L - 1; l >= 0; l--) model_block_backward(&m, l, xs + l * N * D, dx, B, T, 1);
    CU_ASSERT_EQUAL(memcmp(dx, dxw, sizeof dx), 0);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < D; j++) m.g.wte[inp[n] * D + j] += dx[n * D + j];
    CU_ASSERT_EQUAL(memcmp(m.grads_mem, gw, m.n_floats * sizeof *gw), 0);
    /* need_dx = 0 (Block-AP: the input is data) changes no parameter gradient */
    float dy[N * D];
    fill(dy, N * D, 1);
    model_block_forward(&m, 1, xs + N * D, xs + 2 * N * D, B, T);
    model_zero_grad(&m);
    memcpy(dx, dy, sizeof dx);
    model_block_backward(&m, 1, xs + N * D, dx, B, T, 1);
    memcpy(gw, m.grads_mem, m.n_floats * sizeof *gw);
    CU_ASSERT(memcmp(dx, dy, sizeof dx) != 0);
    model_zero_grad(&m);
    memcpy(dx, dy, sizeof dx);
    model_block_backward(&m, 1, xs + N * D, dx, B, T, 0);
    CU_ASSERT_EQUAL(memcmp(m.grads_mem, gw, m.n_floats * sizeof *gw), 0);
    /* block 0's gradients are untouched by block 1's backward, and block 1's are not zero */
    CU_ASSERT_EQUAL(m.g.wqkv[0], 0.0f);
    CU_ASSERT(m.g.wqkv[m.desc[P_WQKV].rows * D] != 0.0f);
    CU_ASSERT(m.g.ln1[D] != 0.0f);
    free(gw);
    free(xs);
    free(outw);
    free(dxw);
    model_free(&m);
}

static void test_block_passes_compose(void)
{
    block_compose_check(0);
    block_compose_check(1);
}

/* A block on fewer sequences than the model was made for (Block-AP's batches): the same
 * output as that sequence inside the full batch. */
static void test_block_smaller_batch(void)
{
    enum { B = 2, T = 8, N = B * T, D = 16 };
    model m;
    small_model(&m, 1, T, B, 1);
    float x[N * D], y[N * D], y1[T * D];
    fill(x, N * D, 1);
    model_block_forward(&m, 0, x, y, B, T);
    model_block_forward(&m, 0, x + T * D, y1, 1, T);
    int bad = 0;
    for (int i = 0; i < T * D; i++) bad += fabsf(y1[i] - y[T * D + i]) > 1e-6f * (1.0f + fabsf(y[T * D + i]));
    CU_ASSERT_EQUAL(bad, 0);
    model_free(&m);
}

/* The GEMM FLOP counter after one forward and backward: 6 N per weight of the linears (the
 * head's dX included), plus the causal attention products as issued. Row chunks of 64 multiply
 * only the keys they see (at T = 80, 64 x 64 and 16 x 80 (query, key) pairs per head), and the
 * fp32 kernel on AVX-512 skips blocks of the masked pairs inside them too (gemm.h,
 * train_gemm_f32_1t_causal): at most the chunks' pairs, at least the causal triangle's. */
static void test_gemm_flops(void)
{
    enum { L = 2, B = 2, T = 80, N = B * T, D = 16, H = 4, hd = 4, F = 24, V = 32, QKV = 32 };
    model m;
    small_model(&m, L, T, B, 0);
    CU_ASSERT_EQUAL_FATAL(m.qkv_rows, QKV);
    CU_ASSERT_EQUAL_FATAL(m.s.d_ff, F);
    static uint16_t inp[N], tgt[N];
    for (int i = 0; i < N; i++) inp[i] = tgt[i] = (uint16_t)(i % V);
    uint64_t lin = L * (QKV * D + D * D + 2 * F * D + F * D) + V * D;
    uint64_t seen = 64 * 64 + 16 * 80, tri = T * (T + 1) / 2; /* (query, key) pairs per head */
    uint64_t per = (uint64_t)L * B * H * 2 * hd; /* FLOPs per pair and product, all heads */
    uint64_t f0 = model_gemm_flops();
    model_forward(&m, inp, tgt, B, T);
    uint64_t f1 = model_gemm_flops(), att_f = f1 - f0 - 2 * N * lin; /* Q K^T, P V */
    model_zero_grad(&m);
    model_backward(&m, inp, tgt, B, T);
    uint64_t att_b = model_gemm_flops() - f1 - 4 * N * lin; /* dP, dV, dQ, dK */
    CU_ASSERT(att_f >= 2 * per * tri && att_f <= 2 * per * seen);
    CU_ASSERT(att_b >= 4 * per * tri && att_b <= 4 * per * seen);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx512f")) CU_ASSERT(att_f < 2 * per * seen && att_b < 4 * per * seen);
#endif
    model_free(&m);
}


/* EfQAT on the model: at the switch the frozen rows' codes give the same forward; the
 * backward leaves the frozen rows' dW zero, gives the unfrozen rows the full product's rows
 * and every other gradient bit for bit, and the frozen rows' step-size gradient from the
 * linear's output (Y by residual subtraction and inverse RoPE) equals the fixed-code gradient
 * of the full dW. */
static void test_efqat_backward(void)
{
    enum { L = 2, B = 2, T = 8 };
    model a, b;
    qp_error err;
    small_model(&a, L, T, B, 1);
    small_model(&b, L, T, B, 1);
    CU_ASSERT_EQUAL_FATAL(efqat_create(&a, 0.25, TRAIN_EFQAT_CWPL, &err), QP_OK);
    efqat_select(&a);
    model_quantize(&a);
    for (size_t j = 0; j < a.n_qw; j++) CU_ASSERT_FATAL(a.qw_mem[j] == b.qw_mem[j]);
    same_step_pair(&a, &b, B, T);
    const int gains[3] = {P_LN1, P_LN2, P_LNF};
    for (int i = 0; i < 3; i++) CU_ASSERT(!memcmp(a.g.t[gains[i]], b.g.t[gains[i]], a.numel[gains[i]] * sizeof(float)));
    efqat_state *e = a.efq;
    size_t n_frozen = 0, n_ds = 0;
    for (int k = 0; k < 4; k++) {
        const model_linear *ln = &model_linears[k];
        size_t R = e->R[k], C = e->C[k];
        float gs = quant_gscale(a.q.kind, a.q.bits, (double)R * (double)C);
        for (int l = 0; l < L; l++) {
            double mx = 0;
            float ref[64] = {0};
            CU_ASSERT_FATAL(R <= 64);
            for (size_t r = 0; r < R; r++) {
                size_t row = (size_t)l * R + r;
                const float *ga = a.g.t[ln->tensor] + row * C, *gb = b.g.t[ln->tensor] + row * C;
                if (!e->frozen[e->moff[k] + row]) {
                    for (size_t c = 0; c < C; c++) CU_ASSERT(fabsf(ga[c] - gb[c]) <= 1e-5f * (fabsf(gb[c]) + 1e-3f));
                    CU_ASSERT(a.g.t[ln->scale][row] == 0.0f); /* STE comes later */
                    continue;
                }
                n_frozen++;
                for (size_t c = 0; c < C; c++) CU_ASSERT(ga[c] == 0.0f);
                quant_backward_codes(a.q.kind, a.q.bits, 0, gb, e->codes + e->coff[k] + row * C, NULL, &ref[r], 1, C, gs);
                if (fabs(ref[r]) > mx) mx = fabs(ref[r]);
            }
            for (size_t r = 0; r < R; r++)
                if (e->frozen[e->moff[k] + (size_t)l * R + r]) {
                    n_ds++;
                    CU_ASSERT(fabs(a.g.t[ln->scale][(size_t)l * R + r] - ref[r]) <= 1e-4 * mx + 1e-7);
                }
        }
    }
    CU_ASSERT(n_frozen > 0 && n_ds == n_frozen);
    model_free(&a);
    model_free(&b);
}

/* AdamW leaves frozen rows alone (latent weights, moments, no decay) while their per-row
 * step sizes train; the embedding's frozen rows keep their step sizes too (--embed-bits).
 * --unfrozen 1 is full QAT bit for bit. */
static void test_efqat_update(void)
{
    enum { L = 1, B = 2, T = 8, N = B * T };
    train_config c;
    train_config_default(&c);
    qp_error err;
    static uint16_t inp[N], tgt[N];
    for (int i = 0; i < N; i++) inp[i] = (uint16_t)((3 * i) % 32), tgt[i] = (uint16_t)((11 * i + 1) % 32);
    model a, b, full;
    small_model(&a, L, T, B, 1);
    small_model(&b, L, T, B, 1);
    small_model(&full, L, T, B, 1);
    CU_ASSERT_EQUAL_FATAL(efqat_create(&a, 0.25, TRAIN_EFQAT_CWPL, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(efqat_create(&full, 1.0, TRAIN_EFQAT_CWPN, &err), QP_OK);
    efqat_select(&a);
    efqat_select(&full);
    float *p0 = malloc(a.n_floats * sizeof *p0);
    memcpy(p0, a.params_mem, a.n_floats * sizeof *p0);
    for (int t = 1; t <= 3; t++) {
        double gn;
        model *ms[3] = {&a, &b, &full};
        for (int i = 0; i < 3; i++) {
            train_forward_backward(ms[i], inp, tgt, B, T, &gn);
            train_update(ms[i], &c, 1e-2, t, gn);
        }
    }
    CU_ASSERT(!memcmp(full.params_mem, b.params_mem, b.n_floats * sizeof(float)));
    CU_ASSERT(!memcmp(full.m_mem, b.m_mem, b.n_floats * sizeof(float)));
    efqat_state *e = a.efq;
    size_t frozen = 0, frozen_lin = 0, s_moved = 0, unf_moved = 0;
    for (int k = 0; k < EFQ_NT; k++) {
        int ti = k < 4 ? model_linears[k].tensor : P_WTE, si = k < 4 ? model_linears[k].scale : P_S_WTE;
        size_t C = e->C[k];
        for (size_t row = 0; row < e->R[k]; row++) {
            size_t o = a.off[ti] + row * C;
            if (!e->frozen[e->moff[k] + row]) {
                unf_moved += memcmp(a.params_mem + o, p0 + o, C * sizeof(float)) != 0;
                continue;
            }
            frozen++;
            CU_ASSERT(!memcmp(a.params_mem + o, p0 + o, C * sizeof(float)));
            for (size_t j = 0; j < C; j++) CU_ASSERT(a.m_mem[o + j] == 0.0f && a.v_mem[o + j] == 0.0f);
            float s_now = a.p.t[si][row], s_was = p0[a.off[si] + row];
            if (k < 4) s_moved += s_now != s_was, frozen_lin++;
            else CU_ASSERT(s_now == s_was);
        }
    }
    CU_ASSERT(frozen > frozen_lin && frozen_lin > 0 && s_moved > frozen_lin / 2 && unf_moved > 0);
    /* unfreezing (cwpn, lwpn) rescales a row by s_now / s_at_freeze: it quantizes to its
     * frozen codes again, so the forward does not jump although its step size moved */
    model_quantize(&a);
    float *qw0 = malloc(a.n_qw * sizeof *qw0);
    memcpy(qw0, a.qw_mem, a.n_qw * sizeof *qw0);
    e->r = 1.0;
    efqat_select(&a);
    CU_ASSERT(e->share == 1.0);
    model_quantize(&a);
    size_t jumps = 0;
    for (size_t j = 0; j < a.n_qw; j++) jumps += a.qw_mem[j] != qw0[j];
    CU_ASSERT_EQUAL(jumps, 0);
    free(qw0);
    free(p0);
    model_free(&a);
    model_free(&b);
    model_free(&full);
}

static void test_param_counts(void)
{
    train_shape s = {2, 64, 2, 0, 0, 128, 256};
    qp_error err;
    CU_ASSERT_EQUAL(train_shape_finish(&s, &err), QP_OK);
    CU_ASSERT_EQUAL(s.d_ff, 176);
    /* per layer: qkv 3*64*64, o 64*64, mlp 3*64*176, two norms 2*64; final norm 64 */
    double ne = 2 * (3 * 64 * 64 + 64 * 64 + 3 * 64 * 176 + 2 * 64) + 64;
    CU_ASSERT_DOUBLE_EQUAL(data_shape_params_nonembed(&s), ne, 0);
    CU_ASSERT_DOUBLE_EQUAL(data_shape_params(&s), ne + 256 * 64, 0);
    train_qspec q = {TRAIN_Q_NONE, 32, 0, 0};
    model m;
    CU_ASSERT_EQUAL_FATAL(model_create(&m, &s, &q, 1, 4, &err), QP_OK);
    size_t n = 0;
    for (int i = 0; i < P_S_WTE; i++) n += m.numel[i];
    CU_ASSERT_EQUAL(n, (size_t)data_shape_params(&s));
    model_free(&m);
    train_shape bad = {2, 64, 3, 0, 0, 128, 256};
    CU_ASSERT_EQUAL(train_shape_finish(&bad, &err), QP_ERR_INPUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "--heads"));
}

/* E2E-QP's lean layout (model_make_lean): what it allocates, measured against the arena
 * formula and against the full layout by the per-tensor amounts of spec Q4; its passes give
 * the full layout's loss and each layer's block-linear dW bit for bit; the step sizes'
 * moments survive the switch. */
static void test_e2e_lean_layout(void)
{
    train_shape s = {2, 64, 2, 0, 0, 16, 256};
    qp_error err;
    CU_ASSERT_EQUAL_FATAL(train_shape_finish(&s, &err), QP_OK);
    train_qspec q = {TRAIN_Q_ASYM, 2, 16, 0};
    model f, c, l;
    CU_ASSERT_EQUAL_FATAL(model_create(&f, &s, &q, 2, 16, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(model_create(&c, &s, &q, 2, 16, &err), QP_OK);
    CU_ASSERT_EQUAL_FATAL(model_create_lean(&l, &s, &q, 2, 16, &err), QP_OK);
    int th = f.scratch_threads;
    CU_ASSERT_EQUAL(f.alloc_bytes, model_arena_bytes(&f, 0, th));
    CU_ASSERT_EQUAL(l.alloc_bytes, model_arena_bytes(&l, 1, th));
    /* full minus lean, per scalar: block-linear weight 16 B (gradient, two moments, w_hat
     * copy) less the one-layer dW scratch (4 B / L), embedding 16 B (gradient, moments, its
     * unused quantized copy), zero point 12 B, norm gain 8 B (moments), step size 0 */
    double L = s.n_layer, lin = 0, zeros = 0;
    for (int k = 0; k < 4; k++) lin += (double)f.numel[model_linears[k].tensor], zeros += (double)f.numel[model_linears[k].zero];
    double norms = (double)(f.numel[P_LN1] + f.numel[P_LN2] + f.numel[P_LNF]);
    double expect = lin * (16 - 4 / L) + 16.0 * (double)f.numel[P_WTE] + 12 * zeros + 8 * norms;
    CU_ASSERT(fabs(f.alloc_bytes - l.alloc_bytes - expect) < 4 * 64); /* four families, rounded to 64 B */
    CU_ASSERT(expect > 0.5 * f.alloc_bytes); /* most of the full layout's memory at this size */
    /* the run's accounting before it allocates (train_memory_need) is the same */
    train_config c0;
    train_config_default(&c0);
    c0.shape = s;
    c0.quant = q;
    c0.batch = 2;
    c0.shape.context = 16;
    c0.threads = th;
    train_memory need;
    train_memory_need(&c0, &need);
    CU_ASSERT_EQUAL(need.params + need.acts, f.alloc_bytes);
    c0.method = TRAIN_METHOD_E2EQP;
    c0.init_path = "fp.safetensors";
    train_memory_need(&c0, &need);
    CU_ASSERT_EQUAL(need.params + need.acts, l.alloc_bytes + train_e2e_codes_bytes(&l));
    /* the same weights (W = w_hat), the same passes */
    model_init(&f, 5);
    model_quant_init(&f);
    f.qat = 1;
    model_quantize(&f);
    float *qw[4] = {f.qw.wqkv, f.qw.wo, f.qw.w13, f.qw.w2};
    for (int k = 0; k < 4; k++) memcpy(f.p.t[model_linears[k].tensor], qw[k], f.numel[model_linears[k].tensor] * sizeof(float));
    uint16_t inp[32], tgt[32];
    for (int i = 0; i < 32; i++) inp[i] = (uint16_t)(train_rng_next(&rng) % 256), tgt[i] = (uint16_t)(train_rng_next(&rng) % 256);
    memcpy(l.params_mem, f.params_mem, f.n_floats * sizeof(float));
    memcpy(c.params_mem, f.params_mem, f.n_floats * sizeof(float));
    l.qat = c.qat = 1;
    float lf = model_forward(&f, inp, tgt, 2, 16), ll = model_forward(&l, inp, tgt, 2, 16);
    CU_ASSERT(lf == ll);
    model_zero_grad(&f);
    model_backward(&f, inp, tgt, 2, 16);
    model_zero_grad(&l);
    int N = 32, D = s.d_model;
    model_acts *a = &l.a;
    layer_softmax_xent_backward(a->probs, tgt, N, s.vocab);
    layer_matmul_backward_rows(a->dln, NULL, a->probs, a->lnf, l.p.wte, N, D, s.vocab, NULL, 0, NULL);
    memset(a->dx, 0, (size_t)N * D * sizeof(float));
    layer_rmsnorm_backward(a->dx, l.g.lnf, a->dln, a->resid + (size_t)2 * N * D, l.p.lnf, a->lnf_rstd, N, D);
    for (int y = 1; y >= 0; y--) {
        memset(l.dw_layer, 0, (size_t)(lin / L) * sizeof(float));
        model_block_backward(&l, y, a->resid + (size_t)y * N * D, a->dx, 2, 16, 1);
        for (int k = 0; k < 4; k++) {
            int i = model_linears[k].tensor;
            size_t n = f.numel[i] / 2;
            CU_ASSERT(!memcmp(l.g.t[i], f.g.t[i] + (size_t)y * n, n * sizeof(float)));
        }
    }
    CU_ASSERT(!memcmp(l.g.ln1, f.g.ln1, f.numel[P_LN1] * sizeof(float)));
    /* into the lean layout from the full one: the step sizes' moments kept, the rest gone */
    c.m_mem[c.off[P_S_O] + 3] = 0.25f;
    c.v_mem[c.off[P_S_2]] = 0.5f;
    CU_ASSERT_EQUAL_FATAL(model_make_lean(&c, &err), QP_OK);
    CU_ASSERT(c.lean && c.qw.wqkv == c.p.wqkv && c.g.wte == NULL && model_moment(&c, c.m_mem, P_WQKV) == NULL);
    CU_ASSERT(model_moment(&c, c.m_mem, P_S_O)[3] == 0.25f && model_moment(&c, c.v_mem, P_S_2)[0] == 0.5f);
    CU_ASSERT_EQUAL(c.alloc_bytes, l.alloc_bytes);
    model_free(&f);
    model_free(&c);
    model_free(&l);
}

static void add(CU_pSuite s)
{
    TU_ADD(s, test_matmul_grad);
    TU_ADD(s, test_matmul_backward_rows);
    TU_ADD(s, test_matmul_dw_rows_shapes);
    TU_ADD(s, test_rmsnorm_grad);
    TU_ADD(s, test_rope_grad);
    TU_ADD(s, test_attention_grad);
    TU_ADD(s, test_attention_long_grad);
    TU_ADD(s, test_swiglu_grad);
    TU_ADD(s, test_xent_grad);
    TU_ADD(s, test_nan_propagates);
    TU_ADD(s, test_model_grad);
    TU_ADD(s, test_model_qat_uses_quantized_weights);
    TU_ADD(s, test_block_passes_compose);
    TU_ADD(s, test_efqat_backward);
    TU_ADD(s, test_dh13_padded);
    TU_ADD(s, test_efqat_update);
    TU_ADD(s, test_block_smaller_batch);
    TU_ADD(s, test_gemm_flops);
    TU_ADD(s, test_param_counts);
    TU_ADD(s, test_e2e_lean_layout);
}

int main(void) { return tu_main("model", add); }
