/* attention.cu: causal grouped-query attention of the CUDA backend (layers.c's
 * layer_attention_*): heads split out so that each product is one strided-batched GEMM,
 * the causal softmax and its backward in warp-per-row kernels. */
#include "common.cuh"

/* qkv [N, QKV] -> q, k, v [B, H, T, hd]; K/V heads repeated over their query group */
__global__ void attn_split_k(float *q, float *k, float *v, const float *qkv, int B, int T, int H,
                             int Hkv, int hd)
{
    int D = H * hd, QKV = D + 2 * Hkv * hd, grp = H / Hkv;
    GRID_LOOP(i, (size_t)B * H * T * hd) {
        int d = (int)(i % hd), t = (int)((i / hd) % T), h = (int)((i / ((size_t)hd * T)) % H);
        size_t b = i / ((size_t)hd * T * H);
        const float *row = qkv + (b * T + t) * QKV;
        int kh = h / grp;
        q[i] = row[h * hd + d];
        k[i] = row[D + kh * hd + d];
        v[i] = row[D + Hkv * hd + kh * hd + d];
    }
}

/* y [B, H, T, hd] <-> out [N, D] (merge: forward; split_out: backward of the merge) */
__global__ void attn_merge_k(float *out, float *y, int B, int T, int H, int hd, int inverse)
{
    int D = H * hd;
    GRID_LOOP(i, (size_t)B * H * T * hd) {
        int d = (int)(i % hd), t = (int)((i / hd) % T), h = (int)((i / ((size_t)hd * T)) % H);
        size_t b = i / ((size_t)hd * T * H);
        size_t o = (b * T + t) * D + (size_t)h * hd + d;
        if (inverse) y[i] = out[o];
        else out[o] = y[i];
    }
}

/* S = scaled scores in, causal softmax out (zero above the diagonal); one warp per row */
__global__ void attn_softmax_forward_k(float *att, int rows, int T)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= rows) return;
    int t = r % T;
    float *row = att + (size_t)r * T;
    float mx = -INFINITY;
    for (int j = lane; j <= t; j += 32) mx = fmaxf(mx, row[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j <= t; j += 32) {
        float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    sum = warp_sum(sum);
    float inv = 1.0f / sum;
    for (int j = lane; j < T; j += 32) row[j] = j <= t ? row[j] * inv : 0.0f;
}

/* dS = P (dP - sum(P dP)) * scale, zero above the diagonal; dP in, dS out (in place) */
__global__ void attn_softmax_backward_k(float *dS, const float *att, int rows, int T, float scale)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (r >= rows) return;
    int t = r % T;
    const float *pr = att + (size_t)r * T;
    float *dr = dS + (size_t)r * T;
    float sum = 0.0f;
    for (int j = lane; j <= t; j += 32) sum += pr[j] * dr[j];
    sum = warp_sum(sum);
    for (int j = lane; j < T; j += 32) dr[j] = j <= t ? pr[j] * (dr[j] - sum) * scale : 0.0f;
}

/* dq, dk, dv [B, H, T, hd] -> dqkv [N, QKV] (overwritten); K/V gradients summed over the
 * query heads that share them */
__global__ void attn_grad_merge_k(float *dqkv, const float *dq, const float *dk, const float *dv,
                                  int B, int T, int H, int Hkv, int hd)
{
    int D = H * hd, QKV = D + 2 * Hkv * hd, grp = H / Hkv;
    GRID_LOOP(i, (size_t)B * T * QKV) {
        int c = (int)(i % QKV);
        size_t bt = i / QKV, b = bt / T, t = bt % T;
        float acc;
        if (c < D) {
            int h = c / hd, d = c % hd;
            acc = dq[((b * H + h) * T + t) * hd + d];
        } else {
            int cc = c - D, isv = cc >= Hkv * hd;
            if (isv) cc -= Hkv * hd;
            int kh = cc / hd, d = cc % hd;
            const float *src = isv ? dv : dk;
            acc = 0.0f;
            for (int h = kh * grp; h < (kh + 1) * grp; h++) acc += src[((b * H + h) * T + t) * hd + d];
        }
        dqkv[i] = acc;
    }
}

