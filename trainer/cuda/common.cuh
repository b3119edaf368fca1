/* common.cuh: what the CUDA backend's sources share (docs/trainer.md, "CUDA backend"): the
 * device model, error handling, launch helpers, block reductions and the host functions each
 * kernel family exports to the others. The tensor lists come from tensors.h and the quantizer
 * and AdamW formulas from formulas.h, the same headers the CPU trainer compiles. Without
 * relocatable device code a kernel is launched from its own file, so each family file holds
 * its kernels and the host functions that launch them. */
#ifndef TRAIN_CUDA_COMMON_CUH
#define TRAIN_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "formulas.h"
#include "tensors.h"

/* train_quantizer (train.h); backend.c checks the numbers. The P_* tensor order is tensors.h's. */
enum { Q_NONE = 0, Q_BINARY, Q_TERNARY, Q_SEQ, Q_LSQ, Q_ASYM };

#define RMS_EPS 1e-5f
#define NORM_BLOCKS 256  /* fixed partial sums for the gradient norm (order-stable) */
#define DG_CHUNKS 64     /* token chunks for the norm-gain gradient */

struct cuda_model {
    cuda_layout y;
    cublasHandle_t blas;
    int failed;
    char msg[512];
    /* families */
    float *params, *grads, *adam_m, *adam_v, *qw_mem, *acts_mem, *scratch_mem;
    float *p[MODEL_NT], *g[MODEL_NT];
    struct {
        MODEL_QW_TENSORS(MODEL_X_FIELD) /* tensors.h */
    } qw;
    /* activations, sized for y.B like the host's; per-layer slices use the call's N */
    MODEL_ACT_TENSORS(MODEL_X_FIELD) /* tensors.h */
    /* scratch: attention heads split out [B, H, T, hd], their gradients, dS [B, H, T, T],
     * the norm-gain partial sums */
    float *hq, *hk, *hv, *hy, *dhq, *dhk, *dhv, *dS, *dg_part;
    float *rope_cos, *rope_sin;
    double *norm_part;
    uint16_t *inp, *tgt;
    __nv_bfloat16 *bf_a, *bf_b; /* bf16 copies of a product's two inputs */
    size_t n_bf;
    float *h_losses;
    double *h_norm;
};

/* ---- error handling (backend.cu): the first failure sticks, later calls become no-ops ---- */
void failf(cuda_model *g, const char *fmt, ...);
int ck(cuda_model *g, cudaError_t e, const char *what);
int ckb(cuda_model *g, cublasStatus_t e, const char *what);

#define LAUNCHED(g, name) ck((g), cudaGetLastError(), name)

static inline unsigned blocks_for(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : (b > 65535u * 16 ? 65535u * 16 : b));
}

#define GRID_LOOP(i, n) for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                             i += (size_t)gridDim.x * blockDim.x)

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over a block of up to 1024 threads; every thread gets the result. */
static __device__ inline float block_sum(float v)
{
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(r);
}

static __device__ inline float block_max(float v)
{
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(r);
}

/* ---- host functions of each kernel family --------------------------------------------- */

/* layers.cu: element-wise and normalisation layers (forward/backward pairs) */
void embed_forward(cuda_model *g, float *out, const float *wte, int N, int D);
void embed_backward(cuda_model *g, float *gw, const float *dx, int N, int D, int V);
void add_inplace(float *y, const float *x, size_t n);
void rmsnorm_forward(cuda_model *g, float *out, float *rstd, const float *x, const float *gain, int N,
                     int D);
void rmsnorm_backward(cuda_model *g, float *dx, float *dg, const float *dout, const float *x,
                      const float *gain, const float *rstd, int N, int D);
void rope(cuda_model *g, float *qkv, int N, int inverse);
void swiglu_forward(float *out, const float *h13, int N, int F);
void swiglu_backward(float *dh13, const float *dout, const float *h13, int N, int F);
void softmax_xent_forward(cuda_model *g, int N, int V);
void softmax_xent_backward(cuda_model *g, int N, int V);

/* attention.cu */
void attention_forward(cuda_model *g, float *out, float *att, const float *qkv, int B);
void attention_backward(cuda_model *g, float *dqkv, const float *dout, const float *att,
                        const float *qkv, int B);

/* matmul.cu: cuBLAS products (fp32, or bf16 inputs with fp32 accumulation) */
void gemm(cuda_model *g, int ta, int tb, int m, int n, int k, const float *A, int lda, long long sA,
          const float *B, int ldb, long long sB, float *C, int ldc, long long sC, int batch,
          float alpha, float beta);
void matmul_forward(cuda_model *g, float *out, const float *inp, const float *w, int N, int C, int R);
void matmul_backward(cuda_model *g, float *dinp, float *dw, const float *dout, const float *inp,
                     const float *w, int N, int C, int R);

/* quant.cu: the quantizers over the model's block linears and embeddings */
extern const int lin_tensor[4];
float *qbuf(cuda_model *g, int i);
void quantize(cuda_model *g, int qat, int qat_embed);
void quant_backward(cuda_model *g, int qat, int qat_embed);

/* optim.cu: the global gradient norm (0 on a CUDA failure) and the update (cuda_update) */
int grad_norm(cuda_model *g, double *gnorm);

/* model.cu: whole-model passes (model.c's model_forward / model_backward) */
float forward(cuda_model *g, const uint16_t *inp, const uint16_t *tgt, int B, int qat, int qat_embed);
void backward(cuda_model *g, int B, int qat, int qat_embed);

#endif
