/* layers.c: forward/backward pairs of the model's layers on raw arrays with explicit
 * shapes (N = B*T tokens). Matrix products go through train_gemm (gemm.c); the rest are OpenMP loops.
 * Backward functions accumulate into parameter gradients (dw, dg); see each for dinp. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "model.h"

extern void openblas_set_num_threads(int n);

/* exp(x) for float without a libm call and without branches, so loops vectorise: Cody-Waite
 * range reduction and Cephes' degree-6 polynomial (about 2 ulp); x is clamped to
 * [-87.3, 88.7], so exp(-inf) gives 1e-38 rather than 0. */
static inline float qp_expf(float x)
{
    /* NaN (weights of a diverging run) passes both clamps, and converting it to an integer
     * below is undefined: compute with 0 and return the NaN. */
    float in = x;
    x = x != x ? 0.0f : x;
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    float n = x * 1.44269504088896341f;
    n = (n >= 0 ? (n + 12582912.0f) - 12582912.0f : -((-n + 12582912.0f) - 12582912.0f));
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } u;
    int32_t e = (int32_t)n;
    /* 2^n in two halves so n = 128 (x near 88.7) does not overflow the exponent field */
    int32_t e1 = e / 2, e2 = e - e1;
    u.i = (e1 + 127) << 23;
    p *= u.f;
    u.i = (e2 + 127) << 23;
    return in != in ? in : p * u.f;
}

/* FLOPs (2 M N K per product) of every matrix product issued since the process started, by
 * the CPU layers and the CUDA backend alike; the attention products run inside OpenMP loops,
 * hence the atomic (relaxed: only the total matters, and one add per product is cheap). */
static _Atomic uint64_t gemm_flops;

void model_gemm_flops_add(uint64_t flops)
{
    atomic_fetch_add_explicit(&gemm_flops, flops, memory_order_relaxed);
}

uint64_t model_gemm_flops(void) { return atomic_load_explicit(&gemm_flops, memory_order_relaxed); }

/* Every product of the layers goes through here (row-major; ta/tb 1 = transposed), so that it
 * is counted; train_gemm (gemm.c) picks the library (oneDNN or OpenBLAS) and the precision. */
static void layer_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                       int ldb, float beta, float *C, int ldc)
{
    model_gemm_flops_add(2 * (uint64_t)M * (uint64_t)N * (uint64_t)K);
    train_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Attention's per-head products (inside the OpenMP loop over heads, one thread each): bf16
 * inputs with fp32 accumulation under --precision bf16, as on CUDA, else fp32 on the calling
 * thread's kernel (gemm.h), which skips the blocks the causal mask zeroes (diag: the chunk's
 * first row; scores j > i + diag are zero). Counted as issued. */
static void att_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc, int diag)
{
    if (train_gemm_bf16_on()) {
        model_gemm_flops_add(2 * (uint64_t)M * (uint64_t)N * (uint64_t)K);
        train_gemm_bf16_1t(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    } else {
        model_gemm_flops_add(train_gemm_f32_1t_causal(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, diag));
    }
}

/* out[N, R] = inp[N, C] @ w[R, C]^T */
void layer_matmul_forward(float *out, const float *inp, const float *w, int N, int C, int R)
{
    train_gemm_keep_mark(1); /* in a step's scope, the backward reuses inp's and w's bf16 copies */
    layer_gemm(0, 1, N, R, C, 1.0f, inp, C, w, C, 0.0f, out, R);
    train_gemm_keep_mark(0);
}

/* dinp[N, C] = dout @ w (overwritten); dw[R, C] += dout^T @ inp, dout's rows ldo apart. dinp
 * may be NULL. */
void layer_matmul_backward_ld(float *dinp, float *dw, const float *dout, int ldo, const float *inp,
                              const float *w, int N, int C, int R)
{
    train_gemm_reuse(1); /* both products read dout: bf16 converts it once */
    if (dinp)
        layer_gemm(0, 0, N, C, R, 1.0f, dout, ldo, w, C, 0.0f,
                   dinp, C);
    layer_gemm(1, 0, R, C, N, 1.0f, dout, ldo, inp, C, 1.0f, dw, C);
    train_gemm_reuse(0);
}

void layer_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
                           const float *w, int N, int C, int R)
{
    layer_matmul_backward_ld(dinp, dw, dout, R, inp, w, N, C, R);
}

/* dinp[N, C] = dout @ w (overwritten): the input gradient alone. */
void layer_matmul_dx(float *dinp, const float *dout, const float *w, int N, int C, int R)
{
    layer_gemm(0, 0, N, C, R, 1.0f, dout, R, w, C, 0.0f, dinp, C);
}

