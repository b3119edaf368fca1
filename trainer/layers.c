/* layers.c: forward/backward pairs of the model's layers on raw arrays with explicit
 * shapes (N = B*T tokens). Matrix products go through CBLAS; the rest are OpenMP loops.
 * Backward functions accumulate into parameter gradients (dw, dg); see each for dinp. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* out[N, R] = inp[N, C] @ w[R, C]^T */
void layer_matmul_forward(float *out, const float *inp, const float *w, int N, int C, int R)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, R, C, 1.0f, inp, C, w, C, 0.0f, out, R);
}

/* dinp[N, C] = dout @ w (overwritten); dw[R, C] += dout^T @ inp. dinp may be NULL. */
void layer_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
                           const float *w, int N, int C, int R)
{
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, R, 1.0f, dout, R, w, C, 0.0f,
                    dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, N, 1.0f, dout, R, inp, C, 1.0f, dw, C);
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

/* dx += d/dx; dg += d/dg. The gain gradient is summed per thread and the partial sums are
 * added in thread order, so results do not depend on timing (a resumed run must match). */
void layer_rmsnorm_backward(float *dx, float *dg, const float *dout, const float *x,
                            const float *g, const float *rstd, int N, int D)
{
    int nt = omp_get_max_threads();
    float *part = calloc((size_t)nt * D, sizeof *part);
#pragma omp parallel num_threads(nt)
    {
        float *dgl = part ? part + (size_t)omp_get_thread_num() * D : NULL;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * D, *dy = dout + (size_t)n * D;
            float *dxr = dx + (size_t)n * D;
            float r = rstd[n], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int d = 0; d < D; d++) dot += dy[d] * g[d] * xr[d];
            float c = dot * r * r * r / (float)D;
            for (int d = 0; d < D; d++) dxr[d] += r * dy[d] * g[d] - c * xr[d];
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

/* Rotate-half RoPE (the Hugging Face Llama layout): pairs (j, j + hd/2). */
void layer_rope(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int H, int Hkv,
                int hd, int inverse)
{
    int half = hd / 2, QKV = (H + 2 * Hkv) * hd, nh = H + Hkv;
    float sg = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B * T; n++) {
        int t = n % T;
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        for (int h = 0; h < nh; h++) {
            float *v = qkv + (size_t)n * QKV + h * hd;
            for (int j = 0; j < half; j++) {
                float a = v[j], b = v[j + half], sn = sg * s[j];
                v[j] = a * c[j] - b * sn;
                v[j + half] = b * c[j] + a * sn;
            }
        }
    }
}

/* Causal multi-head attention with grouped KV heads. att: [B, H, T, T] probabilities
 * (entries above the diagonal unused). out: [N, H*hd]. */
void layer_attention_forward(float *out, float *att, const float *qkv, int B, int T, int H,
                             int Hkv, int hd)
{
    int QKV = (H + 2 * Hkv) * hd, D = H * hd, grp = H / Hkv;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kh = h / grp;
            for (int t = 0; t < T; t++) {
                const float *q = qkv + (size_t)(b * T + t) * QKV + h * hd;
                float *row = att + (((size_t)b * H + h) * T + t) * T;
                float mx = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = qkv + (size_t)(b * T + t2) * QKV + D + kh * hd;
                    float s = 0.0f;
#pragma omp simd reduction(+ : s)
                    for (int d = 0; d < hd; d++) s += q[d] * k[d];
                    s *= scale;
                    row[t2] = s;
                    if (s > mx) mx = s;
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    float e = expf(row[t2] - mx);
                    row[t2] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
                float *o = out + (size_t)(b * T + t) * D + h * hd;
                for (int d = 0; d < hd; d++) o[d] = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    float p = row[t2] * inv;
                    row[t2] = p;
                    const float *v = qkv + (size_t)(b * T + t2) * QKV + D + Hkv * hd + kh * hd;
#pragma omp simd
                    for (int d = 0; d < hd; d++) o[d] += p * v[d];
                }
            }
        }
}

/* dqkv accumulates (zero it first). Parallel over (batch, kv head) so that the heads that
 * share a K/V head never write the same gradient concurrently. */
void layer_attention_backward(float *dqkv, const float *dout, const float *att, const float *qkv,
                              int B, int T, int H, int Hkv, int hd)
{
    int QKV = (H + 2 * Hkv) * hd, D = H * hd, grp = H / Hkv;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel
    {
        float *dp = malloc((size_t)T * sizeof *dp);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kh = 0; kh < Hkv; kh++) {
                if (!dp) continue;
                for (int h = kh * grp; h < (kh + 1) * grp; h++)
                    for (int t = 0; t < T; t++) {
                        const float *row = att + (((size_t)b * H + h) * T + t) * T;
                        const float *dy = dout + (size_t)(b * T + t) * D + h * hd;
                        const float *q = qkv + (size_t)(b * T + t) * QKV + h * hd;
                        float *dq = dqkv + (size_t)(b * T + t) * QKV + h * hd;
                        float sum = 0.0f;
                        for (int t2 = 0; t2 <= t; t2++) {
                            size_t base = (size_t)(b * T + t2) * QKV + D + Hkv * hd + kh * hd;
                            const float *v = qkv + base;
                            float *dv = dqkv + base;
                            float p = row[t2], s = 0.0f;
#pragma omp simd reduction(+ : s)
                            for (int d = 0; d < hd; d++) {
                                s += dy[d] * v[d];
                                dv[d] += p * dy[d];
                            }
                            dp[t2] = s;
                            sum += p * s;
                        }
                        for (int t2 = 0; t2 <= t; t2++) {
                            size_t base = (size_t)(b * T + t2) * QKV + D + kh * hd;
                            const float *k = qkv + base;
                            float *dk = dqkv + base;
                            float ds = row[t2] * (dp[t2] - sum) * scale;
#pragma omp simd
                            for (int d = 0; d < hd; d++) {
                                dq[d] += ds * k[d];
                                dk[d] += ds * q[d];
                            }
                        }
                    }
            }
        free(dp);
    }
}

/* h13 rows: [gate (F) | up (F)]; out = silu(gate) * up. */
void layer_swiglu_forward(float *out, const float *h13, int N, int F)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = h13 + (size_t)n * 2 * F, *u = a + F;
        float *o = out + (size_t)n * F;
        for (int f = 0; f < F; f++) {
            float sg = 1.0f / (1.0f + expf(-a[f]));
            o[f] = a[f] * sg * u[f];
        }
    }
}

/* dh13 overwritten. */
void layer_swiglu_backward(float *dh13, const float *dout, const float *h13, int N, int F)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = h13 + (size_t)n * 2 * F, *u = a + F, *dy = dout + (size_t)n * F;
        float *da = dh13 + (size_t)n * 2 * F, *du = da + F;
        for (int f = 0; f < F; f++) {
            float sg = 1.0f / (1.0f + expf(-a[f]));
            float silu = a[f] * sg;
            du[f] = dy[f] * silu;
            da[f] = dy[f] * u[f] * sg * (1.0f + a[f] * (1.0f - sg));
        }
    }
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
            p[v] = expf(p[v] - mx);
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

void layer_softmax_xent_backward(float *probs, const uint16_t *tgt, int N, int V)
{
    float inv = 1.0f / (float)N;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *p = probs + (size_t)n * V;
        for (int v = 0; v < V; v++) p[v] *= inv;
        p[tgt[n]] -= inv;
    }
}
