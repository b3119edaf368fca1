/* optim.cu: the CUDA backend's optimizer (train.c's grad_norm, clipping and adamw): the
 * gradient norm in fixed partial sums, and AdamW through formulas.h's qf_adamw. */
#include "common.cuh"

__global__ void sumsq_k(double *part, const float *g, size_t n)
{
    /* block b sums a fixed contiguous slice: the same order on every call */
    size_t per = (n + gridDim.x - 1) / gridDim.x, lo = blockIdx.x * per;
    size_t hi = lo + per < n ? lo + per : n;
    double acc = 0.0;
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x) acc += (double)g[j] * g[j];
    __shared__ double sh[256];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

__global__ void scale_k(float *x, float k, size_t n)
{
    GRID_LOOP(i, n) x[i] *= k;
}

__global__ void adamw_k(float *p, const float *g, float *m, float *v, size_t n, float lr, float wd,
                        float b1, float b2, float eps, float c1, float c2)
{
    GRID_LOOP(j, n) qf_adamw(&p[j], &m[j], &v[j], g[j], lr, wd, b1, b2, eps, c1, c2);
}

/* step sizes must stay positive (as in train.c) */
__global__ void clamp_min_k(float *x, size_t n, float lo)
{
    GRID_LOOP(i, n) if (!(x[i] > lo)) x[i] = lo;
}


int grad_norm(cuda_model *g, double *gnorm)
{
    sumsq_k<<<NORM_BLOCKS, 256>>>(g->norm_part, g->grads, g->y.n_floats);
    if (!LAUNCHED(g, "sumsq") ||
        !ck(g, cudaMemcpy(g->h_norm, g->norm_part, NORM_BLOCKS * sizeof(double), cudaMemcpyDeviceToHost),
            "copy gradient norm"))
        return 0;
    double ss = 0.0;
    for (int b = 0; b < NORM_BLOCKS; b++) ss += g->h_norm[b];
    *gnorm = sqrt(ss);
    return 1;
}

extern "C" void cuda_update(cuda_model *g, const cuda_adam *hp, int64_t t, double gnorm)
{
    const cuda_layout *y = &g->y;
    if (g->failed) return;
    if (hp->grad_clip > 0 && gnorm > hp->grad_clip)
        scale_k<<<blocks_for(y->n_floats, 256), 256>>>(g->grads, (float)(hp->grad_clip / gnorm), y->n_floats);
    float b1 = (float)hp->beta1, b2 = (float)hp->beta2, eps = (float)hp->eps;
    float c1 = (float)(1.0 - pow(hp->beta1, (double)t)), c2 = (float)(1.0 - pow(hp->beta2, (double)t));
    for (int i = 0; i < MODEL_NT; i++) {
        if (!y->numel[i]) continue;
        float wd = y->decay[i] ? (float)(hp->lr * hp->weight_decay) : 0.0f;
        adamw_k<<<blocks_for(y->numel[i], 256), 256>>>(g->p[i], g->g[i], g->adam_m + y->off[i],
                                                       g->adam_v + y->off[i], y->numel[i],
                                                       (float)hp->lr, wd, b1, b2, eps, c1, c2);
    }
    size_t ns = y->off[P_S_2] + y->numel[P_S_2] - y->off[P_S_WTE];
    if (ns) clamp_min_k<<<blocks_for(ns, 256), 256>>>(g->p[P_S_WTE], ns, 1e-8f);
    LAUNCHED(g, "adamw");
}