/* Contiguous runs of rows at least this long on average are multiplied in place (dout's
 * columns read with its leading dimension, the product added into dw's rows) instead of
 * gathered: one product per run. */
enum { ROW_RUN_MIN = 32 };
/* Scatter-adds of at most this many floats run on the calling thread. */
enum { SCATTER_SERIAL = 32768 };

int layer_rows_gather(const int *rows, int nrows)
{
    int runs = nrows > 0;
    for (int j = 1; j < nrows; j++) runs += rows[j] != rows[j - 1] + 1;
    return (long)runs * ROW_RUN_MIN > nrows;
}

void layer_matmul_dw_rows(float *dw, const float *dout, const float *dsub, const float *inp, int N, int C, int R,
                          const int *rows, int nrows, float *scratch)
{
    if (nrows <= 0) return;
    if (!dsub && !layer_rows_gather(rows, nrows)) {
        for (int j0 = 0, j = 1; j <= nrows; j++) {
            if (j < nrows && rows[j] == rows[j - 1] + 1) continue;
            layer_gemm(1, 0, j - j0, C, N, 1.0f, dout + rows[j0], R, inp, C, 1.0f, dw + (size_t)rows[j0] * C, C);
            j0 = j;
        }
        return;
    }
    float *dwsub = scratch + (size_t)N * nrows;
    if (!dsub) {
        float *g = scratch;
        uint16_t *mask = malloc((size_t)(R + 15) / 16 * sizeof *mask); /* NULL: the scalar gather */
        if (mask) train_cols_mask(mask, R, rows, nrows);
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) train_gather_cols(g + (size_t)n * nrows, dout + (size_t)n * R, R, rows, nrows, mask);
        free(mask);
        dsub = g;
    }
    layer_gemm(1, 0, nrows, C, N, 1.0f, dsub, nrows, inp, C, 0.0f, dwsub, C);
    /* a small scatter-add costs less than waking the threads (they wait passively) */
#pragma omp parallel for schedule(static) if ((size_t)nrows * C > SCATTER_SERIAL)
    for (int j = 0; j < nrows; j++) {
        float *dst = dw + (size_t)rows[j] * C;
        const float *src = dwsub + (size_t)j * C;
        for (int c = 0; c < C; c++) dst[c] += src[c];
    }
}

/* layer_matmul_backward with dw only for rows[0..nrows) (sorted, distinct; EfQAT's unfrozen
 * rows): layer_matmul_dw_rows. nrows == R is layer_matmul_backward. */
void layer_matmul_backward_rows(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, int N, int C, int R, const int *rows, int nrows,
                                float *scratch)
{
    if (nrows == R) {
        layer_matmul_backward(dinp, dw, dout, inp, w, N, C, R);
        return;
    }
    if (dinp) layer_matmul_dx(dinp, dout, w, N, C, R);
    layer_matmul_dw_rows(dw, dout, NULL, inp, N, C, R, rows, nrows, scratch);
}

/* A side job's work on row n of dY (hot in cache: the pass just wrote it) and of Y. */
static void side_row(const layer_side *sd, size_t n, const float *dy, const float *y, int tid)
{
    size_t R = (size_t)sd->R;
    if (sd->acc) {
        float *acc = sd->acc + (size_t)tid * R;
        if (sd->ysub) {
            const float *b = sd->ysub + n * R;
#pragma omp simd
            for (size_t j = 0; j < R; j++) acc[j] += dy[j] * (y[j] - b[j]);
        } else {
#pragma omp simd
            for (size_t j = 0; j < R; j++) acc[j] += dy[j] * y[j];
        }
    }
    if (sd->dsub) {
        train_gather_cols(sd->dsub + n * (size_t)sd->nrows, dy, sd->R, sd->rows, sd->nrows, sd->mask);
    }
}

/* Threads of a pass with a side job: those its partial sums have room for. */
static int side_threads(const layer_side *sd)
{
    int nt = omp_get_max_threads();
    return sd && sd->nt < nt ? sd->nt : nt;
}

#define RMS_EPS 1e-5f

void layer_rmsnorm_forward(float *out, float *rstd, const float *x, const float *g, int N, int D)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float *o = out + (size_t)n * D;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int d = 0; d < D; d++) ss += xr[d] * xr[d];
        float r = 1.0f / sqrtf(ss / (float)D + RMS_EPS);
        rstd[n] = r;
        for (int d = 0; d < D; d++) o[d] = xr[d] * r * g[d];
    }
}

