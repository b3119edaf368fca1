/* matmul.cu: the CUDA backend's matrix products through cuBLAS (fp32 without TF32, or bf16
 * inputs with fp32 accumulation), and the GEMM peak the benchmarks compare against. */
#include "common.cuh"

__global__ void to_bf16_k(__nv_bfloat16 *out, const float *x, size_t n)
{
    GRID_LOOP(i, n) out[i] = __float2bfloat16_rn(x[i]);
}

/* ---- matrix products -------------------------------------------------------------------- */

/* Column-major C = alpha op(A) op(B) + beta C, strided-batched (cuBLAS conventions). In bf16
 * mode both inputs are rounded to bf16 first (the span each one covers), the product
 * accumulates in fp32 and C stays fp32. Not counted (gemm below counts). */
static void gemm_issue(cuda_model *g, int ta, int tb, int m, int n, int k, const float *A,
                       int lda, long long sA, const float *B, int ldb, long long sB, float *C,
                       int ldc, long long sC, int batch, float alpha, float beta)
{
    if (g->failed) return;
    cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (!g->y.bf16) {
        ckb(g, cublasSgemmStridedBatched(g->blas, oa, ob, m, n, k, &alpha, A, lda, sA, B, ldb, sB,
                                         &beta, C, ldc, sC, batch), "cublasSgemmStridedBatched");
        return;
    }
    size_t spanA = (size_t)lda * ((ta ? m : k) - 1) + (ta ? k : m) + (size_t)sA * (batch - 1);
    size_t spanB = (size_t)ldb * ((tb ? k : n) - 1) + (tb ? n : k) + (size_t)sB * (batch - 1);
    if (spanA > g->n_bf || spanB > g->n_bf) {
        failf(g, "internal: bf16 scratch too small (%zu, %zu > %zu)", spanA, spanB, g->n_bf);
        return;
    }
    to_bf16_k<<<blocks_for(spanA, 256), 256>>>(g->bf_a, A, spanA);
    to_bf16_k<<<blocks_for(spanB, 256), 256>>>(g->bf_b, B, spanB);
    if (!LAUNCHED(g, "to_bf16")) return;
    ckb(g, cublasGemmStridedBatchedEx(g->blas, oa, ob, m, n, k, &alpha, g->bf_a, CUDA_R_16BF, lda,
                                      sA, g->bf_b, CUDA_R_16BF, ldb, sB, &beta, C, CUDA_R_32F, ldc,
                                      sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmStridedBatchedEx");
}

/* gemm_issue, counted in the trainer's GEMM FLOP counter (model_gemm_flops, on the host: the
 * shapes are known here without waiting for the device). */
void gemm(cuda_model *g, int ta, int tb, int m, int n, int k, const float *A, int lda,
          long long sA, const float *B, int ldb, long long sB, float *C, int ldc,
          long long sC, int batch, float alpha, float beta)
{
    if (g->failed) return;
    model_gemm_flops_add(2 * (uint64_t)m * (uint64_t)n * (uint64_t)k * (uint64_t)batch);
    gemm_issue(g, ta, tb, m, n, k, A, lda, sA, B, ldb, sB, C, ldc, sC, batch, alpha, beta);
}

/* Row-major out[N, R] = inp[N, C] @ w[R, C]^T (layers.c's layer_matmul_forward) */
void matmul_forward(cuda_model *g, float *out, const float *inp, const float *w, int N,
                    int C, int R)
{
    gemm(g, 1, 0, R, N, C, w, C, 0, inp, C, 0, out, R, 0, 1, 1.0f, 0.0f);
}

/* dinp[N, C] = dout @ w (overwritten, if dinp); dw[R, C] += dout^T @ inp */
void matmul_backward(cuda_model *g, float *dinp, float *dw, const float *dout,
                     const float *inp, const float *w, int N, int C, int R)
{
    if (dinp) gemm(g, 0, 0, C, N, R, w, C, 0, dout, R, 0, dinp, C, 0, 1, 1.0f, 0.0f);
    gemm(g, 0, 1, C, R, N, inp, C, 0, dout, R, 0, dw, C, 0, 1, 1.0f, 1.0f);
}

extern "C" double cuda_gemm_peak(int bf16, char *msg, size_t n)
{
    cuda_model tmp; /* only for the error handling and gemm_issue()'s bf16 path */
    memset(&tmp, 0, sizeof tmp);
    cuda_model *g = &tmp;
    g->y.bf16 = bf16;
    const int sizes[] = {2048, 4096, 8192};
    size_t big = 8192ull * 8192;
    float *a = NULL, *b = NULL, *c = NULL;
    double best = 0;
    ck(g, cudaSetDevice(0), "cudaSetDevice");
    if (!g->failed) ckb(g, cublasCreate(&g->blas), "cublasCreate");
    if (!g->failed) ck(g, cudaMalloc(&a, big * sizeof(float)), "cudaMalloc");
    if (!g->failed) ck(g, cudaMalloc(&b, big * sizeof(float)), "cudaMalloc");
    if (!g->failed) ck(g, cudaMalloc(&c, big * sizeof(float)), "cudaMalloc");
    if (!g->failed) ck(g, cudaMemset(a, 0, big * sizeof(float)), "cudaMemset");
    if (!g->failed) ck(g, cudaMemset(b, 0, big * sizeof(float)), "cudaMemset");
    if (bf16 && !g->failed) {
        g->n_bf = big;
        ck(g, cudaMalloc(&g->bf_a, big * sizeof(__nv_bfloat16)), "cudaMalloc");
        if (!g->failed) ck(g, cudaMalloc(&g->bf_b, big * sizeof(__nv_bfloat16)), "cudaMalloc");
    }
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (!g->failed) ck(g, cudaEventCreate(&e0), "cudaEventCreate");
    if (!g->failed) ck(g, cudaEventCreate(&e1), "cudaEventCreate");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && !g->failed; k++) {
        int s = sizes[k];
        for (int rep = 0; rep < 4 && !g->failed; rep++) {
            float ms = 0;
            cudaEventRecord(e0);
            if (bf16) {
                /* the inputs are already bf16: time the product alone */
                float one = 1.0f, zero = 0.0f;
                ckb(g, cublasGemmEx(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, s, s, s, &one, g->bf_a,
                                    CUDA_R_16BF, s, g->bf_b, CUDA_R_16BF, s, &zero, c, CUDA_R_32F,
                                    s, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), "cublasGemmEx");
            } else {
                gemm_issue(g, 1, 0, s, s, s, a, s, 0, b, s, 0, c, s, 0, 1, 1.0f, 0.0f);
            }
            cudaEventRecord(e1);
            ck(g, cudaEventSynchronize(e1), "cudaEventSynchronize");
            cudaEventElapsedTime(&ms, e0, e1);
            double f = 2.0 * s * s * (double)s / (ms / 1e3);
            if (rep > 0 && f > best) best = f; /* the first call of a size warms up */
        }
    }
    if (g->failed && msg && n) snprintf(msg, n, "%s", g->msg);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (g->blas) cublasDestroy(g->blas);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaFree(g->bf_a);
    cudaFree(g->bf_b);
    return g->failed ? 0.0 : best;
}
