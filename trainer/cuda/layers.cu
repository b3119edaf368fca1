/* layers.cu: the element-wise and normalisation layers of the CUDA backend (layers.c's
 * embedding, RMSNorm, RoPE, SwiGLU and softmax cross-entropy): kernels in forward/backward
 * pairs and the host functions that launch them. */
#include "common.cuh"

/* ---- element-wise and normalisation kernels (forward/backward pairs) ------------------ */

__global__ void embed_forward_k(float *out, const uint16_t *inp, const float *wte, int N, int D)
{
    GRID_LOOP(i, (size_t)N * D) out[i] = wte[(size_t)inp[i / D] * D + i % D];
}

/* One block per vocabulary row: tokens summed in order (deterministic, no atomics). */
__global__ void embed_backward_k(float *gw, const uint16_t *inp, const float *dx, int N, int D)
{
    int v = blockIdx.x;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        for (int n = 0; n < N; n++)
            if (inp[n] == v) acc += dx[(size_t)n * D + d];
        gw[(size_t)v * D + d] += acc;
    }
}

__global__ void add_k(float *y, const float *x, size_t n)
{
    GRID_LOOP(i, n) y[i] += x[i];
}

/* one warp per row */
__global__ void rmsnorm_forward_k(float *out, float *rstd, const float *x, const float *gain,
                                  int N, int D)
{
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (n >= N) return;
    const float *xr = x + (size_t)n * D;
    float ss = 0.0f;
    for (int d = lane; d < D; d += 32) ss += xr[d] * xr[d];
    ss = warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)D + RMS_EPS);
    if (lane == 0) rstd[n] = r;
    for (int d = lane; d < D; d += 32) out[(size_t)n * D + d] = xr[d] * r * gain[d];
}

/* dx += d/dx (one warp per row) */
__global__ void rmsnorm_backward_dx_k(float *dx, const float *dout, const float *x,
                                      const float *gain, const float *rstd, int N, int D)
{
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (n >= N) return;
    const float *xr = x + (size_t)n * D, *dy = dout + (size_t)n * D;
    float r = rstd[n], dot = 0.0f;
    for (int d = lane; d < D; d += 32) dot += dy[d] * gain[d] * xr[d];
    dot = warp_sum(dot);
    float c = dot * r * r * r / (float)D;
    for (int d = lane; d < D; d += 32) dx[(size_t)n * D + d] += r * dy[d] * gain[d] - c * xr[d];
}

/* dg partial sums over DG_CHUNKS token chunks (grid: D blocks of threads x chunks) ... */
__global__ void rmsnorm_backward_dg_k(float *part, const float *dout, const float *x,
                                      const float *rstd, int N, int D)
{
    int d = blockIdx.x * blockDim.x + threadIdx.x, ch = blockIdx.y;
    if (d >= D) return;
    int per = (N + DG_CHUNKS - 1) / DG_CHUNKS, lo = ch * per, hi = lo + per < N ? lo + per : N;
    float acc = 0.0f;
    for (int n = lo; n < hi; n++) acc += dout[(size_t)n * D + d] * x[(size_t)n * D + d] * rstd[n];
    part[(size_t)ch * D + d] = acc;
}

/* ... then added in chunk order. */
__global__ void rmsnorm_backward_dg_sum_k(float *dg, const float *part, int D)
{
    int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= D) return;
    float acc = 0.0f;
    for (int ch = 0; ch < DG_CHUNKS; ch++) acc += part[(size_t)ch * D + d];
    dg[d] += acc;
}

/* Rotate-half RoPE in place on the q and k heads of qkv; inverse undoes it (backward). */
__global__ void rope_k(float *qkv, const float *cos_t, const float *sin_t, int N, int T, int H,
                       int Hkv, int hd, int inverse)
{
    int half = hd / 2, nh = H + Hkv, QKV = (H + 2 * Hkv) * hd;
    float sg = inverse ? -1.0f : 1.0f;
    GRID_LOOP(i, (size_t)N * nh * half) {
        int j = (int)(i % half), h = (int)((i / half) % nh);
        size_t n = i / ((size_t)half * nh);
        int t = (int)(n % T);
        float *v = qkv + n * QKV + (size_t)h * hd;
        float c = cos_t[t * half + j], sn = sg * sin_t[t * half + j];
        float a = v[j], b = v[j + half];
        v[j] = a * c - b * sn;
        v[j + half] = b * c + a * sn;
    }
}

/* h13 rows [gate | up]; out = silu(gate) * up */
__global__ void swiglu_forward_k(float *out, const float *h13, int N, int F)
{
    GRID_LOOP(i, (size_t)N * F) {
        size_t n = i / F, f = i % F;
        float a = h13[n * 2 * F + f], u = h13[n * 2 * F + F + f];
        float sg = 1.0f / (1.0f + expf(-a));
        out[i] = a * sg * u;
    }
}