/* dx += d/dx (dx NULL: only dg); dg += d/dg. The gain gradient is summed per thread and the partial sums are
 * added in thread order, so results do not depend on timing (a resumed run must match). side
 * (with dx): its job on every finished row of dx, Y rows from side->y. */
void layer_rmsnorm_backward_side(float *dx, float *dg, const float *dout, const float *x, const float *g,
                                 const float *rstd, int N, int D, const layer_side *side)
{
    int nt = side_threads(side);
    float *part = calloc((size_t)nt * D, sizeof *part);
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *dgl = part ? part + (size_t)tid * D : NULL;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * D, *dy = dout + (size_t)n * D;
            float r = rstd[n];
            if (dx) {
                float *dxr = dx + (size_t)n * D, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int d = 0; d < D; d++) dot += dy[d] * g[d] * xr[d];
                float c = dot * r * r * r / (float)D;
                for (int d = 0; d < D; d++) dxr[d] += r * dy[d] * g[d] - c * xr[d];
                if (side) side_row(side, (size_t)n, dxr, side->y + (size_t)n * D, tid);
            }
            if (dgl)
                for (int d = 0; d < D; d++) dgl[d] += dy[d] * xr[d] * r;
        }
    }
    if (part) {
        for (int t = 0; t < nt; t++)
            for (int d = 0; d < D; d++) dg[d] += part[(size_t)t * D + d];
    } else {
        /* out of memory for the partial sums: the slow serial path */
        for (int n = 0; n < N; n++)
            for (int d = 0; d < D; d++) dg[d] += dout[(size_t)n * D + d] * x[(size_t)n * D + d] * rstd[n];
    }
    free(part);
}

void layer_rmsnorm_backward(float *dx, float *dg, const float *dout, const float *x,
                            const float *g, const float *rstd, int N, int D)
{
    layer_rmsnorm_backward_side(dx, dg, dout, x, g, rstd, N, D, NULL);
}

void layer_rope_tables(float *cos_t, float *sin_t, int T, int hd)
{
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < half; j++) {
            double freq = pow(10000.0, -2.0 * j / hd);
            cos_t[t * half + j] = (float)cos(t * freq);
            sin_t[t * half + j] = (float)sin(t * freq);
        }
}

/* One token's q and k heads rotated (sg 1) or rotated back (sg -1); out may be in. */
static inline void rope_row(float *out, const float *in, const float *c, const float *s, float sg, int nh, int hd)
{
    int half = hd / 2;
    for (int h = 0; h < nh; h++) {
        const float *v = in + h * hd;
        float *o = out + h * hd;
        for (int j = 0; j < half; j++) {
            float a = v[j], b = v[j + half], sn = sg * s[j];
            o[j] = a * c[j] - b * sn;
            o[j + half] = b * c[j] + a * sn;
        }
    }
}

/* Rotate-half RoPE (the Hugging Face Llama layout): pairs (j, j + hd/2). side (inverse only):
 * its job on every rotated-back row of qkv as dY, with Y the rows of side->y rotated back too
 * (into side->rowbuf; v copied). */
void layer_rope_side(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int H, int Hkv,
                     int hd, int inverse, const layer_side *side)
{
    int half = hd / 2, QKV = (H + 2 * Hkv) * hd, nh = H + Hkv;
    float sg = inverse ? -1.0f : 1.0f;
    int nt = side_threads(side);
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num();
        float *yb = side ? side->rowbuf + (size_t)tid * QKV : NULL;
#pragma omp for schedule(static)
        for (int n = 0; n < B * T; n++) {
            int t = n % T;
            const float *c = cos_t + t * half, *s = sin_t + t * half;
            float *v = qkv + (size_t)n * QKV;
            rope_row(v, v, c, s, sg, nh, hd);
            if (side) {
                const float *y = side->y + (size_t)n * QKV;
                rope_row(yb, y, c, s, sg, nh, hd);
                memcpy(yb + nh * hd, y + nh * hd, (size_t)(QKV - nh * hd) * sizeof *yb);
                side_row(side, (size_t)n, v, yb, tid);
            }
        }
    }
}

void layer_rope(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int H, int Hkv,
                int hd, int inverse)
{
    layer_rope_side(qkv, cos_t, sin_t, B, T, H, Hkv, hd, inverse, NULL);
}

#define ATT_CHUNK 64 /* query rows per block in attention */

/* Causal multi-head attention with grouped KV heads. att: [B, H, T, T] probabilities
 * (zero above the diagonal). out: [N, H*hd]. Each (batch, head) is a few small matrix
 * products: each runs on its thread's kernel (att_gemm), in parallel over (batch, head) with
 * OpenMP, which beats threading each small product. */
