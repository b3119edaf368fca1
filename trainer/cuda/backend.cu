/* backend.cu: the CUDA backend's C interface (cuda_backend.h): device setup, the device
 * model's allocation (one per tensor family, carved by tensors.h's lists as model.c does),
 * uploads and downloads, the step entry points, and the sticky error handling. */
#include "common.cuh"

/* ---- error handling: the first failure sticks, later calls become no-ops -------------- */

void failf(cuda_model *g, const char *fmt, ...)
{
    if (g->failed) return;
    g->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
}

int ck(cuda_model *g, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 1;
    failf(g, "CUDA error in %s: %s", what, cudaGetErrorString(e));
    return 0;
}

int ckb(cuda_model *g, cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_SUCCESS) return 1;
    failf(g, "cuBLAS error %d in %s", (int)e, what);
    return 0;
}

/* ---- the C interface ---------------------------------------------------------------------- */

extern "C" int cuda_device_count(char *why, size_t n)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        if (why && n && e == cudaErrorInsufficientDriver)
            snprintf(why, n, "no NVIDIA driver, or one too old for CUDA runtime %d.%d",
                     CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
        else if (why && n) snprintf(why, n, "%s", cudaGetErrorString(e));
        (void)cudaGetLastError(); /* clear it */
        return 0;
    }
    if (count < 1 && why && n) snprintf(why, n, "the CUDA runtime sees no device");
    return count;
}

extern "C" int cuda_failed(const cuda_model *g, char *msg, size_t n)
{
    if (!g || !g->failed) return 0;
    if (msg && n) snprintf(msg, n, "%s", g->msg);
    return 1;
}

extern "C" void cuda_model_free(cuda_model *g)
{
    if (!g) return;
    if (g->blas) cublasDestroy(g->blas);
    void *dev[] = {g->params, g->grads, g->adam_m, g->adam_v, g->qw_mem, g->acts_mem,
                   g->scratch_mem, g->norm_part, g->inp, g->tgt, g->bf_a, g->bf_b};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) cudaFree(dev[i]);
    free(g->h_losses);
    free(g->h_norm);
    free(g);
}

static float *dalloc(cuda_model *g, size_t n, size_t *total)
{
    void *p = NULL;
    *total += n * sizeof(float);
    if (g->failed) return NULL;
    if (!ck(g, cudaMalloc(&p, (n ? n : 1) * sizeof(float)), "cudaMalloc")) return NULL;
    ck(g, cudaMemset(p, 0, (n ? n : 1) * sizeof(float)), "cudaMemset");
    return (float *)p;
}

/* Carve named pointers out of one family allocation (16-float aligned slices). */
static size_t carve(float *base, float **dst[], const size_t *sizes, size_t count)
{
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        if (base) *dst[i] = base + off;
        off += (sizes[i] + 15) / 16 * 16;
    }
    return off;
}