__global__ void swiglu_backward_k(float *dh13, const float *dout, const float *h13, int N, int F)
{
    GRID_LOOP(i, (size_t)N * F) {
        size_t n = i / F, f = i % F;
        float a = h13[n * 2 * F + f], u = h13[n * 2 * F + F + f], dy = dout[i];
        float sg = 1.0f / (1.0f + expf(-a));
        dh13[n * 2 * F + F + f] = dy * a * sg;
        dh13[n * 2 * F + f] = dy * u * sg * (1.0f + a * (1.0f - sg));
    }
}

/* logits -> probabilities in place, per-token loss; one block per token */
__global__ void softmax_xent_forward_k(float *probs, float *losses, const uint16_t *tgt, int V)
{
    int n = blockIdx.x;
    float *p = probs + (size_t)n * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, p[v]);
    mx = block_max(mx);
    float lt = p[tgt[n]] - mx;
    __syncthreads(); /* every thread has read the target's logit before any overwrites it */
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float e = expf(p[v] - mx);
        p[v] = e;
        sum += e;
    }
    sum = block_sum(sum);
    float inv = 1.0f / sum;
    for (int v = threadIdx.x; v < V; v += blockDim.x) p[v] *= inv;
    if (threadIdx.x == 0) losses[n] = logf(sum) - lt;
}

/* probs become dlogits of the mean loss */
__global__ void softmax_xent_backward_k(float *probs, const uint16_t *tgt, int N, int V)
{
    float inv = 1.0f / (float)N;
    GRID_LOOP(i, (size_t)N * V) {
        float d = probs[i] * inv;
        if ((int)(i % V) == tgt[i / V]) d -= inv;
        probs[i] = d;
    }
}

/* ---- host functions --------------------------------------------------------------------- */

void rmsnorm_forward(cuda_model *g, float *out, float *rstd, const float *x,
                     const float *gain, int N, int D)
{
    rmsnorm_forward_k<<<(N + 7) / 8, 256>>>(out, rstd, x, gain, N, D);
    LAUNCHED(g, "rmsnorm_forward");
}

void rmsnorm_backward(cuda_model *g, float *dx, float *dg, const float *dout,
                      const float *x, const float *gain, const float *rstd, int N, int D)
{
    rmsnorm_backward_dx_k<<<(N + 7) / 8, 256>>>(dx, dout, x, gain, rstd, N, D);
    dim3 grid((D + 127) / 128, DG_CHUNKS);
    rmsnorm_backward_dg_k<<<grid, 128>>>(g->dg_part, dout, x, rstd, N, D);
    rmsnorm_backward_dg_sum_k<<<(D + 127) / 128, 128>>>(dg, g->dg_part, D);
    LAUNCHED(g, "rmsnorm_backward");
}

void rope(cuda_model *g, float *qkv, int N, int inverse)
{
    const cuda_layout *y = &g->y;
    int hd = y->D / y->H;
    rope_k<<<blocks_for((size_t)N * (y->H + y->Hkv) * hd / 2, 256), 256>>>(
        qkv, g->rope_cos, g->rope_sin, N, y->T, y->H, y->Hkv, hd, inverse);
    LAUNCHED(g, "rope");
}

/* the launches of the whole-model passes, with their launch shapes */
void embed_forward(cuda_model *g, float *out, const float *wte, int N, int D)
{
    embed_forward_k<<<blocks_for((size_t)N * D, 256), 256>>>(out, g->inp, wte, N, D);
    LAUNCHED(g, "embed_forward");
}

void embed_backward(cuda_model *g, float *gw, const float *dx, int N, int D, int V)
{
    embed_backward_k<<<V, 256>>>(gw, g->inp, dx, N, D);
    LAUNCHED(g, "embed_backward");
}

void add_inplace(float *y, const float *x, size_t n)
{
    add_k<<<blocks_for(n, 256), 256>>>(y, x, n);
}

void swiglu_forward(float *out, const float *h13, int N, int F)
{
    swiglu_forward_k<<<blocks_for((size_t)N * F, 256), 256>>>(out, h13, N, F);
}

void swiglu_backward(float *dh13, const float *dout, const float *h13, int N, int F)
{
    swiglu_backward_k<<<blocks_for((size_t)N * F, 256), 256>>>(dh13, dout, h13, N, F);
}

void softmax_xent_forward(cuda_model *g, int N, int V)
{
    softmax_xent_forward_k<<<N, 256>>>(g->probs, g->losses, g->tgt, V);
    LAUNCHED(g, "softmax_xent_forward");
}

void softmax_xent_backward(cuda_model *g, int N, int V)
{
    softmax_xent_backward_k<<<blocks_for((size_t)N * V, 256), 256>>>(g->probs, g->tgt, N, V);
    LAUNCHED(g, "softmax_xent_backward");
}