/* ---- host functions --------------------------------------------------------------------- */

/* out [N, D] from qkv [N, QKV]; att [B, H, T, T] keeps the probabilities for the backward */
void attention_forward(cuda_model *g, float *out, float *att, const float *qkv, int B)
{
    const cuda_layout *y = &g->y;
    int T = y->T, H = y->H, hd = y->D / H, BH = B * H;
    size_t nh = (size_t)BH * T * hd;
    attn_split_k<<<blocks_for(nh, 256), 256>>>(g->hq, g->hk, g->hv, qkv, B, T, H, y->Hkv, hd);
    LAUNCHED(g, "attn_split");
    /* S = scale q k^T per (b, h): the whole square (the causal half is masked after) */
    gemm(g, 1, 0, T, T, hd, g->hk, hd, (long long)T * hd, g->hq, hd, (long long)T * hd, att, T,
         (long long)T * T, BH, 1.0f / sqrtf((float)hd), 0.0f);
    attn_softmax_forward_k<<<(BH * T + 7) / 8, 256>>>(att, BH * T, T);
    LAUNCHED(g, "attn_softmax_forward");
    /* y = P v */
    gemm(g, 0, 0, hd, T, T, g->hv, hd, (long long)T * hd, att, T, (long long)T * T, g->hy, hd,
         (long long)T * hd, BH, 1.0f, 0.0f);
    attn_merge_k<<<blocks_for(nh, 256), 256>>>(out, g->hy, B, T, H, hd, 0);
    LAUNCHED(g, "attn_merge");
}

/* dqkv [N, QKV] overwritten from dout [N, D] */
void attention_backward(cuda_model *g, float *dqkv, const float *dout, const float *att,
                        const float *qkv, int B)
{
    const cuda_layout *y = &g->y;
    int T = y->T, H = y->H, hd = y->D / H, BH = B * H;
    long long sH = (long long)T * hd, sT = (long long)T * T;
    size_t nh = (size_t)BH * T * hd;
    attn_split_k<<<blocks_for(nh, 256), 256>>>(g->hq, g->hk, g->hv, qkv, B, T, H, y->Hkv, hd);
    attn_merge_k<<<blocks_for(nh, 256), 256>>>((float *)dout, g->hy, B, T, H, hd, 1);
    LAUNCHED(g, "attn_split");
    /* dP = dy v^T; dv = P^T dy */
    gemm(g, 1, 0, T, T, hd, g->hv, hd, sH, g->hy, hd, sH, g->dS, T, sT, BH, 1.0f, 0.0f);
    gemm(g, 0, 1, hd, T, T, g->hy, hd, sH, att, T, sT, g->dhv, hd, sH, BH, 1.0f, 0.0f);
    attn_softmax_backward_k<<<(BH * T + 7) / 8, 256>>>(g->dS, att, BH * T, T, 1.0f / sqrtf((float)hd));
    LAUNCHED(g, "attn_softmax_backward");
    /* dq = dS k; dk = dS^T q */
    gemm(g, 0, 0, hd, T, T, g->hk, hd, sH, g->dS, T, sT, g->dhq, hd, sH, BH, 1.0f, 0.0f);
    gemm(g, 0, 1, hd, T, T, g->hq, hd, sH, g->dS, T, sT, g->dhk, hd, sH, BH, 1.0f, 0.0f);
    attn_grad_merge_k<<<blocks_for((size_t)B * T * y->QKV, 256), 256>>>(dqkv, g->dhq, g->dhk, g->dhv,
                                                                      B, T, H, y->Hkv, hd);
    LAUNCHED(g, "attn_grad_merge");
}