extern "C" int cuda_model_create(cuda_model **out, const cuda_layout *lay, const float *rope_cos,
                                 const float *rope_sin, char *msg, size_t n)
{
    *out = NULL;
    cuda_model *g = (cuda_model *)calloc(1, sizeof *g);
    if (!g) {
        snprintf(msg, n, "out of host memory for the CUDA model");
        return 1;
    }
    g->y = *lay;
    const cuda_layout *y = &g->y;
    size_t L = y->L, D = y->D, F = y->F, V = y->V, H = y->H, T = y->T, B = y->B, QKV = y->QKV;
    size_t N = B * T, hd = D / H, total = 0;
    ck(g, cudaSetDevice(0), "cudaSetDevice");
    if (!g->failed) ckb(g, cublasCreate(&g->blas), "cublasCreate");
    /* default math: no TF32 for fp32 products (parity with the CPU); bf16 is explicit */
    if (!g->failed) ckb(g, cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    g->params = dalloc(g, y->n_floats, &total);
    g->grads = dalloc(g, y->n_floats, &total);
    g->adam_m = dalloc(g, y->n_floats, &total);
    g->adam_v = dalloc(g, y->n_floats, &total);
#define QW_SUM(f, cnt) +(cnt)
    size_t nq = 0 MODEL_QW_TENSORS(QW_SUM);
#undef QW_SUM
    g->qw_mem = dalloc(g, nq, &total);
    /* the host's activation layout (tensors.h) */
    size_t acts_n[MODEL_NACTS] = {MODEL_ACT_TENSORS(MODEL_X_COUNT)};
#define ACT_ADDR(f, cnt) &g->f,
    float **acts_dst[MODEL_NACTS] = {MODEL_ACT_TENSORS(ACT_ADDR)};
#undef ACT_ADDR
    size_t na = carve(NULL, acts_dst, acts_n, sizeof acts_n / sizeof acts_n[0]);
    g->acts_mem = dalloc(g, na, &total);
    size_t scr_n[] = {N * D, N * D, N * D, N * D, N * D, N * D, N * D, B * H * T * T,
                      (size_t)DG_CHUNKS * D, T * hd / 2, T * hd / 2};
    float **scr_dst[] = {&g->hq, &g->hk, &g->hv, &g->hy, &g->dhq, &g->dhk, &g->dhv, &g->dS,
                         &g->dg_part, &g->rope_cos, &g->rope_sin};
    size_t ns = carve(NULL, scr_dst, scr_n, sizeof scr_n / sizeof scr_n[0]);
    g->scratch_mem = dalloc(g, ns, &total);
    if (!g->failed) ck(g, cudaMalloc(&g->norm_part, NORM_BLOCKS * sizeof(double)), "cudaMalloc");
    if (!g->failed) ck(g, cudaMalloc(&g->inp, N * sizeof(uint16_t)), "cudaMalloc");
    if (!g->failed) ck(g, cudaMalloc(&g->tgt, N * sizeof(uint16_t)), "cudaMalloc");
    if (y->bf16) {
        size_t cand[] = {V * D, QKV * D, 2 * F * D, D * D, D * F, N * QKV, N * 2 * F, N * V, N * D,
                         N * F, B * H * T * T};
        for (size_t i = 0; i < sizeof cand / sizeof cand[0]; i++)
            if (cand[i] > g->n_bf) g->n_bf = cand[i];
        total += 2 * g->n_bf * sizeof(__nv_bfloat16);
        if (!g->failed) ck(g, cudaMalloc(&g->bf_a, g->n_bf * sizeof(__nv_bfloat16)), "cudaMalloc");
        if (!g->failed) ck(g, cudaMalloc(&g->bf_b, g->n_bf * sizeof(__nv_bfloat16)), "cudaMalloc");
    }
    g->h_losses = (float *)malloc(N * sizeof(float));
    g->h_norm = (double *)malloc(NORM_BLOCKS * sizeof(double));
    if (g->failed || !g->h_losses || !g->h_norm) {
        snprintf(msg, n, "cannot set up %.2f GiB on the GPU for the model and its activations (%s); "
                         "use a smaller --batch, --context or model, or --device cpu",
                 (double)total / 1073741824.0, g->failed ? g->msg : "out of host memory");
        cuda_model_free(g);
        return 1;
    }
    carve(g->acts_mem, acts_dst, acts_n, sizeof acts_n / sizeof acts_n[0]);
    carve(g->scratch_mem, scr_dst, scr_n, sizeof scr_n / sizeof scr_n[0]);
    for (int i = 0; i < MODEL_NT; i++) {
        g->p[i] = g->params + y->off[i];
        g->g[i] = g->grads + y->off[i];
    }
    float *q = g->qw_mem;
#define QW_CARVE(f, cnt) g->qw.f = q, q += (cnt);
    MODEL_QW_TENSORS(QW_CARVE)
#undef QW_CARVE
    ck(g, cudaMemcpy(g->rope_cos, rope_cos, T * hd / 2 * sizeof(float), cudaMemcpyHostToDevice), "copy rope");
    ck(g, cudaMemcpy(g->rope_sin, rope_sin, T * hd / 2 * sizeof(float), cudaMemcpyHostToDevice), "copy rope");
    if (g->failed) {
        snprintf(msg, n, "%s", g->msg);
        cuda_model_free(g);
        return 1;
    }
    *out = g;
    return 0;
}

extern "C" void cuda_upload(cuda_model *g, const float *params, const float *adam_m,
                            const float *adam_v)
{
    size_t bytes = g->y.n_floats * sizeof(float);
    ck(g, cudaMemcpy(g->params, params, bytes, cudaMemcpyHostToDevice), "upload parameters");
    if (adam_m) ck(g, cudaMemcpy(g->adam_m, adam_m, bytes, cudaMemcpyHostToDevice), "upload moments");
    else ck(g, cudaMemset(g->adam_m, 0, bytes), "zero moments");
    if (adam_v) ck(g, cudaMemcpy(g->adam_v, adam_v, bytes, cudaMemcpyHostToDevice), "upload moments");
    else ck(g, cudaMemset(g->adam_v, 0, bytes), "zero moments");
}

extern "C" void cuda_download(cuda_model *g, float *params, float *adam_m, float *adam_v,
                              float *grads)
{
    size_t bytes = g->y.n_floats * sizeof(float);
    const float *src[4] = {g->params, g->adam_m, g->adam_v, g->grads};
    float *dst[4] = {params, adam_m, adam_v, grads};
    for (int i = 0; i < 4; i++)
        if (dst[i]) ck(g, cudaMemcpy(dst[i], src[i], bytes, cudaMemcpyDeviceToHost), "download");
}

extern "C" float cuda_forward(cuda_model *g, const uint16_t *inp, const uint16_t *tgt, int B,
                              int qat, int qat_embed)
{
    if (qat || qat_embed) quantize(g, qat, qat_embed);
    return forward(g, inp, tgt, B, qat, qat_embed);
}

extern "C" float cuda_forward_backward(cuda_model *g, const uint16_t *inp, const uint16_t *tgt,
                                       int B, int qat, int qat_embed, double *gnorm)
{
    *gnorm = NAN;
    if (qat || qat_embed) quantize(g, qat, qat_embed);
    float loss = forward(g, inp, tgt, B, qat, qat_embed);
    ck(g, cudaMemset(g->grads, 0, g->y.n_floats * sizeof(float)), "zero gradients");
    backward(g, B, qat, qat_embed);
    if (qat || qat_embed) quant_backward(g, qat, qat_embed);
    if (!grad_norm(g, gnorm)) return NAN;
    return g->failed ? NAN : loss;
}

extern "C" void cuda_synchronize(cuda_model *g)
{
    ck(g, cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}