void layer_attention_forward(float *out, float *att, const float *qkv, int B, int T, int H,
                             int Hkv, int hd)
{
    int QKV = (H + 2 * Hkv) * hd, D = H * hd, grp = H / Hkv;
    float scale = 1.0f / sqrtf((float)hd);
    int nt = omp_get_max_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kh = h / grp;
            const float *q = qkv + (size_t)b * T * QKV + h * hd;
            const float *k = qkv + (size_t)b * T * QKV + D + kh * hd;
            const float *v = qkv + (size_t)b * T * QKV + D + Hkv * hd + kh * hd;
            float *P = att + ((size_t)b * H + h) * T * T;
            /* row chunks only multiply the keys they can see (causal): about 5/8 of the work */
            for (int r0 = 0; r0 < T; r0 += ATT_CHUNK) {
                int rows = T - r0 < ATT_CHUNK ? T - r0 : ATT_CHUNK, keys = r0 + rows;
                att_gemm(0, 1, rows, keys, hd, scale,
                           q + (size_t)r0 * QKV, QKV, k, QKV, 0.0f, P + (size_t)r0 * T, T, r0);
                for (int t = r0; t < keys; t++) {
                    float *row = P + (size_t)t * T;
                    float mx = row[0];
                    for (int t2 = 1; t2 <= t; t2++) mx = row[t2] > mx ? row[t2] : mx;
                    float sum = 0.0f;
                    for (int t2 = 0; t2 <= t; t2++) {
                        float e = qp_expf(row[t2] - mx);
                        row[t2] = e;
                        sum += e;
                    }
                    float inv = 1.0f / sum;
                    for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
                    for (int t2 = t + 1; t2 < T; t2++) row[t2] = 0.0f;
                }
                att_gemm(0, 0, rows, hd, keys, 1.0f,
                           P + (size_t)r0 * T, T, v, QKV, 0.0f, out + ((size_t)b * T + r0) * D + h * hd, D, r0);
            }
        }
    openblas_set_num_threads(nt);
}

/* dqkv accumulates (zero it first). Parallel over (batch, kv head) so that the heads that
 * share a K/V head never write the same gradient concurrently. */
void layer_attention_backward(float *dqkv, const float *dout, const float *att, const float *qkv,
                              int B, int T, int H, int Hkv, int hd, float *scratch)
{
    int QKV = (H + 2 * Hkv) * hd, D = H * hd, grp = H / Hkv;
    float scale = 1.0f / sqrtf((float)hd);
    int nt = omp_get_max_threads();
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        /* per-thread T x T scratch: given (allocated once with the model) or, if NULL, malloc'ed
         * here (a fresh 256 KiB block per call costs page faults) */
        float *dS = scratch ? scratch + (size_t)omp_get_thread_num() * T * T
                            : malloc((size_t)T * T * sizeof *dS);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kh = 0; kh < Hkv; kh++) {
                if (!dS) continue;
                size_t base = (size_t)b * T * QKV;
                const float *k = qkv + base + D + kh * hd, *v = qkv + base + D + Hkv * hd + kh * hd;
                float *dk = dqkv + base + D + kh * hd, *dv = dqkv + base + D + Hkv * hd + kh * hd;
                for (int h = kh * grp; h < (kh + 1) * grp; h++) {
                    const float *P = att + ((size_t)b * H + h) * T * T;
                    const float *dy = dout + (size_t)b * T * D + h * hd;
                    const float *q = qkv + base + h * hd;
                    float *dq = dqkv + base + h * hd;
                    for (int r0 = 0; r0 < T; r0 += ATT_CHUNK) {
                        int rows = T - r0 < ATT_CHUNK ? T - r0 : ATT_CHUNK, keys = r0 + rows;
                        const float *Pc = P + (size_t)r0 * T, *dyc = dy + (size_t)r0 * D;
                        float *dSc = dS + (size_t)r0 * T;
                        /* dP = dY V^T; dV += P^T dY */
                        att_gemm(0, 1, rows, keys, hd, 1.0f, dyc,
                                   D, v, QKV, 0.0f, dSc, T, r0);
                        att_gemm(1, 0, keys, hd, rows, 1.0f, Pc, T,
                                   dyc, D, 1.0f, dv, QKV, r0);
                        /* softmax backward: dS = P (dP - sum(P dP)) * scale, 0 above the diagonal */
                        for (int t = r0; t < keys; t++) {
                            const float *pr = P + (size_t)t * T;
                            float *dr = dS + (size_t)t * T;
                            float sum = 0.0f;
                            for (int t2 = 0; t2 <= t; t2++) sum += pr[t2] * dr[t2];
                            for (int t2 = 0; t2 <= t; t2++) dr[t2] = pr[t2] * (dr[t2] - sum) * scale;
                            for (int t2 = t + 1; t2 < keys; t2++) dr[t2] = 0.0f;
                        }
                        /* dQ += dS K; dK += dS^T Q */
                        att_gemm(0, 0, rows, hd, keys, 1.0f, dSc,
                                   T, k, QKV, 1.0f, dq + (size_t)r0 * QKV, QKV, r0);
                        att_gemm(1, 0, keys, hd, rows, 1.0f, dSc,
                                   T, q + (size_t)r0 * QKV, QKV, 1.0f, dk, QKV, r0);
                    }
                }
            }
        if (!scratch) free(dS);
    }
    openblas_set_num_threads(nt);
}

/* h13 rows: [gate (F) | up (F)]; out = silu(gate) * up. */
void layer_swiglu_forward(float *out, const float *h13, int N, int F)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = h13 + (size_t)n * 2 * F, *u = a + F;
        float *o = out + (size_t)n * F;
        for (int f = 0; f < F; f++) {
            float sg = 1.0f / (1.0f + qp_expf(-a[f]));
            o[f] = a[f] * sg * u[f];
        }
    }
}

/* dh13 overwritten (rows ldd apart; the columns past 2F left alone). side: its job on every
 * row of dh13, Y the rows of h13. */
void layer_swiglu_backward_ld(float *dh13, int ldd, const float *dout, const float *h13, int N, int F,
                              const layer_side *side)
{
#pragma omp parallel num_threads(side_threads(side))
    {
        int tid = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *a = h13 + (size_t)n * 2 * F, *u = a + F, *dy = dout + (size_t)n * F;
            float *da = dh13 + (size_t)n * ldd, *du = da + F;
            for (int f = 0; f < F; f++) {
                float sg = 1.0f / (1.0f + qp_expf(-a[f]));
                float silu = a[f] * sg;
                du[f] = dy[f] * silu;
                da[f] = dy[f] * u[f] * sg * (1.0f + a[f] * (1.0f - sg));
            }
            if (side) side_row(side, (size_t)n, da, a, tid);
        }
    }
}

void layer_swiglu_backward_side(float *dh13, const float *dout, const float *h13, int N, int F,
                                const layer_side *side)
{
    layer_swiglu_backward_ld(dh13, 2 * F, dout, h13, N, F, side);
}

void layer_swiglu_backward(float *dh13, const float *dout, const float *h13, int N, int F)
{
    layer_swiglu_backward_ld(dh13, 2 * F, dout, h13, N, F, NULL);
}

float layer_softmax_xent_forward(float *probs, float *losses, const uint16_t *tgt, int N, int V)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *p = probs + (size_t)n * V;
        float mx = p[0];
        for (int v = 1; v < V; v++)
            if (p[v] > mx) mx = p[v];
        /* loss = log(sum exp(logit - max)) - (logit_t - max): no log of an underflowed 0 */
        float lt = p[tgt[n]] - mx;
        float sum = 0.0f;
        for (int v = 0; v < V; v++) {
            p[v] = qp_expf(p[v] - mx);
            sum += p[v];
        }
        float loss = logf(sum) - lt;
        float inv = 1.0f / sum;
        for (int v = 0; v < V; v++) p[v] *= inv;
        losses[n] = loss;
    }
    double total = 0.0; /* summed serially: the same value whatever the thread count */
    for (int n = 0; n < N; n++) total += losses[n];
    return (float)(total / N);
}

/* side: its job on every row of dlogits (a gather: no sums for the head). */
void layer_softmax_xent_backward_side(float *probs, const uint16_t *tgt, int N, int V, const layer_side *side)
{
    float inv = 1.0f / (float)N;
#pragma omp parallel num_threads(side_threads(side))
    {
        int tid = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            float *p = probs + (size_t)n * V;
            for (int v = 0; v < V; v++) p[v] *= inv;
            p[tgt[n]] -= inv;
            if (side) side_row(side, (size_t)n, p, side->y ? side->y + (size_t)n * V : NULL, tid);
        }
    }
}

void layer_softmax_xent_backward(float *probs, const uint16_t *tgt, int N, int V)
{
    layer_softmax_xent_backward_side(probs, tgt, N, V, NULL);
}
